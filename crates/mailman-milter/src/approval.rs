//! Mailman's pre-approval: an `Approved:`/`Approve:` (or `X-` prefixed)
//! header, or such a line at the top of the body, carrying the list's
//! moderator password. Mailman checks the password; the milter cannot, so a
//! post that claims approval is left to Mailman.

use crate::policy::is_approval_header;

/// How much of the body is searched for an approval line.
pub const BODY_SCAN_LIMIT: usize = 64 * 1024;

/// Searches the start of a body, chunk by chunk, for a line
/// `Approved: ...` (any of the four names, any case, leading blanks allowed).
/// Mailman 3 reads the first non-blank line of the first `text/plain` part,
/// decoded; any such line in the first [`BODY_SCAN_LIMIT`] bytes is taken,
/// which finds Mailman's (in plain and quoted-printable text) and never
/// misses one that Mailman would honour there. Base64 is decoded where a
/// part (or the message, [`BodyScan::base64`]) says `Content-Transfer-Encoding:
/// base64`: mail clients send non-ASCII text so, a moderator's `Approved:`
/// line included.
#[derive(Debug, Default)]
pub struct BodyScan {
    seen: usize,
    line: Vec<u8>,
    found: bool,
    /// The part headers being read said base64.
    base64_header: bool,
    /// In a base64 part's body: lines of the base64 alphabet are decoded.
    in_base64: bool,
    /// Base64 characters not decoded yet (fewer than four).
    carry: Vec<u8>,
    /// The decoded text's current line.
    decoded: Vec<u8>,
}

/// True for a line that holds an approval claim with a value.
fn is_approval_line(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    matches!(line.trim_start().split_once(':'),
        Some((name, value)) if is_approval_header(name.trim_end()) && !value.trim().is_empty())
}

/// True for a header line `Content-Transfer-Encoding: base64`.
fn says_base64(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    matches!(line.split_once(':'),
        Some((name, value)) if name.trim().eq_ignore_ascii_case("content-transfer-encoding")
            && value.trim().eq_ignore_ascii_case("base64"))
}

impl BodyScan {
    /// A scan of a body that is base64 as a whole (the message's own
    /// `Content-Transfer-Encoding: base64`).
    pub fn base64() -> BodyScan {
        BodyScan {
            in_base64: true,
            ..BodyScan::default()
        }
    }

    /// Feeds the next chunk; true once an approval line was seen.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            if self.found || self.done() {
                break;
            }
            self.seen += 1;
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < 1024 {
                self.line.push(b);
            }
        }
        self.found
    }

    /// The end of the body.
    pub fn finish(&mut self) -> bool {
        if !self.found {
            self.end_line();
            self.flush_carry();
            self.end_decoded_line();
        }
        self.found
    }

    /// True when nothing more needs to be read (found, or past the limit).
    pub fn done(&self) -> bool {
        self.found || self.seen >= BODY_SCAN_LIMIT
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
            line.pop();
        }
        if self.in_base64 && !self.base64_line(&line) {
            // Not base64: the part has ended (a boundary) or never was.
            self.in_base64 = false;
            self.carry.clear();
            self.end_decoded_line();
        }
        if !self.in_base64 {
            if is_approval_line(&line) {
                self.found = true;
            } else if says_base64(&line) {
                self.base64_header = true;
            } else if line.starts_with(b"--") {
                self.base64_header = false;
            } else if line.is_empty() && self.base64_header {
                self.base64_header = false;
                self.in_base64 = true;
            }
        }
        self.line = line;
        self.line.clear();
    }

    /// Decodes one line of a base64 body; false if it is not one.
    fn base64_line(&mut self, line: &[u8]) -> bool {
        let text: Vec<u8> = line
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let alphabet = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if text.is_empty() || !text.iter().all(alphabet) {
            return text.is_empty() && line.is_empty() && self.carry.is_empty();
        }
        self.carry.extend(text.iter().filter(|&&b| b != b'='));
        let whole = self.carry.len() / 4 * 4;
        let ready: Vec<u8> = self.carry.drain(..whole).collect();
        use base64::Engine;
        let Ok(bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&ready) else {
            return false;
        };
        for b in bytes {
            if b == b'\n' {
                self.end_decoded_line();
            } else if self.decoded.len() < 1024 {
                self.decoded.push(b);
            }
        }
        if text.contains(&b'=') {
            // Padding ends the data.
            self.flush_carry();
            self.end_decoded_line();
        }
        true
    }

    /// Decodes the last base64 characters (fewer than four).
    fn flush_carry(&mut self) {
        use base64::Engine;
        let rest = std::mem::take(&mut self.carry);
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&rest) {
            self.decoded.extend(bytes);
        }
    }

    fn end_decoded_line(&mut self) {
        if is_approval_line(&self.decoded) {
            self.found = true;
        }
        self.decoded.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&str]) -> bool {
        let mut s = BodyScan::default();
        for c in chunks {
            s.feed(c.as_bytes());
        }
        s.finish()
    }

    #[test]
    fn finds_an_approval_line_across_chunks() {
        assert!(scan(&["\r\n  Approved: sec", "ret\r\nHello\r\n"]));
        assert!(scan(&["x-approve: pw"]));
        assert!(scan(&[
            "--b\r\nContent-Type: text/plain\r\n\r\nApprove: pw\r\n"
        ]));
    }

    #[test]
    fn ignores_other_lines_and_empty_values() {
        assert!(!scan(&["Hello\r\nApproved:\r\nApproved-By: x\r\n"]));
        assert!(!scan(&["I approved: nothing\r\n"]));
    }

    #[test]
    fn decodes_base64_parts() {
        // "Approved: secret\r\nHello list, pre-approved.\r\n"
        let b64 = "QXBwcm92ZWQ6IHNlY3JldA0KSGVsbG8gbGlzdCwgcHJlLWFwcHJvdmVkLg0K";
        let mut whole = BodyScan::base64();
        whole.feed(format!("{b64}\r\n").as_bytes());
        assert!(whole.finish());
        // Wrapped at any length, in a part of a multipart body.
        let (a, b) = b64.split_at(7);
        assert!(scan(&[
            "--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: BASE64\r\n\r\n",
            a,
            "\r\n",
            b,
            "\r\n--b1--\r\n",
        ]));
        // Unpadded data at the end of the body.
        let mut s = BodyScan::base64();
        s.feed(b"QXBwcm92ZWQ6IHg");
        assert!(s.finish());
        // Base64 of other text, and base64 characters without the header.
        let mut s = BodyScan::base64();
        s.feed(b"SGVsbG8gbGlzdC4NCg==\r\n");
        assert!(!s.finish());
        assert!(!scan(&["QXBwcm92ZWQ6IHNlY3JldA0K\r\n"]));
    }

    #[test]
    fn stops_after_the_limit() {
        let filler = "x".repeat(100) + "\r\n";
        let mut s = BodyScan::default();
        while !s.done() {
            assert!(!s.feed(filler.as_bytes()));
        }
        assert!(!s.feed(b"Approved: late\r\n"));
        assert!(!s.finish());
    }
}
