//! The milter: collects the envelope and the message, asks the detector and
//! the policy, and answers the MTA. No socket code here; the runtime in
//! `minimilter` serves it.

use bytes::Bytes;
use minimilter::{
    Ctx, Envelope, Header, MacroStage, Milter, Modifications, Requirements, SmtpReply, StepResult,
    Steps, Verdict,
};
use tracing::debug;

use crate::address::Address;
use crate::detect::{Detection, Detector, Found, NotPgp, Wanted};
use crate::openpgp::inline_work;
use crate::policy::{Bounces, Decision, Policy, RecipientClass};
use crate::report::{self, Report, ReportReader};

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
    reading: Option<Box<Reading>>,
    /// Header lines not yet fed to the readers: fed together at the end
    /// of the header (or once they reach [`HEADER_BATCH`] octets). No
    /// header line can end the message early, and one feed costs less
    /// than one per field.
    header_lines: Vec<u8>,
    /// While the message is judged inline (see [`INLINE_BYTES`]): every
    /// byte fed to the detector, to judge it again from its start on a
    /// blocking thread if a step turns out expensive.
    fed: Vec<u8>,
    /// The message is judged on the blocking pool from now on (it grew
    /// over [`INLINE_BYTES`], or an inline step went over its allowance).
    heavy: bool,
    /// Body bytes received.
    body_seen: usize,
    /// The decision's reason and class, for the runtime's one line per
    /// message and its metrics (set where the decision is made, which has
    /// only shared access to the state).
    decided: std::sync::Mutex<Option<(String, &'static str)>>,
}

/// The readers of one message: the detector, and for a possible delivery
/// status report (null sender, `bounces = accept-reports`) the report
/// reader, both fed the same bytes as they arrive, both in bounded memory.
#[derive(Debug)]
struct Reading {
    detector: Detector,
    report: Option<ReportReader>,
}

impl Reading {
    fn feed(&mut self, bytes: &[u8]) {
        self.detector.feed(bytes);
        if let Some(r) = &mut self.report {
            r.feed(bytes);
        }
    }

    /// The detector's finding and, for a possible report, the report.
    fn conclude(self) -> (Found, Option<Result<Report, report::NotReport>>) {
        let found = self.detector.finish();
        let report = match (&found.detection, self.report) {
            // The detector refused the structure or failed itself: that is
            // the message's verdict.
            (Detection::Plain(NotPgp::Mime(_) | NotPgp::Internal(_)), _) => None,
            (Detection::Plain(_) | Detection::Signed(_), Some(r)) => Some(r.finish()),
            _ => None,
        };
        (found, report)
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

/// The canonical form of a parsed envelope address; empty for the null
/// address.
fn canonical(a: Option<&Address>) -> String {
    a.map_or_else(String::new, |a| a.as_str().to_owned())
}

/// Records the decision for the runtime's one line per message
/// ([`Milter::reason`]); this debug line adds nothing an administrator
/// needs twice.
fn log_decision(cx: &Ctx<'_, PgpMilter>, d: &Decision) {
    *cx.msg.decided.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((d.reason().to_owned(), crate::refusal::class(d)));
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let queue_id = cx.macro_str("i").unwrap_or_default().into_owned();
    debug!(
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

/// A message up to this size (header lines and body as fed to the
/// detector) is judged inline on the async worker: reading it costs time
/// in proportion to its bytes (tens of microseconds), far less than a
/// hand-off to the blocking pool per chunk. Larger messages are judged on
/// the blocking pool, chunk by chunk.
pub const INLINE_BYTES: usize = 64 * 1024;

/// The first allocation of the copy kept for a replay: a small message's
/// header and body.
const FED_START: usize = 4096;

/// Header lines held before they are fed to the readers together.
const HEADER_BATCH: usize = 16 * 1024;

/// Decompressed octets an inline step may produce (a fraction of a
/// millisecond of inflating). Compressed Data is the one way a few bytes
/// cost much more than their size (up to the message's 32 MiB budget);
/// past this allowance the step is thrown away and the message judged
/// again from its start on a blocking thread ([`inline_work`]).
pub const INLINE_DECOMPRESSED: u64 = 256 * 1024;

/// Runs `f` on the message's readers on a blocking thread: any step may
/// reach rpgp (a leaf ends inside the chunk), and a small message can cost
/// a decompression budget's worth of work, which must not stall the async
/// workers serving the other connections.
async fn off_worker<T: Send + 'static>(
    reading: Box<Reading>,
    f: impl FnOnce(&mut Reading) -> T + Send + 'static,
) -> Result<(Box<Reading>, T), String> {
    tokio::task::spawn_blocking(move || {
        let mut d = reading;
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

    /// A refusal proven before the end of the message, if one may be given
    /// now (a possible delivery report is judged whole, at the end).
    fn early(&self, msg: &MessageState) -> Option<Decision> {
        let why = msg.reading.as_ref()?.detector.refused()?;
        if self.wants_report(&msg.sender) || msg.handshake.pending() {
            return None;
        }
        Some(
            self.policy
                .judge_message(&Detection::Plain(why.clone()), None, &msg.rcpts),
        )
    }

    /// Judges the whole message at its end: inline while it is light, on
    /// a blocking thread otherwise (or, if the inline step turns heavy,
    /// again from the message's start there).
    async fn judge(&self, msg: &mut MessageState) -> Decision {
        self.feed_header_lines(msg);
        if msg.reading.is_none() {
            // No header and no body: the blank line ends an empty header.
            self.feed_light(msg, b"\r\n");
        }
        let reading = msg.reading.take().expect("just made");
        let concluded = if msg.heavy {
            off_worker(reading, |r| spent(r).conclude())
                .await
                .map(|(_, r)| r)
        } else {
            let (r, heavy) = inline_work::run(INLINE_DECOMPRESSED, || reading.conclude());
            if heavy {
                let fed = std::mem::take(&mut msg.fed);
                off_worker(Box::new(self.new_reading(&msg.sender)), move |r| {
                    r.feed(&fed);
                    spent(r).conclude()
                })
                .await
                .map(|(_, r)| r)
            } else {
                Ok(r)
            }
        };
        let (found, report) = match concluded {
            Ok(r) => r,
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

    /// The readers at the start of a message from `sender`.
    fn new_reading(&self, sender: &str) -> Reading {
        let keys = self.policy.require_recipient_key;
        Reading {
            detector: Detector::with_limit(Wanted { keys }, self.policy.max_body_bytes),
            report: self.wants_report(sender).then(ReportReader::default),
        }
    }

    /// Feeds bytes that cannot reach the expensive layers (header lines,
    /// the blank line after them) inline, kept for a replay while the
    /// message is light.
    fn feed_light(&self, msg: &mut MessageState, bytes: &[u8]) {
        self.record(msg, bytes);
        let sender = &msg.sender;
        msg.reading
            .get_or_insert_with(|| Box::new(self.new_reading(sender)))
            .feed(bytes);
    }

    /// Feeds the header lines held so far.
    fn feed_header_lines(&self, msg: &mut MessageState) {
        if msg.header_lines.is_empty() {
            return;
        }
        let mut lines = std::mem::take(&mut msg.header_lines);
        self.feed_light(msg, &lines);
        lines.clear();
        msg.header_lines = lines;
    }

    /// Keeps `bytes` for a replay while the message stays within
    /// [`INLINE_BYTES`]; past it, the message is heavy for good.
    fn record(&self, msg: &mut MessageState, bytes: &[u8]) {
        if msg.heavy {
            return;
        }
        if msg.fed.len() + bytes.len() > INLINE_BYTES {
            msg.heavy = true;
            msg.fed = Vec::new();
            return;
        }
        if msg.fed.capacity() == 0 {
            // One allocation for a typical small message, instead of a
            // dozen as the copy grows line by line.
            msg.fed.reserve(FED_START);
        }
        msg.fed.extend_from_slice(bytes);
    }

    /// Whether a message from `sender` may pass as a delivery status
    /// report (null sender, `bounces = accept-reports`).
    fn wants_report(&self, sender: &str) -> bool {
        sender.is_empty() && self.policy.bounces == Bounces::AcceptReports
    }
}

/// Takes the readers out of `r`, leaving ones that read nothing.
fn spent(r: &mut Reading) -> Reading {
    std::mem::replace(
        r,
        Reading {
            detector: Detector::with_limit(Wanted::default(), 0),
            report: None,
        },
    )
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
        // Parsed once: the canonical text and the exemption both read it.
        let parsed = Address::parse(&sender.address());
        cx.msg.sender = canonical(parsed.as_ref());
        let auth = cx.macro_str("{auth_authen}").map(|a| a.into_owned());
        cx.msg.exempt = self
            .policy
            .sender_exemption_of(parsed.as_ref(), auth.as_deref());
        cx.msg.auth = auth;
        cx.msg.sender_exempt = cx.msg.exempt.is_some();
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, recipient: &Envelope) -> StepResult {
        let raw = recipient.address().into_owned();
        let parsed = Address::parse(&raw);
        let rcpt = canonical(parsed.as_ref());
        let class = self.policy.recipient_class_of(parsed.as_ref());
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
        // The headers go to the readers (the MIME structure starts there),
        // as lines, held until the end of the header.
        let line = &mut cx.msg.header_lines;
        let start = line.len();
        if line.capacity() == 0 {
            // One allocation for a typical message's header lines.
            line.reserve(1024);
        }
        line.extend_from_slice(&header.name);
        line.extend_from_slice(b": ");
        // MTAs send a fold as LF alone (Postfix, Sendmail: the milter
        // protocol's form); it becomes CRLF. A CR in the value, before a
        // fold or at its end, is a bare CR of the message (an MTA may pass
        // `Subject: d<CR><CR><LF>` on as `d<CR>`; Postfix 3.7 drops it): it
        // stays, for the reader to refuse, since readers that take a bare
        // CR as a line end see the header end there.
        for (i, l) in header.value.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                line.extend_from_slice(b"\r\n");
            }
            line.extend_from_slice(l);
        }
        line.extend_from_slice(b"\r\n");
        cx.msg.from_fields.header(&header.name, &header.value);
        if self.policy.accept_securejoin {
            cx.msg
                .handshake
                .header(&header.name, &cx.msg.header_lines[start..]);
        }
        if cx.msg.header_lines.len() >= HEADER_BATCH {
            // A header line never reaches rpgp (no part has begun): read
            // here.
            self.feed_header_lines(cx.msg);
        }
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
        cx.msg.header_lines.extend_from_slice(b"\r\n");
        self.feed_header_lines(cx.msg);
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
        self.feed_header_lines(cx.msg);
        if cx.msg.reading.is_none() {
            // No header at all: the blank line ends an empty header.
            self.feed_light(cx.msg, b"\r\n");
        }
        // Counted before anything else, so that a large message (a report
        // read on after a refusal too) is heavy whatever its verdict.
        self.record(cx.msg, &chunk);
        if cx
            .msg
            .reading
            .as_ref()
            .is_some_and(|r| r.report.is_none() && r.detector.refused().is_some())
        {
            // Already refused (a possible report is read on to its end).
            return Ok(Verdict::Continue);
        }
        let mut reading = cx.msg.reading.take().expect("just made");
        let mut replay = None;
        if !cx.msg.heavy {
            let (_, heavy) = inline_work::run(INLINE_DECOMPRESSED, || {
                reading.feed(&chunk);
            });
            if heavy {
                // The inline step's state is spent: read the message so
                // far again, from its start, off the worker.
                cx.msg.heavy = true;
                replay = Some(std::mem::take(&mut cx.msg.fed));
                reading = Box::new(self.new_reading(&cx.msg.sender));
            }
        }
        if cx.msg.heavy {
            let step = move |r: &mut Reading| match replay {
                Some(fed) => r.feed(&fed),
                None => r.feed(&chunk),
            };
            match off_worker(reading, step).await {
                Ok((r, ())) => reading = r,
                Err(e) => {
                    let d = self.policy.tempfail(&e);
                    log_decision(&cx, &d);
                    return Ok(verdict(&d));
                }
            }
        }
        cx.msg.reading = Some(reading);
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

    fn reason(&self, msg: &MessageState) -> Option<String> {
        let decided = msg.decided.lock().unwrap_or_else(|e| e.into_inner());
        decided.as_ref().map(|(why, _)| why.clone())
    }

    fn reason_class(&self, msg: &MessageState) -> Option<&'static str> {
        let decided = msg.decided.lock().unwrap_or_else(|e| e.into_inner());
        decided.as_ref().map(|(_, class)| *class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
