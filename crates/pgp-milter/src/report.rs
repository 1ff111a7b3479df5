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
//! Any other part, type or count is not a report. Pure: no I/O; a panic in
//! the MIME parser becomes an error.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::{MailHeaderMap, ParsedMail};

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

/// Checks `message` (headers, blank line, body) as a delivery status
/// report.
pub fn delivery_report(message: &[u8]) -> Result<Report, NotReport> {
    catch_unwind(AssertUnwindSafe(|| report_inner(message))).unwrap_or_else(|_| {
        Err(NotReport::Malformed(
            "the MIME parser panicked on it".into(),
        ))
    })
}

fn report_inner(message: &[u8]) -> Result<Report, NotReport> {
    let bad = |why: String| NotReport::Malformed(why);
    let top = mailparse::parse_mail(message).map_err(|_| NotReport::OtherType)?;
    if !top.ctype.mimetype.eq_ignore_ascii_case("multipart/report") {
        return Err(NotReport::OtherType);
    }
    strict_structure(message).map_err(bad)?;
    single_headers(&top).map_err(bad)?;
    let report_type = top
        .ctype
        .params
        .get("report-type")
        .map(|t| t.to_ascii_lowercase());
    if report_type.as_deref() != Some("delivery-status") {
        return Err(bad(format!(
            "report-type is {}, not delivery-status",
            report_type.as_deref().unwrap_or("missing")
        )));
    }
    detect::multipart_complete(&top).map_err(bad)?;
    blank_epilogue(&top).map_err(bad)?;
    let (explanation, status, returned) = match top.subparts.as_slice() {
        [e, s] => (e, s, None),
        [e, s, r] => (e, s, Some(r)),
        parts => return Err(bad(format!("{} parts instead of 2 or 3", parts.len()))),
    };
    human_readable(explanation).map_err(bad)?;
    let (reporting_mta, recipients) = delivery_status(status).map_err(bad)?;
    let returned = match returned {
        None => Returned::Nothing,
        Some(part) => returned_content(part).map_err(bad)?,
    };
    Ok(Report {
        reporting_mta,
        recipients,
        returned,
    })
}

/// The strict reader's reading of the whole report: the checks below use
/// `mailparse`, which reads some constructs differently from mail readers
/// (a line that merely begins with a delimiter closes or opens a part for
/// it), so a report is read by them only if the strict reader reads all of
/// it without refusing. (The detector stops at the first plaintext part,
/// which in a report is the explanation, before the rest is read.)
fn strict_structure(message: &[u8]) -> Result<(), String> {
    let mut reader = mime::Reader::new();
    let mut sink = |_: mime::Event<'_>| -> Result<(), std::convert::Infallible> { Ok(()) };
    let read = match reader.feed(message, &mut sink) {
        Ok(()) => reader.finish(&mut sink),
        err => err,
    };
    match read {
        Ok(()) => Ok(()),
        Err(mime::ReadError::Mime(e)) => Err(e.to_string()),
        Err(mime::ReadError::Sink(never)) => match never {},
    }
}

/// Two `Content-Type` or transfer-encoding headers: readers disagree on
/// what the part is (see `detect`).
fn single_headers(part: &ParsedMail<'_>) -> Result<(), String> {
    for name in ["Content-Type", "Content-Transfer-Encoding"] {
        let n = part.headers.get_all_values(name).len();
        if n > 1 {
            return Err(format!("ambiguous MIME: {n} {name} headers"));
        }
    }
    Ok(())
}

/// Nothing but white space after the closing boundary. RFC 2046 tells
/// readers to ignore an epilogue and no MTA writes one into a report, so
/// text there is only a way to carry plaintext past the report's checks.
/// The same holds for the multipart/alternative of an explanation.
fn blank_epilogue(part: &ParsedMail<'_>) -> Result<(), String> {
    let m = mime(part);
    let boundary = part
        .ctype
        .params
        .get("boundary")
        .ok_or(format!("{m} without a boundary"))?;
    let raw = part.raw_bytes;
    let body_start = mailparse::parse_headers(raw).map_or(0, |(_, offset)| offset);
    let body = &raw[body_start.min(raw.len())..];
    let mut lines = body.split(|&b| b == b'\n');
    let closing = lines.by_ref().any(|line| {
        line.trim_ascii_end()
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary.as_bytes()))
            .is_some_and(|l| l == b"--")
    });
    if !closing {
        return Err(format!("{m} without its closing boundary (truncated)"));
    }
    if lines.any(|line| !line.trim_ascii().is_empty()) {
        return Err(match m.as_str() {
            "multipart/report" => "text after the closing boundary (epilogue)".into(),
            _ => format!("text after the closing boundary of the {m} (epilogue)"),
        });
    }
    Ok(())
}

fn mime(part: &ParsedMail<'_>) -> String {
    part.ctype.mimetype.to_ascii_lowercase()
}

/// The first part: plain text, or text and its HTML rendering. No
/// attachments, no images, nothing nested deeper.
fn human_readable(part: &ParsedMail<'_>) -> Result<(), String> {
    single_headers(part)?;
    match mime(part).as_str() {
        "text/plain" => inline_text(part),
        "multipart/alternative" => {
            detect::multipart_complete(part)?;
            blank_epilogue(part)?;
            for p in &part.subparts {
                single_headers(p)?;
                let m = mime(p);
                if m != "text/plain" && m != "text/html" {
                    return Err(format!("explanation alternative is {m}"));
                }
                inline_text(p)?;
            }
            Ok(())
        }
        m => Err(format!("first part is {m}, not a text explanation")),
    }
}

/// An explanation is text shown in the message, not a file: a
/// `Content-Disposition` other than `inline`, a file name, or a decoded
/// body with NUL bytes (binary) is an attachment dressed as text.
fn inline_text(part: &ParsedMail<'_>) -> Result<(), String> {
    let m = mime(part);
    let disposition = part.get_content_disposition();
    if disposition.disposition != mailparse::DispositionType::Inline
        || disposition.params.contains_key("filename")
        || part.ctype.params.contains_key("name")
    {
        return Err(format!("explanation {m} is an attachment"));
    }
    let body = part
        .get_body_raw()
        .map_err(|e| format!("explanation {m}: {e}"))?;
    if body.contains(&0) {
        return Err(format!("explanation {m} is binary"));
    }
    Ok(())
}

/// The second part, RFC 3464 §2: field blocks separated by blank lines.
fn delivery_status(part: &ParsedMail<'_>) -> Result<(String, Vec<RecipientStatus>), String> {
    single_headers(part)?;
    let m = mime(part);
    if m != "message/delivery-status" {
        return Err(format!("second part is {m}, not message/delivery-status"));
    }
    let body = part
        .get_body_raw()
        .map_err(|e| format!("message/delivery-status: {e}"))?;
    let blocks = field_blocks(&body)?;
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

/// The third part: the original headers, or the original message.
fn returned_content(part: &ParsedMail<'_>) -> Result<Returned, String> {
    single_headers(part)?;
    match mime(part).as_str() {
        "text/rfc822-headers" => {
            let body = part
                .get_body_raw()
                .map_err(|e| format!("text/rfc822-headers: {e}"))?;
            headers_only(&body)?;
            Ok(Returned::Headers)
        }
        "message/rfc822" => {
            let body = part
                .get_body_raw()
                .map_err(|e| format!("message/rfc822: {e}"))?;
            returned_outer_text(&body)?;
            Ok(Returned::Message(detect::detect(&body)))
        }
        m => Err(format!(
            "third part is {m}, not text/rfc822-headers or message/rfc822"
        )),
    }
}

/// The returned message gets the bound a message of its own gets from the
/// milter: at most `MAX_OUTER_TEXT` bytes of text around its top-level
/// multipart (the detector judges what is inside).
fn returned_outer_text(message: &[u8]) -> Result<(), String> {
    let Some(boundary) = detect::top_boundary(message) else {
        return Ok(());
    };
    let body_start = mailparse::parse_headers(message).map_or(0, |(_, offset)| offset);
    let body = &message[body_start.min(message.len())..];
    let t = crate::detect::outer_text(body, boundary.as_bytes());
    let max = crate::detect::MAX_OUTER_TEXT;
    for (n, where_) in [
        (t.preamble, "before its first boundary (preamble)"),
        (t.epilogue, "after its closing boundary (epilogue)"),
    ] {
        if n > max {
            return Err(format!(
                "the returned message has {n} bytes of text {where_}, at most {max}"
            ));
        }
    }
    Ok(())
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
        // A closing delimiter inside the epilogue does not end it again:
        // the strict reader refuses it (readers differ on it).
        let twice = format!("{good}secret\r\n--4F1A2B3C4D.1795000000/mx.example.net--\r\n");
        assert_eq!(
            malformed(&twice),
            "ambiguous MIME: a boundary line after the closing boundary of multipart/report"
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
