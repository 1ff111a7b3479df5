//! A message of any size is judged completely, as it streams: large
//! PGP/MIME messages (made on the fly, never held whole by the test) are
//! accepted, and plaintext after 20 MB of ciphertext is still found.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgp_milter::detect::{Detector, Wanted};
use pgp_milter::{Detection, NotPgp};

/// Stands in for ciphertext (random-looking bytes).
use testkit::random::Xorshift as Random;

/// Feeds a PGP/MIME message whose armored payload is a passphrase session
/// key and `size` bytes of encrypted data, in 64 KiB body chunks, then
/// `tail` before the closing delimiter.
fn pgp_mime_of(size: usize, tail: &str) -> Detection {
    let mut d = Detector::new(Wanted { keys: true });
    let head = "Subject: big\r\nContent-Type: multipart/encrypted; \
                protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\r\n\r\n\
                --enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
                --enc\r\nContent-Type: application/octet-stream\r\n\r\n\
                -----BEGIN PGP MESSAGE-----\r\n\r\n";
    d.feed(head.as_bytes());
    // SKESK v4 (AES-256, iterated and salted SHA-256), then SEIPD v1 with
    // a five-octet length.
    let mut packets = vec![0xC3, 0x0D, 4, 9, 3, 8, 1, 2, 3, 4, 5, 6, 7, 8, 96];
    packets.push(0xD2);
    packets.push(0xFF);
    packets.extend(((size + 1) as u32).to_be_bytes());
    packets.push(1);
    let mut random = Random(0x1234_5678_9ABC_DEF1);
    let mut pending = packets;
    let mut left = size;
    // 57 bytes make one 76-character armor line.
    let block_len = 57 * 1000;
    while left > 0 || !pending.is_empty() {
        let n = left.min(block_len - pending.len().min(block_len));
        let mut raw = std::mem::take(&mut pending);
        let start = raw.len();
        raw.resize(start + n, 0);
        random.fill(&mut raw[start..]);
        left -= n;
        let whole = if left == 0 {
            raw.len()
        } else {
            raw.len() / 57 * 57
        };
        pending = raw.split_off(whole);
        let text: String = STANDARD
            .encode(&raw)
            .as_bytes()
            .chunks(76)
            .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
            .collect();
        if let Some(why) = d.feed(text.as_bytes()) {
            return Detection::Plain(why.clone());
        }
    }
    d.feed(format!("-----END PGP MESSAGE-----\r\n{tail}--enc--\r\n").as_bytes());
    d.finish().detection
}

#[test]
fn twenty_megabytes_of_pgp_mime_are_accepted() {
    let d = pgp_mime_of(20 << 20, "");
    assert!(matches!(d, Detection::Encrypted(_)), "{d}");
}

#[test]
fn plaintext_after_twenty_megabytes_is_still_found() {
    let d = pgp_mime_of(
        20 << 20,
        "--enc\r\nContent-Type: text/plain\r\n\r\nthe secret\r\n",
    );
    assert!(
        matches!(&d, Detection::Plain(NotPgp::Invalid(why)) if why.contains("3 parts instead of 2")),
        "{d}"
    );
}
