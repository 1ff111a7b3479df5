//! The milter side of one connection, as a state machine with no I/O.
//!
//! The driver feeds it packets ([`MilterSession::receive`]), calls the filter
//! when told to, hands the filter's verdict back ([`MilterSession::reply`]) and
//! writes whatever [`MilterSession::output`] holds. The session owns every
//! protocol rule, so a filter cannot desynchronise the stream:
//! - exactly one final reply per step the MTA waits for, none for `A`, `D`,
//!   `Q`, `K` or a step negotiated no-reply;
//! - modifications only at end of message and only if negotiated;
//! - macros kept per stage, later stages cleared when an earlier one starts;
//! - message state reset on abort and on a new MAIL, connection state kept.

use bytes::BytesMut;

use crate::command::{Command, code};
use crate::flags::{Actions, CHUNK_SIZE, Protocol};
use crate::frame::Frame;
use crate::macros::MacroStore;
use crate::negotiate::{Negotiated, NegotiationError, Requirements, negotiate};
use crate::payload::PayloadError;
use crate::response::Response;
use crate::step::Step;
use crate::verdict::Verdict;

/// The largest first packet accepted before negotiation. A real `O` packet
/// is 12 bytes of payload; anything bigger is a probe or garbage, and is
/// refused before memory is reserved for it.
pub const OPTNEG_MAX_PAYLOAD: usize = 1024;

/// A protocol violation by the MTA (or a misuse by the driver). The
/// connection cannot go on after one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The first packet was not option negotiation: a port scanner, a TLS
    /// handshake, an SMTP client pointed at the wrong port.
    #[error("first packet is not option negotiation (code 0x{0:02x})")]
    NotOptNeg(u8),
    /// A second `O` on a connection that did not announce a new session.
    #[error("option negotiation repeated")]
    DuplicateOptNeg,
    /// Negotiation failed.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// A packet whose payload does not fit its code.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A command arrived while the MTA should have been waiting for our reply.
    #[error("'{got}' command arrived while the reply to {step} is still owed")]
    ReplyOwed {
        /// The step awaiting its reply.
        step: Step,
        /// The code of the command that arrived.
        got: char,
    },
    /// A command after QUIT.
    #[error("command after QUIT")]
    Closed,
    /// The driver called `reply` with no step pending.
    #[error("no step is waiting for a verdict")]
    NoStepPending,
}

/// Why a modification request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModifyError {
    /// Modifications are allowed only while answering end of message.
    #[error("modifications are only allowed at end of message")]
    NotAtEndOfMessage,
    /// The action was not negotiated (the MTA did not offer it, or the filter
    /// did not declare it).
    #[error(
        "action {0:?} was not negotiated (declare it in Requirements::actions; the MTA must offer it too)"
    )]
    NotNegotiated(Actions),
    /// A string field contains a NUL byte.
    #[error("field contains a NUL byte")]
    Nul,
    /// The packet would exceed the negotiated size.
    #[error("modification of {len} bytes exceeds the packet limit of {max}")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not a modification (a verdict or negotiation packet).
    #[error("not a modification request")]
    NotAModification,
    /// A quarantine without a reason.
    #[error("quarantine needs a reason")]
    EmptyReason,
    /// A header name that is empty or contains `:`, whitespace or controls.
    #[error("invalid header name")]
    BadHeaderName,
    /// A header value with a CR. A line break is `\n` alone (the MTA adds
    /// the CR; a CR of the filter's own is kept as data by Postfix, so the
    /// delivered header would carry a stray CR). Found by [`check_values`].
    #[error("invalid header value: {0} (break lines with \\n alone; the MTA adds the CR)")]
    BadHeaderValue(&'static str),
    /// An empty address in a sender change or a recipient addition or
    /// removal (libmilter refuses these too; the null sender is `<>`).
    /// Found by [`check_values`].
    #[error("empty address (the null sender is written <>)")]
    EmptyAddress,
}

/// Checks a modification request against the negotiated actions and the
/// packet rules, without sending it: what [`MilterSession::modify`] checks,
/// available to a runtime that collects requests before end of message ends.
pub fn check_modification(granted: Actions, modification: &Response) -> Result<(), ModifyError> {
    let action = modification
        .required_action()
        .ok_or(ModifyError::NotAModification)?;
    if !granted.contains(action) {
        return Err(ModifyError::NotNegotiated(action));
    }
    if !modification.is_encodable() {
        return Err(ModifyError::Nul);
    }
    if matches!(modification, Response::Quarantine(r) if r.is_empty()) {
        // libmilter refuses it too: the hold queue entry must say why.
        return Err(ModifyError::EmptyReason);
    }
    if let Response::AddHeader { name, .. }
    | Response::InsertHeader { name, .. }
    | Response::ChangeHeader { name, .. } = modification
        && (name.is_empty()
            || name
                .iter()
                .any(|&b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control()))
    {
        return Err(ModifyError::BadHeaderName);
    }
    Ok(())
}

/// Checks the values of a modification request against what MTAs make of
/// them, beyond what [`check_modification`] checks (which is what the wire
/// can carry): a header value must hold no CR (Postfix keeps a CR before
/// the line end as data, so the delivered header gets a stray CR; a line
/// break is `\n` alone, and a line after it that does not start with a
/// space or tab is indented by the MTA, so it stays a fold), and an address
/// to add, remove or set as the sender must not be empty. `minimilter`'s
/// `Modifications` applies both checks to every request; a driver of
/// [`MilterSession`] may call this before [`MilterSession::modify`], which
/// sends what it is given.
pub fn check_values(modification: &Response) -> Result<(), ModifyError> {
    match modification {
        Response::AddHeader { value, .. }
        | Response::InsertHeader { value, .. }
        | Response::ChangeHeader { value, .. } => {
            if value.contains(&b'\r') {
                return Err(ModifyError::BadHeaderValue("carriage return"));
            }
            Ok(())
        }
        Response::AddRcpt(a)
        | Response::DelRcpt(a)
        | Response::AddRcptPar { rcpt: a, .. }
        | Response::ChangeFrom { sender: a, .. }
            if a.trim_ascii().is_empty() =>
        {
            Err(ModifyError::EmptyAddress)
        }
        _ => Ok(()),
    }
}

/// What the driver must do after a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Negotiation is done; the reply is in the output.
    Negotiated,
    /// Macros were stored; nothing to do.
    Macros,
    /// A step arrived. If `deliver`, call the filter and pass its verdict to
    /// [`MilterSession::reply`]; otherwise any reply owed is already in the output.
    Step {
        /// Which step.
        step: Step,
        /// The command, with its data.
        command: Command,
        /// Call the filter for it.
        deliver: bool,
        /// The command starts a new message: reset per-message state.
        new_message: bool,
        /// A previous message was still open and is now over without end of
        /// message: tell the filter it was aborted (before the new step).
        aborted_previous: bool,
    },
    /// `A`: the current message is over. No reply is sent.
    Abort {
        /// A message was open (the filter should hear about it).
        message_was_open: bool,
    },
    /// `Q`: close the connection.
    Quit,
    /// `K`: a new SMTP session follows on this socket; reset connection state.
    NewConnection {
        /// A message was open (the filter should hear about the abort).
        message_was_open: bool,
    },
}

/// What [`MilterSession::reply`] did with a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The reply was written to the output.
    Written,
    /// The MTA does not wait for a reply at this step; nothing was written.
    NotNeeded,
    /// The verdict was not `continue` at a step the filter declared
    /// no-reply (or the MTA does not wait for): it was kept and will answer
    /// the next step the MTA waits for, so the decision is neither lost
    /// (libmilter drops it) nor dependent on whether the MTA offered `NR_*`.
    Deferred,
    /// The verdict is not valid at this step and was sent as `continue`
    /// (for example `skip` outside the body, or without `SKIP` negotiated).
    Downgraded,
}

/// How long a deferred verdict holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Until the message ends.
    Message,
    /// Until the connection ends (or `K`).
    Connection,
}

/// The milter side of one connection.
#[derive(Debug)]
pub struct MilterSession {
    requirements: Requirements,
    negotiated: Option<Negotiated>,
    /// An `O` is acceptable now (start, or after `K`).
    optneg_allowed: bool,
    macros: MacroStore,
    message_open: bool,
    /// An SMTP transaction is under way as far as the MTA is concerned, even
    /// if the filter declined every step seen so far (only macros came).
    transaction_open: bool,
    /// A decision made where no reply could carry it, and its scope.
    deferred: Option<(Verdict, Scope)>,
    /// The step waiting for the filter's verdict, and whether the MTA waits too.
    pending: Option<(Step, bool)>,
    closed: bool,
    out: BytesMut,
}

impl MilterSession {
    /// A session for a filter with these needs.
    pub fn new(requirements: Requirements) -> Self {
        MilterSession {
            requirements,
            negotiated: None,
            optneg_allowed: true,
            macros: MacroStore::new(),
            message_open: false,
            transaction_open: false,
            deferred: None,
            pending: None,
            closed: false,
            out: BytesMut::with_capacity(256),
        }
    }

    /// The negotiation outcome, once negotiated.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Macros received so far that are still in scope.
    pub fn macros(&self) -> &MacroStore {
        &self.macros
    }

    /// True while a message is in progress (between its first step and end
    /// of message or abort).
    pub fn in_message(&self) -> bool {
        self.message_open
    }

    /// True while the MTA is inside an SMTP transaction (MAIL to end of
    /// message), judged from commands *and* macro packets: a filter that
    /// declined MAIL and RCPT still sees their macros. Shutdown waits for this.
    pub fn in_transaction(&self) -> bool {
        self.transaction_open || self.message_open
    }

    /// True if the filter declared it never answers `step` (end of message
    /// is always answered, whatever was declared).
    pub fn promised_no_reply(&self, step: Step) -> bool {
        step != Step::EndOfMessage && self.requirements.no_reply.contains(step.as_set())
    }

    /// True when the pending step is already answered by a decision kept
    /// from a no-reply step: the runtime need not ask the filter, and
    /// whatever it passes to [`MilterSession::reply`] sends that decision.
    pub fn pending_answered(&self) -> bool {
        match (self.pending, &self.deferred) {
            (Some((step, owed)), Some(_)) => owed && !self.promised_no_reply(step),
            _ => false,
        }
    }

    /// A verdict kept for the next step the MTA waits for, if any.
    pub fn deferred(&self) -> Option<&Verdict> {
        self.deferred.as_ref().map(|(v, _)| v)
    }

    /// Keeps `verdict` to answer the next step the MTA waits for (and every
    /// later one in the same message, or connection for connect/HELO/unknown
    /// steps). For a runtime whose filter failed at a no-reply step. The
    /// first deferred verdict wins.
    pub fn defer(&mut self, step: Step, verdict: Verdict) {
        if verdict != Verdict::Continue && self.deferred.is_none() {
            let scope = if step.is_message_step() {
                Scope::Message
            } else {
                Scope::Connection
            };
            self.deferred = Some((verdict, scope));
        }
    }

    fn end_message(&mut self) {
        self.message_open = false;
        self.transaction_open = false;
        if matches!(self.deferred, Some((_, Scope::Message))) {
            self.deferred = None;
        }
    }

    /// True before the first packet has been accepted.
    pub fn awaiting_negotiation(&self) -> bool {
        self.negotiated.is_none()
    }

    /// The step waiting for a verdict, if any.
    pub fn pending_step(&self) -> Option<Step> {
        self.pending.map(|(s, _)| s)
    }

    /// Bytes to write to the MTA.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output once written.
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Processes one packet from the MTA.
    pub fn receive(&mut self, frame: Frame) -> Result<Event, SessionError> {
        if self.closed {
            return Err(SessionError::Closed);
        }
        if self.negotiated.is_none() && frame.code != code::OPTNEG {
            return Err(SessionError::NotOptNeg(frame.code));
        }
        if let Some((step, owed)) = self.pending {
            match frame.code {
                // The MTA gave up on the message or the connection.
                code::ABORT | code::QUIT | code::QUIT_NC => self.pending = None,
                _ if !owed => self.pending = None,
                other => {
                    return Err(SessionError::ReplyOwed {
                        step,
                        got: other as char,
                    });
                }
            }
        }
        if frame.code == code::MACRO && self.negotiated.is_some() {
            // The common packet (several per message): stored straight
            // from the payload, as `Command::Macro` below would be.
            let stage = frame.payload.first().copied().unwrap_or(0);
            if Self::opens_transaction(stage) {
                self.transaction_open = true;
            }
            self.macros.clear_after(stage);
            self.macros.set_packet(&frame.payload);
            return Ok(Event::Macros);
        }
        let command = Command::parse(frame)?;
        match command {
            Command::OptNeg(offer) => {
                if !self.optneg_allowed {
                    return Err(SessionError::DuplicateOptNeg);
                }
                let (reply, negotiated) = negotiate(&offer, &self.requirements)?;
                Response::OptNeg(reply).encode(&mut self.out);
                self.negotiated = Some(negotiated);
                self.optneg_allowed = false;
                Ok(Event::Negotiated)
            }
            Command::Macro { stage, pairs } => {
                if Self::opens_transaction(stage) {
                    self.transaction_open = true;
                }
                self.macros.clear_after(stage);
                self.macros.set(stage, pairs);
                Ok(Event::Macros)
            }
            Command::Abort => {
                let was_open = self.message_open;
                self.end_message();
                self.macros.clear_message();
                Ok(Event::Abort {
                    message_was_open: was_open,
                })
            }
            Command::Quit => {
                self.closed = true;
                Ok(Event::Quit)
            }
            Command::QuitNewConnection => {
                let was_open = self.message_open;
                self.end_message();
                self.deferred = None;
                self.macros.clear_all();
                self.optneg_allowed = true;
                Ok(Event::NewConnection {
                    message_was_open: was_open,
                })
            }
            command => Ok(self.step(command)),
        }
    }

    /// Whether macros of `stage` mean an SMTP transaction is under way.
    fn opens_transaction(stage: u8) -> bool {
        matches!(
            stage,
            code::MAIL
                | code::RCPT
                | code::DATA
                | code::HEADER
                | code::EOH
                | code::BODY
                | code::BODYEOB
        )
    }

    fn step(&mut self, command: Command) -> Event {
        let step = Step::from_command_code(command.code()).expect("remaining commands are steps");
        self.optneg_allowed = false;
        self.macros.clear_after(step.command_code());
        let mut new_message = false;
        let mut aborted_previous = false;
        match step {
            Step::Connect | Step::Helo => {
                // A new HELO resets any transaction (RFC 5321 §4.1.4).
                aborted_previous = self.message_open;
                self.end_message();
            }
            Step::Mail => {
                aborted_previous = self.message_open;
                if aborted_previous {
                    self.end_message();
                }
                self.message_open = true;
                self.transaction_open = true;
                new_message = true;
            }
            Step::Unknown => {}
            _ => {
                // Without MAIL (the filter declined it), the first message step opens the message.
                if !self.message_open {
                    self.message_open = true;
                    self.transaction_open = true;
                    new_message = true;
                }
            }
        }
        let neg = self
            .negotiated
            .as_ref()
            .expect("negotiated before any step");
        let owed = !neg.no_reply(step);
        let deliver = neg.delivers(step);
        if deliver {
            self.pending = Some((step, owed));
        } else {
            if owed {
                let verdict = self.deferred().cloned().unwrap_or_default();
                self.encode_verdict(step, verdict);
            }
            if step == Step::EndOfMessage {
                self.end_message();
            }
        }
        Event::Step {
            step,
            command,
            deliver,
            new_message,
            aborted_previous,
        }
    }

    /// Hands the filter's verdict for the pending step to the session, which
    /// writes the reply the MTA expects (or none).
    pub fn reply(&mut self, verdict: Verdict) -> Result<Sent, SessionError> {
        let (step, owed) = self.pending.take().ok_or(SessionError::NoStepPending)?;
        let promised_no_reply = self.promised_no_reply(step);
        let mut sent = Sent::Written;
        let quiet = !owed || promised_no_reply;
        // Skip only means something as the answer itself.
        let verdict = if quiet && verdict == Verdict::Skip {
            Verdict::Continue
        } else {
            verdict
        };
        let verdict = if quiet && verdict != Verdict::Continue {
            self.defer(step, verdict);
            sent = Sent::Deferred;
            Verdict::Continue
        } else {
            verdict
        };
        // A decision kept from a no-reply step answers this one.
        let verdict = match &self.deferred {
            Some((d, _)) if owed && !promised_no_reply => d.clone(),
            _ => verdict,
        };
        if owed {
            if self.encode_verdict(step, verdict) && sent == Sent::Written {
                sent = Sent::Downgraded;
            }
        } else if sent == Sent::Written {
            sent = Sent::NotNeeded;
        }
        if step == Step::EndOfMessage {
            self.end_message();
        }
        Ok(sent)
    }

    /// Writes the reply for `verdict` at `step`; true if it had to be downgraded.
    fn encode_verdict(&mut self, step: Step, verdict: Verdict) -> bool {
        let skip_ok = step == Step::Body
            && self
                .negotiated
                .as_ref()
                .is_some_and(|n| n.protocol.contains(Protocol::SKIP));
        let (response, downgraded) = match verdict {
            Verdict::Continue => (Response::Continue, false),
            Verdict::Accept => (Response::Accept, false),
            Verdict::Discard => (Response::Discard, false),
            Verdict::Skip if skip_ok => (Response::Skip, false),
            Verdict::Skip => (Response::Continue, true),
            Verdict::Reject(Some(r)) if r.class() == 5 => {
                (Response::ReplyCode(r.wire().clone()), false)
            }
            Verdict::Reject(_) => (Response::Reject, false),
            Verdict::Tempfail(Some(r)) if r.class() == 4 => {
                (Response::ReplyCode(r.wire().clone()), false)
            }
            Verdict::Tempfail(_) => (Response::Tempfail, false),
        };
        response.encode(&mut self.out);
        downgraded
    }

    fn check_eom(&self) -> Result<&Negotiated, ModifyError> {
        match (self.pending, self.negotiated.as_ref()) {
            (Some((Step::EndOfMessage, true)), Some(n)) => Ok(n),
            _ => Err(ModifyError::NotAtEndOfMessage),
        }
    }

    /// Writes one modification request. Only while end of message is
    /// pending, only for negotiated actions. A replacement body is split into
    /// chunks of at most 65535 bytes without copying.
    pub fn modify(&mut self, modification: Response) -> Result<(), ModifyError> {
        let neg = self.check_eom()?;
        check_modification(neg.actions, &modification)?;
        if let Response::ReplaceBody(body) = &modification {
            // An empty replacement body is one empty chunk.
            if body.is_empty() {
                modification.encode(&mut self.out);
            }
            let mut offset = 0;
            while offset < body.len() {
                let end = (offset + CHUNK_SIZE).min(body.len());
                Response::ReplaceBody(body.slice(offset..end)).encode(&mut self.out);
                offset = end;
            }
            return Ok(());
        }
        let max = neg.data_size.max_payload();
        let before = self.out.len();
        modification.encode(&mut self.out);
        let len = self.out.len() - before - 5;
        if len > max {
            self.out.truncate(before);
            return Err(ModifyError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Writes a progress packet (`p`), which restarts the MTA's timeout.
    /// Only while end of message is pending.
    pub fn progress(&mut self) -> Result<(), ModifyError> {
        let packet = self.progress_packet()?;
        self.out.extend_from_slice(&packet);
        Ok(())
    }

    /// The progress packet [`MilterSession::progress`] writes, for a
    /// runtime that sends it itself while the filter still holds the
    /// session borrowed (its macros) at end of message. Only while end of
    /// message is pending.
    pub fn progress_packet(&self) -> Result<BytesMut, ModifyError> {
        self.check_eom()?;
        let mut packet = BytesMut::with_capacity(5);
        Response::Progress.encode(&mut packet);
        Ok(packet)
    }
}
