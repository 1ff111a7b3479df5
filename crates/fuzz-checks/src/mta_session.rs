//! `mta_session`: the MTA side ([`MtaSession`]) fed arbitrary milter replies.
//!
//! Each reply is judged by an oracle written from the protocol rules
//! (independently of `mta.rs`): what is legal while negotiating, at each step,
//! and when nothing is awaited. Invariants:
//! - no panic;
//! - a legal reply is accepted as the right event, an illegal one is reported
//!   as a [`Violation`] (never accepted): a reply when none is awaited, a
//!   modification outside end of message or not negotiated, skip where it is
//!   not allowed, a reply text the MTA would refuse, a second negotiation,
//!   replacement body chunks interleaved with other modifications, a
//!   negotiation granting more than offered;
//! - after an answer nothing is awaited; after progress or a modification the
//!   answer still is.

use bytes::Bytes;
use milter_proto::{
    Actions, Command, Dispatch, Frame, FrameDecoder, MacroStage, MtaEvent, MtaSession, Offer,
    Protocol, Response, SmtpReply, Step, Violation,
};

use crate::{Failure, Input, Outcome, ensure, ensure_eq};

/// The offers a real MTA makes: Postfix with `milter_protocol` 6, 2, 3 and 4.
pub fn offer(i: u8) -> Offer {
    match i % 4 {
        0 => Offer::postfix(),
        n => Offer::postfix_version(u32::from(n) + 1).expect("a Postfix version"),
    }
}

/// What the MTA does next, from one script byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Send a step command (only the steps every version has: the milter's
    /// answers are what is being fuzzed, not the commands).
    Step(Command),
    /// Send `A`.
    Abort,
    /// Send `K`.
    NewConnection,
    /// Read one response while nothing is awaited: it must be refused.
    Unsolicited,
}

/// The `i`-th move of a script byte.
pub fn mta_move(b: u8) -> Move {
    let s = Bytes::from_static;
    match b % 10 {
        0 => Move::Step(Command::Helo(s(b"client.example.net"))),
        1 => Move::Step(Command::Mail(vec![s(b"<a@example.net>")])),
        2 => Move::Step(Command::Rcpt(vec![s(b"<b@example.org>")])),
        3 => Move::Step(Command::Header {
            name: s(b"Subject"),
            value: s(b"x"),
        }),
        4 => Move::Step(Command::Body(s(b"body\r\n"))),
        5 | 6 => Move::Step(Command::EndOfMessage(Bytes::new())),
        7 => Move::Abort,
        8 => Move::NewConnection,
        _ => Move::Unsolicited,
    }
}

/// The fuzz entry. Layout: an offer choice, a script of MTA moves (a length
/// byte, one byte each), then the milter's responses exactly as on the wire,
/// starting with its negotiation reply.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let offer = offer(input.u8());
    let script: Vec<Move> = input.short_bytes().iter().map(|&b| mta_move(b)).collect();
    let dec = FrameDecoder::new(milter_proto::DataSize::M1.max_payload());
    let mut buf = bytes::BytesMut::from(input.rest());
    // Bounded: each call consumes at least a 5-byte header.
    let mut frames = std::iter::from_fn(|| dec.decode(&mut buf).ok().flatten());
    let Some(first) = frames.next() else {
        return Ok(());
    };
    check_conversation(&offer, first, &script, &mut frames)
}

/// What the oracle expects of one response at a step.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Answer,
    Progress,
    Modification,
    Illegal,
}

/// Per-message state the oracle needs.
#[derive(Default)]
struct Oracle {
    /// Replacement body chunks seen at this end of message.
    body: bool,
    /// Another modification came after the body chunks.
    body_closed: bool,
}

impl Oracle {
    fn judge(&mut self, step: Step, granted: Actions, protocol: Protocol, r: &Response) -> Expect {
        match r {
            Response::OptNeg(_) | Response::ConnFail | Response::SetSymList { .. } => {
                Expect::Illegal
            }
            Response::Progress => Expect::Progress,
            Response::Continue
            | Response::Accept
            | Response::Reject
            | Response::Tempfail
            | Response::Discard
            | Response::Shutdown => Expect::Answer,
            Response::Skip => {
                if protocol.contains(Protocol::SKIP)
                    && matches!(step, Step::Rcpt | Step::Header | Step::Body)
                {
                    Expect::Answer
                } else {
                    Expect::Illegal
                }
            }
            Response::ReplyCode(text) => {
                if reply_text_ok(text) {
                    Expect::Answer
                } else {
                    Expect::Illegal
                }
            }
            m => {
                let needed = match m {
                    // libmilter's smfi_insheader needs SMFIF_ADDHDRS, not CHGHDRS:
                    // inserting adds a header.
                    Response::AddHeader { .. } | Response::InsertHeader { .. } => {
                        Actions::ADD_HEADERS
                    }
                    Response::ChangeHeader { .. } => Actions::CHANGE_HEADERS,
                    Response::AddRcpt(_) => Actions::ADD_RCPT,
                    Response::AddRcptPar { .. } => Actions::ADD_RCPT_PAR,
                    Response::DelRcpt(_) => Actions::DELETE_RCPT,
                    Response::ChangeFrom { .. } => Actions::CHANGE_FROM,
                    Response::ReplaceBody(_) => Actions::CHANGE_BODY,
                    Response::Quarantine(_) => Actions::QUARANTINE,
                    _ => return Expect::Illegal,
                };
                if !granted.contains(needed) {
                    return Expect::Illegal;
                }
                if step != Step::EndOfMessage && !matches!(m, Response::Quarantine(_)) {
                    return Expect::Illegal;
                }
                if matches!(m, Response::ReplaceBody(_)) {
                    if self.body_closed {
                        return Expect::Illegal;
                    }
                    self.body = true;
                } else if self.body {
                    self.body_closed = true;
                }
                Expect::Modification
            }
        }
    }
}

/// A `y` text both MTAs accept: lines of `[45]dd` then space or dash, the
/// same code on every line, no NUL, and an enhanced code (if any) of the
/// same class; on top of the MTA side's own check (`SmtpReply::parse_wire`),
/// so a text that check lets through but Postfix would refuse is caught.
fn reply_text_ok(text: &[u8]) -> bool {
    SmtpReply::parse_wire(text).is_ok_and(|r| {
        let wire = r.wire();
        let lines: Vec<&[u8]> = wire.split(|&b| b == b'\n').collect();
        (r.class() == 4 || r.class() == 5)
            && lines.iter().all(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                l.len() >= 3
                    && l[..3] == wire[..3]
                    && (l.len() == 3 || matches!(l[3], b' ' | b'-'))
                    // Postfix: a digit after the code starts an enhanced
                    // code, which must be of the same class.
                    && !(l.len() > 4 && l[4].is_ascii_digit() && l[4] != wire[0])
            })
            && !wire.contains(&0)
    })
}

/// The oracle for a negotiation reply; `Ok` holds what it grants.
fn negotiation_legal(offer: &Offer, r: &Response) -> Option<(Actions, Protocol)> {
    let Response::OptNeg(o) = r else {
        return None;
    };
    let actions = if o.actions.is_empty() {
        Actions::V1_DEFAULT & offer.actions
    } else {
        o.actions
    };
    let ok = (2..=offer.version).contains(&o.version)
        && offer.actions.contains(actions)
        && offer.protocol.contains(o.protocol)
        && (o.macros.is_empty()
            || (o.version >= 6
                && actions.contains(Actions::SET_SYMLIST)
                && o.macros
                    .iter()
                    .all(|m| MacroStage::from_u32(m.stage).is_some())));
    ok.then_some((actions, o.protocol))
}

/// Checks the negotiation reply `reply` to `offer`: accepted exactly when
/// legal, granting exactly what was asked. Returns the session if it was.
pub fn check_negotiation(offer: &Offer, reply: Frame) -> Result<Option<MtaSession>, Failure> {
    let mut s = MtaSession::new(offer.clone());
    s.start();
    let parsed = Response::parse(reply.clone());
    let result = s.receive(reply.clone());
    let legal = match &parsed {
        Ok(r) => negotiation_legal(offer, r),
        Err(_) => None,
    };
    match (result, legal) {
        (Ok(MtaEvent::Negotiated(o)), Some((actions, protocol))) => {
            ensure_eq!(o.actions, actions);
            ensure_eq!(o.protocol, protocol);
            ensure!(
                (2..=offer.version).contains(&o.version),
                "version {}",
                o.version
            );
            ensure!(!s.is_awaiting(), "still awaiting after negotiation");
            Ok(Some(s))
        }
        (Err(v), None) => {
            if reply.code != b'O' {
                ensure_eq!(v, Violation::NotOptNeg(reply.code as char));
            }
            Ok(None)
        }
        (r, legal) => Err(Failure(format!(
            "negotiation reply {parsed:?} to {offer:?}: got {r:?}, oracle says legal = {}",
            legal.is_some()
        ))),
    }
}

/// Negotiates with `negotiation`, then plays `script`, taking the milter's
/// responses from `replies` (the conversation ends when they run out or at
/// the first violation, as the client closes the connection then).
pub fn check_conversation(
    offer: &Offer,
    negotiation: Frame,
    script: &[Move],
    replies: &mut dyn Iterator<Item = Frame>,
) -> Outcome {
    let Some(mut s) = check_negotiation(offer, negotiation)? else {
        return Ok(());
    };
    let opts = s.options().expect("negotiated").clone();
    for m in script {
        let (step, cmd) = match m {
            Move::Step(cmd) => (
                Step::from_command_code(cmd.code()).expect("a step"),
                cmd.clone(),
            ),
            Move::Abort => {
                s.send_abort();
                continue;
            }
            Move::NewConnection => {
                s.send_quit_new_connection();
                continue;
            }
            Move::Unsolicited => {
                let Some(f) = replies.next() else {
                    return Ok(());
                };
                let code = f.code as char;
                let r = s.receive(f);
                ensure_eq!(r, Err(Violation::Unsolicited(code)));
                return Ok(());
            }
        };
        let d = s.send_step(cmd);
        ensure_eq!(d == Dispatch::AwaitAnswer, s.is_awaiting());
        if d != Dispatch::AwaitAnswer {
            ensure!(
                d == Dispatch::NotSent || !opts.waits(step),
                "{step:?} not awaited"
            );
            continue;
        }
        let mut oracle = Oracle::default();
        loop {
            let Some(f) = replies.next() else {
                return Ok(());
            };
            let parsed = Response::parse(f.clone());
            let expect = match &parsed {
                Ok(r) => oracle.judge(step, opts.actions, opts.protocol, r),
                Err(_) => Expect::Illegal,
            };
            let got = s.receive(f);
            match (&got, expect) {
                (Ok(MtaEvent::Answer(_)), Expect::Answer) => {
                    ensure!(!s.is_awaiting(), "awaiting after the answer");
                    break;
                }
                (Ok(MtaEvent::Progress), Expect::Progress) => {}
                (Ok(MtaEvent::Modification(m)), Expect::Modification) => {
                    ensure_eq!(Ok(m), parsed.as_ref());
                }
                (Err(_), Expect::Illegal) => return Ok(()),
                (got, expect) => {
                    return Err(Failure(format!(
                        "{parsed:?} at {step:?} with {:?}/{:?}: got {got:?}, oracle expected {expect:?}",
                        opts.actions, opts.protocol
                    )));
                }
            }
            ensure!(
                s.is_awaiting() || matches!(got, Ok(MtaEvent::Answer(_))),
                "answer lost"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_text_oracle() {
        assert!(reply_text_ok(b"550 5.7.1 Not welcome"));
        assert!(reply_text_ok(b"451-4.3.0 try\r\n451 4.3.0 later"));
        assert!(!reply_text_ok(b"250 2.0.0 ok"), "2xx is not a refusal");
        assert!(!reply_text_ok(b"550 4.7.1 class mismatch"));
        assert!(!reply_text_ok(b"550-a\r\n551 b"), "two codes");
    }

    #[test]
    fn modification_oracle_follows_the_granted_actions() {
        let mut o = Oracle::default();
        let ins = Response::InsertHeader {
            index: 0,
            name: Bytes::from_static(b"X-A"),
            value: Bytes::from_static(b"1"),
        };
        let eom = Step::EndOfMessage;
        let none = Protocol::empty();
        assert_eq!(
            o.judge(eom, Actions::ADD_HEADERS, none, &ins),
            Expect::Modification
        );
        assert_eq!(
            o.judge(eom, Actions::CHANGE_HEADERS, none, &ins),
            Expect::Illegal
        );
        assert_eq!(
            o.judge(Step::Rcpt, Actions::ADD_HEADERS, none, &ins),
            Expect::Illegal
        );
        let q = Response::Quarantine(Bytes::from_static(b"why"));
        assert_eq!(
            o.judge(Step::Rcpt, Actions::QUARANTINE, none, &q),
            Expect::Modification
        );
        let body = Response::ReplaceBody(Bytes::from_static(b"b"));
        assert_eq!(
            o.judge(eom, Actions::all(), none, &body),
            Expect::Modification
        );
        assert_eq!(
            o.judge(eom, Actions::all(), none, &ins),
            Expect::Modification
        );
        assert_eq!(
            o.judge(eom, Actions::all(), none, &body),
            Expect::Illegal,
            "interleaved"
        );
        assert_eq!(
            o.judge(Step::Mail, Actions::all(), none, &Response::Skip),
            Expect::Illegal
        );
        assert_eq!(
            o.judge(Step::Body, Actions::all(), Protocol::SKIP, &Response::Skip),
            Expect::Answer
        );
    }
}
