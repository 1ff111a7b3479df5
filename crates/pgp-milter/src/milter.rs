//! The milter: collects the envelope and the message, asks the detector and
//! the policy, and answers the MTA. No socket code here; the runtime in
//! `minimilter` serves it.

use bytes::Bytes;
use minimilter::{
    Ctx, Envelope, Header, MacroStage, Milter, Modifications, Requirements, SmtpReply, StepResult,
    Steps, Verdict,
};
use tracing::{debug, info};

use crate::address::Address;
use crate::detect::{self, Detection, NotPgp};
use crate::packets::KeyTarget;
use crate::policy::{Bounces, Decision, Policy, RecipientClass};
use crate::report::{self, NotReport, Report};

/// Most text (bytes other than white space) allowed in the preamble of a
/// top-level multipart, and again in its epilogue. Readers ignore both
/// (RFC 2046 §5.1.1; Thunderbird's MIME parser drops their lines), but the
/// bytes are stored in the mailbox in the clear, so they must not become a
/// channel for plaintext of any size. Clients write a line at most there
/// (Enigmail: "This is an OpenPGP/MIME encrypted message (RFC 4880 and
/// 3156)"); a list or a gateway may append a short footer.
pub const MAX_OUTER_TEXT: usize = 4096;

/// The OpenPGP-only milter.
#[derive(Debug, Clone, Default)]
pub struct PgpMilter {
    policy: Policy,
}

impl PgpMilter {
    /// A milter enforcing `policy`.
    pub fn new(policy: Policy) -> PgpMilter {
        PgpMilter { policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// What is known about the current message. Reset by the runtime for every
/// new message and on abort, so nothing carries over.
#[derive(Debug, Default)]
pub struct MessageState {
    sender: String,
    rcpts: Vec<String>,
    /// Why this message passes unchecked (sender or recipient exemption).
    exempt: Option<String>,
    /// The exemption comes from the sender: every recipient passes.
    sender_exempt: bool,
    /// Whether the accepted recipients are enforced (set by the first one).
    enforced: Option<bool>,
    /// Headers as `Name: value` CRLF lines, the blank line, then the body.
    data: Vec<u8>,
    body_start: Option<usize>,
    /// Boundary of a top-level multipart: the structure is decided as soon
    /// as its closing delimiter has arrived; only the epilogue follows.
    boundary: Option<String>,
    /// Body bytes received (the cap is on these; `data` is handed to the
    /// detector when a decision is taken early).
    body_seen: usize,
    /// Text around the top-level multipart, counted so far.
    outer: OuterText,
    /// Body bytes already searched for the closing delimiter.
    scanned: usize,
    /// The headers alone exceeded the cap.
    headers_overflow: bool,
    /// Taken before end of message, at the closing delimiter: an
    /// acceptance still waits for the epilogue to be read.
    decision: Option<Decision>,
}

/// Text (bytes other than ASCII white space) in the preamble and in the
/// epilogue of a top-level multipart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OuterText {
    /// Before the first boundary line.
    pub preamble: usize,
    /// After the closing boundary line.
    pub epilogue: usize,
}

fn text_bytes(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| !b.is_ascii_whitespace()).count()
}

/// Counts the text around the multipart with `boundary` in `body` (which
/// may stop anywhere in the epilogue). One pass over the lines.
pub fn outer_text(body: &[u8], boundary: &[u8]) -> OuterText {
    #[derive(PartialEq)]
    enum At {
        Preamble,
        Parts,
        Epilogue,
    }
    let mut at = At::Preamble;
    let mut t = OuterText::default();
    for line in body.split(|&b| b == b'\n') {
        if at == At::Epilogue {
            t.epilogue += text_bytes(line);
            continue;
        }
        let rest = line
            .trim_ascii_end()
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary));
        match rest {
            Some(b"--") => at = At::Epilogue,
            Some(b"") => at = At::Parts,
            _ if at == At::Preamble => t.preamble += text_bytes(line),
            _ => {}
        }
    }
    t
}

impl MessageState {
    fn body_len(&self) -> usize {
        self.body_start.map_or(0, |s| self.data.len() - s)
    }

    /// Counts the preamble and the epilogue so far, before `data` goes to
    /// the detector.
    fn count_outer(&mut self) {
        if let (Some(b), Some(start)) = (&self.boundary, self.body_start) {
            self.outer = outer_text(&self.data[start..], b.as_bytes());
        }
    }
}

fn verdict(d: &Decision) -> Verdict {
    match d {
        Decision::Accept(_) => Verdict::Accept,
        Decision::Reject(reply, _) => Verdict::Reject(Some(reply.clone())),
        Decision::Tempfail(reply, _) => Verdict::Tempfail(Some(reply.clone())),
    }
}

/// The `452 4.5.3` for a recipient whose policy differs from the first
/// one's. It names the recipient (as mailman-milter's does), so a client
/// that lists several refused recipients shows which one to send again; an
/// address that cannot go into a reply (control characters, too long)
/// gets the text without it.
fn split_reply(rcpt: &str) -> SmtpReply {
    const TEXT: &str =
        "Recipient under a different OpenPGP policy; send to this recipient separately";
    SmtpReply::new(452, Some("4.5.3"), &format!("<{rcpt}>: {TEXT}"))
        .or_else(|_| SmtpReply::new(452, Some("4.5.3"), TEXT))
        .expect("a valid fixed reply")
}

/// The canonical form of an envelope address; empty for the null address.
fn canonical(raw: &str) -> String {
    Address::parse(raw).map_or_else(String::new, |a| a.as_str().to_owned())
}

/// The one log line per decision.
fn log_decision(cx: &Ctx<'_, PgpMilter>, d: &Decision) {
    let queue_id = cx.macro_str("i").unwrap_or_default().into_owned();
    info!(
        queue_id = %if queue_id.is_empty() { "-".to_owned() } else { queue_id },
        from = %format!("<{}>", cx.msg.sender),
        to = %cx.msg.rcpts.iter().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(","),
        verdict = %d.name(),
        reason = %d.reason(),
        "decision"
    );
}

/// What the detector found: the detection; when asked for and the
/// message is encrypted, the PKESK recipients of each encrypted block; and
/// when asked for (null sender, `bounces = accept-reports`) and the message
/// is not OpenPGP, whether it is a delivery status report.
#[derive(Debug)]
struct Found {
    detection: Detection,
    targets: Option<Vec<Vec<KeyTarget>>>,
    report: Option<Result<Report, NotReport>>,
}

/// What to collect besides the detection.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    keys: bool,
    report: bool,
}

fn detect_all(data: &[u8], wanted: Wanted) -> Found {
    let detection = detect::detect(data);
    let mut found = Found {
        detection,
        targets: None,
        report: None,
    };
    match found.detection {
        Detection::Encrypted(_) if wanted.keys => match detect::encrypted_to(data) {
            Ok(targets) => found.targets = Some(targets),
            Err(e) => {
                found.detection =
                    Detection::Plain(NotPgp::Internal(format!("collecting recipient keys: {e}")))
            }
        },
        Detection::Plain(NotPgp::Internal(_)) => {}
        Detection::Plain(_) | Detection::Signed(_) if wanted.report => {
            found.report = Some(report::delivery_report(data));
        }
        _ => {}
    }
    found
}

/// Runs the detector on a blocking thread whatever the message size: a
/// small message can cost a decompression budget's worth of work.
async fn run_detect(data: Vec<u8>, wanted: Wanted) -> Found {
    tokio::task::spawn_blocking(move || detect_all(&data, wanted))
        .await
        .unwrap_or_else(|e| Found {
            detection: Detection::Plain(NotPgp::Internal(format!("detector task: {e}"))),
            targets: None,
            report: None,
        })
}

impl PgpMilter {
    /// If the message passes unchecked, the decision (logged).
    fn exempt_decision(&self, cx: &Ctx<'_, Self>) -> Option<Decision> {
        let why = cx.msg.exempt.clone()?;
        let d = Decision::Accept(why);
        log_decision(cx, &d);
        Some(d)
    }

    /// Detects and judges the whole message in `msg.data` (taken).
    async fn judge(&self, msg: &mut MessageState) -> Decision {
        let body_bytes = msg.body_seen;
        let data = std::mem::take(&mut msg.data);
        let wanted = Wanted {
            keys: self.policy.require_recipient_key,
            report: self.wants_report(&msg.sender),
        };
        let found = run_detect(data, wanted).await;
        let decision =
            self.policy
                .judge_message(&found.detection, found.targets.as_deref(), &msg.rcpts);
        self.policy
            .judge_bounce(&msg.sender, decision, found.report.as_ref(), body_bytes)
    }

    /// Whether a message from `sender` may pass as a delivery status
    /// report (null sender, `bounces = accept-reports`).
    fn wants_report(&self, sender: &str) -> bool {
        sender.is_empty() && self.policy.bounces == Bounces::AcceptReports
    }

    /// An acceptance stands only while the text around the multipart stays
    /// within `MAX_OUTER_TEXT`.
    fn check_outer(&self, msg: &MessageState, d: Decision) -> Decision {
        if !matches!(d, Decision::Accept(_)) {
            return d;
        }
        let t = msg.outer;
        let (n, where_) = if t.preamble > MAX_OUTER_TEXT {
            (t.preamble, "before the first boundary (preamble)")
        } else if t.epilogue > MAX_OUTER_TEXT {
            (t.epilogue, "after the closing boundary (epilogue)")
        } else {
            return d;
        };
        let n = if n > MAX_OUTER_TEXT * 2 {
            format!("more than {}", MAX_OUTER_TEXT * 2)
        } else {
            n.to_string()
        };
        self.policy.reject(&format!(
            "{n} bytes of text {where_}, at most {MAX_OUTER_TEXT}"
        ))
    }

    fn too_large(&self) -> Decision {
        self.policy
            .reject(&NotPgp::TooLarge(self.policy.max_body_bytes).to_string())
    }
}

impl Milter for PgpMilter {
    type Connection = ();
    type Message = MessageState;

    fn requirements(&self) -> Requirements {
        Requirements {
            // Exemptions are settled at end of headers rather than at DATA,
            // and MAIL and headers never need an answer: fewer round trips.
            steps: Steps::MAIL | Steps::RCPT | Steps::HEADER | Steps::END_OF_HEADERS | Steps::BODY,
            no_reply: Steps::MAIL | Steps::HEADER,
            macros: vec![
                (MacroStage::Mail, "i {auth_authen}".into()),
                (MacroStage::EndOfMessage, "i".into()),
            ],
            ..Requirements::default()
        }
    }

    async fn mail(&self, cx: Ctx<'_, Self>, sender: &Envelope) -> StepResult {
        // Canonical from here on (the null sender is empty): every policy
        // decision and the log see the mailbox, not the client's spelling.
        cx.msg.sender = canonical(&sender.address());
        let auth = cx.macro_str("{auth_authen}").map(|a| a.into_owned());
        cx.msg.exempt = self
            .policy
            .sender_exemption(&cx.msg.sender, auth.as_deref());
        cx.msg.sender_exempt = cx.msg.exempt.is_some();
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, recipient: &Envelope) -> StepResult {
        let raw = recipient.address().into_owned();
        let rcpt = canonical(&raw);
        let class = self.policy.recipient_class(&rcpt);
        let enforced = class == RecipientClass::Enforced;
        match cx.msg.enforced {
            _ if cx.msg.sender_exempt => {}
            None => {
                cx.msg.enforced = Some(enforced);
                if let RecipientClass::Exempt(why) = class {
                    cx.msg.exempt = Some(why);
                }
            }
            Some(e) if e == enforced => {}
            Some(_) => {
                // One end-of-message verdict covers every recipient: keep
                // checked and unchecked recipients in separate transactions
                // (the client retries a 452 recipient later, RFC 5321
                // §4.5.3.1.10).
                debug!(
                    rcpt,
                    "recipient with another policy deferred to a new transaction"
                );
                // Named as the client wrote it, so it recognises it.
                return Ok(Verdict::tempfail_with(split_reply(&raw)));
            }
        }
        cx.msg.rcpts.push(rcpt);
        Ok(Verdict::Continue)
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        // Headers are kept too (for the MIME structure); the same cap bounds them.
        if cx.msg.data.len() + header.name.len() + header.value.len() > self.policy.max_body_bytes {
            cx.msg.headers_overflow = true;
            return Ok(Verdict::Continue);
        }
        let data = &mut cx.msg.data;
        data.extend_from_slice(&header.name);
        data.extend_from_slice(b": ");
        for (i, line) in header.value.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                data.extend_from_slice(b"\r\n");
            }
            data.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        }
        data.extend_from_slice(b"\r\n");
        Ok(Verdict::Continue)
    }

    async fn end_of_headers(&self, cx: Ctx<'_, Self>) -> StepResult {
        if let Some(d) = self.exempt_decision(&cx) {
            return Ok(verdict(&d));
        }
        if cx.msg.headers_overflow {
            let d = self.too_large();
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        cx.msg.data.extend_from_slice(b"\r\n");
        cx.msg.body_start = Some(cx.msg.data.len());
        cx.msg.boundary = detect::top_boundary(&cx.msg.data);
        Ok(Verdict::Continue)
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        if cx.msg.body_start.is_none() {
            cx.msg.body_start = Some(cx.msg.data.len());
        }
        cx.msg.body_seen += chunk.len();
        if cx.msg.body_seen > self.policy.max_body_bytes {
            let d = self.too_large();
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        if let Some(d) = cx.msg.decision.take() {
            // Accepted at the closing delimiter: only the epilogue is
            // left, read (not skipped) so that its text stays bounded.
            cx.msg.outer.epilogue += text_bytes(&chunk);
            let d = self.check_outer(cx.msg, d);
            if let Decision::Accept(_) = d {
                cx.msg.decision = Some(d);
                return Ok(Verdict::Continue);
            }
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        cx.msg.data.extend_from_slice(&chunk);
        if self.wants_report(&cx.msg.sender) {
            // A report is judged on the whole message: its size against
            // `max_bounce_bytes` and its epilogue (which must be blank)
            // included. Skipping after the closing boundary would let any
            // amount of text after it through unread.
            return Ok(Verdict::Continue);
        }
        let Some(boundary) = &cx.msg.boundary else {
            return Ok(Verdict::Continue);
        };
        // Search the new bytes, from the start of the line they continue
        // (a delimiter line may span two chunks). A line already longer
        // than a delimiter line is skipped, so the work stays linear.
        let start = cx.msg.body_start.unwrap_or(0);
        let done = start + cx.msg.scanned;
        let window = done.saturating_sub(boundary.len() + 8).max(start);
        let data = &cx.msg.data;
        let from = match data[window..done].iter().rposition(|&b| b == b'\n') {
            Some(i) => window + i + 1,
            None if window == start => start,
            None => data[done..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |i| done + i + 1),
        };
        let closed = detect::has_closing_delimiter(&cx.msg.data[from..], boundary.as_bytes());
        cx.msg.scanned = cx.msg.body_len();
        if !closed {
            return Ok(Verdict::Continue);
        }
        // The top-level multipart is complete: only the epilogue can follow.
        // A refusal is final now; an acceptance holds unless the epilogue
        // grows too long, so the rest is still read (no SKIP).
        cx.msg.count_outer();
        let d = self.judge(cx.msg).await;
        let d = self.check_outer(cx.msg, d);
        if let Decision::Accept(_) = d {
            cx.msg.decision = Some(d);
            return Ok(Verdict::Continue);
        }
        log_decision(&cx, &d);
        Ok(verdict(&d))
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, _mods: &mut Modifications) -> StepResult {
        if let Some(d) = self.exempt_decision(&cx) {
            return Ok(verdict(&d));
        }
        let d = match cx.msg.decision.take() {
            Some(d) => d,
            None => {
                cx.msg.count_outer();
                let d = self.judge(cx.msg).await;
                self.check_outer(cx.msg, d)
            }
        };
        log_decision(&cx, &d);
        Ok(verdict(&d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_text_counts_text_before_the_first_and_after_the_closing_boundary() {
        let body = b"This is an OpenPGP/MIME encrypted message\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\ninside\r\n--b--\r\n\
 tail  text \r\n";
        assert_eq!(
            outer_text(body, b"b"),
            OuterText {
                preamble: "ThisisanOpenPGP/MIMEencryptedmessage".len(),
                epilogue: "tailtext".len(),
            }
        );
        // Parts are not counted; a delimiter-like line for another boundary
        // or with text after it is not ours; a second closing line is
        // epilogue text.
        let body = b"--b\r\n--bx--\r\n--b--x\r\n--b-- \t\r\n--b--\r\n";
        assert_eq!(
            outer_text(body, b"b"),
            OuterText {
                preamble: 0,
                epilogue: 5,
            }
        );
        // A preamble without any boundary is all preamble; white space is
        // never counted.
        assert_eq!(
            outer_text(b"  \r\n\t\r\nab c", b"b"),
            OuterText {
                preamble: 3,
                epilogue: 0,
            }
        );
    }

    #[test]
    fn the_split_reply_names_the_recipient_when_it_can() {
        assert_eq!(
            split_reply("postmaster@example.org").to_string(),
            "452 4.5.3 <postmaster@example.org>: Recipient under a different OpenPGP policy; \
             send to this recipient separately"
        );
        // `%` is doubled on the wire (Sendmail), shown once.
        let percent = split_reply("a%b@example.org");
        assert!(
            percent
                .to_string()
                .starts_with("452 4.5.3 <a%b@example.org>: ")
        );
        assert!(
            percent
                .wire()
                .starts_with(b"452 4.5.3 <a%%b@example.org>: ")
        );
        let fallback = "452 4.5.3 Recipient under a different OpenPGP policy; \
                        send to this recipient separately";
        assert_eq!(split_reply("bad\r\nrcpt").to_string(), fallback);
        let long = format!("{}@example.org", "x".repeat(1000));
        assert_eq!(split_reply(&long).to_string(), fallback);
    }
}
