//! The MTA side fed arbitrary milter replies: it never panics, never accepts
//! more than it offered, and never takes a modification outside end of
//! message or an answer when none is awaited.

use bytes::Bytes;
use milter_proto::{
    Actions, Command, Dispatch, Frame, MtaEvent, MtaSession, Offer, Protocol, Response, Step,
    Violation,
};
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

fn step_command(i: u8) -> Command {
    match i % 6 {
        0 => Command::Helo(Bytes::from_static(b"h")),
        1 => Command::Mail(vec![Bytes::from_static(b"<a@b>")]),
        2 => Command::Rcpt(vec![Bytes::from_static(b"<c@d>")]),
        3 => Command::Header {
            name: Bytes::from_static(b"Subject"),
            value: Bytes::from_static(b"x"),
        },
        4 => Command::Body(Bytes::from_static(b"body\r\n")),
        _ => Command::EndOfMessage(Bytes::new()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn negotiation_never_grants_more_than_offered(
        offer in offer(),
        version in 0u32..10,
        actions in any::<u32>(),
        protocol in any::<u32>(),
        tail in vec(any::<u8>(), 0..24),
    ) {
        let mut s = MtaSession::new(offer.clone());
        s.start();
        let mut f = optneg(version, actions, protocol);
        let mut p = f.payload.to_vec();
        p.extend_from_slice(&tail);
        f.payload = Bytes::from(p);
        match s.receive(f) {
            Ok(MtaEvent::Negotiated(o)) => {
                prop_assert!((2..=offer.version).contains(&o.version));
                prop_assert!(offer.actions.contains(o.actions));
                prop_assert!(offer.protocol.contains(o.protocol));
                prop_assert!(!s.is_awaiting());
            }
            Ok(other) => prop_assert!(false, "negotiation answered with {:?}", other),
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_replies_are_checked_not_trusted(
        offer in offer(),
        steps in vec((any::<u8>(), vec((code(), vec(any::<u8>(), 0..40)), 0..6)), 1..12),
    ) {
        let mut s = MtaSession::new(offer.clone());
        s.start();
        // A permissive milter: all offered actions, SKIP if offered, nothing declined.
        let granted = s.receive(optneg(offer.version, offer.actions.bits(), offer.protocol.bits() & Protocol::SKIP.bits()));
        prop_assert!(matches!(granted, Ok(MtaEvent::Negotiated(_))));
        'steps: for (i, replies) in steps {
            let cmd = step_command(i);
            let step = Step::from_command_code(cmd.code()).unwrap();
            let d = s.send_step(cmd);
            if d != Dispatch::AwaitAnswer {
                continue;
            }
            for (c, payload) in replies {
                let awaiting = s.is_awaiting();
                match s.receive(frame(c, payload)) {
                    Ok(MtaEvent::Answer(_)) => {
                        prop_assert!(awaiting);
                        prop_assert!(!s.is_awaiting());
                        continue 'steps;
                    }
                    Ok(MtaEvent::Modification(m)) => {
                        prop_assert!(step == Step::EndOfMessage || matches!(m, Response::Quarantine(_)));
                        let needed = m.required_action().unwrap_or(Actions::empty());
                        prop_assert!(s.options().unwrap().actions.contains(needed));
                    }
                    Ok(MtaEvent::Progress) => prop_assert!(awaiting),
                    Ok(MtaEvent::Negotiated(_)) => prop_assert!(false, "renegotiated"),
                    Err(Violation::Unsolicited(_)) => prop_assert!(!awaiting),
                    Err(_) => {
                        // A violation ends the connection in the client.
                        return Ok(());
                    }
                }
            }
            // The milter went quiet: the client's timeout ends the connection.
            return Ok(());
        }
    }
}
