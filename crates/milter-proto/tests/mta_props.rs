//! The MTA side fed arbitrary milter replies: it never panics, never accepts
//! more than it offered, and never takes a modification outside end of
//! message or an answer when none is awaited. The checks are those of the
//! `mta_session` fuzz target (`crates/fuzz-checks`), here on generated replies.

use bytes::Bytes;
use fuzz_checks::mta_session::{self, Move, mta_move};
use milter_proto::{Frame, Offer, Protocol};
use proptest::collection::vec;
use proptest::prelude::*;

fn frame(code: u8, payload: Vec<u8>) -> Frame {
    Frame {
        code,
        payload: Bytes::from(payload),
    }
}

fn optneg(version: u32, actions: u32, protocol: u32) -> Frame {
    let mut p = Vec::new();
    for w in [version, actions, protocol] {
        p.extend_from_slice(&w.to_be_bytes());
    }
    frame(b'O', p)
}

/// Response codes and nearby garbage.
fn code() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(b"+-24abcdefhilmOpqrsty".to_vec()),
        1 => any::<u8>(),
    ]
}

fn offer() -> impl Strategy<Value = Offer> {
    prop_oneof![
        Just(Offer::postfix()),
        Just(Offer::postfix_version(2).unwrap()),
        Just(Offer::postfix_version(4).unwrap()),
    ]
}

/// A shared check's outcome as a proptest result (so failures shrink).
fn check(outcome: fuzz_checks::Outcome) -> Result<(), TestCaseError> {
    outcome.map_err(|f| TestCaseError::fail(f.0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Negotiation replies near the legal ones: accepted exactly when the
    /// oracle in `fuzz_checks::mta_session` says so, granting no more than offered.
    #[test]
    fn negotiation_never_grants_more_than_offered(
        offer in offer(),
        version in 0u32..10,
        actions in any::<u32>(),
        protocol in any::<u32>(),
        tail in vec(any::<u8>(), 0..24),
    ) {
        let mut f = optneg(version, actions, protocol);
        let mut p = f.payload.to_vec();
        p.extend_from_slice(&tail);
        f.payload = Bytes::from(p);
        check(mta_session::check_negotiation(&offer, f).map(|_| ()))?;
    }

    /// Arbitrary replies to a Postfix-like sequence of steps: every illegal
    /// one is reported as a violation, every legal one accepted as what it is.
    #[test]
    fn arbitrary_replies_are_checked_not_trusted(
        offer in offer(),
        steps in vec((any::<u8>(), vec((code(), vec(any::<u8>(), 0..40)), 0..6)), 1..12),
        actions in prop_oneof![Just(u32::MAX), any::<u32>()],
    ) {
        // A milter asking for all or some of the offered actions (so that
        // modifications it did not negotiate come up), SKIP if offered,
        // nothing declined.
        let granted = optneg(
            offer.version,
            offer.actions.bits() & actions,
            offer.protocol.bits() & Protocol::SKIP.bits(),
        );
        let script: Vec<Move> = steps.iter().map(|(i, _)| mta_move(*i)).collect();
        let mut replies = steps
            .into_iter()
            .flat_map(|(_, replies)| replies)
            .map(|(c, payload)| frame(c, payload));
        check(mta_session::check_conversation(&offer, granted, &script, &mut replies))?;
    }
}

/// A step command of every kind a message has, from one byte.
fn step_command(b: u8) -> milter_proto::Command {
    use milter_proto::Command;
    let s = Bytes::from_static;
    match b % 8 {
        0 => Command::Helo(s(b"client.example.net")),
        1 => Command::Mail(vec![s(b"<a@example.net>")]),
        2 => Command::Rcpt(vec![s(b"<b@example.org>")]),
        3 => Command::Data,
        4 => Command::Header {
            name: s(b"Subject"),
            value: s(b"x"),
        },
        5 => Command::EndOfHeaders,
        6 => Command::Body(s(b"body\r\n")),
        _ => Command::EndOfMessage(Bytes::new()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encoding a message once and replaying it (`encode_macros`, the
    /// command's own encoding, `send_encoded_step`) writes the bytes
    /// `send_macros` + `send_step` write, decides the same dispatch, and
    /// leaves the session judging the replies the same way, under any
    /// negotiated flags (steps declined, no-reply, skip).
    #[test]
    fn a_replayed_step_is_a_sent_step(
        offer in offer(),
        protocol in any::<u32>(),
        script in vec((any::<u8>(), code()), 1..30),
    ) {
        use bytes::BytesMut;
        use milter_proto::{MtaSession, Step, encode_macros};
        let granted = optneg(offer.version, 0, protocol & offer.protocol.bits());
        let mut live = MtaSession::new(offer.clone());
        let mut replay = MtaSession::new(offer);
        for s in [&mut live, &mut replay] {
            s.start();
            s.clear_output();
            prop_assert!(s.receive(granted.clone()).is_ok());
        }
        let options = live.options().unwrap().clone();
        let macros = vec![("i".to_owned(), "4ABC".to_owned()), ("j".to_owned(), "mx".to_owned())];
        for (b, reply) in script {
            let command = step_command(b);
            let step = Step::from_command_code(command.code()).unwrap();
            live.send_macros(step, &macros);
            let d1 = live.send_step(command.clone());
            let mut out = BytesMut::new();
            encode_macros(&options, step, &macros, &mut out);
            let d2 = replay.send_encoded_step(step);
            if d2 != milter_proto::Dispatch::NotSent {
                command.encode(&mut out);
            }
            prop_assert_eq!(d1, d2);
            prop_assert_eq!(live.output(), &out[..]);
            live.clear_output();
            if d1 == milter_proto::Dispatch::AwaitAnswer {
                let f = frame(reply, Vec::new());
                let (r1, r2) = (live.receive(f.clone()), replay.receive(f));
                prop_assert_eq!(&r1, &r2);
                if !matches!(r1, Ok(milter_proto::MtaEvent::Answer(_))) {
                    // A violation ends the session; progress or a
                    // modification leaves the answer awaited: both sides
                    // were judged alike up to here.
                    return Ok(());
                }
            }
        }
    }
}
