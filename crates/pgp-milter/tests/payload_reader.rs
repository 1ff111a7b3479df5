//! The streaming payload reader on constructed packets and armor: what
//! passes, what is refused and why, and that chunking never changes the
//! verdict.

mod tools;

use tools::random_bytes;

use base64::Engine;
use pgp_milter::packets::KeyTarget;
use pgp_milter::payload::{
    Encoding, ErrorClass, Payload, PayloadError, PayloadKind, PayloadLimits, PayloadReader,
};
use proptest::prelude::*;

const PKESK: u8 = 1;
const SKESK: u8 = 3;
const LITERAL: u8 = 11;
const SEIPD: u8 = 18;
const PADDING: u8 = 21;
const MARKER: u8 = 10;

/// A new-format packet with a five-octet length.
fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xc0 | tag, 0xff];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A v3 PKESK to key ID 0x11.., RSA (one short MPI).
fn pkesk(id: u8) -> Vec<u8> {
    let mut body = vec![3];
    body.extend_from_slice(&[id; 8]);
    body.extend_from_slice(&[1, 0, 8, 0xaa]);
    packet(PKESK, &body)
}

/// A SEIPD v1 with `n` random octets.
fn seipd(seed: u64, n: usize) -> Vec<u8> {
    let mut body = vec![1];
    body.extend(random_bytes(seed, n));
    packet(SEIPD, &body)
}

fn encrypted(n: usize) -> Vec<u8> {
    let mut m = pkesk(0x11);
    m.extend(seipd(5, n));
    m
}

fn crc24(data: &[u8]) -> u32 {
    let mut crc = 0xB7_04CEu32;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= 0x186_4CFB;
            }
        }
    }
    crc & 0xFF_FFFF
}

fn armor(label: &str, headers: &str, data: &[u8], checksum: bool) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut s = format!("-----BEGIN PGP {label}-----\r\n{headers}\r\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push_str("\r\n");
    }
    if checksum {
        let c = crc24(data);
        s.push('=');
        s.push_str(&base64::engine::general_purpose::STANDARD.encode([
            (c >> 16) as u8,
            (c >> 8) as u8,
            c as u8,
        ]));
        s.push_str("\r\n");
    }
    s.push_str(&format!("-----END PGP {label}-----\r\n"));
    s.into_bytes()
}

fn read(encoding: Encoding, data: &[u8], chunk: usize) -> Result<Payload, PayloadError> {
    let mut r = PayloadReader::new(encoding, &PayloadLimits::default());
    for c in data.chunks(chunk.max(1)) {
        r.feed(c)?;
    }
    r.finish()
}

fn kind(encoding: Encoding, data: &[u8]) -> Result<PayloadKind, PayloadError> {
    read(encoding, data, 4096).map(|p| p.kind)
}

#[test]
fn encrypted_binary_and_armored() {
    let m = encrypted(5000);
    for enc in [Encoding::Binary, Encoding::Auto] {
        let p = read(enc, &m, 1000).unwrap();
        assert_eq!(p.kind, PayloadKind::Encrypted);
        assert_eq!(p.recipients, vec![KeyTarget::KeyId([0x11; 8])]);
    }
    for checksum in [true, false] {
        let a = armor(
            "MESSAGE",
            "Version: GnuPG v2\r\nComment: https://gnupg.org\r\n",
            &m,
            checksum,
        );
        for enc in [Encoding::Armored, Encoding::Auto] {
            let p = read(enc, &a, 7).unwrap();
            assert_eq!(p.kind, PayloadKind::Encrypted);
            assert_eq!(p.blocks.len(), 1);
            assert_eq!(p.blocks[0].recipients, vec![KeyTarget::KeyId([0x11; 8])]);
            assert!(p.buffer_high_water < 16 << 10, "{}", p.buffer_high_water);
        }
    }
    // Marker and padding (random) around it; two blocks with white space.
    let mut m2 = packet(MARKER, b"PGP");
    m2.extend(encrypted(300));
    m2.extend(packet(PADDING, &random_bytes(9, 200)));
    let mut two = b"\r\n  \r\n".to_vec();
    two.extend(armor("MESSAGE", "", &m2, true));
    two.extend(b"\r\n\t\r\n");
    two.extend(armor("MESSAGE", "", &m, false));
    let p = read(Encoding::Armored, &two, 33).unwrap();
    assert_eq!(p.blocks.len(), 2);
    assert_eq!(p.recipients.len(), 2);
}

#[test]
fn white_space_only_is_empty() {
    assert_eq!(kind(Encoding::Auto, b""), Ok(PayloadKind::Empty));
    assert_eq!(
        kind(Encoding::Armored, b" \r\n\r\n\t"),
        Ok(PayloadKind::Empty)
    );
}

#[test]
fn ciphertext_that_is_text_is_refused() {
    let text: Vec<u8> = b"Meet me at noon by the old bridge, bring the papers. "
        .iter()
        .cycle()
        .take(3000)
        .cloned()
        .collect();
    let mut body = vec![1];
    body.extend(&text);
    let mut m = pkesk(0x11);
    m.extend(packet(SEIPD, &body));
    let e = kind(Encoding::Binary, &m).unwrap_err();
    assert!(matches!(e, PayloadError::NotCiphertext(_)), "{e}");
    assert_eq!(e.class(), ErrorClass::Plaintext);
    assert!(e.to_string().starts_with("not ciphertext"), "{e}");
    // Early: the first 4096 bytes of a long one are enough.
    let mut long_body = vec![1];
    long_body.extend(text.iter().cycle().take(1 << 20));
    let mut long = pkesk(0x11);
    long.extend(packet(SEIPD, &long_body));
    let mut r = PayloadReader::new(Encoding::Binary, &PayloadLimits::default());
    let refused_at = long
        .chunks(1024)
        .position(|c| r.feed(c).is_err())
        .expect("refused before the end");
    assert!(refused_at < 8, "{refused_at}");
    // A Padding packet full of text.
    let mut padded = encrypted(500);
    padded.extend(packet(PADDING, &text[..400]));
    assert!(matches!(
        kind(Encoding::Binary, &padded),
        Err(PayloadError::NotCiphertext(_))
    ));
    // Armor lines whose base64 spells words.
    let words = "TheQuickBrownFoxJumpsOverTheLazyDogMeetMeAtNoonBringTheMoney";
    let lines: String = words.chars().cycle().take(64 * 60).collect();
    let data = base64::engine::general_purpose::STANDARD
        .decode(lines.as_bytes())
        .unwrap();
    let mut m = pkesk(0x11);
    let mut body = vec![1];
    body.extend(data);
    m.extend(packet(SEIPD, &body));
    assert!(matches!(
        kind(Encoding::Armored, &armor("MESSAGE", "", &m, false)),
        Err(PayloadError::NotCiphertext(_))
    ));
}

#[test]
fn armor_headers_are_bounded() {
    let m = encrypted(1000);
    let prose: String = (0..40)
        .map(|i| format!("Comment: line {i} of a long letter that readers display\r\n"))
        .collect();
    let e = kind(Encoding::Armored, &armor("MESSAGE", &prose, &m, true)).unwrap_err();
    assert!(e.to_string().contains("armor header lines"), "{e}");
    let long = format!("Comment: {}\r\n", "x".repeat(200));
    assert!(kind(Encoding::Armored, &armor("MESSAGE", &long, &m, true)).is_err());
    for bad in [
        ": no key\r\n",
        " Comment: a space before the key\r\n",
        "Comment:no space after the colon\r\n",
        "K\u{e9}y: not ASCII\r\n",
    ] {
        let e = kind(Encoding::Armored, &armor("MESSAGE", bad, &m, true)).unwrap_err();
        assert!(e.to_string().contains("armor header"), "{bad:?}: {e}");
    }
    for ok in [
        // Keys no RFC defines: GnuPG and OpenPGP.js read on (tests/payload_gpg.rs).
        "Subject: hello there\r\n",
        "X-Mailer-Version: 1.2\r\nComment: both\r\n",
        "Bad Key: a space in the key\r\n",
        "Version: GnuPG v2\r\n",
        "Version: OpenPGP.js v4.10.10\r\nComment: https://openpgpjs.org\r\n",
        "Comment: Using GnuPG with Thunderbird - https://www.enigmail.net/\r\n",
        "Charset: UTF-8\r\nMessageID: abc\r\n",
    ] {
        assert_eq!(
            kind(Encoding::Armored, &armor("MESSAGE", ok, &m, true)),
            Ok(PayloadKind::Encrypted),
            "{ok}"
        );
    }
}

#[test]
fn text_next_to_the_armor_is_plaintext() {
    let a = armor("MESSAGE", "", &encrypted(1000), true);
    for (before, after) in [
        (&b"Hello Bob,\r\n"[..], &b""[..]),
        (b"", b"-- \r\nAlice\r\n"),
        (b"  -----BEGIN PGP MESSAGE-----\r\n", b""),
        (b"", b"x"),
    ] {
        let mut m = before.to_vec();
        m.extend(&a);
        m.extend(after);
        let e = kind(Encoding::Armored, &m).unwrap_err();
        assert_eq!(
            e,
            PayloadError::TextOutsideArmor,
            "{}",
            String::from_utf8_lossy(&m)
        );
        assert_eq!(e.class(), ErrorClass::Plaintext);
    }
    // Not armor at all (a PDF), early.
    let mut r = PayloadReader::new(Encoding::Auto, &PayloadLimits::default());
    assert!(r.feed(b"%PDF-1.4\n").is_err());
    let e = kind(Encoding::Binary, b"\x89PNG\r\n\x1a\n....").unwrap_err();
    assert_eq!(e.class(), ErrorClass::Plaintext, "{e}");
}

#[test]
fn malformed_armor_is_invalid() {
    let m = encrypted(1000);
    let good = armor("MESSAGE", "", &m, true);
    let text = String::from_utf8(good.clone()).unwrap();
    // Wrong checksum.
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    let n = lines.len();
    lines[n - 3] = "=AAAA";
    let bad = lines.join("\r\n");
    assert_eq!(
        kind(Encoding::Armored, bad.as_bytes()),
        Err(PayloadError::Armor("armor checksum mismatch".into()))
    );
    // Cut off.
    let e = kind(Encoding::Armored, &good[..good.len() / 2]).unwrap_err();
    assert!(matches!(e, PayloadError::Truncated(_)), "{e}");
    // Not base64.
    let junk = b"-----BEGIN PGP MESSAGE-----\n\nthis is not *base64*!\n-----END PGP MESSAGE-----\n";
    // (Its first eight letters decode to a packet header announcing a
    // user ID of 414 MB: refused as over the limit, before the '*'.)
    assert_eq!(
        kind(Encoding::Armored, junk).unwrap_err().class(),
        ErrorClass::Invalid
    );
    let junk = b"-----BEGIN PGP MESSAGE-----\n\n*not base64*\n-----END PGP MESSAGE-----\n";
    assert_eq!(
        kind(Encoding::Armored, junk),
        Err(PayloadError::Armor("armor data is not base64".into()))
    );
    // No data.
    let empty = b"-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n";
    assert!(matches!(
        kind(Encoding::Armored, empty),
        Err(PayloadError::Armor(_))
    ));
    // END of another kind.
    let other = text.replace("END PGP MESSAGE", "END PGP SIGNATURE");
    assert!(matches!(
        kind(Encoding::Armored, other.as_bytes()),
        Err(PayloadError::Armor(_))
    ));
    // Unsupported armor kind.
    let file = text.replace("PGP MESSAGE", "PGP ARMORED FILE");
    assert!(matches!(
        kind(Encoding::Armored, file.as_bytes()),
        Err(PayloadError::Armor(_))
    ));
    // Blank lines between data lines and no blank line after BEGIN are
    // tolerated, as GnuPG does; LF line ends too; END without a line end.
    // One long data line right after BEGIN (no blank line, no wrapping).
    let one_line = format!(
        "-----BEGIN PGP MESSAGE-----\n{}\n-----END PGP MESSAGE-----\n",
        base64::engine::general_purpose::STANDARD.encode(&m)
    );
    assert_eq!(
        kind(Encoding::Armored, one_line.as_bytes()),
        Ok(PayloadKind::Encrypted)
    );
    let dashes = format!("-----BEGIN PGP MESSAGE-----\n{}\n", "-".repeat(300));
    assert!(matches!(
        kind(Encoding::Armored, dashes.as_bytes()),
        Err(PayloadError::Armor(_))
    ));
    let lf = text.replace("\r\n", "\n");
    assert_eq!(
        kind(Encoding::Armored, lf.as_bytes()),
        Ok(PayloadKind::Encrypted)
    );
    let spaced = text
        .replacen("\r\n\r\n", "\r\n", 1)
        .replacen("=\r\n", "=\r\n  \r\n", 1);
    assert_eq!(
        kind(Encoding::Armored, spaced.as_bytes()),
        Ok(PayloadKind::Encrypted)
    );
    assert_eq!(
        kind(Encoding::Armored, text.trim_end().as_bytes()),
        Ok(PayloadKind::Encrypted)
    );
}

#[test]
fn packet_grammar_and_framing() {
    // Literal data alone: unencrypted, early.
    let mut lit = vec![b'b', 0, 0, 0, 0, 0];
    lit.extend(b"hello");
    let e = kind(Encoding::Binary, &packet(LITERAL, &lit)).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Plaintext, "{e}");
    assert!(matches!(
        kind(
            Encoding::Armored,
            &armor("MESSAGE", "", &packet(LITERAL, &lit), true)
        ),
        Err(PayloadError::Unencrypted(_))
    ));
    // Session keys without data, data without session keys, two data packets.
    assert!(kind(Encoding::Binary, &pkesk(1)).is_err());
    assert!(kind(Encoding::Binary, &seipd(1, 100)).is_err());
    let mut two = encrypted(100);
    two.extend(seipd(2, 100));
    let e = kind(Encoding::Binary, &two).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Invalid, "{e}");
    // Literal after the encrypted data.
    let mut after = encrypted(100);
    after.extend(packet(LITERAL, &lit));
    assert!(kind(Encoding::Binary, &after).is_err());
    // Partial lengths: first chunk of 512 then a final chunk.
    let body = {
        let mut b = vec![1];
        b.extend(random_bytes(3, 700));
        b
    };
    let mut partial = packet(SKESK, &[4, 9, 0, 8]);
    partial.extend([0xc0 | SEIPD, 0xe0 | 9]);
    partial.extend(&body[..512]);
    let rest = &body[512..];
    partial.extend([rest.len() as u8]);
    partial.extend(rest);
    let p = read(Encoding::Binary, &partial, 3).unwrap();
    assert_eq!(p.kind, PayloadKind::Encrypted);
    assert!(p.recipients.is_empty());
    // First partial chunk under 512 octets: refused (as rpgp does).
    let mut short = packet(SKESK, &[4, 9, 0, 8]);
    short.extend([0xc0 | SEIPD, 0xe0 | 8]);
    short.extend(&body[..256]);
    short.extend([(body.len() - 256) as u8]);
    short.extend(&body[256..]);
    assert!(kind(Encoding::Binary, &short).is_err());
    // Partial length on a session-key packet.
    assert!(kind(Encoding::Binary, &[0xc3, 0xe9, 4, 9]).is_err());
    // Legacy header, indeterminate length on the data packet.
    let mut legacy = vec![0x80 | (PKESK << 2) | 1];
    let pk = &pkesk(0x22)[6..];
    legacy.extend((pk.len() as u16).to_be_bytes());
    legacy.extend(pk);
    legacy.push(0x80 | (9 << 2) | 3);
    legacy.extend(random_bytes(4, 300));
    let p = read(Encoding::Binary, &legacy, 10).unwrap();
    assert_eq!(p.recipients, vec![KeyTarget::KeyId([0x22; 8])]);
    // Unknown PKESK version; unknown SEIPD version.
    let mut v9 = packet(PKESK, &[9, 1, 2]);
    v9.extend(seipd(1, 100));
    assert!(kind(Encoding::Binary, &v9).is_err());
    let mut s7 = pkesk(1);
    let mut b7 = vec![7];
    b7.extend(random_bytes(1, 100));
    s7.extend(packet(SEIPD, &b7));
    assert!(kind(Encoding::Binary, &s7).is_err());
    // Cut off inside the data packet.
    let m = encrypted(1000);
    assert!(matches!(
        kind(Encoding::Binary, &m[..m.len() - 1]),
        Err(PayloadError::Packets(_))
    ));
    // A collected packet over the bound.
    let limits = PayloadLimits {
        max_small_packet_bytes: 100,
        ..PayloadLimits::default()
    };
    let mut r = PayloadReader::new(Encoding::Binary, &limits);
    let mut big = packet(MARKER, b"PGP");
    big.extend(packet(2, &[0; 200]));
    assert!(matches!(r.feed(&big[..20]), Err(PayloadError::Limit(_))));
    // The same bytes first in a binary attachment: not OpenPGP at all.
    let mut r = PayloadReader::new(Encoding::Binary, &limits);
    let e = r.feed(&big[9..]).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Plaintext, "{e}");
}

#[test]
fn an_error_is_final() {
    let mut r = PayloadReader::new(Encoding::Armored, &PayloadLimits::default());
    let e = r.feed(b"Hello").unwrap_err();
    assert_eq!(r.feed(b"\r\n"), Err(e.clone()));
    assert_eq!(r.finish(), Err(e));
}

/// A valid armored message, then maybe mutated.
fn sample(seed: u64) -> Vec<u8> {
    let mut m = pkesk(seed as u8);
    m.extend(seipd(seed, 64 + (seed as usize * 37) % 3000));
    armor("MESSAGE", "Version: x\r\n", &m, seed.is_multiple_of(2))
}

/// Inputs for the chunking property: valid messages and ones that fail in
/// different layers (text ciphertext, compressed data over a small budget).
fn property_input(seed: u64, kind: u8) -> Vec<u8> {
    let text: Vec<u8> = b"attack at dawn "
        .iter()
        .cycle()
        .take(5000)
        .cloned()
        .collect();
    match kind % 5 {
        0 => sample(seed),
        1 => encrypted(100 + seed as usize * 50),
        2 => {
            let mut body = vec![1];
            body.extend(&text[..200 + seed as usize * 97]);
            let mut m = pkesk(1);
            m.extend(packet(SEIPD, &body));
            armor("MESSAGE", "", &m, true)
        }
        3 => {
            let mut lit = vec![b'b', 0, 0, 0, 0, 0];
            lit.extend(&text);
            armor(
                "MESSAGE",
                "",
                &compressed(1 + (seed % 3) as u8, &packet(LITERAL, &lit)),
                false,
            )
        }
        _ => {
            let mut m = packet(MARKER, b"PGP");
            m.extend(encrypted(seed as usize * 30));
            m.extend(packet(PADDING, &random_bytes(seed, 70)));
            m
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x005e_ed0f_c4a9),
        ..ProptestConfig::default()
    })]

    /// The same bytes in any chunking give the same result, for valid
    /// input and for mutations of it.
    #[test]
    fn chunking_does_not_change_the_verdict(
        seed in 0u64..50,
        which in any::<u8>(),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut data = property_input(seed, which);
        for (at, b) in mutations {
            let i = at.index(data.len());
            data[i] = b;
        }
        // A small decompression budget, so that limit is reached too.
        let limits = PayloadLimits { max_decompressed_bytes: 3000, ..PayloadLimits::default() };
        let whole = {
            let mut r = PayloadReader::new(Encoding::Auto, &limits);
            r.feed(&data).and_then(|()| r.finish())
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut r = PayloadReader::new(Encoding::Auto, &limits);
        let mut last = 0;
        let mut err = None;
        for p in points.into_iter().chain([data.len()]) {
            if let Err(e) = r.feed(&data[last..p]) {
                err = Some(e);
                break;
            }
            last = p;
        }
        let chunked = match err {
            Some(e) => Err(e),
            None => r.finish(),
        };
        prop_assert_eq!(whole, chunked);
    }
}

/// A Compressed Data packet: algorithm octet, then `data` compressed.
fn compressed(algo: u8, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut body = vec![algo];
    match algo {
        0 => body.extend_from_slice(data),
        1 => {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            body.extend(e.finish().unwrap());
        }
        2 => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            body.extend(e.finish().unwrap());
        }
        3 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            body.extend(e.finish().unwrap());
        }
        _ => body.extend_from_slice(data),
    }
    packet(8, &body)
}

#[test]
fn compressed_data_is_streamed_and_bounded() {
    let mut lit = vec![b'b', 0, 0, 0, 0, 0];
    lit.extend(std::iter::repeat_n(b'a', 100_000));
    let literal = packet(LITERAL, &lit);
    for algo in 0..=3 {
        // Unsigned compressed literal: read through, then refused as
        // unencrypted, in any chunking.
        let a = armor("MESSAGE", "", &compressed(algo, &literal), true);
        for chunk in [1, 100, 1 << 20] {
            let e = read(Encoding::Armored, &a, chunk).unwrap_err();
            assert!(
                matches!(e, PayloadError::Unencrypted(_)),
                "{algo} {chunk}: {e}"
            );
        }
        // Over the decompression budget.
        let limits = PayloadLimits {
            max_decompressed_bytes: 10_000,
            ..PayloadLimits::default()
        };
        let mut r = PayloadReader::new(Encoding::Armored, &limits);
        let e = r
            .feed(&a)
            .and_then(|()| r.finish().map(|_| ()))
            .unwrap_err();
        assert!(matches!(e, PayloadError::Limit(_)), "{algo}: {e}");
    }
    // Nested three deep: over the depth limit.
    let nested = compressed(2, &compressed(2, &compressed(2, &literal)));
    let e = kind(Encoding::Armored, &armor("MESSAGE", "", &nested, true)).unwrap_err();
    assert!(e.to_string().contains("nested"), "{e}");
    // Unknown algorithm; a cut-off stream; data after the stream's end.
    let e = kind(
        Encoding::Armored,
        &armor("MESSAGE", "", &compressed(9, &literal), true),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("unknown compression algorithm"),
        "{e}"
    );
    let mut cut = compressed(2, &literal);
    cut.truncate(cut.len() - 5);
    let fixed = {
        let body = &cut[6..];
        packet(8, body)
    };
    assert!(kind(Encoding::Armored, &armor("MESSAGE", "", &fixed, true)).is_err());
    let mut trailing = compressed(2, &literal)[6..].to_vec();
    trailing.extend(b"junk");
    let e = kind(
        Encoding::Armored,
        &armor("MESSAGE", "", &packet(8, &trailing), true),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("after the end of the compressed stream"),
        "{e}"
    );
    // Compressed data holding session keys: out of grammar.
    let e = kind(
        Encoding::Armored,
        &armor("MESSAGE", "", &compressed(1, &encrypted(100)), true),
    )
    .unwrap_err();
    assert!(e.to_string().contains("inside compressed data"), "{e}");
}

/// Armor lines a `charset=utf-7` reader shows as a sentence: each line is
/// `+` and the modified base64 of UTF-16 text, ended by the line break.
/// As armor they are base64 too; the bytes they decode to are not random.
#[test]
fn armor_that_reads_as_utf7_text_is_refused() {
    let sentence = "Meet me at noon by the old bridge and bring the papers. ";
    let utf16: Vec<u8> = sentence
        .encode_utf16()
        .cycle()
        .take(4000)
        .flat_map(u16::to_be_bytes)
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&utf16);
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(63)
        .take(60)
        .map(|c| format!("+{}", std::str::from_utf8(c).unwrap()))
        .collect();
    // PKESK (20 octets) + SEIPD header (6) + version (1): 27 octets, whole
    // quads of base64, so the UTF-7 lines start on a quad boundary.
    let mut body = vec![3];
    body.extend_from_slice(&[0x11; 8]);
    body.extend_from_slice(&[1, 0, 16, 0xaa, 0xbb]);
    let mut head = packet(PKESK, &body);
    let seipd_len = 1 + 48 * lines.len();
    head.extend([0xc0 | SEIPD, 0xff]);
    head.extend((seipd_len as u32).to_be_bytes());
    head.push(1);
    assert_eq!(head.len() % 3, 0);
    let mut text = String::from("-----BEGIN PGP MESSAGE-----\r\n\r\n");
    text.push_str(&base64::engine::general_purpose::STANDARD.encode(&head));
    text.push_str("\r\n");
    for l in &lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    text.push_str("-----END PGP MESSAGE-----\r\n");
    let e = kind(Encoding::Armored, text.as_bytes()).unwrap_err();
    assert!(matches!(e, PayloadError::NotCiphertext(_)), "{e}");
    // The same frame around random bytes passes: the test is what refuses.
    let mut random = head.clone();
    random.extend(random_bytes(77, 48 * lines.len()));
    assert_eq!(
        kind(Encoding::Armored, &armor("MESSAGE", "", &random, false)),
        Ok(PayloadKind::Encrypted)
    );
}

/// The milter keeps one reader per leaf in a connection's state, which
/// tokio may move between threads.
#[test]
fn the_reader_can_move_between_threads() {
    fn send<T: Send + 'static>(_: &T) {}
    let r = PayloadReader::new(Encoding::Auto, &PayloadLimits::default());
    send(&r);
    let handle = std::thread::spawn(move || {
        let mut r = r;
        r.feed(&encrypted(500)).and_then(|()| r.finish())
    });
    assert_eq!(
        handle.join().unwrap().map(|p| p.kind),
        Ok(PayloadKind::Encrypted)
    );
}

/// Every single-byte corruption of compressed data (what the property test
/// once found: a corrupt deflate stream against the decompression budget)
/// gives the same verdict whole, cut in three, and byte by byte.
#[test]
fn corrupt_compressed_data_is_judged_the_same_in_any_chunking() {
    let limits = PayloadLimits {
        max_decompressed_bytes: 3000,
        ..PayloadLimits::default()
    };
    let run = |data: &[u8], cuts: &[usize]| {
        let mut r = PayloadReader::new(Encoding::Auto, &limits);
        let mut last = 0;
        for &p in cuts.iter().chain([&data.len()]) {
            r.feed(&data[last..p])?;
            last = p;
        }
        r.finish()
    };
    for seed in [27, 28, 29] {
        let good = property_input(seed, 3);
        for i in 0..good.len() {
            for b in [47, 0xff] {
                let mut data = good.clone();
                data[i] = b;
                let whole = run(&data, &[]);
                let n = data.len();
                assert_eq!(run(&data, &[n / 3, 2 * n / 3]), whole, "seed {seed} at {i}");
                let every: Vec<usize> = (1..n).collect();
                assert_eq!(run(&data, &every), whole, "seed {seed} at {i} bytewise");
            }
        }
    }
}

/// White space inside a base64 line is refused (no OpenPGP implementation
/// writes it, and spaces would let "ciphertext" lines read as words);
/// white space before or after a line's data is allowed, whatever the
/// chunking.
#[test]
fn white_space_inside_an_armor_line_is_refused() {
    let good = armor("MESSAGE", "", &encrypted(1000), true);
    let text = String::from_utf8(good).unwrap();
    let lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
    // lines[0] BEGIN, lines[1] blank, lines[2..] base64.
    let spaced = |f: &dyn Fn(&str) -> String| {
        let mut l = lines.clone();
        l[3] = f(&l[3]);
        l.join("\r\n")
    };
    let inside = spaced(&|l| format!("{} {}", &l[..1], &l[1..]));
    let tab_inside = spaced(&|l| format!("{}\t{}", &l[..40], &l[40..]));
    let leading = spaced(&|l| format!("  {l}"));
    let trailing = spaced(&|l| format!("{l} \t "));
    for chunk in [1, 2, 7, 4096] {
        for bad in [&inside, &tab_inside] {
            assert_eq!(
                read(Encoding::Armored, bad.as_bytes(), chunk).map(|p| p.kind),
                Err(PayloadError::Armor(
                    "white space inside an armor line".into()
                )),
                "chunk {chunk}"
            );
        }
        for ok in [&leading, &trailing] {
            assert_eq!(
                read(Encoding::Armored, ok.as_bytes(), chunk).map(|p| p.kind),
                Ok(PayloadKind::Encrypted),
                "chunk {chunk}"
            );
        }
    }
    // Padding after a gap is refused too (1027 octets: `==` padding).
    let m = encrypted(1001);
    assert_eq!(m.len() % 3, 1);
    let text = String::from_utf8(armor("MESSAGE", "", &m, true)).unwrap();
    let padded = text.replacen("==\r\n", " ==\r\n", 1);
    assert_ne!(padded, text);
    assert_eq!(
        read(Encoding::Armored, padded.as_bytes(), 3).map(|p| p.kind),
        Err(PayloadError::Armor(
            "white space inside an armor line".into()
        ))
    );
}
