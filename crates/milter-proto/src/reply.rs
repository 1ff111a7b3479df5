//! SMTP reply texts a milter may hand to the MTA (the `y` response).
//!
//! The rules are the intersection of what Sendmail and Postfix 3.12 accept, so
//! a reply built here is never replaced by the MTA's "Command rejected" or
//! turned into a configuration error:
//! - a 4xx or 5xx code (second digit 0 to 5, RFC 5321);
//! - an optional enhanced status code (RFC 3463) whose class equals the first
//!   digit of the code;
//! - at most 32 lines of at most 980 characters each, joined with CRLF, every
//!   line carrying the same code (`550-...` then `550 ...`);
//! - no control characters, and every `%` doubled (Sendmail treats `%` as a
//!   format character and Postfix undoes the doubling).

use bytes::Bytes;

/// At most this many lines (`MAXREPLIES`).
pub const MAX_LINES: usize = 32;
/// At most this many characters a line (`MAXREPLYLEN`).
pub const MAX_LINE_LEN: usize = 980;

/// Why a reply text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not a 4xx/5xx code with a valid second digit.
    #[error("reply code {0} is not a 4xx or 5xx SMTP code")]
    BadCode(u16),
    /// The enhanced status code is malformed.
    #[error("enhanced status code {0:?} is not class.subject.detail")]
    BadEnhanced(String),
    /// The enhanced status code's class differs from the reply code's.
    #[error("enhanced status code {enhanced} does not match reply code {code}")]
    ClassMismatch {
        /// The reply code.
        code: u16,
        /// The enhanced status code.
        enhanced: String,
    },
    /// More than [`MAX_LINES`] lines.
    #[error("{0} reply lines (at most {MAX_LINES})")]
    TooManyLines(usize),
    /// A line longer than [`MAX_LINE_LEN`].
    #[error("reply line of {0} characters (at most {MAX_LINE_LEN})")]
    LineTooLong(usize),
    /// CR, LF, NUL or another control character in the text.
    #[error("control character 0x{0:02x} in reply text")]
    ControlChar(u8),
    /// A wire reply whose lines do not follow `ddd-`/`ddd ` with one code.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
}

/// A validated SMTP reply, stored in wire form (`%` doubled, CRLF between lines).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmtpReply {
    code: u16,
    wire: Bytes,
}

impl SmtpReply {
    /// A one-line reply. `enhanced` is e.g. `"5.7.1"`; pass `None` to leave it
    /// out (Sendmail then adds one itself).
    ///
    /// ```
    /// use milter_proto::{ReplyError, SmtpReply};
    ///
    /// let r = SmtpReply::new(550, Some("5.7.1"), "Relaying denied, 100% sure").unwrap();
    /// assert_eq!(&r.wire()[..], b"550 5.7.1 Relaying denied, 100%% sure");
    /// assert_eq!(r.to_string(), "550 5.7.1 Relaying denied, 100% sure");
    ///
    /// // What an MTA would replace or refuse is an error, never a panic.
    /// assert_eq!(SmtpReply::new(250, None, "ok"), Err(ReplyError::BadCode(250)));
    /// assert_eq!(
    ///     SmtpReply::new(550, None, "two\r\nlines"),
    ///     Err(ReplyError::ControlChar(b'\r'))
    /// );
    /// assert!(matches!(
    ///     SmtpReply::new(451, Some("5.7.1"), "class differs"),
    ///     Err(ReplyError::ClassMismatch { .. })
    /// ));
    /// ```
    pub fn new(code: u16, enhanced: Option<&str>, text: &str) -> Result<SmtpReply, ReplyError> {
        SmtpReply::multiline(code, enhanced, &[text])
    }

    /// A reply of one or more lines, all with the same code and enhanced code.
    pub fn multiline(
        code: u16,
        enhanced: Option<&str>,
        lines: &[&str],
    ) -> Result<SmtpReply, ReplyError> {
        check_code(code)?;
        if let Some(e) = enhanced {
            check_enhanced(code, e)?;
        }
        let lines: &[&str] = if lines.is_empty() { &[""] } else { lines };
        if lines.len() > MAX_LINES {
            return Err(ReplyError::TooManyLines(lines.len()));
        }
        let mut wire = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if let Some(&b) = line.as_bytes().iter().find(|b| b.is_ascii_control()) {
                return Err(ReplyError::ControlChar(b));
            }
            if enhanced.is_none() {
                check_leading_word(code, line)?;
            }
            if i > 0 {
                wire.extend_from_slice(b"\r\n");
            }
            let line_start = wire.len();
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            wire.extend_from_slice(format!("{code}{sep}").as_bytes());
            if let Some(e) = enhanced {
                wire.extend_from_slice(e.as_bytes());
                if !line.is_empty() {
                    wire.push(b' ');
                }
            }
            for &b in line.as_bytes() {
                if b == b'%' {
                    wire.push(b'%');
                }
                wire.push(b);
            }
            let len = wire.len() - line_start;
            if len > MAX_LINE_LEN {
                return Err(ReplyError::LineTooLong(len));
            }
        }
        Ok(SmtpReply {
            code,
            wire: Bytes::from(wire),
        })
    }

    /// Validates a reply text as received in a `y` packet (the MTA-side view):
    /// every line `ddd-` or `ddd ` with one code, the last with a space, an
    /// enhanced code (if any) of the right class, the limits above.
    pub fn parse_wire(wire: &[u8]) -> Result<SmtpReply, ReplyError> {
        let text = std::str::from_utf8(wire)
            .map_err(|_| ReplyError::Malformed(String::from_utf8_lossy(wire).into_owned()))?;
        let lines: Vec<&str> = text.split("\r\n").collect();
        if lines.len() > MAX_LINES {
            return Err(ReplyError::TooManyLines(lines.len()));
        }
        let mut code = None;
        for (i, line) in lines.iter().enumerate() {
            if let Some(&b) = line.as_bytes().iter().find(|b| b.is_ascii_control()) {
                return Err(ReplyError::ControlChar(b));
            }
            if line.len() > MAX_LINE_LEN {
                return Err(ReplyError::LineTooLong(line.len()));
            }
            let b = line.as_bytes();
            let last = i + 1 == lines.len();
            let sep_ok = match b.get(3) {
                Some(b' ') => true,
                Some(b'-') => !last,
                None => last && b.len() == 3,
                _ => false,
            };
            if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !sep_ok {
                return Err(ReplyError::Malformed((*line).to_owned()));
            }
            let c: u16 = line[..3].parse().expect("three digits");
            check_code(c)?;
            if *code.get_or_insert(c) != c {
                return Err(ReplyError::Malformed((*line).to_owned()));
            }
            if let Some(rest) = line.get(4..) {
                check_leading_word(c, rest)?;
            }
            if has_lone_percent(line) {
                return Err(ReplyError::Malformed((*line).to_owned()));
            }
        }
        Ok(SmtpReply {
            code: code.expect("at least one line"),
            wire: Bytes::copy_from_slice(wire),
        })
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// 4 or 5.
    pub fn class(&self) -> u8 {
        (self.code / 100) as u8
    }

    /// The text as sent in the `y` packet (without the NUL).
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The text as the SMTP client sees it: `%%` undone, lines joined with `\n`.
    pub fn display_text(&self) -> String {
        String::from_utf8_lossy(&self.wire)
            .replace("%%", "%")
            .replace("\r\n", "\n")
    }
}

impl std::fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_text())
    }
}

fn check_code(code: u16) -> Result<(), ReplyError> {
    if (400..600).contains(&code) && (code / 10) % 10 <= 5 {
        Ok(())
    } else {
        Err(ReplyError::BadCode(code))
    }
}

fn check_enhanced(code: u16, e: &str) -> Result<(), ReplyError> {
    let parts: Vec<&str> = e.split('.').collect();
    let shape_ok = parts.len() == 3
        && parts[0].len() == 1
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !shape_ok || !matches!(parts[0], "2" | "4" | "5") {
        return Err(ReplyError::BadEnhanced(e.to_owned()));
    }
    if parts[0].as_bytes()[0] - b'0' != (code / 100) as u8 {
        return Err(ReplyError::ClassMismatch {
            code,
            enhanced: e.to_owned(),
        });
    }
    Ok(())
}

/// The text right after the code: Postfix reads a leading digit as the start
/// of an enhanced status code and refuses the whole reply ("malformed reply",
/// a milter configuration error) unless it is the code's class digit. A word
/// that looks like an enhanced status code is checked in full.
fn check_leading_word(code: u16, text: &str) -> Result<(), ReplyError> {
    let word = text.split(' ').next().unwrap_or("");
    if !word.starts_with(|ch: char| ch.is_ascii_digit()) {
        return Ok(());
    }
    if word.contains('.') {
        return check_enhanced(code, word);
    }
    if word.as_bytes()[0] - b'0' != (code / 100) as u8 {
        return Err(ReplyError::ClassMismatch {
            code,
            enhanced: word.to_owned(),
        });
    }
    Ok(())
}

/// A `%` not doubled: Sendmail would replace the whole reply.
fn has_lone_percent(line: &str) -> bool {
    let mut chars = line.bytes().peekable();
    while let Some(b) = chars.next() {
        if b == b'%' {
            if chars.peek() == Some(&b'%') {
                chars.next();
            } else {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_enhanced_code() {
        let r = SmtpReply::new(550, Some("5.7.1"), "Only OpenPGP mail, 100% sure").unwrap();
        assert_eq!(&r.wire()[..], b"550 5.7.1 Only OpenPGP mail, 100%% sure");
        assert_eq!(r.class(), 5);
        assert_eq!(r.display_text(), "550 5.7.1 Only OpenPGP mail, 100% sure");
    }

    #[test]
    fn multi_line_uses_dashes_and_crlf() {
        let r = SmtpReply::multiline(451, Some("4.3.0"), &["first", "second"]).unwrap();
        assert_eq!(&r.wire()[..], b"451-4.3.0 first\r\n451 4.3.0 second");
        assert_eq!(SmtpReply::parse_wire(r.wire()).unwrap(), r);
    }

    #[test]
    fn without_enhanced_code() {
        let r = SmtpReply::new(554, None, "go away").unwrap();
        assert_eq!(&r.wire()[..], b"554 go away");
        let bare = SmtpReply::new(550, Some("5.7.1"), "").unwrap();
        assert_eq!(&bare.wire()[..], b"550 5.7.1");
    }

    #[test]
    fn refuses_what_mtas_refuse() {
        assert_eq!(
            SmtpReply::new(250, None, "ok"),
            Err(ReplyError::BadCode(250))
        );
        assert_eq!(
            SmtpReply::new(560, None, "x"),
            Err(ReplyError::BadCode(560))
        );
        assert!(matches!(
            SmtpReply::new(550, Some("4.7.1"), "x"),
            Err(ReplyError::ClassMismatch { .. })
        ));
        assert!(matches!(
            SmtpReply::new(550, Some("5.7"), "x"),
            Err(ReplyError::BadEnhanced(_))
        ));
        assert_eq!(
            SmtpReply::new(550, None, "a\r\nb"),
            Err(ReplyError::ControlChar(b'\r'))
        );
        let long = "x".repeat(980);
        assert_eq!(
            SmtpReply::new(550, Some("5.7.1"), &long),
            Err(ReplyError::LineTooLong(990))
        );
        let lines = vec!["l"; 33];
        assert_eq!(
            SmtpReply::multiline(550, None, &lines),
            Err(ReplyError::TooManyLines(33))
        );
        assert!(SmtpReply::multiline(550, None, &vec!["l"; 32]).is_ok());
    }

    #[test]
    fn wire_parser_is_strict() {
        assert!(SmtpReply::parse_wire(b"550 5.7.1 no").is_ok());
        assert!(SmtpReply::parse_wire(b"550").is_ok());
        assert!(SmtpReply::parse_wire(b"550-a\r\n551 b").is_err());
        assert!(SmtpReply::parse_wire(b"550-a").is_err());
        assert!(SmtpReply::parse_wire(b"550 4.7.1 x").is_err());
        assert!(SmtpReply::parse_wire(b"550 100% sure").is_err());
        assert!(SmtpReply::parse_wire(b"250 ok").is_err());
        assert!(SmtpReply::parse_wire(b"hello").is_err());
    }
}
