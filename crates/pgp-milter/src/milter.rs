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
use crate::detect::{Detection, Detector, NotPgp, Wanted};
use crate::policy::{Bounces, Decision, Policy, RecipientClass};
use crate::report;

pub use crate::detect::MAX_OUTER_TEXT;

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
    /// The SASL login (`{auth_authen}`), if any.
    auth: Option<String>,
    /// For `from_must_match_sender`.
    from_fields: crate::sender_match::FromFields,
    /// For `accept_securejoin`.
    handshake: crate::securejoin::Candidate,
    /// Whether the accepted recipients are enforced (set by the first one).
    enforced: Option<bool>,
    /// Judges the message as it arrives (header lines, then body chunks).
    detector: Option<Box<Detector>>,
    /// Header bytes seen (bounded by `max_body_bytes` too).
    header_bytes: usize,
    /// The headers alone exceeded the cap.
    headers_overflow: bool,
    /// Body bytes received.
    body_seen: usize,
    /// The whole message, kept only for a possible delivery status report
    /// (null sender, `bounces = accept-reports`), which is read whole.
    report_data: Vec<u8>,
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

/// The refusal of a message over `message_size_limit`: what Postfix
/// answers for its own `message_size_limit`, so a client sees the same.
fn size_limit() -> Decision {
    let reply = SmtpReply::new(552, Some("5.3.4"), "Message size exceeds fixed limit")
        .expect("a valid fixed reply");
    Decision::Reject(reply, "message size exceeds message_size_limit".into())
}

/// Runs `f` on the message's detector on a blocking thread: any step may
/// reach rpgp (a leaf ends inside the chunk), and a small message can cost
/// a decompression budget's worth of work, which must not stall the async
/// workers serving the other connections.
async fn off_worker<T: Send + 'static>(
    detector: Box<Detector>,
    f: impl FnOnce(&mut Detector) -> T + Send + 'static,
) -> Result<(Box<Detector>, T), String> {
    tokio::task::spawn_blocking(move || {
        let mut d = detector;
        let t = f(&mut d);
        (d, t)
    })
    .await
    .map_err(|e| format!("detector task: {e}"))
}

impl PgpMilter {
    /// If the message passes unchecked, the decision (logged).
    fn exempt_decision(&self, cx: &Ctx<'_, Self>) -> Option<Decision> {
        let why = cx.msg.exempt.clone()?;
        let d = Decision::Accept(why);
        log_decision(cx, &d);
        Some(d)
    }

    /// The detector of the message, made at its first header line.
    fn detector<'a>(&self, msg: &'a mut MessageState) -> &'a mut Box<Detector> {
        let keys = self.policy.require_recipient_key;
        let limit = self.policy.max_body_bytes;
        msg.detector
            .get_or_insert_with(|| Box::new(Detector::with_limit(Wanted { keys }, limit)))
    }

    /// A refusal proven before the end of the message, if one may be given
    /// now (a possible delivery report is judged whole, at the end).
    fn early(&self, msg: &MessageState) -> Option<Decision> {
        let why = msg.detector.as_ref()?.refused()?;
        if self.wants_report(&msg.sender) || msg.handshake.pending() {
            return None;
        }
        Some(
            self.policy
                .judge_message(&Detection::Plain(why.clone()), None, &msg.rcpts),
        )
    }

    /// Judges the whole message at its end.
    async fn judge(&self, msg: &mut MessageState) -> Decision {
        let report_data = std::mem::take(&mut msg.report_data);
        let wants_report = self.wants_report(&msg.sender);
        let detector = msg.detector.take().unwrap_or_else(|| {
            let mut d = Box::new(Detector::with_limit(Wanted::default(), 0));
            d.feed(b"\r\n");
            d
        });
        let run = move |d: &mut Detector| {
            let found = std::mem::replace(d, Detector::with_limit(Wanted::default(), 0)).finish();
            // The report is read with a lenient parser: only a message the
            // strict reader read without refusing is given to it.
            let report = match &found.detection {
                Detection::Plain(NotPgp::Mime(_) | NotPgp::Internal(_)) => None,
                Detection::Plain(_) | Detection::Signed(_) if wants_report => {
                    Some(report::delivery_report(&report_data))
                }
                _ => None,
            };
            (found, report)
        };
        let (found, report) = match off_worker(detector, run).await {
            Ok((_, r)) => r,
            Err(e) => return self.policy.tempfail(&e),
        };
        let targets = self
            .policy
            .require_recipient_key
            .then_some(found.targets.as_slice());
        let decision = self
            .policy
            .judge_message(&found.detection, targets, &msg.rcpts);
        self.policy
            .judge_bounce(&msg.sender, decision, report.as_ref(), msg.body_seen)
    }

    /// Whether a message from `sender` may pass as a delivery status
    /// report (null sender, `bounces = accept-reports`).
    fn wants_report(&self, sender: &str) -> bool {
        sender.is_empty() && self.policy.bounces == Bounces::AcceptReports
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
        cx.msg.auth = auth.clone();
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
        // The headers go to the reader (the MIME structure starts there),
        // one line at a time. Only a possible report keeps them, within
        // `max_body_bytes`.
        cx.msg.header_bytes += header.name.len() + header.value.len() + 4;
        if self.wants_report(&cx.msg.sender) && cx.msg.header_bytes > self.policy.max_body_bytes {
            cx.msg.headers_overflow = true;
            return Ok(Verdict::Continue);
        }
        let mut line = Vec::with_capacity(header.name.len() + header.value.len() + 4);
        line.extend_from_slice(&header.name);
        line.extend_from_slice(b": ");
        for (i, l) in header.value.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                line.extend_from_slice(b"\r\n");
            }
            line.extend_from_slice(l.strip_suffix(b"\r").unwrap_or(l));
        }
        line.extend_from_slice(b"\r\n");
        if self.wants_report(&cx.msg.sender) {
            cx.msg.report_data.extend_from_slice(&line);
        }
        cx.msg.from_fields.header(&header.name, &header.value);
        if self.policy.accept_securejoin {
            cx.msg.handshake.header(&header.name, &line);
        }
        // A header line never reaches rpgp (no part has begun): read here.
        self.detector(cx.msg).feed(&line);
        Ok(Verdict::Continue)
    }

    async fn end_of_headers(&self, cx: Ctx<'_, Self>) -> StepResult {
        // An authenticated submission in another's name: before anything
        // else, an exemption included.
        if self.policy.from_must_match_sender
            && cx.msg.auth.as_deref().is_some_and(|a| !a.is_empty())
            && let Err(why) = cx.msg.from_fields.check(&cx.msg.sender)
        {
            let d = self.policy.from_mismatch(&why.to_string());
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        cx.msg.handshake.end_of_headers();
        if let Some(d) = self.exempt_decision(&cx) {
            return Ok(verdict(&d));
        }
        if cx.msg.headers_overflow {
            let d = self.too_large();
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        if self.wants_report(&cx.msg.sender) {
            cx.msg.report_data.extend_from_slice(b"\r\n");
        }
        self.detector(cx.msg).feed(b"\r\n");
        if let Some(d) = self.early(cx.msg) {
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        Ok(Verdict::Continue)
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        cx.msg.body_seen += chunk.len();
        cx.msg.handshake.body(&chunk);
        if let Some(limit) = self.policy.message_size_limit
            && cx.msg.body_seen > limit
        {
            let d = size_limit();
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        if self.wants_report(&cx.msg.sender) {
            if cx.msg.body_seen > self.policy.max_body_bytes {
                let d = self.too_large();
                log_decision(&cx, &d);
                return Ok(verdict(&d));
            }
            // A report is judged on the whole message: its size against
            // `max_bounce_bytes` and its epilogue (which must be blank)
            // included.
            cx.msg.report_data.extend_from_slice(&chunk);
        }
        let detector = match cx.msg.detector.take() {
            Some(d) => d,
            None => {
                // No header at all: the blank line ends an empty header.
                let d = self.detector(cx.msg);
                d.feed(b"\r\n");
                cx.msg.detector.take().expect("just made")
            }
        };
        if detector.refused().is_some() {
            // Already refused (report mode reads on for the report only).
            cx.msg.detector = Some(detector);
            return Ok(Verdict::Continue);
        }
        match off_worker(detector, move |d| {
            d.feed(&chunk);
        })
        .await
        {
            Ok((d, ())) => cx.msg.detector = Some(d),
            Err(e) => {
                let d = self.policy.tempfail(&e);
                log_decision(&cx, &d);
                return Ok(verdict(&d));
            }
        }
        if let Some(d) = self.early(cx.msg) {
            log_decision(&cx, &d);
            return Ok(verdict(&d));
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, _mods: &mut Modifications) -> StepResult {
        if let Some(d) = self.exempt_decision(&cx) {
            return Ok(verdict(&d));
        }
        let mut d = self.judge(cx.msg).await;
        if let Decision::Reject(..) = d
            && let Some(step) = cx.msg.handshake.judge()
        {
            d = Decision::Accept(format!("SecureJoin handshake ({step})"));
        }
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
