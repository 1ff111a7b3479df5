//! Decisions made where no reply can carry them, transaction tracking from
//! macro packets, and the memory bounds on hostile payloads.

use bytes::{Bytes, BytesMut};
use milter_proto::command::{MAX_ESMTP_ARGS, MAX_MACRO_PAIRS};
use milter_proto::macros::MAX_STAGE_BYTES;
use milter_proto::{
    Command, Event, Frame, FrameDecoder, MacroStore, MilterSession, PayloadError, Protocol,
    Requirements, Response, Sent, SmtpReply, Step, Steps, Verdict,
};

fn frame(code: u8, payload: &[u8]) -> Frame {
    Frame {
        code,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn offer(version: u32, actions: u32, protocol: u32) -> Frame {
    let mut p = Vec::new();
    for w in [version, actions, protocol] {
        p.extend_from_slice(&w.to_be_bytes());
    }
    frame(b'O', &p)
}

fn postfix() -> Frame {
    offer(6, 0x1FF, 0x1F_FFFF)
}

/// Responses written since the last call.
fn take(s: &mut MilterSession) -> Vec<Response> {
    let mut buf = BytesMut::from(s.output());
    s.clear_output();
    let dec = FrameDecoder::new(1 << 20);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        out.push(Response::parse(f).unwrap());
    }
    out
}

fn negotiated(req: Requirements, offer: Frame) -> MilterSession {
    let mut s = MilterSession::new(req);
    assert_eq!(s.receive(offer), Ok(Event::Negotiated));
    take(&mut s);
    s
}

fn reject() -> Verdict {
    Verdict::Reject(Some(SmtpReply::new(550, Some("5.7.1"), "no").unwrap()))
}

fn reject_wire() -> Response {
    Response::ReplyCode(Bytes::from_static(b"550 5.7.1 no"))
}

#[test]
fn a_reject_at_a_no_reply_header_answers_end_of_message_whatever_the_mta_offers() {
    // Postfix v6 grants NR_HDR; Postfix milter_protocol=2 offers no NR bits.
    for offer in [postfix(), offer(2, 0x3F, 0x7F)] {
        let req = Requirements {
            steps: Steps::HEADER,
            no_reply: Steps::HEADER,
            ..Requirements::default()
        };
        let mut s = negotiated(req, offer.clone());
        let granted = s.negotiated().unwrap().no_reply(Step::Header);
        assert!(matches!(
            s.receive(frame(b'L', b"Subject\0spam\0")),
            Ok(Event::Step { deliver: true, .. })
        ));
        assert_eq!(s.reply(reject()), Ok(Sent::Deferred));
        // Without NR the MTA waits: it gets continue, as the filter promised.
        let want: Vec<Response> = if granted {
            vec![]
        } else {
            vec![Response::Continue]
        };
        assert_eq!(take(&mut s), want, "{offer:?}");
        assert_eq!(s.deferred(), Some(&reject()));
        s.receive(frame(b'E', b"")).unwrap();
        assert_eq!(s.reply(Verdict::Continue), Ok(Sent::Written));
        assert_eq!(take(&mut s), vec![reject_wire()], "{offer:?}");
        // The decision belonged to that message only.
        assert_eq!(s.deferred(), None);
    }
}

#[test]
fn a_connect_stage_decision_holds_for_every_later_reply_of_the_connection() {
    let req = Requirements {
        steps: Steps::CONNECT | Steps::MAIL,
        no_reply: Steps::CONNECT,
        ..Requirements::default()
    };
    let mut s = negotiated(req, postfix());
    s.receive(frame(b'C', b"host\0U")).unwrap();
    assert_eq!(s.reply(reject()), Ok(Sent::Deferred));
    assert!(take(&mut s).is_empty());
    for _ in 0..2 {
        s.receive(frame(b'M', b"<a@b>\0")).unwrap();
        s.reply(Verdict::Continue).unwrap();
        assert_eq!(take(&mut s), vec![reject_wire()]);
        s.receive(frame(b'A', b"")).unwrap();
    }
    // A new SMTP connection on the socket starts clean.
    s.receive(frame(b'K', b"")).unwrap();
    s.receive(frame(b'C', b"host\0U")).unwrap();
    s.reply(Verdict::Continue).unwrap();
    s.receive(frame(b'M', b"<a@b>\0")).unwrap();
    s.reply(Verdict::Continue).unwrap();
    assert_eq!(take(&mut s), vec![Response::Continue]);
}

#[test]
fn skip_at_a_no_reply_step_is_not_kept() {
    let req = Requirements {
        steps: Steps::BODY,
        no_reply: Steps::BODY,
        ..Requirements::default()
    };
    let mut s = negotiated(req, postfix());
    s.receive(frame(b'B', b"x")).unwrap();
    assert_eq!(s.reply(Verdict::Skip), Ok(Sent::NotNeeded));
    assert_eq!(s.deferred(), None);
}

#[test]
fn end_of_message_is_answered_even_if_declared_no_reply() {
    let req = Requirements {
        steps: Steps::empty(),
        no_reply: Steps::all(),
        ..Requirements::default()
    };
    let mut s = negotiated(req, postfix());
    s.receive(frame(b'E', b"")).unwrap();
    assert_eq!(s.reply(reject()), Ok(Sent::Written));
    assert_eq!(take(&mut s), vec![reject_wire()]);
}

#[test]
fn macro_packets_open_a_transaction_the_filter_does_not_see() {
    // The filter declined MAIL..DATA: only macros show the transaction.
    let req = Requirements {
        steps: Steps::HEADER,
        ..Requirements::default()
    };
    let mut s = negotiated(req, postfix());
    assert!(!s.in_transaction());
    s.receive(frame(b'D', b"M{mail_addr}\0a@b\0")).unwrap();
    assert!(s.in_transaction());
    assert!(!s.in_message());
    s.receive(frame(b'L', b"Subject\0x\0")).unwrap();
    s.reply(Verdict::Continue).unwrap();
    s.receive(frame(b'E', b"")).unwrap();
    s.reply(Verdict::Continue).unwrap();
    assert!(!s.in_transaction());
    s.receive(frame(b'D', b"R{rcpt_addr}\0c@d\0")).unwrap();
    assert!(s.in_transaction());
    s.receive(frame(b'A', b"")).unwrap();
    assert!(!s.in_transaction());
    // Connect and HELO macros are not a transaction.
    s.receive(frame(b'D', b"Hx\0y\0")).unwrap();
    assert!(!s.in_transaction());
}

#[test]
fn macro_packets_are_bounded() {
    // A megabyte of NULs would be half a million empty pairs.
    let mut payload = vec![b'M'];
    payload.extend(std::iter::repeat_n(0u8, 1 << 20));
    let Ok(Command::Macro { pairs, .. }) = Command::parse(frame(b'D', &payload)) else {
        panic!("macro packets parse leniently");
    };
    assert!(pairs.is_empty(), "empty names are dropped");

    let mut payload = vec![b'M'];
    for i in 0..10_000 {
        payload.extend_from_slice(format!("m{i}\0v\0").as_bytes());
    }
    let Ok(Command::Macro { pairs, .. }) = Command::parse(frame(b'D', &payload)) else {
        panic!();
    };
    assert_eq!(pairs.len(), MAX_MACRO_PAIRS);

    // Values are copied out and capped per stage.
    let big = Bytes::from(vec![b'x'; 40 * 1024]);
    let mut store = MacroStore::new();
    store.set(
        b'M',
        vec![
            (Bytes::from_static(b"a"), big.clone()),
            (Bytes::from_static(b"b"), big.clone()),
        ],
    );
    assert!(store.get("a").is_some());
    assert!(store.get("b").is_none(), "over {MAX_STAGE_BYTES} bytes");
    assert_ne!(
        store.get("a").unwrap().as_ptr(),
        big.as_ptr(),
        "not a view of the packet"
    );
}

#[test]
fn esmtp_argument_lists_are_bounded() {
    let mut payload = b"<a@b>\0".to_vec();
    payload.extend(std::iter::repeat_n(0u8, MAX_ESMTP_ARGS));
    assert!(Command::parse(frame(b'M', &payload)).is_ok());
    payload.extend(std::iter::repeat_n(0u8, 1 << 16));
    assert!(matches!(
        Command::parse(frame(b'R', &payload)),
        Err(PayloadError::Invalid { .. })
    ));
}

#[test]
fn a_declared_length_does_not_reserve_its_memory_up_front() {
    let dec = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    buf.extend_from_slice(b"B");
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert!(buf.capacity() <= 128 * 1024, "{}", buf.capacity());
}

#[test]
fn no_reply_connect_failure_reaches_mail_in_a_real_offer() {
    // The runtime defers a failsafe verdict the same way as a filter decision.
    let req = Requirements {
        steps: Steps::CONNECT | Steps::MAIL,
        no_reply: Steps::CONNECT,
        ..Requirements::default()
    };
    let mut s = negotiated(req, postfix());
    assert!(
        s.negotiated()
            .unwrap()
            .protocol
            .contains(Protocol::NR_CONNECT)
    );
    s.receive(frame(b'C', b"host\0U")).unwrap();
    s.defer(Step::Connect, Verdict::Tempfail(None));
    s.reply(Verdict::Continue).unwrap();
    s.receive(frame(b'M', b"<a@b>\0")).unwrap();
    s.reply(Verdict::Continue).unwrap();
    assert_eq!(take(&mut s), vec![Response::Tempfail]);
}
