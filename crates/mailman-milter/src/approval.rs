//! Mailman's pre-approval: an `Approved:`/`Approve:` (or `X-` prefixed)
//! header, or such a line at the top of the body, carrying the list's
//! moderator password. Mailman checks the password; the milter cannot, so a
//! post that claims approval is left to Mailman.

use crate::policy::is_approval_header;

/// How much of the body is searched for an approval line.
pub const BODY_SCAN_LIMIT: usize = 64 * 1024;

/// Searches the start of a body, chunk by chunk, for a line
/// `Approved: ...` (any of the four names, any case, leading blanks allowed).
/// Mailman 3 reads the first non-blank line of the first `text/plain` part;
/// any such line in the first [`BODY_SCAN_LIMIT`] bytes is taken, which
/// finds Mailman's (in plain and quoted-printable text) and never misses one
/// that Mailman would honour there. Base64-encoded parts are not decoded.
#[derive(Debug, Default)]
pub struct BodyScan {
    seen: usize,
    line: Vec<u8>,
    found: bool,
}

impl BodyScan {
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
        }
        self.found
    }

    /// True when nothing more needs to be read (found, or past the limit).
    pub fn done(&self) -> bool {
        self.found || self.seen >= BODY_SCAN_LIMIT
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        if let Some((name, value)) = line.trim_start().split_once(':')
            && is_approval_header(name.trim_end())
            && !value.trim().is_empty()
        {
            self.found = true;
        }
        self.line.clear();
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
