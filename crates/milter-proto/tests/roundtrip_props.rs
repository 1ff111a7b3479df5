//! Property tests: encoding round trips, decoder robustness on arbitrary
//! bytes, and the session's reply discipline under arbitrary traffic.
//!
//! The decoder and session properties generate structured inputs here and
//! judge them with the checks in `crates/fuzz-checks`, the same code the
//! cargo-fuzz targets and the corpus replay use.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use fuzz_checks::frame_decoder;
use fuzz_checks::milter_session::{self, Turn};
use milter_proto::{
    Actions, Command, ConnectAddress, DataSize, Frame, FrameDecoder, MacroRequest, MacroStage,
    OptNeg, Protocol, Requirements, Response, SmtpReply, Step, Steps, Verdict, negotiate,
};

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// A string field: any bytes but NUL.
fn text(max: usize) -> impl Strategy<Value = Bytes> {
    vec(1u8..=255, 0..=max).prop_map(Bytes::from)
}

/// A raw field (body chunks): any bytes at all.
fn raw(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn optneg() -> impl Strategy<Value = OptNeg> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        vec((any::<u32>(), text(24)), 0..4),
    )
        .prop_map(|(version, actions, protocol, macros)| OptNeg {
            version,
            actions: Actions::from_bits_retain(actions),
            protocol: Protocol::from_bits_retain(protocol),
            macros: macros
                .into_iter()
                .map(|(stage, names)| MacroRequest { stage, names })
                .collect(),
        })
}

fn connect_address() -> impl Strategy<Value = ConnectAddress> {
    prop_oneof![
        Just(ConnectAddress::Unknown),
        (any::<u16>(), text(40)).prop_map(|(port, path)| ConnectAddress::Unix { port, path }),
        (any::<u16>(), text(40)).prop_map(|(port, addr)| ConnectAddress::Inet { port, addr }),
        (any::<u16>(), text(40)).prop_map(|(port, addr)| ConnectAddress::Inet6 { port, addr }),
    ]
}

/// A command of one of the steps (everything but `O`, `D`, `A`, `Q`, `K`).
fn step_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (text(40), connect_address())
            .prop_map(|(hostname, address)| Command::Connect { hostname, address }),
        text(40).prop_map(Command::Helo),
        vec(text(40), 1..5).prop_map(Command::Mail),
        vec(text(40), 1..5).prop_map(Command::Rcpt),
        Just(Command::Data),
        (text(20), text(60)).prop_map(|(name, value)| Command::Header { name, value }),
        Just(Command::EndOfHeaders),
        raw(200).prop_map(Command::Body),
        raw(20).prop_map(Command::EndOfMessage),
        text(40).prop_map(Command::Unknown),
    ]
}

fn macro_command() -> impl Strategy<Value = Command> {
    // Pairs with an empty name are dropped by the parser (nothing can look
    // them up), so round trips use named macros.
    (
        1u8..=255,
        vec(
            (text(16).prop_filter("named", |n| !n.is_empty()), text(32)),
            0..6,
        ),
    )
        .prop_map(|(stage, pairs)| Command::Macro { stage, pairs })
}

/// Any command that can be encoded.
fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => optneg().prop_map(Command::OptNeg),
        1 => macro_command(),
        10 => step_command(),
        1 => Just(Command::Abort),
        1 => Just(Command::Quit),
        1 => Just(Command::QuitNewConnection),
    ]
}

/// Any response that can be encoded.
fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        optneg().prop_map(Response::OptNeg),
        Just(Response::Continue),
        Just(Response::Accept),
        Just(Response::Reject),
        Just(Response::Tempfail),
        Just(Response::Discard),
        Just(Response::Skip),
        Just(Response::ConnFail),
        Just(Response::Shutdown),
        Just(Response::Progress),
        text(60).prop_map(Response::ReplyCode),
        (text(20), text(60)).prop_map(|(name, value)| Response::AddHeader { name, value }),
        (any::<u32>(), text(20), text(60))
            .prop_map(|(index, name, value)| Response::InsertHeader { index, name, value }),
        (any::<u32>(), text(20), text(60))
            .prop_map(|(index, name, value)| Response::ChangeHeader { index, name, value }),
        text(40).prop_map(Response::AddRcpt),
        (text(40), proptest::option::of(text(40)))
            .prop_map(|(rcpt, args)| Response::AddRcptPar { rcpt, args }),
        text(40).prop_map(Response::DelRcpt),
        (text(40), proptest::option::of(text(40)))
            .prop_map(|(sender, args)| Response::ChangeFrom { sender, args }),
        raw(200).prop_map(Response::ReplaceBody),
        text(40).prop_map(Response::Quarantine),
        (any::<u32>(), text(40)).prop_map(|(stage, names)| Response::SetSymList { stage, names }),
    ]
}

/// End-of-message modifications with plausible header names, so that most
/// of them are accepted when negotiated; now and then any response at all.
fn modification() -> impl Strategy<Value = Response> {
    let name = "[A-Za-z][A-Za-z0-9-]{0,15}".prop_map(Bytes::from);
    prop_oneof![
        (name.clone(), text(60)).prop_map(|(name, value)| Response::AddHeader { name, value }),
        (0u32..5, name.clone(), text(60)).prop_map(|(index, name, value)| Response::InsertHeader {
            index,
            name,
            value
        }),
        (1u32..5, name, text(60)).prop_map(|(index, name, value)| Response::ChangeHeader {
            index,
            name,
            value
        }),
        text(40).prop_map(Response::AddRcpt),
        (text(40), proptest::option::of(text(40)))
            .prop_map(|(rcpt, args)| Response::AddRcptPar { rcpt, args }),
        text(40).prop_map(Response::DelRcpt),
        (text(40), proptest::option::of(text(40)))
            .prop_map(|(sender, args)| Response::ChangeFrom { sender, args }),
        raw(300).prop_map(Response::ReplaceBody),
        text(40).prop_map(Response::Quarantine),
        response(),
    ]
}

const COMMAND_CODES: &[u8] = b"ODCHMRTLNBEAQKU";
const RESPONSE_CODES: &[u8] = b"Ocartdsf4pyhim+2-ebql";

fn smtp_reply() -> impl Strategy<Value = SmtpReply> {
    (
        select(vec![421u16, 450, 451, 452, 550, 551, 553, 554]),
        any::<bool>(),
        // A leading digit would be read as an enhanced status code.
        "([a-zA-Z%][a-zA-Z0-9 %.]{0,29})?",
    )
        .prop_map(|(code, with_enhanced, text)| {
            let enhanced = format!("{}.7.1", code / 100);
            SmtpReply::new(code, with_enhanced.then_some(enhanced.as_str()), &text)
                .expect("valid reply")
        })
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        3 => Just(Verdict::Continue),
        1 => Just(Verdict::Accept),
        1 => Just(Verdict::Discard),
        1 => Just(Verdict::Skip),
        1 => proptest::option::of(smtp_reply()).prop_map(Verdict::Reject),
        1 => proptest::option::of(smtp_reply()).prop_map(Verdict::Tempfail),
    ]
}

fn requirements() -> impl Strategy<Value = Requirements> {
    let stage = select(MacroStage::ALL.to_vec());
    (
        any::<u16>(),
        any::<u16>(),
        prop_oneof![any::<u32>(), Just(0x1ff)],
        vec((stage, "[a-z{}_ ]{0,16}"), 0..3),
        any::<bool>(),
        any::<bool>(),
        select(vec![DataSize::K64, DataSize::K256, DataSize::M1]),
    )
        .prop_map(
            |(steps, no_reply, actions, macros, leadspc, rcpt_rej, data_size)| Requirements {
                steps: Steps::from_bits_truncate(steps),
                no_reply: Steps::from_bits_truncate(no_reply),
                actions: Actions::from_bits_truncate(actions),
                macros,
                header_leading_space: leadspc,
                rejected_recipients: rcpt_rej,
                data_size,
            },
        )
}

fn offer(version: u32, actions: u32, protocol: u32) -> OptNeg {
    OptNeg {
        version,
        actions: Actions::from_bits_retain(actions),
        protocol: Protocol::from_bits_retain(protocol),
        macros: vec![],
    }
}

/// MTA offers: the real ones (Postfix 6/4/3/2, Sendmail with packet sizes),
/// then anything with a supported version.
fn mta_offer() -> impl Strategy<Value = OptNeg> {
    prop_oneof![
        Just(offer(6, 0x1ff, 0x001f_ffff)),
        Just(offer(6, 0x1ff, 0x301f_ffff)),
        Just(offer(4, 0x3f, 0x37f)),
        Just(offer(3, 0x3f, 0x17f)),
        Just(offer(2, 0x3f, 0x7f)),
        Just(offer(2, 0, 0)),
        (2u32..=9, any::<u32>(), any::<u32>()).prop_map(|(v, a, p)| offer(v, a, p)),
    ]
}

fn encoded(cmd: &Command) -> Frame {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    let bytes = out.freeze();
    Frame {
        code: bytes[4],
        payload: bytes.slice(5..),
    }
}

/// A packet an MTA might send: mostly well-formed steps with their macro
/// packets, sometimes abort, quit, new connection or negotiation, sometimes
/// a command code with an arbitrary payload.
fn mta_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        12 => step_command().prop_map(|c| encoded(&c)),
        4 => macro_command().prop_map(|c| encoded(&c)),
        1 => Just(encoded(&Command::Abort)),
        1 => optneg().prop_map(|o| encoded(&Command::OptNeg(o))),
        1 => mta_offer().prop_map(|o| encoded(&Command::OptNeg(o))),
        1 => Just(encoded(&Command::QuitNewConnection)),
        1 => prop::bool::weighted(0.3).prop_map(|quit| encoded(
            if quit { &Command::Quit } else { &Command::Abort }
        )),
        3 => (select(COMMAND_CODES.to_vec()), raw(40))
            .prop_map(|(code, payload)| Frame { code, payload }),
    ]
}

/// Bytes that look more or less like a packet stream.
fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        select(COMMAND_CODES.to_vec()),
        select(RESPONSE_CODES.to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        // A packet with a correct length.
        4 => (code.clone(), vec(any::<u8>(), 0..64)).prop_map(|(code, payload)| {
            let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
            v.push(code);
            v.extend(payload);
            v
        }),
        // A small length that may or may not match what follows.
        2 => (0u32..100, code, vec(any::<u8>(), 0..64)).prop_map(|(len, code, payload)| {
            let mut v = len.to_be_bytes().to_vec();
            v.push(code);
            v.extend(payload);
            v
        }),
        // A well-formed command.
        4 => command().prop_map(|c| {
            let mut out = BytesMut::new();
            c.encode(&mut out);
            out.to_vec()
        }),
        // Noise, including huge lengths.
        1 => vec(any::<u8>(), 0..32),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Decodes every packet in `buf`, failing on leftovers.
fn decode_all(buf: &[u8]) -> Vec<Frame> {
    let dec = FrameDecoder::new(1 << 24);
    let mut buf = BytesMut::from(buf);
    let mut frames = Vec::new();
    while let Some(f) = dec.decode(&mut buf).expect("output frames decode") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "{} bytes of a partial packet", buf.len());
    frames
}

/// A shared check's outcome as a proptest result (so failures shrink).
fn check(outcome: fuzz_checks::Outcome) -> Result<(), TestCaseError> {
    outcome.map_err(|f| TestCaseError::fail(f.0))
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn command_round_trips(cmd in command()) {
        prop_assert!(cmd.is_encodable());
        let mut out = BytesMut::new();
        cmd.encode(&mut out);
        let declared = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        prop_assert_eq!(declared + 4, out.len());
        prop_assert_eq!(out[4], cmd.code());
        let frames = decode_all(&out);
        prop_assert_eq!(frames.len(), 1);
        let parsed = Command::parse(frames.into_iter().next().unwrap());
        prop_assert_eq!(parsed, Ok(cmd));
    }

    #[test]
    fn response_round_trips(resp in response()) {
        prop_assert!(resp.is_encodable());
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        let declared = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        prop_assert_eq!(declared + 4, out.len());
        prop_assert_eq!(out[4], resp.code());
        let frames = decode_all(&out);
        prop_assert_eq!(frames.len(), 1);
        let parsed = Response::parse(frames.into_iter().next().unwrap());
        prop_assert_eq!(parsed, Ok(resp));
    }

    #[test]
    fn command_sequences_round_trip_through_one_buffer(cmds in vec(command(), 0..10)) {
        let mut out = BytesMut::new();
        for c in &cmds {
            c.encode(&mut out);
        }
        let parsed: Vec<Command> = decode_all(&out)
            .into_iter()
            .map(|f| Command::parse(f).unwrap())
            .collect();
        prop_assert_eq!(parsed, cmds);
    }

    #[test]
    fn response_sequences_round_trip_through_one_buffer(resps in vec(response(), 0..10)) {
        let mut out = BytesMut::new();
        for r in &resps {
            r.encode(&mut out);
        }
        let parsed: Vec<Response> = decode_all(&out)
            .into_iter()
            .map(|f| Response::parse(f).unwrap())
            .collect();
        prop_assert_eq!(parsed, resps);
    }

    /// The fuzz target `frame_decoder`'s checks (crates/fuzz-checks) on
    /// generated packet-like streams cut at arbitrary points.
    #[test]
    fn arbitrary_bytes_never_panic_and_respect_the_limit(
        pieces in vec(stream_piece(), 0..8),
        cuts in vec(any::<usize>(), 0..8),
        limit in prop_oneof![0usize..300, Just(65_535)],
    ) {
        let stream: Vec<u8> = pieces.concat();
        check(frame_decoder::check_stream(&stream, &cuts, limit))?;
    }

    #[test]
    fn arbitrary_payloads_never_panic(code in any::<u8>(), payload in raw(80)) {
        let f = Frame { code, payload };
        let _ = Command::parse(f.clone());
        let _ = Response::parse(f);
    }

    #[test]
    fn negotiation_never_exceeds_the_offer(offer in mta_offer(), req in requirements()) {
        let (reply, neg) = negotiate(&offer, &req).unwrap();
        // Zero words stand for the version 1 defaults, as in libmilter.
        let offered_actions = if offer.actions.is_empty() { Actions::V1_DEFAULT } else { offer.actions };
        let offered_protocol = if offer.protocol.is_empty() { Protocol::V1_DEFAULT } else { offer.protocol };
        prop_assert!(offered_actions.contains(reply.actions), "{:?} vs {:?}", reply.actions, offered_actions);
        prop_assert!(offered_protocol.contains(reply.protocol), "{:?} vs {:?}", reply.protocol, offered_protocol);
        prop_assert_eq!(reply.version, offer.version.min(6));
        prop_assert_eq!(reply.actions, neg.actions);
        prop_assert_eq!(reply.protocol, neg.protocol);
        if !reply.macros.is_empty() {
            prop_assert_eq!(reply.version, 6);
            prop_assert!(reply.actions.contains(Actions::SET_SYMLIST));
        }
        // Never a step declined that the filter wants; never an NR bit for a
        // step the filter answers with something other than continue.
        for step in Step::ALL {
            let wanted = step == Step::EndOfMessage || req.steps.contains(step.as_set());
            if wanted {
                prop_assert!(!reply.protocol.contains(step.no_send_bit()) || step.no_send_bit().is_empty());
                prop_assert!(neg.delivers(step));
            }
            if neg.no_reply(step) {
                prop_assert!(!wanted || req.no_reply.contains(step.as_set()));
                prop_assert!(reply.protocol.contains(step.no_reply_bit()));
            }
        }
        prop_assert!(!neg.no_reply(Step::EndOfMessage));
        prop_assert_eq!(DataSize::from_protocol(reply.protocol), neg.data_size);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fuzz target `milter_session`'s checks (crates/fuzz-checks) on
    /// generated requirements, MTA offers and traffic.
    #[test]
    fn session_keeps_the_reply_discipline(
        req in requirements(),
        offer in mta_offer(),
        traffic in vec(
            (
                mta_frame(),
                verdict(),
                prop::bool::weighted(0.9),
                vec(modification(), 0..3),
                any::<bool>(),
            ),
            0..40,
        ),
    ) {
        let mut frames = vec![(encoded(&Command::OptNeg(offer)), Turn::default())];
        frames.extend(traffic.into_iter().map(|(frame, verdict, reply, mods, progress)| {
            (frame, Turn { verdict, reply, mods, progress })
        }));
        check(milter_session::check_session(&req, &frames))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn reply_texts_built_here_pass_the_wire_check(
        code in select(vec![421u16, 450, 451, 452, 454, 550, 551, 552, 553, 554]),
        with_enhanced in any::<bool>(),
        lines in vec("[a-zA-Z%][a-zA-Z0-9 %.,:;!?'()<>@=+-]{0,60}", 0..4),
    ) {
        let enhanced = format!("{}.7.1", code / 100);
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = SmtpReply::multiline(code, with_enhanced.then_some(enhanced.as_str()), &lines).unwrap();
        prop_assert_eq!(SmtpReply::parse_wire(r.wire()), Ok(r.clone()));
        prop_assert_eq!(r.code(), code);
        // It travels in a `y` packet unchanged.
        let resp = Response::ReplyCode(r.wire().clone());
        prop_assert!(resp.is_encodable());
    }

    #[test]
    fn reply_wire_check_never_panics(wire in vec(any::<u8>(), 0..80), text in "\\PC{0,40}") {
        let _ = SmtpReply::parse_wire(&wire);
        let _ = SmtpReply::parse_wire(text.as_bytes());
        let _ = SmtpReply::new(550, None, &text);
        let _ = SmtpReply::new(550, Some(&text), "x");
    }
}

/// Postfix's check of a `y` reply (milter8.c, SMFIR_REPLYCODE): `[45]dd[ -]`,
/// and a digit right after that must be the code's first digit.
fn postfix_accepts(wire: &[u8]) -> bool {
    wire.len() >= 4
        && matches!(wire[0], b'4' | b'5')
        && wire[1].is_ascii_digit()
        && wire[2].is_ascii_digit()
        && matches!(wire[3], b' ' | b'-')
        && !(wire.len() > 4 && wire[4].is_ascii_digit() && wire[4] != wire[0])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_reply_built_here_is_accepted_by_postfix(
        code in select(vec![421u16, 451, 550, 554]),
        enhanced in proptest::option::of("[0-9]\\.[0-9]{1,3}\\.[0-9]{1,3}"),
        lines in vec("[0-9][0-9a-z .%]{0,12}|[a-z %.]{0,12}", 0..3),
    ) {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        if let Ok(r) = SmtpReply::multiline(code, enhanced.as_deref(), &lines) {
            prop_assert!(postfix_accepts(r.wire()), "{:?}", r.wire());
            for line in r.wire().split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                prop_assert!(postfix_accepts(line), "line {:?}", line);
            }
            prop_assert_eq!(SmtpReply::parse_wire(r.wire()), Ok(r.clone()));
        }
    }
}
