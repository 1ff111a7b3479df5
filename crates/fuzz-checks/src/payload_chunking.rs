//! `payload_chunking`: arbitrary bytes through pgp-milter's streaming
//! payload reader ([`pgp_milter::payload`]), in several chunkings.
//!
//! Input layout: one byte choosing the encoding (`% 3`: auto, armored,
//! binary), one byte `k` (`% 16`: how many cut points), `k` big-endian
//! `u16` cut positions (taken modulo the payload length), then the payload.
//!
//! Invariants:
//! - the verdict (the payload, or the error) is the same fed whole, cut at
//!   the given points, and one byte at a time;
//! - no internal failure (a panic inside rpgp's isolation is one);
//! - the reader's buffers stay under a small constant: the largest small
//!   packet plus 32 KiB, whatever the input.

use pgp_milter::payload::{
    Encoding, ErrorClass, Payload, PayloadError, PayloadLimits, PayloadReader,
};

use crate::{Failure, Input, Outcome, ensure, ensure_eq};

fn encoding(b: u8) -> Encoding {
    match b % 3 {
        0 => Encoding::Auto,
        1 => Encoding::Armored,
        _ => Encoding::Binary,
    }
}

/// Feeds `data` cut at `cuts` (sorted positions); stops at the first error.
pub fn read_chunked(
    encoding: Encoding,
    data: &[u8],
    cuts: &[usize],
) -> Result<Payload, PayloadError> {
    let mut r = PayloadReader::new(encoding, &PayloadLimits::default());
    let mut last = 0;
    for &p in cuts.iter().chain([&data.len()]) {
        let p = p.clamp(last, data.len());
        r.feed(&data[last..p])?;
        last = p;
    }
    r.finish()
}

/// The structured check: `data` read whole, at `cuts`, and byte by byte.
pub fn check(encoding: Encoding, data: &[u8], cuts: &[usize]) -> Outcome {
    let whole = read_chunked(encoding, data, &[]);
    if let Err(e) = &whole {
        ensure!(
            e.class() != ErrorClass::Internal,
            "internal failure: {e}\ninput: {data:?}"
        );
    }
    if let Ok(p) = &whole {
        let bound = PayloadLimits::default().max_small_packet_bytes + (32 << 10);
        ensure!(
            p.buffer_high_water <= bound,
            "buffers held {} octets",
            p.buffer_high_water
        );
    }
    let mut sorted = cuts.to_vec();
    sorted.sort_unstable();
    let cut = read_chunked(encoding, data, &sorted);
    ensure_eq!(whole, cut, "cut at {sorted:?}");
    let every: Vec<usize> = (1..data.len()).collect();
    let bytewise = read_chunked(encoding, data, &every);
    ensure_eq!(whole, bytewise, "byte by byte");
    Ok(())
}

/// The fuzz entry point.
pub fn run(bytes: &[u8]) -> Outcome {
    let mut input = Input::new(bytes);
    let enc = encoding(input.u8());
    let k = usize::from(input.u8() % 16);
    let raw: Vec<u16> = (0..k).map(|_| input.u16()).collect();
    let data = input.rest();
    let cuts: Vec<usize> = raw
        .iter()
        .map(|&c| usize::from(c) % (data.len() + 1))
        .collect();
    check(enc, data, &cuts).map_err(|f| Failure(format!("{f}\nencoding {enc:?}")))
}

/// Seeds: constructed messages in the input layout (written to
/// `fuzz/corpus/payload_chunking` and compared by the corpus replay).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let encrypted = {
        let mut m = packet(
            1,
            &[
                3, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 1, 0, 8, 0xaa,
            ],
        );
        let mut body = vec![1];
        body.extend(random_bytes(3, 300));
        m.extend(packet(18, &body));
        m
    };
    let armored = armor("MESSAGE", "Version: fuzz\n", &encrypted);
    let mut text_outside = b"Hello,\n".to_vec();
    text_outside.extend(&armored);
    let literal = armor("MESSAGE", "", &packet(11, b"b\0\0\0\0\0hello"));
    let prose: String = (0..40).map(|i| format!("Comment: line {i}\n")).collect();
    let headers = armor("MESSAGE", &prose, &encrypted);
    let with = |enc: u8, cuts: &[u16], data: &[u8]| {
        let mut v = vec![enc, cuts.len() as u8];
        for c in cuts {
            v.extend(c.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    };
    vec![
        ("armored-encrypted", with(1, &[5, 40, 41, 300], &armored)),
        ("binary-encrypted", with(2, &[1, 2, 3, 7, 200], &encrypted)),
        ("auto-armored", with(0, &[100], &armored)),
        ("text-outside", with(0, &[3, 9], &text_outside)),
        ("literal", with(1, &[30], &literal)),
        ("forty-comments", with(1, &[64, 128], &headers)),
    ]
}

fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xc0 | tag, 0xff];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let v = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn armor(label: &str, headers: &str, data: &[u8]) -> Vec<u8> {
    let mut s = format!("-----BEGIN PGP {label}-----\n{headers}\n");
    let b = base64(data);
    for line in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END PGP {label}-----\n"));
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_and_cover_both_verdicts() {
        let mut ok = 0;
        for (name, bytes) in seeds() {
            run(&bytes).unwrap_or_else(|f| panic!("{name}: {f}"));
            let data = &bytes[2 + 2 * usize::from(bytes[1])..];
            if read_chunked(encoding(bytes[0]), data, &[]).is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 3);
    }

    #[test]
    fn a_reader_that_depended_on_chunking_would_be_caught() {
        // The check compares real readers; here, two different inputs
        // standing in for two chunkings must differ.
        let (_, a) = &seeds()[0];
        let data = &a[2 + 2 * usize::from(a[1])..];
        let whole = read_chunked(Encoding::Armored, data, &[]);
        let cut = read_chunked(Encoding::Armored, &data[..data.len() - 30], &[]);
        assert_ne!(whole, cut);
    }
}
