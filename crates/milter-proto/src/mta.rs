//! The MTA side of one milter connection, as a state machine with no I/O.
//!
//! It drives a milter the way Postfix does and checks every response against
//! the protocol, so a tool built on it reports a misbehaving milter precisely
//! ("accept at HELO", "add-header not negotiated") instead of hanging or
//! silently desynchronising:
//! - negotiation: the milter's version, actions and protocol flags must be
//!   within the offer; macro lists need version 6 and `SETSYMLIST`;
//! - a step negotiated `NO_*` is not sent; one negotiated `NR_*` is not waited for;
//! - a response must answer the step awaited: progress and quarantine at any
//!   step (as Postfix), modifications only at end of message and only if
//!   negotiated, `skip` only for repeated events (recipients, headers, body)
//!   and only if `SKIP` was negotiated, reply texts must pass Postfix's check;
//! - after `skip`, events of that kind are not sent for the rest of the message;
//! - a replacement body must not be interleaved with other modifications.

use bytes::{Bytes, BytesMut};

use crate::command::{Command, code};
use crate::flags::{Actions, Protocol};
use crate::frame::Frame;
use crate::macros::bare_name;
use crate::optneg::{MacroStage, OptNeg};
use crate::payload::PayloadError;
use crate::reply::{ReplyError, SmtpReply};
use crate::response::Response;
use crate::step::{Step, Steps};

/// What the MTA offers at negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Protocol version (2 to 6).
    pub version: u32,
    /// Actions the milter may request.
    pub actions: Actions,
    /// Protocol flags the milter may request.
    pub protocol: Protocol,
}

impl Offer {
    /// What Postfix 3.x offers with `milter_protocol = 6`.
    pub fn postfix() -> Offer {
        Offer {
            version: 6,
            actions: Actions::from_bits_retain(0x1FF),
            protocol: Protocol::from_bits_retain(0x1F_FFFF),
        }
    }

    /// What Postfix offers with `milter_protocol = 2`, `3`, `4` or `6`
    /// (`milter8.c`): older versions lack the newer steps and flags.
    pub fn postfix_version(version: u32) -> Option<Offer> {
        let protocol = match version {
            2 => 0x7F,
            3 => 0x17F,
            4 => 0x37F,
            6 => 0x1F_FFFF,
            _ => return None,
        };
        Some(Offer {
            version,
            actions: Actions::from_bits_retain(if version == 6 { 0x1FF } else { 0x3F }),
            protocol: Protocol::from_bits_retain(protocol),
        })
    }
}

/// What the milter asked for, once accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterOptions {
    /// The version both sides speak.
    pub version: u32,
    /// Actions the milter may use.
    pub actions: Actions,
    /// Protocol flags in force.
    pub protocol: Protocol,
    /// Macro names the milter asked for, per stage (replacing the MTA's lists).
    pub macros: Vec<(MacroStage, Vec<String>)>,
}

impl MilterOptions {
    /// True if the MTA sends `step` to this milter.
    pub fn sends(&self, step: Step) -> bool {
        if self.protocol.contains(step.no_send_bit()) && !step.no_send_bit().is_empty() {
            return false;
        }
        // As Sendmail and Postfix: no UNKNOWN for version 2, no DATA before 4.
        match step {
            Step::Unknown => self.version > 2,
            Step::Data => self.version > 3,
            _ => true,
        }
    }

    /// True if the MTA waits for a reply to `step`.
    pub fn waits(&self, step: Step) -> bool {
        step.no_reply_bit().is_empty() || !self.protocol.contains(step.no_reply_bit())
    }

    /// The macro names requested for the stage of `step`, if the milter asked.
    pub fn requested_macros(&self, step: Step) -> Option<&[String]> {
        let stage = match step {
            Step::Connect => MacroStage::Connect,
            Step::Helo => MacroStage::Helo,
            Step::Mail => MacroStage::Mail,
            Step::Rcpt => MacroStage::Rcpt,
            Step::Data => MacroStage::Data,
            Step::EndOfHeaders => MacroStage::EndOfHeaders,
            Step::EndOfMessage => MacroStage::EndOfMessage,
            _ => return None,
        };
        self.macros
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, names)| names.as_slice())
    }
}

/// A milter broke the protocol. The connection cannot be trusted after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The first response was not option negotiation.
    #[error("expected the option negotiation reply, got '{0}'")]
    NotOptNeg(char),
    /// Version outside 2..=offered.
    #[error("milter answered protocol version {got}; the MTA offered {offered} (2 at least)")]
    BadVersion {
        /// Offered.
        offered: u32,
        /// Answered.
        got: u32,
    },
    /// Actions not offered.
    #[error("milter asked for actions {0:?}, which were not offered")]
    ActionsNotOffered(Actions),
    /// Protocol flags not offered.
    #[error("milter asked for protocol flags {0:?}, which were not offered")]
    ProtocolNotOffered(Protocol),
    /// A macro list for a stage that does not exist.
    #[error("milter asked for macros at stage {0}, which does not exist")]
    BadMacroStage(u32),
    /// Macro lists without SETSYMLIST or before version 6.
    #[error("milter sent macro lists without SETSYMLIST negotiated at version 6")]
    MacrosNotNegotiated,
    /// A response when none was awaited (for example, a reply to a no-reply step).
    #[error("unsolicited '{0}' response: no reply was awaited")]
    Unsolicited(char),
    /// A second option negotiation.
    #[error("option negotiation repeated")]
    RepeatedOptNeg,
    /// A modification outside end of message.
    #[error("'{code}' modification at {step}; modifications are only allowed at end of message")]
    ModificationOutsideEom {
        /// Step awaited.
        step: Step,
        /// Response code.
        code: char,
    },
    /// A modification whose action was not negotiated.
    #[error("'{code}' modification needs action {action:?}, which was not negotiated")]
    ActionNotNegotiated {
        /// Action.
        action: Actions,
        /// Response code.
        code: char,
    },
    /// Skip where it is not allowed.
    #[error("skip at {step}: {why}")]
    BadSkip {
        /// Step awaited.
        step: Step,
        /// Why not.
        why: &'static str,
    },
    /// A reply text the MTA would refuse.
    #[error("reply text {text:?} is invalid: {error}")]
    BadReplyText {
        /// The text.
        text: String,
        /// Why.
        error: ReplyError,
    },
    /// A reply code whose class does not fit the step (a 2xx/3xx text).
    #[error("connection-failure ('f') reply; MTAs do not support it")]
    ConnFail,
    /// A replacement body interleaved with other modifications.
    #[error("replacement body chunks interleaved with other modifications")]
    BodyInterleaved,
    /// The payload does not match the code.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// The final answer of a milter to one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `c`
    Continue,
    /// `a`
    Accept,
    /// `r`: the MTA's default 5xx.
    Reject,
    /// `t`: the MTA's default 4xx.
    Tempfail,
    /// `d`
    Discard,
    /// `s`
    Skip,
    /// `y`: a 4xx (tempfail) or 5xx (reject) text.
    Reply(SmtpReply),
    /// `4`: the MTA answers 421 and closes the SMTP session.
    Shutdown,
}

impl Answer {
    /// A short name for transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Answer::Continue => "continue",
            Answer::Accept => "accept",
            Answer::Reject => "reject",
            Answer::Tempfail => "tempfail",
            Answer::Discard => "discard",
            Answer::Skip => "skip",
            Answer::Reply(r) if r.class() == 5 => "reject",
            Answer::Reply(_) => "tempfail",
            Answer::Shutdown => "shutdown",
        }
    }
}

/// What a received response means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MtaEvent {
    /// Negotiation is complete.
    Negotiated(MilterOptions),
    /// Still working (`p`); the caller restarts its timer.
    Progress,
    /// A modification request (or quarantine) to apply.
    Modification(Response),
    /// The final answer to the awaited step.
    Answer(Answer),
}

/// Whether a step was sent and whether its answer is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Not sent: negotiated away, skipped, or not in this version.
    NotSent,
    /// Sent; the milter does not reply.
    NoReply,
    /// Sent; read responses until [`MtaEvent::Answer`].
    AwaitAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    OptNeg,
    Step(Step),
}

/// The MTA side of one milter connection.
#[derive(Debug)]
pub struct MtaSession {
    offer: Offer,
    options: Option<MilterOptions>,
    awaiting: Awaiting,
    /// Kinds of events the milter skipped for the rest of this message.
    skipped: Steps,
    /// Replacement body chunks seen at this end of message, and whether
    /// another modification came after them.
    body_chunks: bool,
    body_closed: bool,
    out: BytesMut,
}

impl MtaSession {
    /// A session that will offer `offer`.
    pub fn new(offer: Offer) -> Self {
        MtaSession {
            offer,
            options: None,
            awaiting: Awaiting::Nothing,
            skipped: Steps::empty(),
            body_chunks: false,
            body_closed: false,
            out: BytesMut::with_capacity(256),
        }
    }

    /// Writes the option negotiation packet; read responses until
    /// [`MtaEvent::Negotiated`].
    pub fn start(&mut self) {
        Command::OptNeg(OptNeg {
            version: self.offer.version,
            actions: self.offer.actions,
            protocol: self.offer.protocol,
            macros: Vec::new(),
        })
        .encode(&mut self.out);
        self.awaiting = Awaiting::OptNeg;
    }

    /// The negotiated options.
    pub fn options(&self) -> Option<&MilterOptions> {
        self.options.as_ref()
    }

    /// True while a response is awaited.
    pub fn is_awaiting(&self) -> bool {
        self.awaiting != Awaiting::Nothing
    }

    /// Bytes to write to the milter.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output once written.
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Whether `step` would be sent now (negotiated, not skipped).
    pub fn would_send(&self, step: Step) -> bool {
        self.options.as_ref().is_some_and(|o| o.sends(step))
            && !self.skipped.contains(step.as_set())
    }

    /// Writes the macros for `step`, keeping only the names the milter asked
    /// for at that stage if it asked. Postfix sends macros even for a step it
    /// does not send. Pairs with empty values are left out, as Postfix does.
    pub fn send_macros(&mut self, step: Step, macros: &[(String, String)]) {
        if let Some(opts) = self.options.as_ref() {
            encode_macros(opts, step, macros, &mut self.out);
        }
    }

    /// Writes a step command, unless the milter negotiated it away or skipped
    /// it. A body chunk must be at most 65535 bytes (see [`crate::CHUNK_SIZE`]).
    ///
    /// # Panics
    /// If `command` is not a step, or a response is still awaited.
    pub fn send_step(&mut self, command: Command) -> Dispatch {
        let step = Step::from_command_code(command.code()).expect("a step command");
        let dispatch = self.send_encoded_step(step);
        if dispatch != Dispatch::NotSent {
            command.encode(&mut self.out);
        }
        dispatch
    }

    /// The state change of [`send_step`](Self::send_step) without the
    /// writing, for a caller that writes `step`'s command itself from bytes
    /// it encoded earlier with [`Command::encode`] (a pre-encoded message
    /// replayed many times). Returns what `send_step` would: when it is
    /// [`Dispatch::NotSent`] the caller must not write the command; when it
    /// is [`Dispatch::AwaitAnswer`] every response is then checked by
    /// [`receive`](Self::receive) exactly as after `send_step`.
    ///
    /// # Panics
    /// If a response is still awaited.
    pub fn send_encoded_step(&mut self, step: Step) -> Dispatch {
        assert!(!self.is_awaiting(), "a response is still awaited");
        if step == Step::Mail {
            self.new_message();
        }
        if !self.would_send(step) {
            return Dispatch::NotSent;
        }
        let waits = self.options.as_ref().expect("negotiated").waits(step);
        if waits {
            if step == Step::EndOfMessage {
                self.body_chunks = false;
                self.body_closed = false;
            }
            self.awaiting = Awaiting::Step(step);
            Dispatch::AwaitAnswer
        } else {
            Dispatch::NoReply
        }
    }

    /// Writes `A`: the message ends without end of message. No reply.
    pub fn send_abort(&mut self) {
        Command::Abort.encode(&mut self.out);
        self.new_message();
    }

    /// Writes `Q`. No reply.
    pub fn send_quit(&mut self) {
        Command::Quit.encode(&mut self.out);
    }

    /// Writes `K`: a new SMTP connection follows. No reply.
    pub fn send_quit_new_connection(&mut self) {
        Command::QuitNewConnection.encode(&mut self.out);
        self.new_message();
    }

    fn new_message(&mut self) {
        self.skipped = Steps::empty();
    }

    /// Checks one response from the milter.
    pub fn receive(&mut self, frame: Frame) -> Result<MtaEvent, Violation> {
        let code = frame.code as char;
        let response = match self.awaiting {
            Awaiting::Nothing => return Err(Violation::Unsolicited(code)),
            Awaiting::OptNeg if frame.code != code::OPTNEG => {
                return Err(Violation::NotOptNeg(code));
            }
            _ => Response::parse(frame)?,
        };
        let step = match self.awaiting {
            Awaiting::OptNeg => {
                let Response::OptNeg(o) = response else {
                    unreachable!("checked above")
                };
                let options = self.check_optneg(o)?;
                self.options = Some(options.clone());
                self.awaiting = Awaiting::Nothing;
                return Ok(MtaEvent::Negotiated(options));
            }
            Awaiting::Step(step) => step,
            Awaiting::Nothing => unreachable!("checked above"),
        };
        let options = self.options.as_ref().expect("negotiated");
        let answer = match response {
            Response::OptNeg(_) => return Err(Violation::RepeatedOptNeg),
            Response::Progress => return Ok(MtaEvent::Progress),
            Response::ConnFail => return Err(Violation::ConnFail),
            Response::Continue => Answer::Continue,
            Response::Accept => Answer::Accept,
            Response::Reject => Answer::Reject,
            Response::Tempfail => Answer::Tempfail,
            Response::Discard => Answer::Discard,
            Response::Shutdown => Answer::Shutdown,
            Response::Skip => {
                if !options.protocol.contains(Protocol::SKIP) {
                    return Err(Violation::BadSkip {
                        step,
                        why: "SKIP was not negotiated",
                    });
                }
                if !matches!(step, Step::Rcpt | Step::Header | Step::Body) {
                    return Err(Violation::BadSkip {
                        step,
                        why: "only recipients, headers and body chunks can be skipped",
                    });
                }
                self.skipped |= step.as_set();
                Answer::Skip
            }
            Response::ReplyCode(text) => match SmtpReply::parse_wire(&text) {
                Ok(r) => Answer::Reply(r),
                Err(error) => {
                    return Err(Violation::BadReplyText {
                        text: String::from_utf8_lossy(&text).into_owned(),
                        error,
                    });
                }
            },
            Response::SetSymList { .. } => return Err(Violation::MacrosNotNegotiated),
            m => {
                let action = m
                    .required_action()
                    .expect("remaining responses are modifications");
                if !options.actions.contains(action) {
                    return Err(Violation::ActionNotNegotiated { action, code });
                }
                // Quarantine is honoured at any step (Postfix); the rest only at end of message.
                if step != Step::EndOfMessage && !matches!(m, Response::Quarantine(_)) {
                    return Err(Violation::ModificationOutsideEom { step, code });
                }
                if matches!(m, Response::ReplaceBody(_)) {
                    if self.body_closed {
                        return Err(Violation::BodyInterleaved);
                    }
                    self.body_chunks = true;
                } else if self.body_chunks {
                    self.body_closed = true;
                }
                return Ok(MtaEvent::Modification(m));
            }
        };
        self.awaiting = Awaiting::Nothing;
        Ok(MtaEvent::Answer(answer))
    }

    fn check_optneg(&self, o: OptNeg) -> Result<MilterOptions, Violation> {
        if o.version < 2 || o.version > self.offer.version {
            return Err(Violation::BadVersion {
                offered: self.offer.version,
                got: o.version,
            });
        }
        // Zero words mean the version 1 defaults, as libmilter answers them.
        let actions = if o.actions.is_empty() {
            Actions::V1_DEFAULT & self.offer.actions
        } else {
            o.actions
        };
        let extra = actions - self.offer.actions;
        if !extra.is_empty() {
            return Err(Violation::ActionsNotOffered(extra));
        }
        let extra = o.protocol - self.offer.protocol;
        if !extra.is_empty() {
            return Err(Violation::ProtocolNotOffered(extra));
        }
        let mut macros = Vec::new();
        if !o.macros.is_empty() {
            if o.version < 6 || !actions.contains(Actions::SET_SYMLIST) {
                return Err(Violation::MacrosNotNegotiated);
            }
            for m in o.macros {
                let stage =
                    MacroStage::from_u32(m.stage).ok_or(Violation::BadMacroStage(m.stage))?;
                let names = String::from_utf8_lossy(&m.names)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                macros.push((stage, names));
            }
        }
        Ok(MilterOptions {
            version: o.version,
            actions,
            protocol: o.protocol,
            macros,
        })
    }
}

/// Encodes the macro packet for `step` as [`MtaSession::send_macros`] writes
/// it under the negotiated `opts`: only the names the milter asked for at
/// that stage (if it asked), pairs with empty values left out. Public so a
/// caller can pre-encode a message once and replay it with
/// [`MtaSession::send_encoded_step`].
///
/// # Panics
/// If a name or value contains a NUL byte (the protocol cannot carry it).
pub fn encode_macros(
    opts: &MilterOptions,
    step: Step,
    macros: &[(String, String)],
    out: &mut BytesMut,
) {
    let wanted = opts.requested_macros(step);
    let pairs: Vec<(Bytes, Bytes)> = macros
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .filter(|(n, _)| {
            wanted.is_none_or(|w| {
                w.iter()
                    .any(|x| bare_name(x.as_bytes()) == bare_name(n.as_bytes()))
            })
        })
        .map(|(n, v)| {
            (
                Bytes::copy_from_slice(n.as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect();
    Command::Macro {
        stage: step.command_code(),
        pairs,
    }
    .encode(out);
}
