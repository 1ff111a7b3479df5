//! Incremental transfer decoding (RFC 2045 §6): base64 and
//! quoted-printable, fed any chunking of a leaf's raw body. 7bit, 8bit and
//! binary need no decoding (the structure layer passes them through).
//!
//! Both decoders are strict where readers differ: base64 with characters
//! outside its alphabet (some readers skip them, some stop), data after the
//! padding, or a last group cut short; quoted-printable with an `=` that is
//! neither an escape (`=3D`, either case) nor a soft line break. The
//! structure layer has refused NUL and bare CR before, so a CR here always
//! precedes an LF.

use super::MimeError;
use super::fields::Encoding;

/// A decoder for one leaf.
#[derive(Debug)]
pub enum Decoder {
    /// 7bit, 8bit, binary.
    Identity,
    /// base64.
    Base64(Base64),
    /// quoted-printable.
    QuotedPrintable(QuotedPrintable),
}

impl Decoder {
    /// The decoder for `encoding`.
    pub fn new(encoding: Encoding) -> Decoder {
        match encoding {
            Encoding::Base64 => Decoder::Base64(Base64::default()),
            Encoding::QuotedPrintable => Decoder::QuotedPrintable(QuotedPrintable::default()),
            _ => Decoder::Identity,
        }
    }

    /// Decodes `input`, appending to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MimeError> {
        match self {
            Decoder::Identity => {
                out.extend_from_slice(input);
                Ok(())
            }
            Decoder::Base64(d) => d.decode(input, out),
            Decoder::QuotedPrintable(d) => d.decode(input, out),
        }
    }

    /// The leaf ends.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MimeError> {
        match self {
            Decoder::Identity => Ok(()),
            Decoder::Base64(d) => d.finish(),
            Decoder::QuotedPrintable(d) => d.finish(out),
        }
    }
}

/// base64 (RFC 2045 §6.8), white space (space, tab, CR, LF) ignored.
#[derive(Debug, Default)]
pub struct Base64 {
    group: [u8; 4],
    n: usize,
    /// `=` seen in this group.
    pad: usize,
    /// The padded last group is complete: only white space may follow.
    done: bool,
}

fn b64_value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

impl Base64 {
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MimeError> {
        out.reserve(input.len() / 4 * 3 + 3);
        for &c in input {
            if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                continue;
            }
            if self.done {
                return Err(MimeError::ambiguous("base64 data after its padding"));
            }
            if c == b'=' {
                match (self.n, self.pad) {
                    (2, 0) | (3, 0) | (3, 1) => {}
                    _ => return Err(MimeError::ambiguous("misplaced base64 padding")),
                }
                self.pad += 1;
                if self.n == 2 {
                    self.n = 3;
                    continue;
                }
                // A full group: 1 byte (`xx==`) or 2 (`xxx=`).
                let g = self.group;
                out.push((g[0] << 2) | (g[1] >> 4));
                if self.pad == 1 {
                    out.push((g[1] << 4) | (g[2] >> 2));
                }
                self.n = 0;
                self.done = true;
                continue;
            }
            let Some(v) = b64_value(c) else {
                return Err(MimeError::ambiguous(
                    "base64 with a character outside its alphabet",
                ));
            };
            if self.pad > 0 {
                return Err(MimeError::ambiguous("misplaced base64 padding"));
            }
            self.group[self.n] = v;
            self.n += 1;
            if self.n == 4 {
                let g = self.group;
                out.extend_from_slice(&[
                    (g[0] << 2) | (g[1] >> 4),
                    (g[1] << 4) | (g[2] >> 2),
                    (g[2] << 6) | g[3],
                ]);
                self.n = 0;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), MimeError> {
        if self.n != 0 {
            return Err(MimeError::ambiguous(
                "base64 ends inside a 4-character group",
            ));
        }
        Ok(())
    }
}

/// quoted-printable (RFC 2045 §6.7). Line ends come out as CRLF; white
/// space at the end of a line is dropped (rule 3).
#[derive(Debug, Default)]
pub struct QuotedPrintable {
    state: Qp,
    /// Spaces and tabs not yet known to be inside the line.
    white: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Qp {
    #[default]
    Text,
    /// After `=`.
    Equals,
    /// After `=` and one hex digit.
    Hex(u8),
    /// In a soft line break: `=`, white space, then the line end.
    Soft,
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl QuotedPrintable {
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), MimeError> {
        out.reserve(input.len());
        for &c in input {
            self.state = match (self.state, c) {
                (_, b'\r') => self.state,
                (Qp::Text, b'=') => Qp::Equals,
                (Qp::Text, b' ' | b'\t') => {
                    if self.white.len() >= super::fields::MAX_LINE {
                        return Err(MimeError::ambiguous(
                            "quoted-printable line longer than 998 octets",
                        ));
                    }
                    self.white.push(c);
                    Qp::Text
                }
                (Qp::Text, b'\n') => {
                    self.white.clear();
                    out.extend_from_slice(b"\r\n");
                    Qp::Text
                }
                (Qp::Text, c) => {
                    out.append(&mut self.white);
                    out.push(c);
                    Qp::Text
                }
                (Qp::Equals, b' ' | b'\t') => Qp::Soft,
                (Qp::Equals | Qp::Soft, b'\n') => Qp::Text,
                (Qp::Soft, b' ' | b'\t') => Qp::Soft,
                (Qp::Equals, c) if hex_value(c).is_some() => Qp::Hex(hex_value(c).unwrap_or(0)),
                (Qp::Hex(h), c) if hex_value(c).is_some() => {
                    out.append(&mut self.white);
                    out.push((h << 4) | hex_value(c).unwrap_or(0));
                    Qp::Text
                }
                _ => {
                    return Err(MimeError::ambiguous(
                        "quoted-printable '=' neither an escape nor a soft line break",
                    ));
                }
            };
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), MimeError> {
        match self.state {
            // Trailing white space of the last line is dropped; an `=` at
            // the very end is a soft break.
            Qp::Text | Qp::Equals | Qp::Soft => {
                self.white.clear();
                Ok(())
            }
            Qp::Hex(_) => Err(MimeError::ambiguous(
                "quoted-printable '=' neither an escape nor a soft line break",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(enc: Encoding, chunks: &[&[u8]]) -> Result<Vec<u8>, MimeError> {
        let mut d = Decoder::new(enc);
        let mut out = Vec::new();
        for c in chunks {
            d.decode(c, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn base64_decodes_across_any_split() {
        let text = b"SGVsbG8sIHdv\r\ncmxkIQ==\r\n";
        for i in 0..text.len() {
            let (a, b) = text.split_at(i);
            assert_eq!(run(Encoding::Base64, &[a, b]).unwrap(), b"Hello, world!");
        }
        assert_eq!(run(Encoding::Base64, &[b"YWI="]).unwrap(), b"ab");
        assert_eq!(run(Encoding::Base64, &[b""]).unwrap(), b"");
    }

    #[test]
    fn base64_that_readers_read_differently_is_refused() {
        for (bad, why) in [
            (&b"YW*J j"[..], "outside its alphabet"),
            (b"YQ==YWJj", "after its padding"),
            (b"YQ", "inside a 4-character group"),
            (b"Y===", "misplaced"),
            (b"YQ=x", "misplaced"),
        ] {
            let e = run(Encoding::Base64, &[bad]).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn quoted_printable_decodes_across_any_split() {
        let text = b"a=3Db=3db  \r\nsoft=\r\nbreak= \t\nend=\r\n";
        for i in 0..text.len() {
            let (a, b) = text.split_at(i);
            assert_eq!(
                run(Encoding::QuotedPrintable, &[a, b]).unwrap(),
                b"a=b=b\r\nsoftbreakend"
            );
        }
        for bad in [&b"a=G1"[..], b"a=1", b"a= x\n", b"=\x41x"] {
            assert!(run(Encoding::QuotedPrintable, &[bad]).is_err(), "{bad:?}");
        }
    }
}
