//! Scenario tests of `MilterSession`, fed packet sequences shaped like real
//! Postfix (and Sendmail) traffic. Packets are built by hand from their code
//! and payload; expected replies are hand-written bytes.

use bytes::{Bytes, BytesMut};
use milter_proto::{
    Actions, CHUNK_SIZE, Command, ConnectAddress, DataSize, Event, Frame, FrameDecoder, FrameError,
    MacroStage, MilterSession, ModifyError, OPTNEG_MAX_PAYLOAD, OptNeg, Protocol, Requirements,
    Response, Sent, SessionError, SmtpReply, Step, Steps, Verdict, classify_probe,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------
// Hand-built traffic
// ---------------------------------------------------------------------------

/// Postfix 3.x offer: version 6, actions 0x1FF, protocol 0x1FFFFF.
const POSTFIX_OFFER: &[u8] = b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff";
/// Sendmail 8.18 offer: as Postfix's plus SMFIP_MDS_256K | SMFIP_MDS_1M.
const SENDMAIL_OFFER: &[u8] = b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x30\x1f\xff\xff";
/// Postfix with milter_protocol = 2, 3, 4.
const V2_OFFER: &[u8] = b"\x00\x00\x00\x0dO\x00\x00\x00\x02\x00\x00\x00\x3f\x00\x00\x00\x7f";
const V3_OFFER: &[u8] = b"\x00\x00\x00\x0dO\x00\x00\x00\x03\x00\x00\x00\x3f\x00\x00\x01\x7f";
const V4_OFFER: &[u8] = b"\x00\x00\x00\x0dO\x00\x00\x00\x04\x00\x00\x00\x3f\x00\x00\x03\x7f";

const CONTINUE: &[u8] = b"\x00\x00\x00\x01c";
const ACCEPT: &[u8] = b"\x00\x00\x00\x01a";
const REJECT: &[u8] = b"\x00\x00\x00\x01r";
const TEMPFAIL: &[u8] = b"\x00\x00\x00\x01t";
const DISCARD: &[u8] = b"\x00\x00\x00\x01d";
const SKIP: &[u8] = b"\x00\x00\x00\x01s";
const PROGRESS: &[u8] = b"\x00\x00\x00\x01p";

/// One packet: the length prefix (code byte included), the code, the payload.
fn packet(code: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    v.push(code);
    v.extend_from_slice(payload);
    v
}

/// A Postfix SMTP transaction: every command preceded by its macro packet,
/// the header and body ones empty, as Postfix sends them by default.
fn postfix_transaction() -> Vec<Vec<u8>> {
    vec![
        packet(
            b'D',
            b"Cj\0mx.example.org\0{daemon_name}\0smtpd\0v\0Postfix 3.8.6\0",
        ),
        packet(b'C', b"client.example.net\x004\xd4\x31198.51.100.7\0"),
        packet(b'D', b"H"),
        packet(b'H', b"client.example.net\0"),
        packet(
            b'D',
            b"M{mail_addr}\0alice@example.com\0{mail_host}\0example.com\0",
        ),
        packet(b'M', b"<alice@example.com>\0SIZE=1234\0BODY=8BITMIME\0"),
        packet(b'D', b"R{rcpt_addr}\0bob@example.org\0"),
        packet(b'R', b"<bob@example.org>\0"),
        packet(b'D', b"R{rcpt_addr}\0carol@example.org\0"),
        packet(b'R', b"<carol@example.org>\0NOTIFY=NEVER\0"),
        packet(b'D', b"Ti\0ABC123DEF\0"),
        packet(b'T', b""),
        packet(b'D', b"L"),
        packet(b'L', b"From\0Alice <alice@example.com>\0"),
        packet(b'D', b"L"),
        packet(b'L', b"Subject\0hello\0"),
        packet(b'D', b"Ni\0ABC123DEF\0"),
        packet(b'N', b""),
        packet(b'D', b"B"),
        packet(b'B', b"Hello Bob,\r\n"),
        packet(b'D', b"B"),
        packet(b'B', b"bye\r\n"),
        packet(b'D', b"Ei\0ABC123DEF\0"),
        packet(b'E', b""),
    ]
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

/// A session plus the bookkeeping of a test MTA.
struct Mta {
    s: MilterSession,
}

impl Mta {
    fn new(req: Requirements) -> Self {
        Mta {
            s: MilterSession::new(req),
        }
    }

    /// A session negotiated with `offer`, its reply taken.
    fn negotiated(req: Requirements, offer: &[u8]) -> Self {
        let mut m = Mta::new(req);
        assert_eq!(m.send(offer), Ok(Event::Negotiated));
        let reply = m.take();
        assert_eq!(reply[4], b'O', "negotiation reply: {reply:?}");
        m
    }

    /// Sends one hand-built packet.
    fn send(&mut self, wire: &[u8]) -> Result<Event, SessionError> {
        let dec = FrameDecoder::new(CHUNK_SIZE);
        let mut buf = BytesMut::from(wire);
        let frame = dec.decode(&mut buf).unwrap().expect("a whole packet");
        assert!(buf.is_empty(), "test packet has trailing bytes");
        self.s.receive(frame)
    }

    fn cmd(&mut self, code: u8, payload: &[u8]) -> Result<Event, SessionError> {
        self.send(&packet(code, payload))
    }

    /// Sends a step command and returns (step, deliver, new_message, aborted_previous).
    fn step(&mut self, code: u8, payload: &[u8]) -> (Step, bool, bool, bool) {
        match self.cmd(code, payload) {
            Ok(Event::Step {
                step,
                command,
                deliver,
                new_message,
                aborted_previous,
            }) => {
                assert_eq!(command.code(), code);
                (step, deliver, new_message, aborted_previous)
            }
            other => panic!("'{}' gave {other:?}", code as char),
        }
    }

    /// The bytes written so far; the output is cleared.
    fn take(&mut self) -> Vec<u8> {
        let out = self.s.output().to_vec();
        self.s.clear_output();
        out
    }

    /// The responses written so far, parsed; the output is cleared.
    fn responses(&mut self) -> Vec<Response> {
        let dec = FrameDecoder::new(1 << 24);
        let mut buf = BytesMut::from(&self.take()[..]);
        let mut out = Vec::new();
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            out.push(Response::parse(f).unwrap());
        }
        assert!(buf.is_empty());
        out
    }

    fn macro_value(&self, name: &str) -> Option<Vec<u8>> {
        self.s.macros().get(name).map(|v| v.to_vec())
    }

    /// Goes through HELO, MAIL and one RCPT, answering `continue`.
    fn open_message(&mut self) {
        for p in &postfix_transaction()[..8] {
            match self.send(p).unwrap() {
                Event::Step { deliver: true, .. } => {
                    self.s.reply(Verdict::Continue).unwrap();
                }
                Event::Step { .. } | Event::Macros => {}
                other => panic!("{other:?}"),
            }
        }
        self.take();
    }

    /// Goes through the whole transaction up to (and delivering) end of message.
    fn reach_end_of_message(&mut self) {
        let t = postfix_transaction();
        for (i, p) in t.iter().enumerate() {
            let last = i + 1 == t.len();
            match self.send(p).unwrap() {
                Event::Step { deliver: true, .. } if !last => {
                    self.s.reply(Verdict::Continue).unwrap();
                }
                Event::Step { step, deliver, .. } if last => {
                    assert_eq!((step, deliver), (Step::EndOfMessage, true));
                }
                Event::Step { .. } | Event::Macros => {}
                other => panic!("{other:?}"),
            }
        }
        self.take();
        assert_eq!(self.s.pending_step(), Some(Step::EndOfMessage));
    }
}

/// A filter that wants connect, HELO, MAIL, RCPT, headers (never answering
/// them) and the body, may add and change headers and add recipients with
/// parameters, and asks for two macro lists.
fn req_a() -> Requirements {
    Requirements {
        steps: Steps::CONNECT
            | Steps::HELO
            | Steps::MAIL
            | Steps::RCPT
            | Steps::HEADER
            | Steps::BODY,
        no_reply: Steps::HEADER,
        actions: Actions::ADD_HEADERS | Actions::CHANGE_HEADERS | Actions::ADD_RCPT_PAR,
        macros: vec![
            (MacroStage::Connect, "j {daemon_name}".into()),
            (MacroStage::Mail, "{auth_authen} i".into()),
        ],
        ..Requirements::default()
    }
}

/// A filter that may do every modification.
fn req_modify() -> Requirements {
    Requirements {
        actions: Actions::all() - Actions::SET_SYMLIST,
        ..Requirements::default()
    }
}

// ---------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------

#[test]
fn optneg_reply_bytes_for_postfix_offer() {
    // Declined (offered NO_*): DATA 0x200, EOH 0x40, UNKNOWN 0x100; headers
    // not answered: NR_HDR 0x80; body wanted: SKIP 0x400. Protocol 0x7C0.
    // Actions: ADDHDRS | CHGHDRS | ADDRCPT_PAR | SETSYMLIST = 0x191.
    // Then [stage 0, "j {daemon_name}"] [stage 2, "{auth_authen} i"].
    let mut m = Mta::new(req_a());
    assert!(m.s.awaiting_negotiation());
    assert_eq!(m.send(POSTFIX_OFFER), Ok(Event::Negotiated));
    assert!(!m.s.awaiting_negotiation());
    assert_eq!(
        m.take(),
        b"\x00\x00\x00\x35O\x00\x00\x00\x06\x00\x00\x01\x91\x00\x00\x07\xc0\
          \x00\x00\x00\x00j {daemon_name}\0\
          \x00\x00\x00\x02{auth_authen} i\0"
    );
    let neg = m.s.negotiated().unwrap();
    assert_eq!(neg.version, 6);
    assert!(neg.no_reply(Step::Header));
    assert!(!neg.no_reply(Step::Rcpt));
    assert!(neg.delivers(Step::EndOfMessage));
    assert!(!neg.delivers(Step::Data));
    assert!(neg.shortfalls.is_empty(), "{:?}", neg.shortfalls);
}

#[test]
fn optneg_reply_bytes_for_default_requirements() {
    // Every step, answered; no modifications: only SKIP is asked for.
    let mut m = Mta::new(Requirements::default());
    assert_eq!(m.send(POSTFIX_OFFER), Ok(Event::Negotiated));
    assert_eq!(
        m.take(),
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x04\x00"
    );
}

#[test]
fn version_2_downgrade_never_exceeds_the_offer() {
    // Postfix milter_protocol = 2: actions 0x3F, protocol 0x7F. The filter
    // wants RCPT, headers (unanswered) and body, CHGFROM and ADDRCPT_PAR
    // (v6 only), macros (v6 only), HDR_LEADSPC, RCPT_REJ and 1 MiB packets.
    // Only NOCONNECT|NOHELO|NOMAIL|NOEOH = 0x47 and ADDHDRS can be asked.
    let req = Requirements {
        steps: Steps::RCPT | Steps::HEADER | Steps::BODY,
        no_reply: Steps::HEADER,
        actions: Actions::ADD_HEADERS | Actions::CHANGE_FROM | Actions::ADD_RCPT_PAR,
        macros: vec![(MacroStage::Mail, "i".into())],
        header_leading_space: true,
        rejected_recipients: true,
        data_size: DataSize::M1,
    };
    let mut m = Mta::new(req);
    assert_eq!(m.send(V2_OFFER), Ok(Event::Negotiated));
    assert_eq!(
        m.take(),
        b"\x00\x00\x00\x0dO\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x47"
    );
    let neg = m.s.negotiated().unwrap().clone();
    assert_eq!(neg.version, 2);
    assert_eq!(neg.data_size, DataSize::K64);
    assert!(neg.macros.is_empty());
    assert!(neg.shortfalls.len() >= 4, "{:?}", neg.shortfalls);
    // Headers must be answered after all: NR_HDR does not exist in v2.
    assert!(!neg.no_reply(Step::Header));
    assert_eq!(
        m.step(b'L', b"Subject\0x\0"),
        (Step::Header, true, true, false)
    );
    assert!(m.take().is_empty());
    assert_eq!(m.s.reply(Verdict::Continue), Ok(Sent::Written));
    assert_eq!(m.take(), CONTINUE);
    // A step declined without a NO_* bit (DATA is v4) is answered by the session.
    assert_eq!(m.step(b'T', b""), (Step::Data, false, false, false));
    assert_eq!(m.take(), CONTINUE);
    // CHGFROM was not granted.
    assert_eq!(m.step(b'E', b""), (Step::EndOfMessage, true, false, false));
    assert_eq!(
        m.s.modify(Response::ChangeFrom {
            sender: b(b"<x@y>"),
            args: None
        }),
        Err(ModifyError::NotNegotiated(Actions::CHANGE_FROM))
    );
}

#[test]
fn every_old_version_downgrade_stays_inside_the_offer() {
    let greedy = Requirements {
        steps: Steps::RCPT | Steps::HEADER | Steps::END_OF_HEADERS | Steps::BODY,
        no_reply: Steps::all(),
        actions: Actions::all(),
        macros: vec![(MacroStage::Rcpt, "{rcpt_addr}".into())],
        header_leading_space: true,
        rejected_recipients: true,
        data_size: DataSize::K256,
    };
    let offers: [(&[u8], u32, u32, u32); 4] = [
        (V2_OFFER, 2, 0x3f, 0x7f),
        (V3_OFFER, 3, 0x3f, 0x17f),
        (V4_OFFER, 4, 0x3f, 0x37f),
        // A version 2 MTA sending zero words: version 1 defaults apply.
        (
            b"\x00\x00\x00\x0dO\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00",
            2,
            0x0f,
            0x3f,
        ),
    ];
    for req in [greedy, Requirements::default(), req_a(), req_modify()] {
        for (offer, version, actions, protocol) in offers {
            let mut m = Mta::new(req.clone());
            assert_eq!(m.send(offer), Ok(Event::Negotiated));
            let out = m.take();
            // No macro lists: exactly 12 bytes of payload.
            assert_eq!(out.len(), 17, "{out:?}");
            let Response::OptNeg(reply) = m_parse(&out) else {
                panic!()
            };
            assert_eq!(reply.version, version);
            assert_eq!(
                reply.actions.bits() & !actions,
                0,
                "v{version}: actions {:#x} outside the offer {actions:#x}",
                reply.actions.bits()
            );
            assert_eq!(
                reply.protocol.bits() & !protocol,
                0,
                "v{version}: protocol {:#x} outside the offer {protocol:#x}",
                reply.protocol.bits()
            );
            assert!(reply.macros.is_empty());
        }
    }
}

fn m_parse(wire: &[u8]) -> Response {
    let mut buf = BytesMut::from(wire);
    let f = FrameDecoder::new(CHUNK_SIZE)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    Response::parse(f).unwrap()
}

#[test]
fn v4_offer_uses_nodata_and_nounknown() {
    let req = Requirements {
        steps: Steps::RCPT | Steps::HEADER | Steps::BODY,
        no_reply: Steps::HEADER,
        ..Requirements::default()
    };
    let mut m = Mta::new(req);
    assert_eq!(m.send(V4_OFFER), Ok(Event::Negotiated));
    // NOCONNECT|NOHELO|NOMAIL|NOEOH|NOUNKNOWN|NODATA = 0x347; no NR_HDR in v4.
    assert_eq!(
        m.take(),
        b"\x00\x00\x00\x0dO\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x03\x47"
    );
}

#[test]
fn packet_size_bits_are_negotiated_when_offered() -> TestResult {
    for (size, bits) in [
        (DataSize::K64, 0u32),
        (DataSize::K256, 0x1000_0000),
        (DataSize::M1, 0x2000_0000),
    ] {
        let req = Requirements {
            data_size: size,
            ..req_modify()
        };
        let mut m = Mta::new(req.clone());
        assert_eq!(m.send(SENDMAIL_OFFER), Ok(Event::Negotiated));
        let Response::OptNeg(reply) = m_parse(&m.take()) else {
            panic!()
        };
        assert_eq!(reply.protocol.bits() & 0x3000_0000, bits);
        assert_eq!(m.s.negotiated().unwrap().data_size, size);

        // Not offered by Postfix: 64 KiB, no bit, a shortfall logged.
        let mut p = Mta::new(req);
        assert_eq!(p.send(POSTFIX_OFFER), Ok(Event::Negotiated));
        let Response::OptNeg(reply) = m_parse(&p.take()) else {
            panic!()
        };
        assert_eq!(reply.protocol & Protocol::MDS_MASK, Protocol::empty());
        let neg = p.s.negotiated().unwrap();
        assert_eq!(neg.data_size, DataSize::K64);
        assert_eq!(neg.shortfalls.is_empty(), size == DataSize::K64);

        // The limit applies to modifications: a 100 000-byte header value
        // fits 256 KiB and 1 MiB packets, not 64 KiB ones.
        m.reach_end_of_message();
        let big = Response::AddHeader {
            name: b(b"X-Big"),
            value: Bytes::from(vec![b'x'; 100_000]),
        };
        let r = m.s.modify(big);
        if size == DataSize::K64 {
            assert_eq!(
                r,
                Err(ModifyError::TooLarge {
                    len: 5 + 1 + 100_000 + 1,
                    max: 65_535
                })
            );
            assert!(m.take().is_empty(), "a refused modification left output");
        } else {
            assert_eq!(r, Ok(()));
            assert_eq!(m.take().len(), 5 + 5 + 1 + 100_000 + 1);
        }
    }
    Ok(())
}

#[test]
fn version_above_six_gets_six_and_below_two_is_refused() {
    let mut m = Mta::new(Requirements::default());
    assert_eq!(
        m.send(b"\x00\x00\x00\x0dO\x00\x00\x00\x08\x00\x00\x01\xff\x00\x1f\xff\xff"),
        Ok(Event::Negotiated)
    );
    assert_eq!(&m.take()[5..9], b"\x00\x00\x00\x06");

    let mut m = Mta::new(Requirements::default());
    assert_eq!(
        m.send(b"\x00\x00\x00\x0dO\x00\x00\x00\x01\x00\x00\x00\x0f\x00\x00\x00\x3f"),
        Err(SessionError::Negotiation(
            milter_proto::NegotiationError::UnsupportedVersion(1)
        ))
    );
    assert!(m.take().is_empty());
    assert!(m.s.awaiting_negotiation());
}

// ---------------------------------------------------------------------------
// A whole Postfix transaction
// ---------------------------------------------------------------------------

#[test]
fn full_transaction_every_step_answered_once() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    let expected_steps = [
        (Step::Connect, false),
        (Step::Helo, false),
        (Step::Mail, true),
        (Step::Rcpt, false),
        (Step::Rcpt, false),
        (Step::Data, false),
        (Step::Header, false),
        (Step::Header, false),
        (Step::EndOfHeaders, false),
        (Step::Body, false),
        (Step::Body, false),
        (Step::EndOfMessage, false),
    ];
    let mut steps = expected_steps.iter();
    for p in postfix_transaction() {
        let ev = m.send(&p).unwrap();
        if p[4] == b'D' {
            assert_eq!(ev, Event::Macros);
            assert!(m.take().is_empty(), "macro packet answered");
            continue;
        }
        let Event::Step {
            step,
            deliver,
            new_message,
            aborted_previous,
            ..
        } = ev
        else {
            panic!("{ev:?}")
        };
        let &(want_step, want_new) = steps.next().unwrap();
        assert_eq!(step, want_step);
        assert!(deliver);
        assert_eq!(new_message, want_new, "{step}");
        assert!(!aborted_previous);
        assert!(m.take().is_empty(), "answered before the filter");
        assert_eq!(m.s.pending_step(), Some(step));
        if step == Step::EndOfMessage {
            // Every macro of the transaction is visible at end of message.
            assert_eq!(m.macro_value("j").unwrap(), b"mx.example.org");
            assert_eq!(m.macro_value("{daemon_name}").unwrap(), b"smtpd");
            assert_eq!(m.macro_value("mail_addr").unwrap(), b"alice@example.com");
            assert_eq!(m.macro_value("{rcpt_addr}").unwrap(), b"carol@example.org");
            assert_eq!(m.macro_value("i").unwrap(), b"ABC123DEF");
            assert!(m.s.in_message());
        }
        assert_eq!(m.s.reply(Verdict::Continue), Ok(Sent::Written));
        assert_eq!(m.take(), CONTINUE, "exactly one reply for {step}");
        assert_eq!(m.s.pending_step(), None);
    }
    assert!(steps.next().is_none());
    assert!(!m.s.in_message());
    assert_eq!(
        m.s.reply(Verdict::Continue),
        Err(SessionError::NoStepPending)
    );
    assert_eq!(m.send(b"\x00\x00\x00\x01Q"), Ok(Event::Quit));
    assert!(m.take().is_empty());
    assert_eq!(m.send(b"\x00\x00\x00\x01A"), Err(SessionError::Closed));
}

#[test]
fn full_transaction_with_declined_and_unanswered_steps() {
    // req_a: DATA and EOH declined (Postfix honours NO_* bits, but if an
    // MTA sends them anyway the session answers `continue` itself), headers
    // delivered but never answered (NR_HDR granted).
    let mut m = Mta::negotiated(req_a(), POSTFIX_OFFER);
    let mut written = Vec::new();
    for p in postfix_transaction() {
        let code = p[4];
        let ev = m.send(&p).unwrap();
        if code == b'D' {
            assert_eq!(ev, Event::Macros);
            assert!(m.take().is_empty());
            continue;
        }
        let Event::Step { step, deliver, .. } = ev else {
            panic!("{ev:?}")
        };
        match code {
            b'T' | b'N' => {
                assert!(!deliver, "{step} was declined");
                assert_eq!(m.s.pending_step(), None);
                assert_eq!(m.take(), CONTINUE, "automatic reply for {step}");
                written.push(code);
            }
            b'L' => {
                assert!(deliver);
                assert!(m.take().is_empty());
                // The MTA does not wait: whatever the filter says, nothing goes out.
                assert_eq!(m.s.reply(Verdict::Continue), Ok(Sent::NotNeeded));
                assert!(m.take().is_empty());
            }
            _ => {
                assert!(deliver, "{step} is wanted");
                assert!(m.take().is_empty());
                assert_eq!(m.s.reply(Verdict::Continue), Ok(Sent::Written));
                assert_eq!(m.take(), CONTINUE);
                written.push(code);
            }
        }
    }
    assert_eq!(written, b"CHMRRTNBBE");
}

// ---------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------

/// A session with a delivered, answered RCPT pending.
fn at_rcpt(req: Requirements) -> Mta {
    let mut m = Mta::negotiated(req, POSTFIX_OFFER);
    m.open_message();
    m.cmd(b'D', b"R{rcpt_addr}\0x@example.org\0").unwrap();
    assert_eq!(
        m.step(b'R', b"<x@example.org>\0"),
        (Step::Rcpt, true, false, false)
    );
    assert!(m.take().is_empty());
    m
}

/// A session with a delivered, answered body chunk pending.
fn at_body(req: Requirements, offer: &[u8]) -> Mta {
    let mut m = Mta::negotiated(req, offer);
    m.open_message();
    for p in [packet(b'T', b""), packet(b'N', b"")] {
        if let Event::Step { deliver: true, .. } = m.send(&p).unwrap() {
            m.s.reply(Verdict::Continue).unwrap();
        }
    }
    m.take();
    let (step, deliver, _, _) = m.step(b'B', b"chunk\r\n");
    assert_eq!((step, deliver), (Step::Body, true));
    m
}

#[test]
fn reject_with_5xx_text_writes_reply_code() -> TestResult {
    let mut m = at_rcpt(Requirements::default());
    let sent = m.s.reply(Verdict::Reject(Some(SmtpReply::new(
        550,
        Some("5.7.1"),
        "no",
    )?)))?;
    assert_eq!(sent, Sent::Written);
    assert_eq!(m.take(), b"\x00\x00\x00\x0ey550 5.7.1 no\0");
    Ok(())
}

#[test]
fn reject_with_4xx_text_writes_plain_reject() -> TestResult {
    let mut m = at_rcpt(Requirements::default());
    let sent = m.s.reply(Verdict::Reject(Some(SmtpReply::new(
        451,
        Some("4.7.1"),
        "later",
    )?)))?;
    assert_eq!(sent, Sent::Written);
    assert_eq!(m.take(), REJECT);
    let mut m = at_rcpt(Requirements::default());
    m.s.reply(Verdict::Reject(None))?;
    assert_eq!(m.take(), REJECT);
    Ok(())
}

#[test]
fn tempfail_with_4xx_text_writes_reply_code() -> TestResult {
    let mut m = at_rcpt(Requirements::default());
    let sent = m.s.reply(Verdict::tempfail_with(SmtpReply::new(
        451,
        Some("4.7.1"),
        "try later",
    )?))?;
    assert_eq!(sent, Sent::Written);
    assert_eq!(m.take(), b"\x00\x00\x00\x15y451 4.7.1 try later\0");
    // A 5xx text cannot make a temporary failure: plain `t`.
    let mut m = at_rcpt(Requirements::default());
    m.s.reply(Verdict::Tempfail(Some(SmtpReply::new(550, None, "x")?)))?;
    assert_eq!(m.take(), TEMPFAIL);
    let mut m = at_rcpt(Requirements::default());
    m.s.reply(Verdict::Tempfail(None))?;
    assert_eq!(m.take(), TEMPFAIL);
    Ok(())
}

#[test]
fn multiline_reply_and_percent_go_out_verbatim() -> TestResult {
    let mut m = at_rcpt(Requirements::default());
    let r = SmtpReply::multiline(550, Some("5.7.1"), &["100% spam", "go away"])?;
    m.s.reply(Verdict::reject_with(r))?;
    // "550-5.7.1 100%% spam\r\n550 5.7.1 go away" = 20 + 2 + 17 = 39, + NUL.
    assert_eq!(
        m.take(),
        b"\x00\x00\x00\x29y550-5.7.1 100%% spam\r\n550 5.7.1 go away\0"
    );
    Ok(())
}

#[test]
fn reply_text_that_postfix_would_call_malformed_is_refused() -> TestResult {
    // Postfix refuses a `y` reply whose text starts with a digit other than
    // the code's class ("malformed reply", a milter configuration error).
    use milter_proto::ReplyError;
    assert_eq!(
        SmtpReply::new(550, None, "4.7.1 go away"),
        Err(ReplyError::ClassMismatch {
            code: 550,
            enhanced: "4.7.1".into()
        })
    );
    assert_eq!(
        SmtpReply::new(550, None, "2 many recipients"),
        Err(ReplyError::ClassMismatch {
            code: 550,
            enhanced: "2".into()
        })
    );
    assert!(SmtpReply::parse_wire(b"550 2 many recipients").is_err());
    // The class digit itself, or an enhanced code before it, is fine.
    let r = SmtpReply::new(550, None, "5 recipients too many")?;
    assert_eq!(SmtpReply::parse_wire(r.wire()), Ok(r.clone()));
    let r = SmtpReply::new(550, Some("5.5.3"), "2 many recipients")?;
    let mut m = at_rcpt(Requirements::default());
    m.s.reply(Verdict::reject_with(r))?;
    assert_eq!(m.take(), b"\x00\x00\x00\x1dy550 5.5.3 2 many recipients\0");
    Ok(())
}

#[test]
fn accept_and_discard() {
    let mut m = at_rcpt(Requirements::default());
    assert_eq!(m.s.reply(Verdict::Accept), Ok(Sent::Written));
    assert_eq!(m.take(), ACCEPT);
    let mut m = at_rcpt(Requirements::default());
    assert_eq!(m.s.reply(Verdict::Discard), Ok(Sent::Written));
    assert_eq!(m.take(), DISCARD);
}

#[test]
fn skip_in_body_with_skip_negotiated() {
    let mut m = at_body(Requirements::default(), POSTFIX_OFFER);
    assert!(m.s.negotiated().unwrap().protocol.contains(Protocol::SKIP));
    assert_eq!(m.s.reply(Verdict::Skip), Ok(Sent::Written));
    assert_eq!(m.take(), SKIP);
    // The MTA goes straight to end of message.
    assert_eq!(m.step(b'E', b""), (Step::EndOfMessage, true, false, false));
}

#[test]
fn skip_in_body_without_skip_negotiated_is_continue() {
    // A version 2 MTA does not know SMFIR_SKIP.
    let mut m = at_body(Requirements::default(), V2_OFFER);
    assert!(!m.s.negotiated().unwrap().protocol.contains(Protocol::SKIP));
    assert_eq!(m.s.reply(Verdict::Skip), Ok(Sent::Downgraded));
    assert_eq!(m.take(), CONTINUE);
}

#[test]
fn skip_outside_the_body_is_continue() {
    let mut m = at_rcpt(Requirements::default());
    assert_eq!(m.s.reply(Verdict::Skip), Ok(Sent::Downgraded));
    assert_eq!(m.take(), CONTINUE);
}

#[test]
fn no_reply_steps_write_nothing() -> TestResult {
    let all_but_eom = Steps::all() - Steps::END_OF_MESSAGE;
    let req = Requirements {
        no_reply: all_but_eom,
        ..Requirements::default()
    };
    let mut m = Mta::negotiated(req, POSTFIX_OFFER);
    let neg = m.s.negotiated().unwrap().clone();
    assert_eq!(neg.no_reply, all_but_eom);
    assert_eq!(
        neg.protocol,
        Protocol::ALL_NO_REPLY | Protocol::SKIP,
        "every NR bit granted"
    );
    let verdicts = [
        Verdict::Reject(Some(SmtpReply::new(550, Some("5.7.1"), "no")?)),
        Verdict::Continue,
    ];
    let mut n = 0;
    for p in postfix_transaction() {
        let ev = m.send(&p)?;
        let Event::Step { step, deliver, .. } = ev else {
            continue;
        };
        assert!(deliver);
        assert!(m.take().is_empty());
        let v = verdicts[n % 2].clone();
        n += 1;
        let sent = m.s.reply(v.clone())?;
        if step == Step::EndOfMessage {
            // End of message is always answered, here with the first reject
            // made at a no-reply step: the decision is not lost.
            assert_eq!(sent, Sent::Written);
            let mut want = bytes::BytesMut::new();
            Response::ReplyCode(bytes::Bytes::from_static(b"550 5.7.1 no")).encode(&mut want);
            assert_eq!(m.take(), &want[..]);
        } else if v == Verdict::Continue {
            assert_eq!(sent, Sent::NotNeeded);
            assert!(m.take().is_empty(), "{step}");
        } else {
            assert_eq!(sent, Sent::Deferred, "{step}");
            assert!(m.take().is_empty(), "{step}");
        }
    }
    Ok(())
}

#[test]
fn no_reply_step_left_unanswered_does_not_block_the_next_packet() {
    let req = Requirements {
        no_reply: Steps::HEADER,
        ..Requirements::default()
    };
    let mut m = Mta::negotiated(req, POSTFIX_OFFER);
    m.open_message();
    assert_eq!(m.step(b'L', b"A\0b\0"), (Step::Header, true, false, false));
    // The MTA does not wait for the filter, so its next packets arrive.
    assert_eq!(m.cmd(b'D', b"L"), Ok(Event::Macros));
    assert_eq!(m.step(b'L', b"C\0d\0"), (Step::Header, true, false, false));
    assert!(m.take().is_empty());
}

#[test]
fn declined_steps_sent_anyway_get_an_automatic_continue() {
    // Only RCPT is wanted; Postfix offers every NO_* bit.
    let req = Requirements {
        steps: Steps::RCPT,
        ..Requirements::default()
    };
    let mut m = Mta::negotiated(req, POSTFIX_OFFER);
    let neg = m.s.negotiated().unwrap().clone();
    assert!(
        neg.protocol
            .contains(Protocol::ALL_NO_STEP - Protocol::NO_RCPT)
    );
    assert!(!neg.protocol.contains(Protocol::NO_RCPT));
    for p in postfix_transaction() {
        let code = p[4];
        let ev = m.send(&p).unwrap();
        match (code, ev) {
            (b'D', Event::Macros) => assert!(m.take().is_empty()),
            (b'R' | b'E', Event::Step { deliver, .. }) => {
                assert!(deliver);
                assert!(m.take().is_empty());
                m.s.reply(Verdict::Continue).unwrap();
                assert_eq!(m.take(), CONTINUE);
            }
            (_, Event::Step { deliver, step, .. }) => {
                assert!(!deliver, "{step}");
                assert_eq!(m.take(), CONTINUE, "{step}");
            }
            (_, ev) => panic!("{ev:?}"),
        }
    }
}

#[test]
fn declined_steps_that_cannot_be_declined_but_need_no_reply_get_nothing() {
    // An MTA offering NR_HELO but not NO_HELO: an unwanted HELO is sent,
    // and not waited for.
    let offer = b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xfd";
    let req = Requirements {
        steps: Steps::all() - Steps::HELO,
        ..Requirements::default()
    };
    let mut m = Mta::negotiated(req.clone(), offer);
    let neg = m.s.negotiated().unwrap();
    assert!(neg.protocol.contains(Protocol::NR_HELO));
    assert!(!neg.protocol.contains(Protocol::NO_HELO));
    assert_eq!(
        m.step(b'H', b"client.example.net\0"),
        (Step::Helo, false, false, false)
    );
    assert!(m.take().is_empty());
    assert_eq!(m.s.pending_step(), None);

    // Offering neither: the session answers `continue` itself.
    let offer = b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xdf\xfd";
    let mut m = Mta::negotiated(req, offer);
    let neg = m.s.negotiated().unwrap();
    assert!(
        !neg.protocol
            .intersects(Protocol::NR_HELO | Protocol::NO_HELO)
    );
    assert_eq!(
        m.step(b'H', b"client.example.net\0"),
        (Step::Helo, false, false, false)
    );
    assert_eq!(m.take(), CONTINUE);
}

// ---------------------------------------------------------------------------
// Message boundaries
// ---------------------------------------------------------------------------

#[test]
fn abort_writes_nothing_and_forgets_message_macros_only() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.open_message();
    assert!(m.s.in_message());
    assert_eq!(m.macro_value("mail_addr").unwrap(), b"alice@example.com");
    assert_eq!(m.macro_value("rcpt_addr").unwrap(), b"bob@example.org");
    assert_eq!(
        m.cmd(b'A', b""),
        Ok(Event::Abort {
            message_was_open: true
        })
    );
    assert!(m.take().is_empty(), "abort is never answered");
    assert!(!m.s.in_message());
    assert_eq!(m.macro_value("mail_addr"), None);
    assert_eq!(m.macro_value("rcpt_addr"), None);
    assert_eq!(m.macro_value("j").unwrap(), b"mx.example.org");
    assert_eq!(m.macro_value("v").unwrap(), b"Postfix 3.8.6");
    // A second abort (Postfix sends one at RSET and at end of session).
    assert_eq!(
        m.cmd(b'A', b""),
        Ok(Event::Abort {
            message_was_open: false
        })
    );
    assert!(m.take().is_empty());
    // The next MAIL starts a fresh message, not an aborted one.
    m.cmd(b'D', b"M{mail_addr}\0dave@example.com\0").unwrap();
    assert_eq!(
        m.step(b'M', b"<dave@example.com>\0"),
        (Step::Mail, true, true, false)
    );
}

#[test]
fn abort_while_a_reply_is_owed_clears_it() {
    let mut m = at_rcpt(Requirements::default());
    assert_eq!(m.s.pending_step(), Some(Step::Rcpt));
    assert_eq!(
        m.cmd(b'A', b""),
        Ok(Event::Abort {
            message_was_open: true
        })
    );
    assert!(m.take().is_empty());
    assert_eq!(m.s.pending_step(), None);
    assert_eq!(
        m.s.reply(Verdict::Continue),
        Err(SessionError::NoStepPending)
    );
    assert!(m.take().is_empty());
}

#[test]
fn second_mail_without_abort_aborts_the_previous_message() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.open_message();
    m.cmd(b'D', b"M{mail_addr}\0erin@example.com\0").unwrap();
    // The previous recipient's macros are gone with the new MAIL stage.
    assert_eq!(m.macro_value("rcpt_addr"), None);
    assert_eq!(
        m.step(b'M', b"<erin@example.com>\0"),
        (Step::Mail, true, true, true)
    );
    assert_eq!(m.macro_value("mail_addr").unwrap(), b"erin@example.com");
}

#[test]
fn helo_inside_a_message_aborts_it() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.open_message();
    assert_eq!(m.step(b'H', b"again\0"), (Step::Helo, true, false, true));
    assert!(!m.s.in_message());
}

#[test]
fn mail_after_end_of_message_is_a_new_message() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.reach_end_of_message();
    assert!(m.s.in_message());
    m.s.reply(Verdict::Continue).unwrap();
    assert_eq!(m.take(), CONTINUE);
    assert!(!m.s.in_message());
    m.cmd(b'D', b"M{mail_addr}\0frank@example.com\0").unwrap();
    // The end-of-message macros of the previous message are gone.
    assert_eq!(m.macro_value("i"), None);
    assert_eq!(
        m.step(b'M', b"<frank@example.com>\0"),
        (Step::Mail, true, true, false)
    );
    assert_eq!(m.macro_value("j").unwrap(), b"mx.example.org");
}

#[test]
fn without_mail_the_first_message_step_opens_the_message() {
    // NO_MAIL granted: Postfix starts the message with RCPT.
    let req = Requirements {
        steps: Steps::all() - Steps::MAIL,
        ..Requirements::default()
    };
    let mut m = Mta::negotiated(req, POSTFIX_OFFER);
    for _ in 0..2 {
        assert_eq!(m.step(b'R', b"<a@b>\0"), (Step::Rcpt, true, true, false));
        m.s.reply(Verdict::Continue).unwrap();
        assert_eq!(m.step(b'R', b"<c@d>\0"), (Step::Rcpt, true, false, false));
        m.s.reply(Verdict::Continue).unwrap();
        assert_eq!(m.step(b'E', b""), (Step::EndOfMessage, true, false, false));
        m.s.reply(Verdict::Continue).unwrap();
        assert_eq!(m.take(), [CONTINUE, CONTINUE, CONTINUE].concat());
    }
}

#[test]
fn unknown_command_does_not_touch_the_message() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.open_message();
    assert_eq!(m.cmd(b'D', b"U"), Ok(Event::Macros));
    assert_eq!(m.step(b'U', b"XFOO\0"), (Step::Unknown, true, false, false));
    m.s.reply(Verdict::Reject(None)).unwrap();
    assert_eq!(m.take(), REJECT);
    assert!(m.s.in_message());
    assert_eq!(m.macro_value("rcpt_addr").unwrap(), b"bob@example.org");
}

// ---------------------------------------------------------------------------
// Connection boundaries and protocol errors
// ---------------------------------------------------------------------------

#[test]
fn quit_new_connection_then_optneg_renegotiates() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.open_message();
    assert_eq!(
        m.cmd(b'K', b""),
        Ok(Event::NewConnection {
            message_was_open: true
        })
    );
    assert!(m.take().is_empty());
    assert!(!m.s.in_message());
    assert_eq!(m.macro_value("j"), None, "connection macros forgotten");
    // A new negotiation, this time at version 2.
    assert_eq!(m.send(V2_OFFER), Ok(Event::Negotiated));
    assert_eq!(
        m.take(),
        b"\x00\x00\x00\x0dO\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00"
    );
    assert_eq!(m.s.negotiated().unwrap().version, 2);
    // ... and a new SMTP session.
    assert_eq!(
        m.step(b'C', b"other.example\x004\x00\x19203.0.113.9\0"),
        (Step::Connect, true, false, false)
    );
    m.s.reply(Verdict::Continue).unwrap();
    assert_eq!(m.take(), CONTINUE);
    // Negotiation is once per SMTP session.
    assert_eq!(m.send(V2_OFFER), Err(SessionError::DuplicateOptNeg));
}

#[test]
fn quit_new_connection_then_connect_keeps_the_negotiation() {
    // libmilter expects CONNECT right after QUIT_NC; the old agreement holds.
    let mut m = Mta::negotiated(req_a(), POSTFIX_OFFER);
    assert_eq!(
        m.cmd(b'K', b""),
        Ok(Event::NewConnection {
            message_was_open: false
        })
    );
    let (step, deliver, _, _) = m.step(b'C', b"h\0U");
    assert_eq!((step, deliver), (Step::Connect, true));
    assert!(m.s.negotiated().unwrap().no_reply(Step::Header));
}

#[test]
fn second_optneg_without_quit_new_connection_is_refused() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    assert_eq!(m.send(POSTFIX_OFFER), Err(SessionError::DuplicateOptNeg));
    assert!(m.take().is_empty());
    // Even after an abort.
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    m.open_message();
    m.cmd(b'A', b"").unwrap();
    assert_eq!(m.send(POSTFIX_OFFER), Err(SessionError::DuplicateOptNeg));
}

#[test]
fn first_packet_must_be_optneg() {
    let mut m = Mta::new(Requirements::default());
    assert_eq!(
        m.cmd(b'C', b"localhost\0U"),
        Err(SessionError::NotOptNeg(b'C'))
    );
    assert_eq!(m.cmd(b'D', b"Cj\0x\0"), Err(SessionError::NotOptNeg(b'D')));
    assert_eq!(m.cmd(b'Q', b""), Err(SessionError::NotOptNeg(b'Q')));
    assert!(m.take().is_empty());
    assert!(m.s.awaiting_negotiation());
    // A malformed offer is a payload error, and negotiation may still follow.
    assert!(matches!(
        m.cmd(b'O', b"\0\0\0\x06"),
        Err(SessionError::Payload(_))
    ));
    assert_eq!(m.send(POSTFIX_OFFER), Ok(Event::Negotiated));
}

#[test]
fn http_probe_is_refused_before_allocation() {
    // What a port scanner sends; the decoder for the first packet has a
    // small limit, so the bogus length is refused outright.
    let dec = FrameDecoder::new(OPTNEG_MAX_PAYLOAD);
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(FrameError::TooLong { .. })
    ));
    assert_eq!(classify_probe(&buf), "an HTTP request");
    // The real first packet fits.
    let mut buf = BytesMut::from(POSTFIX_OFFER);
    let f = dec.decode(&mut buf).unwrap().unwrap();
    let mut s = MilterSession::new(Requirements::default());
    assert_eq!(s.receive(f), Ok(Event::Negotiated));
}

#[test]
fn command_while_a_reply_is_owed_is_an_error() {
    let mut m = at_rcpt(Requirements::default());
    // Postfix's next packet would be the macros of the next RCPT.
    assert_eq!(
        m.cmd(b'D', b"R{rcpt_addr}\0y@example.org\0"),
        Err(SessionError::ReplyOwed {
            step: Step::Rcpt,
            got: 'D'
        })
    );
    assert_eq!(
        m.cmd(b'R', b"<y@example.org>\0"),
        Err(SessionError::ReplyOwed {
            step: Step::Rcpt,
            got: 'R'
        })
    );
    assert_eq!(
        m.send(POSTFIX_OFFER),
        Err(SessionError::ReplyOwed {
            step: Step::Rcpt,
            got: 'O'
        })
    );
    assert!(m.take().is_empty());
    // Quit is fine: the MTA gave up.
    assert_eq!(m.cmd(b'Q', b""), Ok(Event::Quit));
    assert!(m.take().is_empty());
}

#[test]
fn malformed_packets_are_payload_errors() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    assert_eq!(
        m.cmd(b'C', b"host\0X"),
        Err(SessionError::Payload(milter_proto::PayloadError::Invalid {
            code: 'C',
            field: "address family"
        }))
    );
    assert_eq!(
        m.cmd(b'Z', b""),
        Err(SessionError::Payload(
            milter_proto::PayloadError::UnknownCode(b'Z')
        ))
    );
    assert!(m.take().is_empty());
    assert_eq!(m.s.pending_step(), None);
}

#[test]
fn step_carries_its_command() {
    let mut m = Mta::negotiated(Requirements::default(), POSTFIX_OFFER);
    let ev = m
        .cmd(b'C', b"[IPv6:2001:db8::25]\x006\x00\x19IPv6:2001:db8::25\0")
        .unwrap();
    let Event::Step {
        command: Command::Connect { hostname, address },
        ..
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(&hostname[..], b"[IPv6:2001:db8::25]");
    assert!(matches!(address, ConnectAddress::Inet6 { port: 25, .. }));
    assert_eq!(address.ip(), Some("2001:db8::25".parse().unwrap()));
}

// ---------------------------------------------------------------------------
// Modifications
// ---------------------------------------------------------------------------

#[test]
fn modifications_only_at_end_of_message() {
    let mut m = at_rcpt(req_modify());
    let add = Response::AddHeader {
        name: b(b"X-A"),
        value: b(b"1"),
    };
    assert_eq!(m.s.modify(add.clone()), Err(ModifyError::NotAtEndOfMessage));
    assert_eq!(m.s.progress(), Err(ModifyError::NotAtEndOfMessage));
    assert!(m.take().is_empty());

    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    // Nothing pending at all.
    assert_eq!(m.s.modify(add.clone()), Err(ModifyError::NotAtEndOfMessage));
    m.reach_end_of_message();
    assert_eq!(m.s.modify(add.clone()), Ok(()));
    assert_eq!(m.s.progress(), Ok(()));
    m.s.reply(Verdict::Continue).unwrap();
    // After the final reply, too late.
    assert_eq!(m.s.modify(add), Err(ModifyError::NotAtEndOfMessage));
    assert_eq!(m.s.progress(), Err(ModifyError::NotAtEndOfMessage));
    assert_eq!(
        m.take(),
        [&b"\x00\x00\x00\x07hX-A\x001\0"[..], PROGRESS, CONTINUE].concat()
    );
}

#[test]
fn modifications_bytes_at_end_of_message() -> TestResult {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    let mods = [
        Response::AddHeader {
            name: b(b"X-Spam"),
            value: b(b"yes"),
        },
        Response::InsertHeader {
            index: 0,
            name: b(b"Received"),
            value: b(b"from x"),
        },
        Response::ChangeHeader {
            index: 2,
            name: b(b"X-Old"),
            value: b(b""),
        },
        Response::AddRcpt(b(b"<carol@example.net>")),
        Response::DelRcpt(b(b"<bob@example.org>")),
        Response::AddRcptPar {
            rcpt: b(b"<dave@example.net>"),
            args: Some(b(b"NOTIFY=SUCCESS,FAILURE")),
        },
        Response::AddRcptPar {
            rcpt: b(b"<dave@example.net>"),
            args: None,
        },
        Response::ChangeFrom {
            sender: b(b"<bounce@example.com>"),
            args: Some(b(b"SIZE=2048")),
        },
        Response::ChangeFrom {
            sender: b(b"<bounce@example.com>"),
            args: None,
        },
        Response::Quarantine(b(b"virus found")),
        Response::ReplaceBody(b(b"new body\r\n")),
    ];
    for r in mods {
        m.s.modify(r)?;
    }
    m.s.progress()?;
    m.s.reply(Verdict::Accept)?;
    let expected: &[&[u8]] = &[
        b"\x00\x00\x00\x0chX-Spam\0yes\0",
        b"\x00\x00\x00\x15i\x00\x00\x00\x00Received\0from x\0",
        b"\x00\x00\x00\x0cm\x00\x00\x00\x02X-Old\0\0",
        b"\x00\x00\x00\x15+<carol@example.net>\0",
        b"\x00\x00\x00\x13-<bob@example.org>\0",
        b"\x00\x00\x00\x2b2<dave@example.net>\0NOTIFY=SUCCESS,FAILURE\0",
        b"\x00\x00\x00\x142<dave@example.net>\0",
        b"\x00\x00\x00\x20e<bounce@example.com>\0SIZE=2048\0",
        b"\x00\x00\x00\x16e<bounce@example.com>\0",
        b"\x00\x00\x00\x0dqvirus found\0",
        b"\x00\x00\x00\x0bbnew body\r\n",
        PROGRESS,
        ACCEPT,
    ];
    assert_eq!(m.take(), expected.concat());
    Ok(())
}

#[test]
fn modifications_only_if_negotiated() {
    // req_a may add and change headers and add recipients with parameters.
    let mut m = Mta::negotiated(req_a(), POSTFIX_OFFER);
    m.reach_end_of_message();
    let refused = [
        (Response::AddRcpt(b(b"<a@b>")), Actions::ADD_RCPT),
        (Response::DelRcpt(b(b"<a@b>")), Actions::DELETE_RCPT),
        (
            Response::ChangeFrom {
                sender: b(b"<a@b>"),
                args: None,
            },
            Actions::CHANGE_FROM,
        ),
        (Response::ReplaceBody(b(b"x")), Actions::CHANGE_BODY),
        (Response::Quarantine(b(b"x")), Actions::QUARANTINE),
    ];
    for (r, action) in refused {
        assert_eq!(m.s.modify(r), Err(ModifyError::NotNegotiated(action)));
    }
    assert!(m.take().is_empty());
    assert_eq!(
        m.s.modify(Response::AddRcptPar {
            rcpt: b(b"<a@b>"),
            args: None
        }),
        Ok(())
    );
    assert_eq!(
        m.s.modify(Response::ChangeHeader {
            index: 1,
            name: b(b"Subject"),
            value: b(b"")
        }),
        Ok(())
    );
    assert_eq!(m.responses().len(), 2);

    // Wanted by the filter, not offered by the MTA (version 2 has no CHGFROM).
    let mut m = Mta::new(req_modify());
    m.send(V2_OFFER).unwrap();
    m.take();
    m.open_message();
    m.cmd(b'E', b"").unwrap();
    assert_eq!(
        m.s.modify(Response::ChangeFrom {
            sender: b(b"<a@b>"),
            args: None
        }),
        Err(ModifyError::NotNegotiated(Actions::CHANGE_FROM))
    );
    assert_eq!(
        m.s.modify(Response::AddRcptPar {
            rcpt: b(b"<a@b>"),
            args: None
        }),
        Err(ModifyError::NotNegotiated(Actions::ADD_RCPT_PAR))
    );
    assert_eq!(m.s.modify(Response::AddRcpt(b(b"<a@b>"))), Ok(()));
}

#[test]
fn non_modifications_are_refused() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    for r in [
        Response::Continue,
        Response::Accept,
        Response::ReplyCode(b(b"550 no")),
        Response::Progress,
        Response::SetSymList {
            stage: 0,
            names: b(b"j"),
        },
        Response::OptNeg(OptNeg {
            version: 6,
            actions: Actions::empty(),
            protocol: Protocol::empty(),
            macros: vec![],
        }),
    ] {
        assert_eq!(m.s.modify(r), Err(ModifyError::NotAModification));
    }
    assert!(m.take().is_empty());
    // The final reply is still owed.
    assert_eq!(m.s.pending_step(), Some(Step::EndOfMessage));
}

#[test]
fn large_replacement_body_is_cut_into_chunks() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    m.s.modify(Response::ReplaceBody(Bytes::from(body.clone())))
        .unwrap();
    m.s.reply(Verdict::Continue).unwrap();
    let out = m.take();
    // Walk the packets by hand.
    let mut at = 0;
    let mut chunks = Vec::new();
    while at < out.len() {
        let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        let code = out[at + 4];
        chunks.push((code, out[at + 5..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    assert_eq!(at, out.len());
    let (last, body_chunks) = chunks.split_last().unwrap();
    assert_eq!(last, &(b'c', vec![]));
    assert_eq!(body_chunks.len(), 4);
    let sizes: Vec<usize> = body_chunks.iter().map(|(_, c)| c.len()).collect();
    assert_eq!(sizes, [65_535, 65_535, 65_535, 3_395]);
    assert!(body_chunks.iter().all(|(code, _)| *code == b'b'));
    let joined: Vec<u8> = body_chunks.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(joined, body);
}

#[test]
fn empty_replacement_body_is_one_empty_chunk() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    m.s.modify(Response::ReplaceBody(Bytes::new())).unwrap();
    assert_eq!(m.take(), b"\x00\x00\x00\x01b");
}

#[test]
fn bad_header_names_are_refused() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    for name in [
        &b"X-Bad:"[..],
        b"Subject: hi",
        b":",
        b"",
        b"X Bad",
        b"X-Bad\t",
        b"X-\x7fBad",
        b"X-Bad\r\n",
    ] {
        for r in [
            Response::AddHeader {
                name: Bytes::copy_from_slice(name),
                value: b(b"v"),
            },
            Response::InsertHeader {
                index: 0,
                name: Bytes::copy_from_slice(name),
                value: b(b"v"),
            },
            Response::ChangeHeader {
                index: 1,
                name: Bytes::copy_from_slice(name),
                value: b(b""),
            },
        ] {
            assert_eq!(m.s.modify(r), Err(ModifyError::BadHeaderName), "{name:?}");
        }
    }
    assert!(m.take().is_empty());
}

#[test]
fn nul_in_a_field_is_refused() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    assert_eq!(
        m.s.modify(Response::AddHeader {
            name: b(b"X-A"),
            value: b(b"a\0b")
        }),
        Err(ModifyError::Nul)
    );
    assert_eq!(
        m.s.modify(Response::AddRcpt(b(b"<a\0@b>"))),
        Err(ModifyError::Nul)
    );
    assert!(m.take().is_empty());
}

#[test]
fn oversized_modification_is_refused_and_leaves_no_output() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    m.reach_end_of_message();
    m.s.modify(Response::AddHeader {
        name: b(b"X-A"),
        value: b(b"1"),
    })
    .unwrap();
    // "X-Big\0" + 65 530 bytes + "\0" = 65 537 > 65 535.
    assert_eq!(
        m.s.modify(Response::AddHeader {
            name: b(b"X-Big"),
            value: Bytes::from(vec![b'x'; 65_530]),
        }),
        Err(ModifyError::TooLarge {
            len: 65_537,
            max: 65_535
        })
    );
    // Exactly at the limit is fine: 6 + 65 528 + 1 = 65 535.
    assert_eq!(
        m.s.modify(Response::AddHeader {
            name: b(b"X-Big"),
            value: Bytes::from(vec![b'x'; 65_528]),
        }),
        Ok(())
    );
    let out = m.responses();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0],
        Response::AddHeader {
            name: b(b"X-A"),
            value: b(b"1")
        }
    );
}

#[test]
fn progress_only_at_end_of_message() {
    let mut m = Mta::new(Requirements::default());
    assert_eq!(m.s.progress(), Err(ModifyError::NotAtEndOfMessage));
    m.send(POSTFIX_OFFER).unwrap();
    m.take();
    assert_eq!(m.s.progress(), Err(ModifyError::NotAtEndOfMessage));
    let mut m = at_body(Requirements::default(), POSTFIX_OFFER);
    assert_eq!(m.s.progress(), Err(ModifyError::NotAtEndOfMessage));
    m.s.reply(Verdict::Continue).unwrap();
    m.take();
    m.step(b'E', b"");
    for _ in 0..3 {
        assert_eq!(m.s.progress(), Ok(()));
    }
    m.s.reply(Verdict::Discard).unwrap();
    assert_eq!(m.take(), [PROGRESS, PROGRESS, PROGRESS, DISCARD].concat());
}

#[test]
fn frame_api_and_session_agree_on_hand_built_packets() {
    // A sanity check of the test helper itself against the public frame type.
    let p = packet(b'H', b"x\0");
    assert_eq!(p, b"\x00\x00\x00\x03Hx\0");
    let mut s = MilterSession::new(Requirements::default());
    s.receive(Frame {
        code: b'O',
        payload: Bytes::copy_from_slice(&POSTFIX_OFFER[5..]),
    })
    .unwrap();
    assert!(matches!(
        s.receive(Frame {
            code: b'H',
            payload: b(b"x\0")
        }),
        Ok(Event::Step {
            step: Step::Helo,
            ..
        })
    ));
}

/// The packet a runtime writes itself while the filter holds the session
/// is exactly what `progress()` writes, and refused at the same times.
#[test]
fn progress_packet_is_what_progress_writes() {
    let mut m = Mta::negotiated(req_modify(), POSTFIX_OFFER);
    assert_eq!(m.s.progress_packet(), Err(ModifyError::NotAtEndOfMessage));
    m.reach_end_of_message();
    assert_eq!(&m.s.progress_packet().unwrap()[..], PROGRESS);
    assert!(m.take().is_empty(), "progress_packet writes nothing itself");
    m.s.progress().unwrap();
    assert_eq!(m.take(), PROGRESS);
    m.s.reply(Verdict::Continue).unwrap();
    assert_eq!(m.s.progress_packet(), Err(ModifyError::NotAtEndOfMessage));
}
