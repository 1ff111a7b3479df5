//! `milter_session`: arbitrary MTA packet sequences into [`MilterSession`],
//! with a filter that answers (or not) with arbitrary verdicts and
//! modifications.
//!
//! Invariants:
//! - nothing before negotiation but `O` is accepted; negotiation is answered
//!   with exactly the reply [`negotiate`] computes;
//! - a reply only where one is owed: none for `A`, `D`, `Q`, `K`, none for a
//!   step negotiated no-reply, exactly one final reply (last, after any
//!   modifications and progress) for every step the MTA waits for;
//! - modifications only at end of message, only if negotiated, and every
//!   packet written fits the negotiated packet size;
//! - a decision made at a no-reply step answers the next step the MTA waits
//!   for, and a message-scoped one never outlives its message;
//! - macro memory is bounded (at most `MAX_STAGE_BYTES` per stage);
//! - after `A`, no message is open, no reply is pending, no message-stage
//!   macro is left and no message-scoped decision is kept; after `K`,
//!   nothing at all is kept;
//! - after `Q`, every packet is refused as `Closed`.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use milter_proto::macros::MAX_STAGE_BYTES;
use milter_proto::{
    Actions, Command, DataSize, Event, Frame, FrameDecoder, MacroStage, MilterSession, ModifyError,
    OPTNEG_MAX_PAYLOAD, Protocol, Requirements, Response, Sent, SessionError, SmtpReply, Step,
    Steps, Verdict, negotiate,
};

use crate::{Failure, Input, Outcome, ensure, ensure_eq};

/// The number of macro stages a [`milter_proto::MacroStore`] keeps
/// (connect, HELO, MAIL, RCPT, DATA, header, end of headers, body, end of
/// message, unknown).
pub const MACRO_STAGES: usize = 10;

/// The runtime's default packet limit after negotiation (`ServerConfig::max_packet`).
pub const RUNTIME_MAX_PACKET: usize = 1 << 20;

/// What the filter does with one packet, if it is a step delivered to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The verdict handed to [`MilterSession::reply`].
    pub verdict: Verdict,
    /// Whether the filter answers at all (a driver that never answers is a
    /// hung filter; the session must then refuse the next command).
    pub reply: bool,
    /// Modifications requested before the verdict (refused outside end of message).
    pub mods: Vec<Response>,
    /// Send a progress packet first (allowed only at end of message).
    pub progress: bool,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            verdict: Verdict::Continue,
            reply: true,
            mods: Vec::new(),
            progress: false,
        }
    }
}

/// The fuzz entry. Layout: filter requirements (steps, no-reply steps,
/// actions, flags, macro requests), a script of filter decisions (a length
/// byte, then one byte per packet, used cyclically; see [`turn`]), then the
/// MTA's packet stream exactly as on the wire (so a captured Postfix
/// conversation is a valid seed as it is).
pub fn run(data: &[u8]) -> Outcome {
    run_counted(data).map(|_| ())
}

/// What a run went through, so the corpus replay can tell that the seeds
/// reach every branch of the checks (not only that they pass them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Negotiations completed.
    pub negotiated: usize,
    /// Steps answered by the filter.
    pub answered: usize,
    /// Ends of message answered with at least one modification written.
    pub modified_eom: usize,
    /// Decisions kept from a no-reply step.
    pub deferred: usize,
    /// Aborts of an open message.
    pub aborted_open: usize,
    /// `K` packets.
    pub new_connection: usize,
    /// Packets refused as protocol violations.
    pub refused: usize,
}

/// [`run`], returning what the run went through.
pub fn run_counted(data: &[u8]) -> Result<Counts, Failure> {
    let mut input = Input::new(data);
    let req = requirements(&mut input);
    let script = input.short_bytes();
    let stream = input.rest();

    let mut dec = FrameDecoder::new(OPTNEG_MAX_PAYLOAD);
    let mut buf = BytesMut::from(stream);
    let mut checker = Checker::new(req);
    let mut i = 0;
    // Bounded: every iteration consumes at least the 5-byte header of a packet.
    while let Ok(Some(frame)) = dec.decode(&mut buf) {
        checker.feed(frame, &turn(script, i))?;
        if let Some(n) = checker.session.negotiated() {
            dec.set_max_payload(RUNTIME_MAX_PACKET.max(n.data_size.max_payload()));
        }
        i += 1;
    }
    Ok(checker.counts)
}

/// Requirements from 10 bytes and up to two macro requests.
fn requirements(input: &mut Input<'_>) -> Requirements {
    let steps = Steps::from_bits_truncate(input.u16());
    let no_reply = Steps::from_bits_truncate(input.u16());
    let actions = Actions::from_bits_truncate(input.u32());
    let flags = input.u8();
    let macros = (0..input.u8() % 3)
        .map(|_| {
            let stage = MacroStage::ALL[usize::from(input.u8()) % MacroStage::ALL.len()];
            (
                stage,
                String::from_utf8_lossy(input.short_bytes()).into_owned(),
            )
        })
        .collect();
    Requirements {
        steps,
        no_reply,
        actions,
        macros,
        header_leading_space: flags & 1 != 0,
        rejected_recipients: flags & 2 != 0,
        data_size: match (flags >> 2) & 3 {
            0 | 3 => DataSize::K64,
            1 => DataSize::K256,
            _ => DataSize::M1,
        },
    }
}

fn reply_text(code: u16) -> SmtpReply {
    let enhanced = format!("{}.7.1", code / 100);
    SmtpReply::new(code, Some(&enhanced), "fuzz says no").expect("a valid reply")
}

/// The modifications a filter requests before its verdict, by a 3-bit
/// selector: none, valid ones of every kind, a replacement body of more than
/// one chunk followed by a header (interleaving, which the MTA side refuses
/// but the milter side may write), oversized and invalid requests.
fn modifications(selector: u8) -> Vec<Response> {
    let b = Bytes::from_static;
    let header = |name: &'static [u8], value: Bytes| Response::AddHeader {
        name: b(name),
        value,
    };
    match selector & 7 {
        0 => vec![],
        1 => vec![header(b"X-Fuzz", b(b"yes"))],
        2 => vec![
            Response::InsertHeader {
                index: 0,
                name: b(b"X-First"),
                value: b(b"1"),
            },
            Response::ChangeHeader {
                index: 1,
                name: b(b"Subject"),
                value: b(b"changed"),
            },
            Response::ChangeHeader {
                index: 2,
                name: b(b"Received"),
                value: Bytes::new(),
            },
        ],
        3 => vec![
            Response::AddRcpt(b(b"<extra@example.org>")),
            Response::AddRcptPar {
                rcpt: b(b"<extra@example.org>"),
                args: Some(b(b"NOTIFY=NEVER")),
            },
            Response::DelRcpt(b(b"<bob@example.org>")),
            Response::ChangeFrom {
                sender: b(b"<bounce@example.org>"),
                args: None,
            },
        ],
        4 => vec![
            Response::ReplaceBody(b(b"replaced\r\n")),
            Response::Quarantine(b(b"held by fuzz")),
        ],
        5 => vec![
            Response::ReplaceBody(Bytes::from(vec![b'x'; 70_000])),
            header(b"X-After-Body", b(b"1")),
        ],
        6 => vec![
            header(b"Bad:Name", b(b"v")),
            header(b"X-Nul", b(b"a\0b")),
            Response::Quarantine(Bytes::new()),
            Response::Continue,
        ],
        _ => vec![header(b"X-Big", Bytes::from(vec![b'v'; 70_000]))],
    }
}

/// The filter's decision for the `i`-th packet, from script byte
/// `i % len`: bits 0-2 the verdict, bit 3 "does not answer", bit 4 progress,
/// bits 5-7 the modifications (see [`modifications`]). An empty script
/// answers continue.
pub fn turn(script: &[u8], i: usize) -> Turn {
    let Some(&b) = script.get(i % script.len().max(1)) else {
        return Turn::default();
    };
    let verdict = match b & 7 {
        0 | 1 => Verdict::Continue,
        2 => Verdict::Accept,
        3 => Verdict::Discard,
        4 => Verdict::Skip,
        5 => Verdict::Reject(None),
        6 => Verdict::Tempfail(Some(reply_text(451))),
        _ => Verdict::Reject(Some(reply_text(550))),
    };
    Turn {
        verdict,
        reply: b & 8 == 0,
        progress: b & 16 != 0,
        mods: modifications(b >> 5),
    }
}

/// What the session must write for `verdict` at an answered `step`.
pub fn expected_final(verdict: &Verdict, step: Step, skip: bool) -> (Response, Sent) {
    match verdict {
        Verdict::Continue => (Response::Continue, Sent::Written),
        Verdict::Accept => (Response::Accept, Sent::Written),
        Verdict::Discard => (Response::Discard, Sent::Written),
        Verdict::Skip if step == Step::Body && skip => (Response::Skip, Sent::Written),
        Verdict::Skip => (Response::Continue, Sent::Downgraded),
        Verdict::Reject(Some(r)) if r.class() == 5 => {
            (Response::ReplyCode(r.wire().clone()), Sent::Written)
        }
        Verdict::Reject(_) => (Response::Reject, Sent::Written),
        Verdict::Tempfail(Some(r)) if r.class() == 4 => {
            (Response::ReplyCode(r.wire().clone()), Sent::Written)
        }
        Verdict::Tempfail(_) => (Response::Tempfail, Sent::Written),
    }
}

/// Runs `traffic` (the MTA's packets, the first normally `O`, each with the
/// filter's decision) through a session for `req`, checking every invariant.
pub fn check_session(req: &Requirements, traffic: &[(Frame, Turn)]) -> Outcome {
    let mut checker = Checker::new(req.clone());
    for (frame, turn) in traffic {
        checker.feed(frame.clone(), turn)?;
    }
    Ok(())
}

/// A session under test and what the checks remember about its past.
pub struct Checker {
    req: Requirements,
    session: MilterSession,
    quit: bool,
    /// Macro pairs sent at connection stages (connect, HELO, unknown) since
    /// the connection (re)started: all that may survive an abort. A
    /// BTreeSet: a HashSet's per-process random hash keys change its probe
    /// sequence, and with it the coverage libFuzzer sees, run to run.
    connection_macros: BTreeSet<(Bytes, Bytes)>,
    /// Whether the decision kept for later was made at a message step.
    deferred_in_message: Option<bool>,
    /// What the session went through.
    pub counts: Counts,
}

impl Checker {
    /// A fresh session for a filter with `req`.
    pub fn new(req: Requirements) -> Self {
        Checker {
            session: MilterSession::new(req.clone()),
            req,
            quit: false,
            connection_macros: BTreeSet::new(),
            deferred_in_message: None,
            counts: Counts::default(),
        }
    }

    /// The responses the session has written, parsed and size-checked; the
    /// output is cleared.
    fn take_output(&mut self) -> Result<Vec<Response>, Failure> {
        let dec = FrameDecoder::new(1 << 24);
        let mut buf = BytesMut::from(self.session.output());
        self.session.clear_output();
        // Once negotiated, every packet must fit what was agreed.
        let limit = self.session.negotiated().map(|n| n.data_size.max_payload());
        let mut out = Vec::new();
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    if let Some(limit) = limit {
                        ensure!(
                            f.payload.len() <= limit,
                            "'{}' packet of {} bytes, limit {limit}",
                            f.code as char,
                            f.payload.len()
                        );
                    }
                    match Response::parse(f) {
                        Ok(r) => out.push(r),
                        Err(e) => {
                            return Err(Failure(format!(
                                "the session wrote an invalid response: {e}"
                            )));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(Failure(format!("the session wrote bad framing: {e}"))),
            }
        }
        ensure!(
            buf.is_empty(),
            "{} bytes of a partial packet written",
            buf.len()
        );
        Ok(out)
    }

    /// Feeds one packet and, if it is a step delivered to the filter, the
    /// filter's decision.
    pub fn feed(&mut self, frame: Frame, turn: &Turn) -> Outcome {
        let code = frame.code;
        let parsed = Command::parse(frame.clone());
        let awaiting_negotiation = self.session.awaiting_negotiation();
        let pending_before = self.session.pending_step();
        let in_message_before = self.session.in_message();
        let result = self.session.receive(frame);
        let out = self.take_output()?;
        if matches!(code, b'A' | b'D' | b'Q' | b'K') {
            ensure!(out.is_empty(), "'{}' answered with {:?}", code as char, out);
        }
        if self.quit {
            ensure_eq!(result, Err(SessionError::Closed));
            return Ok(());
        }
        if awaiting_negotiation && code != b'O' {
            ensure_eq!(result, Err(SessionError::NotOptNeg(code)));
        }
        match result {
            Ok(Event::Negotiated) => {
                self.counts.negotiated += 1;
                let Ok(Command::OptNeg(offer)) = parsed else {
                    return Err(Failure(format!("negotiated on {parsed:?}")));
                };
                let expected = negotiate(&offer, &self.req).map_err(|e| Failure(e.to_string()))?;
                ensure_eq!(out, vec![Response::OptNeg(expected.0)]);
                ensure_eq!(self.session.negotiated(), Some(&expected.1));
            }
            Ok(Event::Step {
                step,
                deliver,
                command,
                new_message,
                aborted_previous,
            }) => {
                ensure_eq!(command.code(), code);
                match step {
                    Step::Connect | Step::Helo | Step::Mail => {
                        ensure_eq!(aborted_previous, in_message_before, "at {step:?}");
                    }
                    _ => ensure!(!aborted_previous, "{step:?} aborted a message"),
                }
                if step.is_message_step() && step != Step::Mail {
                    ensure_eq!(new_message, !in_message_before, "at {step:?}");
                }
                self.step(step, deliver, out, turn)?;
            }
            Ok(Event::Quit) => {
                ensure!(out.is_empty(), "quit answered");
                self.quit = true;
            }
            Ok(Event::Abort { message_was_open }) => {
                self.counts.aborted_open += usize::from(message_was_open);
                ensure!(out.is_empty(), "abort answered");
                ensure_eq!(message_was_open, in_message_before);
                self.check_reset_after_abort()?;
            }
            Ok(Event::NewConnection { .. }) => {
                self.counts.new_connection += 1;
                ensure!(out.is_empty(), "K answered");
                self.check_reset_after_abort()?;
                ensure_eq!(self.session.deferred(), None);
                ensure_eq!(
                    self.session.macros().iter().count(),
                    0,
                    "macros kept across K"
                );
                self.connection_macros.clear();
                self.deferred_in_message = None;
            }
            Ok(Event::Macros) => {
                ensure!(out.is_empty(), "macros answered");
                if let Ok(Command::Macro {
                    stage: b'C' | b'H' | b'U',
                    pairs,
                }) = parsed
                {
                    self.connection_macros.extend(pairs);
                }
            }
            Err(e) => {
                self.counts.refused += 1;
                ensure!(out.is_empty(), "{e} with output {:?}", out);
                if let SessionError::ReplyOwed { step, .. } = e {
                    ensure_eq!(Some(step), pending_before);
                }
                if matches!(e, SessionError::NotOptNeg(_)) {
                    ensure!(awaiting_negotiation, "NotOptNeg after negotiation");
                }
                ensure!(e != SessionError::Closed, "Closed before QUIT");
            }
        }
        let macro_bytes: usize = self
            .session
            .macros()
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        ensure!(
            macro_bytes <= MACRO_STAGES * MAX_STAGE_BYTES,
            "{macro_bytes} bytes of macros kept"
        );
        if self.session.deferred().is_none() {
            self.deferred_in_message = None;
        }
        Ok(())
    }

    /// Message state after `A` (and `K`): nothing of the message is left.
    fn check_reset_after_abort(&self) -> Outcome {
        let s = &self.session;
        ensure!(
            !s.in_message() && !s.in_transaction(),
            "message still open after abort"
        );
        ensure_eq!(s.pending_step(), None);
        for (n, v) in s.macros().iter() {
            ensure!(
                self.connection_macros.contains(&(n.clone(), v.clone())),
                "macro {n:?}={v:?} of the message kept after abort"
            );
        }
        if self.deferred_in_message == Some(true) {
            ensure_eq!(s.deferred(), None, "a message's decision kept after abort");
        }
        Ok(())
    }

    fn step(&mut self, step: Step, deliver: bool, out: Vec<Response>, turn: &Turn) -> Outcome {
        let s = &mut self.session;
        let neg = s
            .negotiated()
            .expect("steps come after negotiation")
            .clone();
        let owed = !neg.no_reply(step);
        let skip = neg.protocol.contains(Protocol::SKIP);
        ensure_eq!(deliver, neg.delivers(step));
        if !deliver {
            // Answered (or not) by the session itself: continue, or a
            // decision deferred from a no-reply step.
            let expect = match (owed, s.deferred()) {
                (false, _) => vec![],
                (true, None) => vec![Response::Continue],
                (true, Some(d)) => vec![expected_final(d, step, skip).0],
            };
            ensure_eq!(out, expect, "undelivered {step:?}");
            ensure_eq!(s.pending_step(), None);
            return self.after_message_end(step);
        }
        ensure!(
            out.is_empty(),
            "a delivered step was answered early: {out:?}"
        );
        ensure_eq!(s.pending_step(), Some(step));
        if !turn.reply {
            return Ok(());
        }
        let at_eom = step == Step::EndOfMessage;
        for m in &turn.mods {
            let r = s.modify(m.clone());
            if !at_eom {
                ensure_eq!(r, Err(ModifyError::NotAtEndOfMessage));
            } else if let Some(a) = m.required_action()
                && !neg.actions.contains(a)
            {
                ensure_eq!(r, Err(ModifyError::NotNegotiated(a)));
            }
        }
        if turn.progress {
            ensure_eq!(s.progress().is_ok(), at_eom);
        }
        let deferred_before = s.deferred().cloned();
        let promised = s.promised_no_reply(step);
        let verdict = turn.verdict.clone();
        let sent = s
            .reply(verdict.clone())
            .map_err(|e| Failure(e.to_string()))?;
        self.counts.answered += 1;
        let out = self.take_output()?;
        let s = &mut self.session;
        let quiet = !owed || promised;
        let decisive = !matches!(verdict, Verdict::Continue | Verdict::Skip);
        if quiet && decisive {
            // Kept for the next step the MTA waits for; the first one wins.
            ensure_eq!(sent, Sent::Deferred);
            let kept = deferred_before.clone().unwrap_or(verdict.clone());
            if !at_eom {
                ensure_eq!(s.deferred(), Some(&kept));
            }
            if deferred_before.is_none() {
                self.deferred_in_message = Some(step.is_message_step());
            }
            self.counts.deferred += 1;
        }
        if owed && promised {
            // The filter promised not to answer: the MTA gets continue.
            ensure_eq!(out, vec![Response::Continue]);
        } else if owed {
            let finals = out.iter().filter(|r| r.is_final()).count();
            if at_eom && out.iter().any(Response::is_modification) {
                self.counts.modified_eom += 1;
            }
            ensure_eq!(finals, 1, "{out:?}");
            let last = out.last().expect("one final reply");
            ensure!(last.is_final(), "final reply not last: {out:?}");
            ensure!(
                out[..out.len() - 1]
                    .iter()
                    .all(|r| r.is_modification() || *r == Response::Progress),
                "{out:?}"
            );
            let effective = deferred_before.clone().unwrap_or(verdict.clone());
            let (resp, how) = expected_final(&effective, step, skip);
            ensure_eq!(last, &resp);
            if deferred_before.is_none() {
                ensure_eq!(sent, how);
            }
            // Every modification written was negotiated.
            for m in &out[..out.len() - 1] {
                if let Some(a) = m.required_action() {
                    ensure!(neg.actions.contains(a), "{m:?} written without {a:?}");
                }
            }
            if !at_eom {
                ensure!(
                    out.len() == 1,
                    "more than the final reply outside end of message: {out:?}"
                );
            }
        } else {
            ensure!(out.is_empty(), "reply written at a no-reply step: {out:?}");
            if !decisive {
                ensure_eq!(sent, Sent::NotNeeded);
            }
        }
        ensure_eq!(s.pending_step(), None);
        ensure_eq!(s.reply(Verdict::Continue), Err(SessionError::NoStepPending));
        ensure!(
            self.take_output()?.is_empty(),
            "output after a refused reply"
        );
        self.after_message_end(step)
    }

    /// After end of message: the message is over, its decision forgotten.
    fn after_message_end(&mut self, step: Step) -> Outcome {
        if step == Step::EndOfMessage {
            ensure!(
                !self.session.in_message(),
                "message open after end of message"
            );
            if self.deferred_in_message == Some(true) {
                ensure_eq!(
                    self.session.deferred(),
                    None,
                    "a message's decision outlived it"
                );
            }
        }
        Ok(())
    }
}
