//! One SMTP session with one message, played to a milter the way Postfix
//! plays it: the macros Postfix would send, each step in order, the message
//! ended early on a decisive answer (with ABORT, or by closing after a
//! connection-level one), body in 65535-byte chunks, and the modifications
//! applied to the message as Postfix would deliver it.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use milter_proto::message_model::{HeaderField, MessageModel};
use milter_proto::{
    Answer, CHUNK_SIZE, Command, ConnectAddress, Dispatch, MilterOptions, Protocol, Response, Step,
};

use crate::client::{ClientError, MilterClient, StepOutcome};

/// The SMTP session and message to play.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    /// Client host name as the MTA resolved it (`[addr]` if unresolved).
    pub client_name: String,
    /// Client address; `None` sends the "unknown" family.
    pub client_addr: Option<IpAddr>,
    /// Client port.
    pub client_port: u16,
    /// HELO/EHLO argument.
    pub helo: String,
    /// Envelope sender, without angle brackets (empty for `<>`).
    pub from: String,
    /// Envelope recipients, without angle brackets. With none, the message
    /// ends after MAIL as one whose every recipient was refused:
    /// [`Outcome::Rejected`] at RCPT with no reply text (no MTA goes on to
    /// DATA without a recipient), whatever the milter does.
    pub rcpts: Vec<String>,
    /// Extra macros, `(name, value)`; sent at the stage Postfix sends that
    /// macro at (unknown names at connect, which keeps them in scope for the
    /// whole connection).
    pub macros: Vec<(String, String)>,
    /// The message: headers, blank line, body (CRLF or LF).
    pub message: Bytes,
    /// Queue id to send as macro `i` (Postfix sends one from MAIL on).
    pub queue_id: String,
}

impl Default for MessageSpec {
    fn default() -> Self {
        MessageSpec {
            client_name: "localhost".into(),
            client_addr: Some(IpAddr::from([127, 0, 0, 1])),
            client_port: 40000,
            helo: "localhost".into(),
            from: "sender@example.com".into(),
            rcpts: vec!["recipient@example.org".into()],
            macros: Vec::new(),
            message: Bytes::from_static(b"Subject: test\r\n\r\ntest\r\n"),
            queue_id: "4ABCDEF0123".into(),
        }
    }
}

/// How the MTA would finish the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (possibly modified; see the transcript's message).
    Accepted,
    /// Refused with 5xx.
    Rejected {
        /// Where.
        at: Step,
        /// The milter's own text, if it gave one.
        reply: Option<String>,
    },
    /// Refused with 4xx.
    Tempfailed {
        /// Where.
        at: Step,
        /// The milter's own text, if it gave one.
        reply: Option<String>,
    },
    /// Accepted and dropped.
    Discarded {
        /// Where.
        at: Step,
    },
    /// The milter asked the MTA to close the session (421).
    Shutdown {
        /// Where.
        at: Step,
    },
}

impl Outcome {
    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accept",
            Outcome::Rejected { .. } => "reject",
            Outcome::Tempfailed { .. } => "tempfail",
            Outcome::Discarded { .. } => "discard",
            Outcome::Shutdown { .. } => "shutdown",
        }
    }
}

/// A recipient refused at RCPT (the others still get the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRcpt {
    /// The address.
    pub rcpt: String,
    /// 4xx rather than 5xx.
    pub temporary: bool,
    /// The milter's own text, if any.
    pub reply: Option<String>,
}

/// One step as played.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// What was sent (for example `RCPT <bob@example.org>`).
    pub detail: String,
    /// The milter's side of it.
    pub outcome: StepOutcome,
}

/// Body the MTA did not send to the milter, because the milter negotiated
/// the body step away or answered skip to a body chunk. Postfix goes on to
/// end of message and delivers the whole body either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsentBody {
    /// Body bytes not sent (in the form body chunks carry: CRLF line ends).
    pub bytes: usize,
    /// Body chunks (of at most 65535 bytes) they would have taken.
    pub chunks: usize,
    /// True if a skip answer stopped the body, false if it was negotiated
    /// away.
    pub skipped: bool,
}

/// Everything that happened.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// What the milter negotiated.
    pub options: MilterOptions,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// The result.
    pub outcome: Outcome,
    /// Recipients the milter refused at RCPT.
    pub refused_rcpts: Vec<RefusedRcpt>,
    /// Every modification received at end of message, in order.
    pub modifications: Vec<Response>,
    /// Quarantine reason, if the milter asked for one (the MTA would hold
    /// the message).
    pub quarantine: Option<String>,
    /// The message as Postfix would deliver it (when accepted).
    pub delivered: Option<MessageModel>,
    /// What Postfix would log about modifications it ignores.
    pub warnings: Vec<String>,
    /// The milter decided for the whole SMTP session (any answer but
    /// continue at connect or HELO, or shutdown): the MTA closes the milter
    /// connection without QUIT and does not consult it again.
    pub session_ended: bool,
    /// Body not sent to the milter (negotiated away or skipped). The steps
    /// also hold one not-sent body record for it.
    pub body_not_sent: Option<UnsentBody>,
}

fn reply_text(a: &Answer) -> Option<String> {
    match a {
        Answer::Reply(r) => Some(r.display_text()),
        _ => None,
    }
}

/// Postfix keeps each header line as a C string, so a NUL byte cuts that
/// line short: the milter is sent, and the recipient delivered, the text
/// before it, each folded line cut on its own (verified with Postfix 3.7.11:
/// `Subject: a<NUL>b` + `<TAB>cont` reaches the milter as `a\n\tcont`).
/// Lines that are not header fields (a NUL in the name ends the header
/// section there) and body lines keep their NUL bytes. Without this the
/// header could not be sent at all (protocol strings end at NUL). Returns a
/// warning per header cut.
fn cut_header_lines_at_nul(model: &mut MessageModel) -> Vec<String> {
    let mut warnings = Vec::new();
    for h in &mut model.headers {
        if !h.value.contains('\0') {
            continue;
        }
        h.value = h
            .value
            .split("\r\n")
            .map(|line| line.split('\0').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\r\n");
        warnings.push(format!(
            "header {:?}: a NUL byte cuts its line short there, as Postfix does",
            h.field_name()
        ));
    }
    warnings
}

/// The outcome a decisive answer gives, or None to go on.
pub(crate) fn decisive(answer: &Answer, at: Step) -> Option<Outcome> {
    match answer {
        Answer::Continue | Answer::Skip => None,
        Answer::Accept => Some(Outcome::Accepted),
        Answer::Reject => Some(Outcome::Rejected { at, reply: None }),
        Answer::Tempfail => Some(Outcome::Tempfailed { at, reply: None }),
        Answer::Reply(r) if r.class() == 5 => Some(Outcome::Rejected {
            at,
            reply: reply_text(answer),
        }),
        Answer::Reply(_) => Some(Outcome::Tempfailed {
            at,
            reply: reply_text(answer),
        }),
        Answer::Discard => Some(Outcome::Discarded { at }),
        Answer::Shutdown => Some(Outcome::Shutdown { at }),
    }
}

/// The Postfix stage of a macro, by name (`mail_params.h` defaults).
fn macro_stage(name: &str) -> Step {
    match milter_proto::macros::bare_name(name.as_bytes()) {
        b"tls_version" | b"cipher" | b"cipher_bits" | b"cert_subject" | b"cert_issuer" => {
            Step::Helo
        }
        b"auth_type" | b"auth_authen" | b"auth_author" | b"mail_addr" | b"mail_host"
        | b"mail_mailer" => Step::Mail,
        b"rcpt_addr" | b"rcpt_host" | b"rcpt_mailer" => Step::Rcpt,
        _ => Step::Connect,
    }
}

/// The macros sent before `step`: Postfix's own (`extra`), with the
/// caller's macros of that stage replacing or joining them.
pub(crate) fn stage_macros(
    spec: &MessageSpec,
    step: Step,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    for (n, v) in &spec.macros {
        if macro_stage(n) == step {
            m.retain(|(x, _)| x != n);
            m.push((n.clone(), v.clone()));
        }
    }
    m
}

/// Postfix evaluates every macro a milter names in its lists (SETSYMLIST),
/// not only its defaults: a milter that asks for `{client_addr}` at connect
/// gets it. Adds to `planned` the values Postfix would know at its step for
/// names the milter asked for there and `planned` lacks (encoding then drops
/// whatever was not asked for).
pub(crate) fn with_requested(
    options: &MilterOptions,
    spec: &MessageSpec,
    qid: &str,
    mut planned: PlannedStep,
) -> PlannedStep {
    let Some(step) = Step::from_command_code(planned.command.code()) else {
        return planned;
    };
    let Some(wanted) = options.requested_macros(step) else {
        return planned;
    };
    let order = |s: Step| Step::ALL.iter().position(|x| *x == s).unwrap_or(0);
    for name in wanted {
        let bare = milter_proto::macros::bare_name(name.as_bytes());
        if planned
            .macros
            .iter()
            .any(|(n, _)| milter_proto::macros::bare_name(n.as_bytes()) == bare)
        {
            continue;
        }
        let from_spec = spec.macros.iter().find(|(n, _)| {
            milter_proto::macros::bare_name(n.as_bytes()) == bare
                && order(macro_stage(n)) <= order(step)
        });
        let value = match (from_spec, bare) {
            (Some((_, v)), _) => Some(v.clone()),
            (None, b"client_addr") => spec.client_addr.map(|a| a.to_string()),
            (None, b"client_name") => Some(spec.client_name.clone()),
            (None, b"client_port") => spec.client_addr.map(|_| spec.client_port.to_string()),
            (None, b"i") if order(step) >= order(Step::Mail) => Some(qid.to_owned()),
            (None, b"mail_addr") if order(step) >= order(Step::Mail) => Some(spec.from.clone()),
            _ => None,
        };
        if let Some(v) = value {
            planned.macros.push((name.clone(), v));
        }
    }
    planned
}

struct Player<'a> {
    client: &'a mut MilterClient,
    spec: &'a MessageSpec,
    steps: Vec<StepRecord>,
}

impl Player<'_> {
    async fn play(&mut self, planned: PlannedStep) -> Result<StepOutcome, ClientError> {
        let planned = with_requested(
            self.client.options(),
            self.spec,
            &self.spec.queue_id,
            planned,
        );
        let outcome = self.client.step(&planned.macros, planned.command).await?;
        self.steps.push(StepRecord {
            detail: planned.detail,
            outcome: outcome.clone(),
        });
        Ok(outcome)
    }
}

/// One step as Postfix plays it: what a transcript calls it, the macros sent
/// before it, and the command. The live player ([`run_message`]) and the
/// pre-encoded script ([`crate::script::MessageScript`]) both build their
/// steps here, so they send the same packets.
pub(crate) struct PlannedStep {
    pub(crate) detail: String,
    pub(crate) macros: Vec<(String, String)>,
    pub(crate) command: Command,
}

pub(crate) fn connect_step(spec: &MessageSpec) -> PlannedStep {
    let address = match spec.client_addr {
        Some(IpAddr::V4(a)) => ConnectAddress::Inet {
            port: spec.client_port,
            addr: b(&a.to_string()),
        },
        Some(IpAddr::V6(a)) => ConnectAddress::Inet6 {
            port: spec.client_port,
            addr: b(&a.to_string()),
        },
        None => ConnectAddress::Unknown,
    };
    let addr_text = spec
        .client_addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    let macros = stage_macros(
        spec,
        Step::Connect,
        &[
            ("j", "minimilter.localdomain".into()),
            ("{daemon_name}", "minimilter".into()),
            ("{daemon_addr}", "127.0.0.1".into()),
            ("v", "minimilter check".into()),
            ("_", format!("{} [{addr_text}]", spec.client_name)),
        ],
    );
    PlannedStep {
        detail: format!("CONNECT {} [{addr_text}]", spec.client_name),
        macros,
        command: Command::Connect {
            hostname: b(&spec.client_name),
            address,
        },
    }
}

pub(crate) fn helo_step(spec: &MessageSpec) -> PlannedStep {
    PlannedStep {
        detail: format!("HELO {}", spec.helo),
        macros: stage_macros(spec, Step::Helo, &[]),
        command: Command::Helo(b(&spec.helo)),
    }
}

pub(crate) fn mail_step(spec: &MessageSpec, qid: &str) -> PlannedStep {
    PlannedStep {
        detail: format!("MAIL FROM:<{}>", spec.from),
        macros: stage_macros(
            spec,
            Step::Mail,
            &[
                ("i", qid.to_owned()),
                ("{mail_addr}", spec.from.clone()),
                ("{mail_mailer}", "smtp".into()),
            ],
        ),
        command: Command::Mail(vec![b(&format!("<{}>", spec.from))]),
    }
}

pub(crate) fn rcpt_step(spec: &MessageSpec, rcpt: &str, qid: &str) -> PlannedStep {
    PlannedStep {
        detail: format!("RCPT TO:<{rcpt}>"),
        macros: stage_macros(
            spec,
            Step::Rcpt,
            &[
                ("i", qid.to_owned()),
                ("{rcpt_addr}", rcpt.to_owned()),
                ("{rcpt_mailer}", "smtp".into()),
            ],
        ),
        command: Command::Rcpt(vec![b(&format!("<{rcpt}>"))]),
    }
}

pub(crate) fn data_step(spec: &MessageSpec, qid: &str) -> PlannedStep {
    PlannedStep {
        detail: "DATA".into(),
        macros: stage_macros(spec, Step::Data, &[("i", qid.to_owned())]),
        command: Command::Data,
    }
}

pub(crate) fn header_step(h: &HeaderField, leading_space: bool) -> PlannedStep {
    let (name, value) = MessageModel::milter_header(h, leading_space);
    PlannedStep {
        detail: format!("HEADER {}", h.name),
        macros: Vec::new(),
        command: Command::Header {
            name: Bytes::from(name),
            value: Bytes::from(value),
        },
    }
}

pub(crate) fn end_of_headers_step(spec: &MessageSpec, qid: &str) -> PlannedStep {
    PlannedStep {
        detail: "END OF HEADERS".into(),
        macros: stage_macros(spec, Step::EndOfHeaders, &[("i", qid.to_owned())]),
        command: Command::EndOfHeaders,
    }
}

pub(crate) fn body_step(chunk: Bytes) -> PlannedStep {
    PlannedStep {
        detail: format!("BODY {} bytes", chunk.len()),
        macros: Vec::new(),
        command: Command::Body(chunk),
    }
}

pub(crate) fn end_of_message_step(spec: &MessageSpec, qid: &str) -> PlannedStep {
    PlannedStep {
        detail: "END OF MESSAGE".into(),
        macros: stage_macros(spec, Step::EndOfMessage, &[("i", qid.to_owned())]),
        command: Command::EndOfMessage(Bytes::new()),
    }
}

/// The message as the MTA holds it before the milter sees it (header lines
/// cut at NUL as Postfix cuts them), with a warning per cut.
pub(crate) fn mta_model(spec: &MessageSpec) -> (MessageModel, Vec<String>) {
    let rcpts: Vec<&str> = spec.rcpts.iter().map(String::as_str).collect();
    let mut model = MessageModel::parse(&spec.from, &rcpts, &spec.message);
    let warnings = cut_header_lines_at_nul(&mut model);
    (model, warnings)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Talking to the milter failed part-way; the steps played so far. The
/// cause is the [`source`](std::error::Error::source), not repeated in this
/// text.
#[derive(Debug, thiserror::Error)]
#[error("the milter session was interrupted after {} steps", steps.len())]
pub struct Interrupted {
    /// What went wrong.
    #[source]
    pub error: ClientError,
    /// The steps completed before it.
    pub steps: Vec<StepRecord>,
}

/// Plays `spec` on a negotiated connection. After a connection-level
/// outcome (decided at connect or HELO, or a shutdown) the caller should
/// close the connection without QUIT, as Postfix does; otherwise the
/// connection can carry the next message.
pub async fn run_message(
    client: &mut MilterClient,
    spec: &MessageSpec,
) -> Result<Transcript, Interrupted> {
    run(client, spec, true).await
}

/// Plays only the message part of `spec` (MAIL to end of message): the next
/// message of the same SMTP session, on the connection [`run_message`] used.
pub async fn run_next_message(
    client: &mut MilterClient,
    spec: &MessageSpec,
) -> Result<Transcript, Interrupted> {
    run(client, spec, false).await
}

async fn run(
    client: &mut MilterClient,
    spec: &MessageSpec,
    greet: bool,
) -> Result<Transcript, Interrupted> {
    let mut p = Player {
        client,
        spec,
        steps: Vec::new(),
    };
    let mut t = Transcript {
        options: p.client.options().clone(),
        steps: Vec::new(),
        outcome: Outcome::Accepted,
        refused_rcpts: Vec::new(),
        modifications: Vec::new(),
        quarantine: None,
        delivered: None,
        warnings: Vec::new(),
        session_ended: false,
        body_not_sent: None,
    };
    let (mut model, warnings) = mta_model(spec);
    t.warnings.extend(warnings);
    let leading_space = p
        .client
        .options()
        .protocol
        .contains(Protocol::HEADER_LEADING_SPACE);
    let qid = spec.queue_id.clone();

    let result = play_all(&mut p, &mut t, &mut model, leading_space, &qid, greet).await;
    t.steps = std::mem::take(&mut p.steps);
    if let Err(error) = result {
        return Err(Interrupted {
            error,
            steps: t.steps,
        });
    }
    if t.outcome == Outcome::Accepted {
        t.warnings
            .extend(model.apply(&t.modifications, leading_space));
        if let Some(q) = &model.quarantine {
            t.quarantine = Some(q.clone());
        }
        t.delivered = Some(model);
    }
    Ok(t)
}

async fn play_all(
    p: &mut Player<'_>,
    t: &mut Transcript,
    model: &mut MessageModel,
    leading_space: bool,
    qid: &str,
    greet: bool,
) -> Result<(), ClientError> {
    if greet && greeting(p, t).await? {
        return Ok(());
    }
    message(p, t, model, leading_space, qid).await
}

/// Connect and HELO; true if the milter decided for the whole session.
async fn greeting(p: &mut Player<'_>, t: &mut Transcript) -> Result<bool, ClientError> {
    let spec = p.spec;
    let o = p.play(connect_step(spec)).await?;
    if let Some(outcome) = o.answer.as_ref().and_then(|a| decisive(a, Step::Connect)) {
        t.outcome = outcome;
        t.session_ended = true;
        return Ok(true);
    }
    let o = p.play(helo_step(spec)).await?;
    if let Some(outcome) = o.answer.as_ref().and_then(|a| decisive(a, Step::Helo)) {
        t.outcome = outcome;
        t.session_ended = true;
        return Ok(true);
    }
    Ok(false)
}

/// MAIL to end of message.
async fn message(
    p: &mut Player<'_>,
    t: &mut Transcript,
    model: &mut MessageModel,
    leading_space: bool,
    qid: &str,
) -> Result<(), ClientError> {
    let spec = p.spec;
    let o = p.play(mail_step(spec, qid)).await?;
    if let Some(outcome) = o.answer.as_ref().and_then(|a| decisive(a, Step::Mail)) {
        return end_early(p, t, outcome).await;
    }
    let mut accepted_rcpts = 0;
    for rcpt in &spec.rcpts {
        let o = p.play(rcpt_step(spec, rcpt, qid)).await?;
        match o.answer.as_ref().and_then(|a| decisive(a, Step::Rcpt)) {
            // A refusal at RCPT refuses that recipient only.
            Some(Outcome::Rejected { reply, .. }) => t.refused_rcpts.push(RefusedRcpt {
                rcpt: rcpt.clone(),
                temporary: false,
                reply,
            }),
            Some(Outcome::Tempfailed { reply, .. }) => t.refused_rcpts.push(RefusedRcpt {
                rcpt: rcpt.clone(),
                temporary: true,
                reply,
            }),
            Some(other) => return end_early(p, t, other).await,
            None => accepted_rcpts += 1,
        }
    }
    if accepted_rcpts == 0 {
        // No valid recipients: the client never gets to DATA.
        let last = t.refused_rcpts.last().cloned();
        let reply = last.as_ref().and_then(|r| r.reply.clone());
        let outcome = if last.is_some_and(|r| r.temporary) {
            Outcome::Tempfailed {
                at: Step::Rcpt,
                reply,
            }
        } else {
            Outcome::Rejected {
                at: Step::Rcpt,
                reply,
            }
        };
        return end_early(p, t, outcome).await;
    }
    // Recipients the milter refused are not delivered to.
    model
        .recipients
        .retain(|r| !t.refused_rcpts.iter().any(|x| x.rcpt == r.address));
    let o = p.play(data_step(spec, qid)).await?;
    if let Some(outcome) = o.answer.as_ref().and_then(|a| decisive(a, Step::Data)) {
        return end_early(p, t, outcome).await;
    }
    for h in model.headers.clone() {
        let o = p.play(header_step(&h, leading_space)).await?;
        if let Some(outcome) = o.answer.as_ref().and_then(|a| decisive(a, Step::Header)) {
            return end_early(p, t, outcome).await;
        }
    }
    let o = p.play(end_of_headers_step(spec, qid)).await?;
    if let Some(outcome) = o
        .answer
        .as_ref()
        .and_then(|a| decisive(a, Step::EndOfHeaders))
    {
        return end_early(p, t, outcome).await;
    }
    let body = Bytes::from(model.milter_body());
    let mut offset = 0;
    while offset < body.len() && p.client.would_send(Step::Body) {
        let end = (offset + CHUNK_SIZE).min(body.len());
        let o = p.play(body_step(body.slice(offset..end))).await?;
        offset = end;
        if let Some(outcome) = o.answer.as_ref().and_then(|a| decisive(a, Step::Body)) {
            return end_early(p, t, outcome).await;
        }
    }
    if offset < body.len() {
        // One record for what the milter did not get, so a transcript says
        // so as it does for other steps the milter declined.
        let bytes = body.len() - offset;
        let chunks = bytes.div_ceil(CHUNK_SIZE);
        let skipped = p.client.options().sends(Step::Body);
        let rest = if offset > 0 { "rest, " } else { "" };
        let plural = if chunks == 1 { "" } else { "s" };
        p.steps.push(StepRecord {
            detail: format!("BODY {rest}{bytes} bytes in {chunks} chunk{plural}"),
            outcome: StepOutcome {
                step: Step::Body,
                dispatch: Dispatch::NotSent,
                answer: None,
                modifications: Vec::new(),
                progress: 0,
                elapsed: Duration::ZERO,
            },
        });
        t.body_not_sent = Some(UnsentBody {
            bytes,
            chunks,
            skipped,
        });
    }
    let o = p.play(end_of_message_step(spec, qid)).await?;
    t.modifications = o.modifications.clone();
    for earlier in &p.steps[..p.steps.len() - 1] {
        // Quarantine may come at any step on Postfix.
        for m in &earlier.outcome.modifications {
            if let Response::Quarantine(_) = m {
                t.modifications.insert(0, m.clone());
            }
        }
    }
    t.outcome = match o
        .answer
        .as_ref()
        .and_then(|a| decisive(a, Step::EndOfMessage))
    {
        Some(outcome) => outcome,
        None => Outcome::Accepted,
    };
    t.session_ended = matches!(t.outcome, Outcome::Shutdown { .. });
    debug_assert!(o.dispatch == Dispatch::AwaitAnswer);
    if !t.session_ended {
        // Postfix resets the milter after every transaction (its mail_reset
        // sends ABORT even after end of message); milters must take it.
        p.client.abort().await?;
    }
    Ok(())
}

/// The message ended before end of message: Postfix sends ABORT (the
/// connection stays up for the next message).
async fn end_early(
    p: &mut Player<'_>,
    t: &mut Transcript,
    outcome: Outcome,
) -> Result<(), ClientError> {
    if matches!(outcome, Outcome::Shutdown { .. }) {
        t.session_ended = true;
        t.outcome = outcome;
        return Ok(());
    }
    t.outcome = outcome;
    p.client.abort().await
}

/// A ready-made queue id, unique enough for logs (hex of a counter and time).
pub fn queue_id(n: u64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64;
    format!("{:X}", (t << 16) ^ n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use milter_proto::{Actions, MacroStage};

    fn options(macros: Vec<(MacroStage, Vec<String>)>) -> MilterOptions {
        MilterOptions {
            version: 6,
            actions: Actions::empty(),
            protocol: Protocol::empty(),
            macros,
        }
    }

    fn names(p: &PlannedStep) -> Vec<&str> {
        p.macros.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn requested_macros_get_the_values_postfix_knows() {
        let mut spec = MessageSpec::default();
        spec.macros.push(("{auth_authen}".into(), "alice".into()));
        let asked = options(vec![
            (
                MacroStage::Connect,
                vec!["{client_addr}".into(), "{auth_authen}".into()],
            ),
            (MacroStage::Mail, vec!["{auth_authen}".into(), "i".into()]),
        ]);
        let c = with_requested(&asked, &spec, "QID", connect_step(&spec));
        let got: Vec<_> = c
            .macros
            .iter()
            .filter(|(n, _)| n == "{client_addr}")
            .collect();
        assert_eq!(got, [&("{client_addr}".to_owned(), "127.0.0.1".to_owned())]);
        // Not known at connect: AUTH comes later in the session.
        assert!(!names(&c).contains(&"{auth_authen}"));
        let m = with_requested(&asked, &spec, "QID", mail_step(&spec, "QID"));
        assert_eq!(
            m.macros
                .iter()
                .filter(|(n, _)| n == "{auth_authen}")
                .count(),
            1
        );
        assert!(names(&m).contains(&"i"));
    }

    #[test]
    fn without_a_request_only_postfix_defaults_are_planned() {
        let spec = MessageSpec::default();
        let c = with_requested(&options(vec![]), &spec, "QID", connect_step(&spec));
        assert_eq!(names(&c), ["j", "{daemon_name}", "{daemon_addr}", "v", "_"]);
    }
}
