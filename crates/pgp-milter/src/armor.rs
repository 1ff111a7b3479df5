//! OpenPGP ASCII armor (RFC 4880 §6.2, RFC 9580 §6.2) and the cleartext
//! signature framework (§7), read from decoded text.
//!
//! [`scan`] splits a text into armored blocks and the text outside them, so
//! the caller can tell "only armor" from "armor quoted inside prose". Lines
//! may end in CRLF or LF. Armor headers (`Version:`, `Comment:`...) are
//! tolerated, the CRC24 checksum line is optional (checked when present).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use thiserror::Error;

/// The kind of an armored block, from its header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `PGP MESSAGE`.
    Message,
    /// `PGP SIGNATURE`.
    Signature,
    /// `PGP PUBLIC KEY BLOCK`.
    PublicKey,
    /// `PGP PRIVATE KEY BLOCK`.
    PrivateKey,
    /// `PGP SIGNED MESSAGE` (cleartext signature; the data is its signature).
    Cleartext,
    /// Anything else after `BEGIN PGP ` (multi-part armor, `ARMORED FILE`...).
    Other(String),
}

/// The label as written in the header line (`PGP SIGNED MESSAGE`), for
/// reasons an admin reads.
impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = match self {
            Kind::Message => "MESSAGE",
            Kind::Signature => "SIGNATURE",
            Kind::PublicKey => "PUBLIC KEY BLOCK",
            Kind::PrivateKey => "PRIVATE KEY BLOCK",
            Kind::Cleartext => "SIGNED MESSAGE",
            Kind::Other(other) => other,
        };
        write!(f, "PGP {label}")
    }
}

/// One armored block: its kind and its decoded binary data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// From the header line.
    pub kind: Kind,
    /// The decoded packets (for a cleartext signature: the signature's).
    pub data: Vec<u8>,
}

/// Why an armored block is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArmorError {
    /// The text ends before the armor tail.
    #[error("armor is truncated (no END line for BEGIN PGP {0})")]
    Truncated(String),
    /// A header line and nothing else of substance.
    #[error("armor has no data")]
    NoData,
    /// A data line that is not base64.
    #[error("armor data is not base64")]
    Base64,
    /// The CRC24 line does not match the data.
    #[error("armor checksum mismatch")]
    Checksum,
    /// An END line for a different kind, or a malformed line in the block.
    #[error("malformed armor: {0}")]
    Malformed(String),
}

/// A text split into armored blocks and what is outside them.
#[derive(Debug, Default)]
pub struct Scan {
    /// Each `BEGIN PGP` block in order, decoded or with the reason it failed.
    pub blocks: Vec<Result<Block, ArmorError>>,
    /// True if any line outside the blocks has something besides whitespace.
    pub text_outside: bool,
}

/// Splits `text` into armored blocks and outside text.
pub fn scan(text: &[u8]) -> Scan {
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii_end())
        .collect();
    let mut out = Scan::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(label) = begin_label(line) {
            let (block, next) = read_block(&lines, i, label);
            out.blocks.push(block);
            i = next;
        } else {
            if !line.trim_ascii().is_empty() {
                out.text_outside = true;
            }
            i += 1;
        }
    }
    out
}

/// `-----BEGIN PGP X-----` gives `PGP X`.
fn begin_label(line: &[u8]) -> Option<&str> {
    let inner = line
        .strip_prefix(b"-----BEGIN PGP ")?
        .strip_suffix(b"-----")?;
    let label = std::str::from_utf8(inner).ok()?;
    Some(label)
}

fn kind_of(label: &str) -> Kind {
    match label {
        "MESSAGE" => Kind::Message,
        "SIGNATURE" => Kind::Signature,
        "PUBLIC KEY BLOCK" => Kind::PublicKey,
        "PRIVATE KEY BLOCK" => Kind::PrivateKey,
        "SIGNED MESSAGE" => Kind::Cleartext,
        other => Kind::Other(other.to_owned()),
    }
}

/// Reads the block whose header is `lines[start]`; returns it and the index
/// of the first line after it.
fn read_block(lines: &[&[u8]], start: usize, label: &str) -> (Result<Block, ArmorError>, usize) {
    let kind = kind_of(label);
    if kind == Kind::Cleartext {
        return read_cleartext(lines, start);
    }
    match read_armor(lines, start + 1, label) {
        Ok((data, next)) => (Ok(Block { kind, data }), next),
        Err((e, next)) => (Err(e), next),
    }
}

/// A cleartext-signed text: `Hash:` headers, blank line, dash-escaped
/// text, then a `PGP SIGNATURE` block, whose data becomes the block's.
fn read_cleartext(lines: &[&[u8]], start: usize) -> (Result<Block, ArmorError>, usize) {
    let mut i = start + 1;
    while i < lines.len() && !lines[i].trim_ascii().is_empty() {
        if !lines[i].contains(&b':') {
            return (
                Err(ArmorError::Malformed(
                    "cleartext signature header without a colon".into(),
                )),
                i,
            );
        }
        i += 1;
    }
    while i < lines.len() {
        if begin_label(lines[i]) == Some("SIGNATURE") {
            return match read_armor(lines, i + 1, "SIGNATURE") {
                Ok((data, next)) => (
                    Ok(Block {
                        kind: Kind::Cleartext,
                        data,
                    }),
                    next,
                ),
                Err((e, next)) => (Err(e), next),
            };
        }
        i += 1;
    }
    (
        Err(ArmorError::Truncated("SIGNED MESSAGE".into())),
        lines.len(),
    )
}

type ArmorResult = Result<(Vec<u8>, usize), (ArmorError, usize)>;

/// Armor headers, blank line, base64, optional checksum, tail. `i` is the
/// line after the header line.
///
/// Blank (whitespace-only) lines between the data lines and between the
/// checksum and the tail are skipped. RFC 9580 §6.2 lists the parts of the
/// armor without a blank line there, but §6 says a decoder "MUST ignore
/// all white space" in base64, GnuPG's `gpg -d`/`--dearmor` skips them and
/// decodes the same packets, and mail software adds them; refusing what the
/// recipient's GnuPG reads would be a wrong reject. A blank line carries
/// no text, so nothing can hide in one.
fn read_armor(lines: &[&[u8]], mut i: usize, label: &str) -> ArmorResult {
    let tail = format!("-----END PGP {label}-----");
    // No tail before the text ends or the next armor begins: the block is
    // cut off, whatever the lines up to there look like.
    let has_tail = lines[i.min(lines.len())..]
        .iter()
        .map(|l| l.trim_ascii())
        .take_while(|l| begin_label(l).is_none())
        .any(|l| l == tail.as_bytes());
    if !has_tail {
        let next = lines[i.min(lines.len())..]
            .iter()
            .position(|l| begin_label(l.trim_ascii()).is_some())
            .map_or(lines.len(), |p| i + p);
        return Err((ArmorError::Truncated(label.to_owned()), next));
    }
    // Armor headers: `Key: value` lines up to a blank line. Some writers
    // leave out the blank line when there are no headers; tolerate that.
    while i < lines.len() && is_armor_header(lines[i]) {
        i += 1;
    }
    let mut b64 = Vec::new();
    let mut checksum: Option<&[u8]> = None;
    loop {
        let Some(&line) = lines.get(i) else {
            return Err((ArmorError::Truncated(label.to_owned()), i));
        };
        let line = line.trim_ascii();
        i += 1;
        if line == tail.as_bytes() {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"-----") {
            return Err((
                ArmorError::Malformed(format!(
                    "unexpected {} inside BEGIN PGP {label}",
                    String::from_utf8_lossy(line)
                )),
                i,
            ));
        }
        if checksum.is_some() {
            return Err((
                ArmorError::Malformed("data after the checksum line".into()),
                i,
            ));
        }
        if line.len() == 5 && line[0] == b'=' {
            checksum = Some(&line[1..]);
        } else {
            b64.extend_from_slice(line);
        }
    }
    if b64.is_empty() {
        return Err((ArmorError::NoData, i));
    }
    let data = engine().decode(&b64).map_err(|_| (ArmorError::Base64, i))?;
    if data.is_empty() {
        return Err((ArmorError::NoData, i));
    }
    if let Some(sum) = checksum {
        let sum = engine().decode(sum).map_err(|_| (ArmorError::Base64, i))?;
        let crc = crc24(&data);
        if sum != [(crc >> 16) as u8, (crc >> 8) as u8, crc as u8] {
            return Err((ArmorError::Checksum, i));
        }
    }
    Ok((data, i))
}

fn is_armor_header(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && line.get(colon + 1).is_none_or(|&b| b == b' ')
}

/// Standard base64, padding optional.
fn engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// The armor checksum (RFC 4880 §6.1).
pub fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0xB7_04CE;
    const POLY: u32 = 0x186_4CFB;
    let mut crc = INIT;
    for &b in data {
        crc ^= (b as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0xFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armor(label: &str, headers: &str, data: &[u8], crc: bool, eol: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let mut s = format!("-----BEGIN PGP {label}-----{eol}{headers}{eol}");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push_str(eol);
        }
        if crc {
            let c = crc24(data);
            let sum = [(c >> 16) as u8, (c >> 8) as u8, c as u8];
            s.push('=');
            s.push_str(&base64::engine::general_purpose::STANDARD.encode(sum));
            s.push_str(eol);
        }
        s.push_str(&format!("-----END PGP {label}-----{eol}"));
        s
    }

    #[test]
    fn crc24_known_value() {
        // RFC 4880's CRC of the empty string is the initial value.
        assert_eq!(crc24(b""), 0xB704CE);
        assert_eq!(crc24(b"123456789"), 0x21CF02);
    }

    #[test]
    fn headers_checksum_and_line_ends() {
        let data: Vec<u8> = (0..200u8).collect();
        for eol in ["\n", "\r\n"] {
            for crc in [true, false] {
                let text = armor(
                    "MESSAGE",
                    &format!("Version: GopenPGP 2.7.4{eol}Comment: https://gopenpgp.org{eol}"),
                    &data,
                    crc,
                    eol,
                );
                let s = scan(text.as_bytes());
                assert!(!s.text_outside);
                assert_eq!(
                    s.blocks,
                    vec![Ok(Block {
                        kind: Kind::Message,
                        data: data.clone()
                    })]
                );
            }
        }
    }

    #[test]
    fn bad_armor_is_reported() {
        let data: Vec<u8> = (0..50u8).collect();
        let good = armor("MESSAGE", "", &data, true, "\n");
        // Truncated: no END line.
        let cut = &good[..good.len() / 2];
        assert!(matches!(
            scan(cut.as_bytes()).blocks[0],
            Err(ArmorError::Truncated(_))
        ));
        // Header line only, then END.
        let empty = "-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n";
        assert_eq!(scan(empty.as_bytes()).blocks[0], Err(ArmorError::NoData));
        // Header line only.
        let only = "-----BEGIN PGP MESSAGE-----\n";
        assert!(matches!(
            scan(only.as_bytes()).blocks[0],
            Err(ArmorError::Truncated(_))
        ));
        // Not base64.
        let junk =
            "-----BEGIN PGP MESSAGE-----\n\nthis is not *base64*!\n-----END PGP MESSAGE-----\n";
        assert_eq!(scan(junk.as_bytes()).blocks[0], Err(ArmorError::Base64));
        // Wrong checksum.
        let bad = good.replace("\n=", "\n=A").replacen("=A", "=", 1);
        let bad = {
            let mut lines: Vec<String> = bad.lines().map(str::to_owned).collect();
            let n = lines.len();
            lines[n - 2] = "=AAAA".into();
            lines.join("\n")
        };
        assert_eq!(scan(bad.as_bytes()).blocks[0], Err(ArmorError::Checksum));
    }

    #[test]
    fn blank_lines_inside_the_armor_are_skipped_as_gnupg_does() {
        let data: Vec<u8> = (0..200u8).collect();
        let good = armor("MESSAGE", "", &data, true, "\r\n");
        let want = vec![Ok(Block {
            kind: Kind::Message,
            data: data.clone(),
        })];
        let lines: Vec<&str> = good.split("\r\n").collect();
        // After the header line, between data lines, after the checksum.
        for at in [1, 3, lines.len() - 2] {
            let mut l = lines.clone();
            l.insert(at, "  ");
            let s = scan(l.join("\r\n").as_bytes());
            assert_eq!(s.blocks, want, "blank line at {at}");
            assert!(!s.text_outside);
        }
    }

    #[test]
    fn a_missing_end_line_is_truncation() {
        let data: Vec<u8> = (0..50u8).collect();
        let good = armor("MESSAGE", "", &data, true, "\n");
        let cut = good.replace("-----END PGP MESSAGE-----\n", "");
        for text in [
            cut.clone(),
            format!("{cut}\n"),
            format!("{cut}Thanks,\nBob\n"),
        ] {
            assert_eq!(
                scan(text.as_bytes()).blocks,
                vec![Err(ArmorError::Truncated("MESSAGE".into()))],
                "{text:?}"
            );
        }
        assert_eq!(
            ArmorError::Truncated("MESSAGE".into()).to_string(),
            "armor is truncated (no END line for BEGIN PGP MESSAGE)"
        );
        // A cut block before a whole one: the whole one is still read.
        let s = scan(format!("{cut}{good}").as_bytes());
        assert_eq!(
            s.blocks,
            vec![
                Err(ArmorError::Truncated("MESSAGE".into())),
                Ok(Block {
                    kind: Kind::Message,
                    data
                })
            ]
        );
        // Text between the checksum and a present END line is still
        // malformed, not truncation.
        let inserted = good.replace("-----END", "junk\n-----END");
        assert_eq!(
            scan(inserted.as_bytes()).blocks,
            vec![Err(ArmorError::Malformed(
                "data after the checksum line".into()
            ))]
        );
    }

    #[test]
    fn text_around_armor_is_noticed() {
        let block = armor("MESSAGE", "", b"\xc1\x01\x03", false, "\n");
        let s = scan(format!("Hello,\n{block}\nBye\n").as_bytes());
        assert!(s.text_outside);
        assert_eq!(s.blocks.len(), 1);
        let s = scan(format!("\n  \n{block}\n\n").as_bytes());
        assert!(!s.text_outside);
        // A quoted BEGIN line is text, not armor.
        let quoted: String = block.lines().map(|l| format!("> {l}\n")).collect();
        let s = scan(quoted.as_bytes());
        assert!(s.text_outside);
        assert!(s.blocks.is_empty());
    }

    #[test]
    fn cleartext_signature_yields_the_signature_data() {
        let sig = armor("SIGNATURE", "", b"\xc2\x01\x04", true, "\r\n");
        let text = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA512\r\n\r\nHello\r\n- -- dash\r\n{sig}"
        );
        let s = scan(text.as_bytes());
        assert!(!s.text_outside);
        assert_eq!(
            s.blocks,
            vec![Ok(Block {
                kind: Kind::Cleartext,
                data: b"\xc2\x01\x04".to_vec()
            })]
        );
    }
}
