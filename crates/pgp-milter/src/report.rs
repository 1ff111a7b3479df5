//! Delivery status reports (bounces, DSNs): the shape RFC 6522 and RFC 3464
//! give them, checked strictly, so that `bounces = "accept-reports"` lets
//! through what an MTA writes and nothing a forger could dress up as one.
//!
//! A report is `multipart/report; report-type=delivery-status` with
//! 1. a human-readable explanation: `text/plain`, or a
//!    `multipart/alternative` of `text/plain` and `text/html` (what Exchange
//!    sends);
//! 2. `message/delivery-status`: a block of per-message fields naming the
//!    `Reporting-MTA`, then one block per recipient with `Final-Recipient`,
//!    `Action` and `Status`;
//! 3. optionally the returned content: `text/rfc822-headers` (headers only)
//!    or `message/rfc822` (the whole message, which the policy then judges
//!    like any other message: see `Policy::judge_bounce`).
//!
//! Any other part, type or count is not a report. Read by the strict
//! streaming MIME reader, so a report is read as mail readers read it (or
//! refused where they could differ). Pure: no I/O; a panic in the reader
//! becomes an error.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::detect::{self, Detection};
use crate::mime;

/// What a report returns of the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// Nothing (RFC 3464 allows leaving it out).
    Nothing,
    /// `text/rfc822-headers`: the original headers only.
    Headers,
    /// `message/rfc822`: the original message, as the detector sees it.
    Message(Detection),
}

/// One per-recipient block of the `message/delivery-status` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Final-Recipient` (e.g. `rfc822; bob@remote.example`).
    pub final_recipient: String,
    /// `Action`: failed, delayed, delivered, relayed or expanded.
    pub action: String,
    /// `Status`: an enhanced status code such as `5.1.1`.
    pub status: String,
}

/// A well-formed delivery status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The `Reporting-MTA` field.
    pub reporting_mta: String,
    /// One entry per recipient block, at least one.
    pub recipients: Vec<RecipientStatus>,
    /// The returned content.
    pub returned: Returned,
}

impl fmt::Display for Report {
    /// A short summary for the decision log (values are from the message:
    /// printable ASCII only, and cut short).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = &self.recipients[0];
        let mut s = format!(
            "from {}: {} {} {}",
            self.reporting_mta, first.action, first.final_recipient, first.status
        );
        if self.recipients.len() > 1 {
            s.push_str(&format!(" and {} more", self.recipients.len() - 1));
        }
        let s: String = s
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
            .take(160)
            .collect();
        let returned = match self.returned {
            Returned::Nothing => "nothing returned",
            Returned::Headers => "headers returned",
            Returned::Message(_) => "message returned",
        };
        write!(f, "{s}; {returned}")
    }
}

/// Why a message is not an acceptable delivery status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReport {
    /// Its top-level type is not `multipart/report`: it is not trying to
    /// be a report, and is judged like any other message.
    OtherType,
    /// A `multipart/report` that is not a well-formed delivery status
    /// report; the text says what is wrong.
    Malformed(String),
}

/// Largest number of recipient blocks read; Postfix reports at most as
/// many recipients as one message had.
const MAX_RECIPIENT_BLOCKS: usize = 1000;

/// Most octets of the `message/delivery-status` part read (a thousand
/// recipient blocks of a few hundred octets each).
pub const MAX_STATUS_BYTES: usize = 512 * 1024;

/// Most octets of a returned `text/rfc822-headers` part read.
pub const MAX_RETURNED_HEADERS: usize = 256 * 1024;

/// Checks `message` (headers, blank line, body) as a delivery status
/// report, read once by the strict streaming reader ([`crate::mime`]): the
/// parts are checked as they arrive, the returned message is judged by
/// the detector's own rules ([`detect::EntityJudge`]), and only the
/// delivery-status fields and returned headers are held (bounded by
/// [`MAX_STATUS_BYTES`] and [`MAX_RETURNED_HEADERS`]).
pub fn delivery_report(message: &[u8]) -> Result<Report, NotReport> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut r = ReportReader::default();
        r.feed(message);
        r.finish()
    }))
    .unwrap_or_else(|_| {
        Err(NotReport::Malformed(
            "the report reader panicked on it".into(),
        ))
    })
}

/// Reads a delivery status report as its bytes arrive (any chunking gives
/// the same result).
#[derive(Debug, Default)]
pub struct ReportReader {
    reader: mime::Reader,
    state: Reading,
    stopped: Option<NotReport>,
}

impl ReportReader {
    /// Reads the next bytes. Never panics: a panic in the reading stops it
    /// with an error.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.stopped.is_none() {
            let ReportReader { reader, state, .. } = self;
            let r = catch_unwind(AssertUnwindSafe(|| {
                reader.feed(bytes, &mut |e| state.event(e))
            }));
            self.settle(r);
        }
    }

    /// The message ended: the report, or why it is none.
    pub fn finish(mut self) -> Result<Report, NotReport> {
        if self.stopped.is_none() {
            let ReportReader { reader, state, .. } = &mut self;
            let r = catch_unwind(AssertUnwindSafe(|| reader.finish(&mut |e| state.event(e))));
            self.settle(r);
        }
        if let Some(why) = self.stopped {
            return Err(why);
        }
        let s = self.state;
        let Some((reporting_mta, recipients)) = s.status else {
            return Err(NotReport::Malformed(format!(
                "{} parts instead of 2 or 3",
                s.parts
            )));
        };
        Ok(Report {
            reporting_mta,
            recipients,
            returned: s.returned.unwrap_or(Returned::Nothing),
        })
    }

    fn settle(&mut self, r: std::thread::Result<Result<(), mime::ReadError<NotReport>>>) {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(mime::ReadError::Mime(e))) => {
                self.stopped = Some(NotReport::Malformed(e.to_string()));
            }
            Ok(Err(mime::ReadError::Sink(why))) => self.stopped = Some(why),
            Err(_) => {
                self.stopped = Some(NotReport::Malformed(
                    "the report reader panicked on it".into(),
                ));
            }
        }
    }
}

/// What an open entity is to the report.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// The `multipart/report`.
    Top,
    /// A text part of the explanation (`text/plain` or `text/html`).
    Text(String),
    /// The explanation's `multipart/alternative`.
    Alternative,
    /// `message/delivery-status`.
    Status,
    /// `text/rfc822-headers`.
    Headers,
    /// `message/rfc822`: its message goes to the judge.
    Returned,
    /// A part after the third (counted, not read).
    Extra,
}

#[derive(Debug, Default)]
struct Reading {
    roles: Vec<Role>,
    /// Parts of the `multipart/report`.
    parts: usize,
    /// Parts of the explanation's alternative.
    alternatives: usize,
    held: Vec<u8>,
    status: Option<(String, Vec<RecipientStatus>)>,
    returned: Option<Returned>,
    /// Judging the returned message, and how deep inside it we are.
    judge: Option<(detect::EntityJudge, usize)>,
    /// Text around the returned message's top-level multipart.
    returned_outer: detect::OuterText,
}

impl Reading {
    fn event(&mut self, e: mime::Event<'_>) -> Result<(), NotReport> {
        let bad = |why: String| NotReport::Malformed(why);
        if self.judge.is_some() {
            return self.judged(e);
        }
        match e {
            mime::Event::Start(part) => self.start(part).map_err(|e| match e {
                Start::Other => NotReport::OtherType,
                Start::Bad(why) => bad(why),
            }),
            mime::Event::Body(b) => match self.roles.last() {
                Some(Role::Text(m)) if b.contains(&0) => {
                    Err(bad(format!("explanation {m} is binary")))
                }
                Some(Role::Status) => self.hold(b, MAX_STATUS_BYTES, "message/delivery-status"),
                Some(Role::Headers) => self.hold(b, MAX_RETURNED_HEADERS, "text/rfc822-headers"),
                _ => Ok(()),
            },
            mime::Event::Preamble(_) => Ok(()),
            mime::Event::Epilogue(t) if !t.trim_ascii().is_empty() => {
                Err(bad(match self.roles.last() {
                    Some(Role::Alternative) => {
                        "text after the closing boundary of the multipart/alternative (epilogue)"
                            .into()
                    }
                    _ => "text after the closing boundary (epilogue)".into(),
                }))
            }
            mime::Event::Epilogue(_) => Ok(()),
            mime::Event::End => self.end().map_err(bad),
            mime::Event::Finished => Ok(()),
        }
    }

    fn hold(&mut self, b: &[u8], cap: usize, what: &str) -> Result<(), NotReport> {
        if self.held.len() + b.len() > cap {
            return Err(NotReport::Malformed(format!(
                "{what} part of more than {cap} bytes"
            )));
        }
        self.held.extend_from_slice(b);
        Ok(())
    }

    fn start(&mut self, part: &mime::Part) -> Result<(), Start> {
        let m = part.essence().to_owned();
        let role = match self.roles.last() {
            None => {
                if m != "multipart/report" {
                    return Err(Start::Other);
                }
                let report_type = part.media.param("report-type").map(str::to_ascii_lowercase);
                if report_type.as_deref() != Some("delivery-status") {
                    return Err(Start::Bad(format!(
                        "report-type is {}, not delivery-status",
                        report_type.as_deref().unwrap_or("missing")
                    )));
                }
                Role::Top
            }
            Some(Role::Top) => {
                self.parts += 1;
                match (self.parts, m.as_str()) {
                    (1, "text/plain") => {
                        inline_text(part).map_err(Start::Bad)?;
                        Role::Text(m)
                    }
                    (1, "multipart/alternative") => Role::Alternative,
                    (1, _) => {
                        return Err(Start::Bad(format!(
                            "first part is {m}, not a text explanation"
                        )));
                    }
                    (2, "message/delivery-status") => Role::Status,
                    (2, _) => {
                        return Err(Start::Bad(format!(
                            "second part is {m}, not message/delivery-status"
                        )));
                    }
                    (3, "text/rfc822-headers") => Role::Headers,
                    (3, "message/rfc822") => {
                        self.judge = Some((detect::EntityJudge::new(), 0));
                        Role::Returned
                    }
                    (3, _) => {
                        return Err(Start::Bad(format!(
                            "third part is {m}, not text/rfc822-headers or message/rfc822"
                        )));
                    }
                    _ => Role::Extra,
                }
            }
            Some(Role::Alternative) => {
                self.alternatives += 1;
                if m != "text/plain" && m != "text/html" {
                    return Err(Start::Bad(format!("explanation alternative is {m}")));
                }
                inline_text(part).map_err(Start::Bad)?;
                Role::Text(m)
            }
            Some(Role::Extra) => Role::Extra,
            Some(_) => return Err(Start::Bad(format!("unexpected {m} part"))),
        };
        self.roles.push(role);
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        match self.roles.pop() {
            Some(Role::Top) if !(2..=3).contains(&self.parts) => {
                Err(format!("{} parts instead of 2 or 3", self.parts))
            }
            Some(Role::Alternative) if self.alternatives == 0 => {
                Err("multipart/alternative without parts".into())
            }
            Some(Role::Status) => {
                let body = std::mem::take(&mut self.held);
                self.status = Some(delivery_status(&body)?);
                Ok(())
            }
            Some(Role::Headers) => {
                headers_only(&std::mem::take(&mut self.held))?;
                self.returned = Some(Returned::Headers);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// An event of the returned message (from its `Start` to its `End`).
    fn judged(&mut self, e: mime::Event<'_>) -> Result<(), NotReport> {
        let Some((judge, depth)) = &mut self.judge else {
            return Ok(());
        };
        match e {
            mime::Event::Start(_) => *depth += 1,
            mime::Event::End if *depth == 0 => {
                // The message/rfc822 part ends without a message.
                self.judge = None;
                self.roles.pop();
                return Err(NotReport::Malformed("message/rfc822 part is empty".into()));
            }
            mime::Event::End => *depth -= 1,
            // The returned message gets the bound a message of its own
            // gets: text around its top-level multipart, counted here
            // whatever the judge decides first.
            mime::Event::Preamble(t) if *depth == 1 => {
                self.returned_outer.preamble +=
                    t.iter().filter(|b| !b.is_ascii_whitespace()).count();
            }
            mime::Event::Epilogue(t) if *depth == 1 => {
                self.returned_outer.epilogue +=
                    t.iter().filter(|b| !b.is_ascii_whitespace()).count();
            }
            _ => {}
        }
        let ended = *depth == 0 && e == mime::Event::End;
        // A refusal is the returned message's verdict; the reading of the
        // report goes on.
        let _ = judge.event(e);
        if ended {
            let (mut judge, _) = self.judge.take().expect("judging");
            let _ = judge.event(mime::Event::Finished);
            let outer = self.returned_outer;
            let max = detect::MAX_OUTER_TEXT;
            for (n, where_) in [
                (outer.preamble, "before its first boundary (preamble)"),
                (outer.epilogue, "after its closing boundary (epilogue)"),
            ] {
                if n > max {
                    return Err(NotReport::Malformed(format!(
                        "the returned message has {n} bytes of text {where_}, at most {max}"
                    )));
                }
            }
            self.returned = Some(Returned::Message(judge.finish()));
        }
        Ok(())
    }
}

/// Why a part cannot start here.
enum Start {
    /// The top level is not `multipart/report`.
    Other,
    /// A malformed report.
    Bad(String),
}

/// An explanation is text shown in the message, not a file: a
/// `Content-Disposition` other than `inline`, or a file name, is an
/// attachment dressed as text (a decoded body with NUL bytes, binary, is
/// refused as it streams).
fn inline_text(part: &mime::Part) -> Result<(), String> {
    if part.disposition.as_deref().is_some_and(|d| d != "inline") || part.filename.is_some() {
        return Err(format!("explanation {} is an attachment", part.essence()));
    }
    Ok(())
}

/// The second part's fields, RFC 3464 §2: blocks separated by blank lines.
fn delivery_status(body: &[u8]) -> Result<(String, Vec<RecipientStatus>), String> {
    let blocks = field_blocks(body)?;
    let mut blocks = blocks.into_iter();
    let per_message = blocks
        .next()
        .ok_or("message/delivery-status is empty".to_owned())?;
    let reporting_mta = field(&per_message, "reporting-mta")
        .ok_or("message/delivery-status without Reporting-MTA".to_owned())?
        .to_owned();
    let mut recipients = Vec::new();
    for block in blocks {
        if recipients.len() == MAX_RECIPIENT_BLOCKS {
            return Err(format!("more than {MAX_RECIPIENT_BLOCKS} recipient blocks"));
        }
        let get = |name: &str| {
            field(&block, name).ok_or(format!(
                "recipient block without {name} in message/delivery-status"
            ))
        };
        let final_recipient = get("final-recipient")?.to_owned();
        let action = get("action")?.to_ascii_lowercase();
        let status = get("status")?.to_owned();
        if !matches!(
            action.as_str(),
            "failed" | "delayed" | "delivered" | "relayed" | "expanded"
        ) {
            return Err(format!("unknown Action {action:?}"));
        }
        if !is_status_code(&status) {
            return Err(format!("Status {status:?} is not a status code"));
        }
        recipients.push(RecipientStatus {
            final_recipient,
            action,
            status,
        });
    }
    if recipients.is_empty() {
        return Err("message/delivery-status without a recipient block".into());
    }
    Ok((reporting_mta, recipients))
}

/// One `Name: value` field, value unfolded and trimmed.
type Field = (String, String);

/// Splits a `message/delivery-status` body into blocks of fields. Every
/// line is a field, a continuation line (leading white space) or blank.
fn field_blocks(body: &[u8]) -> Result<Vec<Vec<Field>>, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "message/delivery-status is not text".to_owned())?;
    let mut blocks: Vec<Vec<Field>> = Vec::new();
    let mut current: Vec<Field> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.last_mut() else {
                return Err("message/delivery-status starts with a continuation line".into());
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "message/delivery-status line is not a field: {:?}",
                line.chars().take(40).collect::<String>()
            ));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("message/delivery-status field name is not a token".into());
        }
        current.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    Ok(blocks)
}

fn field<'a>(block: &'a [Field], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `class.subject.detail` (RFC 3463): class 2, 4 or 5, then one to three
/// digits each. A comment after the code is allowed (RFC 3464 §2.3.4).
fn is_status_code(s: &str) -> bool {
    let code = s.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = code.split('.').collect();
    matches!(parts.first(), Some(&"2" | &"4" | &"5"))
        && parts.len() == 3
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `text/rfc822-headers` holds header fields and nothing after them: a
/// body there would be content the headers-only form promises not to
/// carry.
fn headers_only(body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let mut ended = false;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            ended = true;
            continue;
        }
        if ended {
            return Err("text/rfc822-headers has a body after the headers".into());
        }
        let continuation = i > 0 && line.starts_with([' ', '\t']);
        let field = line
            .split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()));
        if !continuation && !field {
            return Err("text/rfc822-headers line is not a header field".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::NotPgp;

    /// A report in the layout Postfix's bounce(8) writes (hand-built here;
    /// `tests/postfix.rs` feeds a real one through the daemon): `returned`
    /// is the third part with its headers, or `None`.
    fn dsn(returned: Option<&str>) -> String {
        let mut m = String::from(
            "Date: Mon, 23 Nov 2026 13:00:00 +0000 (UTC)\r\n\
             From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             To: bob@example.org\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"4F1A2B3C4D.1795000000/mx.example.net\"\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --4F1A2B3C4D.1795000000/mx.example.net\r\n\
             Content-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             This is the mail system at host mx.example.net.\r\n\
             \r\n\
             I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients.\r\n\
             \r\n\
             <nobody@remote.example>: host mx.remote.example said: 550 5.1.1 unknown\r\n\
             \r\n\
             --4F1A2B3C4D.1795000000/mx.example.net\r\n\
             Content-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.net\r\n\
             X-Postfix-Queue-ID: 4F1A2B3C4D\r\n\
             X-Postfix-Sender: rfc822; bob@example.org\r\n\
             Arrival-Date: Mon, 23 Nov 2026 12:59:58 +0000 (UTC)\r\n\
             \r\n\
             Final-Recipient: rfc822; nobody@remote.example\r\n\
             Original-Recipient: rfc822;nobody@remote.example\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.remote.example\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.example>:\r\n\
             \x20   Recipient address rejected: User unknown\r\n\
             \r\n",
        );
        if let Some(part) = returned {
            m.push_str("--4F1A2B3C4D.1795000000/mx.example.net\r\n");
            m.push_str(part);
            m.push_str("\r\n");
        }
        m.push_str("--4F1A2B3C4D.1795000000/mx.example.net--\r\n");
        m
    }

    const ORIGINAL_HEADERS: &str = "From: bob@example.org\r\n\
        To: nobody@remote.example\r\n\
        Subject: hello\r\n\
        Message-Id: <1@example.org>\r\n";

    fn returned_message(body: &str) -> String {
        format!(
            "Content-Description: Undelivered Message\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             {ORIGINAL_HEADERS}Content-Type: text/plain\r\n\r\n{body}"
        )
    }

    fn headers_part(headers: &str) -> String {
        format!(
            "Content-Description: Undelivered Message Headers\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             {headers}"
        )
    }

    #[test]
    fn postfix_layouts_are_reports() {
        let r = delivery_report(dsn(None).as_bytes()).unwrap();
        assert_eq!(r.reporting_mta, "dns; mx.example.net");
        assert_eq!(
            r.recipients,
            [RecipientStatus {
                final_recipient: "rfc822; nobody@remote.example".into(),
                action: "failed".into(),
                status: "5.1.1".into(),
            }]
        );
        assert_eq!(r.returned, Returned::Nothing);
        assert_eq!(
            r.to_string(),
            "from dns; mx.example.net: failed rfc822; nobody@remote.example 5.1.1; \
             nothing returned"
        );
        let r = delivery_report(dsn(Some(&headers_part(ORIGINAL_HEADERS))).as_bytes()).unwrap();
        assert_eq!(r.returned, Returned::Headers);
        let r =
            delivery_report(dsn(Some(&returned_message("In the clear.\r\n"))).as_bytes()).unwrap();
        // The returned message is handed to the detector as a message of
        // its own: here plaintext.
        assert_eq!(
            r.returned,
            Returned::Message(Detection::Plain(NotPgp::PlaintextPart(
                "text/plain part".into()
            )))
        );
    }

    fn malformed(message: &str) -> String {
        match delivery_report(message.as_bytes()) {
            Err(NotReport::Malformed(why)) => why,
            other => panic!("expected a malformed report, got {other:?}"),
        }
    }

    #[test]
    fn other_types_are_not_reports() {
        for m in [
            "Subject: x\r\n\r\nhello\r\n",
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
            "",
        ] {
            assert_eq!(
                delivery_report(m.as_bytes()),
                Err(NotReport::OtherType),
                "{m}"
            );
        }
    }

    #[test]
    fn only_white_space_may_follow_the_closing_boundary() {
        let good = dsn(None);
        let blank = format!("{good}\r\n  \r\n\t\r\n");
        assert!(delivery_report(blank.as_bytes()).is_ok());
        let leak = format!("{good}The plans, in the clear.\r\n");
        assert_eq!(
            malformed(&leak),
            "text after the closing boundary (epilogue)"
        );
        // A closing delimiter inside the epilogue does not end it again.
        let twice = format!("{good}secret\r\n--4F1A2B3C4D.1795000000/mx.example.net--\r\n");
        assert_eq!(
            malformed(&twice),
            "text after the closing boundary (epilogue)"
        );
    }

    /// `dsn(None)` with the explanation part (headers and body) replaced.
    fn with_explanation(part: &str) -> String {
        let good = dsn(None);
        let start = good
            .find("Content-Type: text/plain; charset=us-ascii")
            .unwrap();
        let end = start + good[start..].find("\r\n--4F1A").unwrap();
        format!("{}{part}{}", &good[..start], &good[end..])
    }

    #[test]
    fn nested_epilogues_are_bounded_too() {
        // The explanation's multipart/alternative: blank after its end.
        let alternative = |epilogue: &str| {
            with_explanation(&format!(
                "Content-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\n\
                 Content-Type: text/plain\r\n\r\nhello\r\n--alt\r\n\
                 Content-Type: text/html\r\n\r\n<p>hello</p>\r\n--alt--\r\n{epilogue}"
            ))
        };
        assert!(delivery_report(alternative("  \r\n").as_bytes()).is_ok());
        assert_eq!(
            malformed(&alternative("the secret\r\n")),
            "text after the closing boundary of the multipart/alternative (epilogue)"
        );
        // A returned message: what the milter allows a message of its own.
        let returned = |epilogue: &str| {
            dsn(Some(&format!(
                "Content-Type: message/rfc822\r\n\r\n{ORIGINAL_HEADERS}\
                 Content-Type: multipart/mixed; boundary=in\r\n\r\n\
                 --in\r\nContent-Type: text/plain\r\n\r\nx\r\n--in--\r\n{epilogue}"
            )))
        };
        let max = crate::detect::MAX_OUTER_TEXT;
        assert!(delivery_report(returned(&"e".repeat(max)).as_bytes()).is_ok());
        assert_eq!(
            malformed(&returned(&"e".repeat(max + 1))),
            format!(
                "the returned message has {} bytes of text after its closing boundary \
                 (epilogue), at most {max}",
                max + 1
            )
        );
    }

    #[test]
    fn an_explanation_is_inline_text_not_a_file() {
        let good = dsn(None);
        let ct = "Content-Type: text/plain; charset=us-ascii\r\n";
        // What MTAs write: inline, or no disposition; base64 text is fine.
        let inline = good.replace(ct, &format!("{ct}Content-Disposition: inline\r\n"));
        assert!(delivery_report(inline.as_bytes()).is_ok());
        let explanation = with_explanation;
        let b64 = explanation(&format!(
            "{ct}Content-Transfer-Encoding: base64\r\n\r\nVGhpcyBpcyB0aGUgbWFpbCBzeXN0ZW0u"
        ));
        assert!(delivery_report(b64.as_bytes()).is_ok());
        for (name, m) in [
            (
                "attachment",
                good.replace(ct, &format!("{ct}Content-Disposition: attachment\r\n")),
            ),
            (
                "file name",
                good.replace(ct, "Content-Type: text/plain; name=\"secret.pdf\"\r\n"),
            ),
            (
                "inline file",
                good.replace(
                    ct,
                    &format!("{ct}Content-Disposition: inline; filename=\"a.pdf\"\r\n"),
                ),
            ),
        ] {
            assert_eq!(
                malformed(&m),
                "explanation text/plain is an attachment",
                "{name}"
            );
        }
        let binary = explanation(&format!(
            "{ct}Content-Transfer-Encoding: base64\r\n\r\nJVBERi0AAAE="
        ));
        assert_eq!(malformed(&binary), "explanation text/plain is binary");
        // The same inside a multipart/alternative explanation.
        let alt = explanation(&format!(
            "Content-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\n\
             {ct}\r\nhello\r\n--alt\r\nContent-Type: text/html; name=x.html\r\n\r\n\
             <p>hello</p>\r\n--alt--\r\n"
        ));
        assert_eq!(malformed(&alt), "explanation text/html is an attachment");
    }

    #[test]
    fn anything_but_the_report_shape_is_malformed() {
        let good = dsn(Some(&headers_part(ORIGINAL_HEADERS)));
        // Other report types (read receipts, abuse reports).
        let mdn = good.replace(
            "report-type=delivery-status",
            "report-type=disposition-notification",
        );
        assert_eq!(
            malformed(&mdn),
            "report-type is disposition-notification, not delivery-status"
        );
        // A fourth part, an attachment as returned content, an HTML-only or
        // attachment explanation.
        let four = good.replace(
            "--4F1A2B3C4D.1795000000/mx.example.net--",
            "--4F1A2B3C4D.1795000000/mx.example.net\r\nContent-Type: text/plain\r\n\r\n\
             the secret\r\n--4F1A2B3C4D.1795000000/mx.example.net--",
        );
        assert_eq!(malformed(&four), "4 parts instead of 2 or 3");
        let attached = dsn(Some(
            "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n",
        ));
        assert_eq!(
            malformed(&attached),
            "third part is application/pdf, not text/rfc822-headers or message/rfc822"
        );
        let image = good.replace(
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Type: image/png",
        );
        assert_eq!(
            malformed(&image),
            "first part is image/png, not a text explanation"
        );
        // Headers-only content with a body after the headers.
        let smuggled = dsn(Some(&headers_part(&format!(
            "{ORIGINAL_HEADERS}\r\nThe whole letter, in the clear.\r\n"
        ))));
        assert_eq!(
            malformed(&smuggled),
            "text/rfc822-headers has a body after the headers"
        );
        let not_headers = dsn(Some(&headers_part("Dear Bob, the plan is\r\n")));
        assert_eq!(
            malformed(&not_headers),
            "text/rfc822-headers line is not a header field"
        );
        // The delivery-status part: its fields and their values.
        assert_eq!(
            malformed(&good.replace("Status: 5.1.1", "Status: failed hard")),
            "Status \"failed hard\" is not a status code"
        );
        assert_eq!(
            malformed(&good.replace("Action: failed", "Action: read")),
            "unknown Action \"read\""
        );
        assert_eq!(
            malformed(&good.replace("Reporting-MTA: dns; mx.example.net\r\n", "")),
            "message/delivery-status without Reporting-MTA"
        );
        assert_eq!(
            malformed(&good.replace("Final-Recipient: rfc822; nobody@remote.example\r\n", "")),
            "recipient block without final-recipient in message/delivery-status"
        );
        let no_rcpt = good.replace(
            "Final-Recipient: rfc822; nobody@remote.example\r\n\
             Original-Recipient: rfc822;nobody@remote.example\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.remote.example\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.example>:\r\n\
             \x20   Recipient address rejected: User unknown\r\n",
            "",
        );
        assert_eq!(
            malformed(&no_rcpt),
            "message/delivery-status without a recipient block"
        );
        assert_eq!(
            malformed(&good.replace(
                "Arrival-Date: Mon, 23 Nov 2026 12:59:58 +0000 (UTC)",
                "Dear Bob, the plan is as follows"
            )),
            "message/delivery-status line is not a field: \"Dear Bob, the plan is as follows\""
        );
        assert_eq!(
            malformed(&good.replace("Arrival-Date:", "Dear Bob, the plan:")),
            "message/delivery-status field name is not a token"
        );
        // Cut off before the closing boundary, or a second Content-Type.
        let cut = &good[..good.find("Content-Description: Delivery report").unwrap()];
        let why = malformed(cut);
        assert!(
            why.contains("truncated") || why.starts_with("message ends inside"),
            "{why}"
        );
        let twice = good.replace(
            "Content-Type: message/delivery-status\r\n",
            "Content-Type: message/delivery-status\r\nContent-Type: text/plain\r\n",
        );
        assert_eq!(malformed(&twice), "ambiguous MIME: 2 Content-Type headers");
    }

    #[test]
    fn any_chunking_reads_the_same_and_held_parts_are_bounded() {
        let good = dsn(Some(&returned_message("In the clear.\r\n")));
        let leak = format!("{}The plans.\r\n", dsn(None));
        let huge_status = dsn(None).replace(
            "Reporting-MTA: dns; mx.example.net\r\n",
            &format!(
                "Reporting-MTA: dns; mx.example.net\r\n{}",
                "X-Padding: a field a reporting MTA would not write\r\n".repeat(12_000)
            ),
        );
        for m in [good.as_str(), &leak, &huge_status, &dsn(None)[..400]] {
            let whole = delivery_report(m.as_bytes());
            for size in [1, 2, 7, 64, 1000] {
                let mut r = ReportReader::default();
                for chunk in m.as_bytes().chunks(size) {
                    r.feed(chunk);
                }
                assert_eq!(r.finish(), whole, "chunks of {size}");
            }
        }
        assert_eq!(
            malformed(&huge_status),
            format!("message/delivery-status part of more than {MAX_STATUS_BYTES} bytes")
        );
    }

    #[test]
    fn every_truncation_is_malformed() {
        // Cut anywhere before the end of its closing delimiter line, a
        // report is never well-formed (a prefix the MTA would not pass on,
        // but one the milter's early verdict must not accept either).
        let full = dsn(Some(&headers_part(ORIGINAL_HEADERS)));
        let closing = full.rfind("--4F1A2B3C4D").unwrap();
        let header_end = full.find("\r\n\r\n").unwrap();
        for cut in (0..closing + "--4F1A2B3C4D.1795000000/mx.example.net-".len()).step_by(7) {
            let r = delivery_report(&full.as_bytes()[..cut]);
            if cut < header_end {
                // Headers cut off: the Content-Type may be incomplete.
                assert!(r.is_err(), "cut at {cut}: {r:?}");
            } else {
                assert!(
                    matches!(r, Err(NotReport::Malformed(_))),
                    "cut at {cut}: {r:?}"
                );
            }
        }
        assert!(delivery_report(full.as_bytes()).is_ok());
    }

    #[test]
    fn status_codes() {
        for ok in [
            "5.1.1",
            "4.4.7",
            "2.0.0",
            "5.7.1 (delivery refused)",
            "5.100.999",
        ] {
            assert!(is_status_code(ok), "{ok}");
        }
        for bad in ["", "5.1", "3.1.1", "5.1.1.1", "5..1", "5.1.1000", "x.1.1"] {
            assert!(!is_status_code(bad), "{bad}");
        }
    }
}
