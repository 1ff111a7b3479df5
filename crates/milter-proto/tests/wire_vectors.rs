//! Byte-exact wire vectors for every command and every response.
//!
//! Every vector below was written out by hand from the packet rules (4-byte
//! big-endian length counting the code byte, the code byte, the payload;
//! strings NUL-terminated), as Sendmail's libmilter 8.18 (`mfdef.h`) and
//! Postfix's `milter8.c` lay them out. None of them is produced by the code
//! under test: each is checked against `encode` (exact bytes) and against
//! `FrameDecoder` + `parse` (exact value).

use bytes::{Bytes, BytesMut};
use milter_proto::{
    Actions, CHUNK_SIZE, Command, ConnectAddress, Frame, FrameDecoder, MacroRequest, OptNeg,
    PayloadError, Protocol, Response,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

/// Cuts exactly one packet out of `wire`, checking the framing on the way.
fn one_frame(wire: &[u8]) -> Frame {
    let declared = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
    assert_eq!(
        declared + 4,
        wire.len(),
        "hand-written vector has a wrong length prefix"
    );
    let dec = FrameDecoder::new(CHUNK_SIZE);
    let mut buf = BytesMut::from(wire);
    let frame = dec
        .decode(&mut buf)
        .expect("frame decodes")
        .expect("frame is complete");
    assert!(buf.is_empty(), "decoder left {} bytes behind", buf.len());
    assert_eq!(frame.code, wire[4]);
    assert_eq!(&frame.payload[..], &wire[5..]);
    frame
}

/// Decodes the packet byte by byte (every split point at once) and checks
/// the result is the same as decoding it whole.
fn check_split_decoding(wire: &[u8]) {
    let whole = one_frame(wire);
    let dec = FrameDecoder::new(CHUNK_SIZE);
    let mut buf = BytesMut::new();
    for (i, &byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let got = dec.decode(&mut buf).expect("no framing error");
        if i + 1 < wire.len() {
            assert_eq!(got, None, "frame complete after only {} bytes", i + 1);
        } else {
            assert_eq!(got, Some(whole.clone()));
        }
    }
}

fn check_command(wire: &[u8], expected: Command) {
    let mut out = BytesMut::new();
    expected.encode(&mut out);
    assert_eq!(
        &out[..],
        wire,
        "encode({expected:?}) differs from the hand-written vector"
    );
    assert_eq!(expected.code(), wire[4]);
    let parsed = Command::parse(one_frame(wire)).expect("vector parses");
    assert_eq!(parsed, expected);
    check_split_decoding(wire);
}

fn check_response(wire: &[u8], expected: Response) {
    let mut out = BytesMut::new();
    expected.encode(&mut out);
    assert_eq!(
        &out[..],
        wire,
        "encode({expected:?}) differs from the hand-written vector"
    );
    assert_eq!(expected.code(), wire[4]);
    let parsed = Response::parse(one_frame(wire)).expect("vector parses");
    assert_eq!(parsed, expected);
    check_split_decoding(wire);
}

fn frame(code: u8, payload: &'static [u8]) -> Frame {
    Frame {
        code,
        payload: Bytes::from_static(payload),
    }
}

fn command_error(code: u8, payload: &'static [u8]) -> PayloadError {
    match Command::parse(frame(code, payload)) {
        Ok(c) => panic!("{:?} {payload:?} parsed as {c:?}", code as char),
        Err(e) => e,
    }
}

fn response_error(code: u8, payload: &'static [u8]) -> PayloadError {
    match Response::parse(frame(code, payload)) {
        Ok(r) => panic!("{:?} {payload:?} parsed as {r:?}", code as char),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Commands, MTA -> milter
// ---------------------------------------------------------------------------

#[test]
fn optneg_postfix_offer() {
    // Postfix 3.x: version 6, actions 0x1FF, protocol 0x1FFFFF.
    check_command(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff",
        Command::OptNeg(OptNeg {
            version: 6,
            actions: Actions::all(),
            protocol: Protocol::from_bits_retain(0x001f_ffff),
            macros: vec![],
        }),
    );
    assert_eq!(Actions::all().bits(), 0x1ff);
}

#[test]
fn optneg_sendmail_offer_with_packet_size_bits() {
    // Sendmail 8.18 also offers SMFIP_MDS_256K | SMFIP_MDS_1M.
    check_command(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x30\x1f\xff\xff",
        Command::OptNeg(OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(0x1ff),
            protocol: Protocol::from_bits_retain(0x301f_ffff),
            macros: vec![],
        }),
    );
}

#[test]
fn optneg_version_2_offer() {
    // Postfix with milter_protocol = 2: SMFI_V2_ACTS, SMFI_V2_PROT.
    check_command(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x02\x00\x00\x00\x3f\x00\x00\x00\x7f",
        Command::OptNeg(OptNeg {
            version: 2,
            actions: Actions::V2,
            protocol: Protocol::from_bits_retain(0x7f),
            macros: vec![],
        }),
    );
}

#[test]
fn optneg_keeps_unknown_bits() {
    // Bits this crate has no name for must survive a round trip unchanged.
    check_command(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\xff\xff\xff\xff\xff\xff\xff\xff",
        Command::OptNeg(OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(u32::MAX),
            protocol: Protocol::from_bits_retain(u32::MAX),
            macros: vec![],
        }),
    );
}

#[test]
fn macro_connect_stage() {
    check_command(
        b"\x00\x00\x00\x27DCj\0mx.example.org\0{daemon_name}\0smtpd\0",
        Command::Macro {
            stage: b'C',
            pairs: vec![
                (b(b"j"), b(b"mx.example.org")),
                (b(b"{daemon_name}"), b(b"smtpd")),
            ],
        },
    );
}

#[test]
fn macro_with_empty_value() {
    check_command(
        b"\x00\x00\x00\x0fDM{auth_type}\0\0",
        Command::Macro {
            stage: b'M',
            pairs: vec![(b(b"{auth_type}"), b(b""))],
        },
    );
}

#[test]
fn macro_stage_only_as_postfix_sends_it() {
    // Postfix sends a macro packet for the header and body stages even when
    // no macro is defined: the stage byte and nothing else.
    for stage in [b'L', b'B', b'H', b'N', b'E'] {
        let wire = [0, 0, 0, 2, b'D', stage];
        check_command(
            &wire,
            Command::Macro {
                stage,
                pairs: vec![],
            },
        );
    }
}

#[test]
fn macro_without_stage_parses_to_stage_zero_and_is_not_encodable() {
    let cmd = Command::parse(one_frame(b"\x00\x00\x00\x01D")).unwrap();
    assert_eq!(
        cmd,
        Command::Macro {
            stage: 0,
            pairs: vec![]
        }
    );
    assert!(!cmd.is_encodable());
}

#[test]
fn macro_with_odd_pairs_drops_the_dangling_name() {
    // A name with no value: libmilter ignores it, so do we.
    let cmd = Command::parse(one_frame(b"\x00\x00\x00\x17DMi\0ABC123\0{auth_type}\0")).unwrap();
    assert_eq!(
        cmd,
        Command::Macro {
            stage: b'M',
            pairs: vec![(b(b"i"), b(b"ABC123"))],
        }
    );
    // An unterminated value: dropped too, the rest is kept.
    let cmd = Command::parse(one_frame(b"\x00\x00\x00\x0cDRi\0ABC\0j\0mx")).unwrap();
    assert_eq!(
        cmd,
        Command::Macro {
            stage: b'R',
            pairs: vec![(b(b"i"), b(b"ABC"))],
        }
    );
    // An unterminated name on its own.
    let cmd = Command::parse(one_frame(b"\x00\x00\x00\x04DTab")).unwrap();
    assert_eq!(
        cmd,
        Command::Macro {
            stage: b'T',
            pairs: vec![],
        }
    );
}

#[test]
fn connect_inet() {
    let cmd = Command::Connect {
        hostname: b(b"mail.example.com"),
        address: ConnectAddress::Inet {
            port: 25,
            addr: b(b"192.0.2.1"),
        },
    };
    check_command(
        b"\x00\x00\x00\x1fCmail.example.com\x004\x00\x19192.0.2.1\0",
        cmd.clone(),
    );
    let Command::Connect { address, .. } = cmd else {
        unreachable!()
    };
    assert_eq!(address.ip_text(), Some(&b"192.0.2.1"[..]));
    assert_eq!(address.ip(), Some("192.0.2.1".parse().unwrap()));
}

#[test]
fn connect_inet_high_port() {
    // Port 54321 = 0xD431; the low byte happens to be ASCII '1'.
    check_command(
        b"\x00\x00\x00\x1f\x43mail.example.com\x004\xd4\x31192.0.2.1\0",
        Command::Connect {
            hostname: b(b"mail.example.com"),
            address: ConnectAddress::Inet {
                port: 54321,
                addr: b(b"192.0.2.1"),
            },
        },
    );
}

#[test]
fn connect_inet6_with_sendmail_tag() {
    // Sendmail writes the address as `IPv6:...` (and the unresolved host
    // name as `[IPv6:...]`).
    let cmd = Command::Connect {
        hostname: b(b"[IPv6:2001:db8::25]"),
        address: ConnectAddress::Inet6 {
            port: 25,
            addr: b(b"IPv6:2001:db8::25"),
        },
    };
    check_command(
        b"\x00\x00\x00\x2aC[IPv6:2001:db8::25]\x006\x00\x19IPv6:2001:db8::25\0",
        cmd.clone(),
    );
    let Command::Connect { address, .. } = cmd else {
        unreachable!()
    };
    assert_eq!(address.ip_text(), Some(&b"2001:db8::25"[..]));
    assert_eq!(address.ip(), Some("2001:db8::25".parse().unwrap()));
}

#[test]
fn connect_inet6_without_tag() {
    // Port 50000 = 0xC350.
    let cmd = Command::Connect {
        hostname: b(b"mx.example.net"),
        address: ConnectAddress::Inet6 {
            port: 50000,
            addr: b(b"2001:db8::1"),
        },
    };
    check_command(
        b"\x00\x00\x00\x1fCmx.example.net\x006\xc3\x502001:db8::1\0",
        cmd.clone(),
    );
    let Command::Connect { address, .. } = cmd else {
        unreachable!()
    };
    assert_eq!(address.ip_text(), Some(&b"2001:db8::1"[..]));
    assert_eq!(address.ip(), Some("2001:db8::1".parse().unwrap()));
}

#[test]
fn connect_inet6_lowercase_tag_is_stripped() {
    let a = ConnectAddress::Inet6 {
        port: 0,
        addr: b(b"ipv6:::1"),
    };
    assert_eq!(a.ip_text(), Some(&b"::1"[..]));
    assert_eq!(a.ip(), Some("::1".parse().unwrap()));
}

#[test]
fn connect_unix() {
    let cmd = Command::Connect {
        hostname: b(b"localhost"),
        address: ConnectAddress::Unix {
            port: 0,
            path: b(b"/tmp/s"),
        },
    };
    check_command(b"\x00\x00\x00\x15Clocalhost\0L\0\0/tmp/s\0", cmd.clone());
    let Command::Connect { address, .. } = cmd else {
        unreachable!()
    };
    assert_eq!(address.ip_text(), None);
    assert_eq!(address.ip(), None);
}

#[test]
fn connect_unknown_family() {
    // Family `U` carries neither port nor address.
    let cmd = Command::Connect {
        hostname: b(b"localhost"),
        address: ConnectAddress::Unknown,
    };
    check_command(b"\x00\x00\x00\x0cClocalhost\0U", cmd.clone());
    let Command::Connect { address, .. } = cmd else {
        unreachable!()
    };
    assert_eq!(address.ip_text(), None);
    assert_eq!(address.ip(), None);
}

#[test]
fn connect_address_that_is_not_an_ip() {
    let a = ConnectAddress::Inet {
        port: 25,
        addr: b(b"not-an-ip"),
    };
    assert_eq!(a.ip_text(), Some(&b"not-an-ip"[..]));
    assert_eq!(a.ip(), None);
}

#[test]
fn helo() {
    check_command(
        b"\x00\x00\x00\x12Hmail.example.com\0",
        Command::Helo(b(b"mail.example.com")),
    );
}

#[test]
fn mail_with_esmtp_args() {
    check_command(
        b"\x00\x00\x00\x2dM<alice@example.com>\0SIZE=1024\0BODY=8BITMIME\0",
        Command::Mail(vec![
            b(b"<alice@example.com>"),
            b(b"SIZE=1024"),
            b(b"BODY=8BITMIME"),
        ]),
    );
}

#[test]
fn mail_null_sender() {
    check_command(b"\x00\x00\x00\x04M<>\0", Command::Mail(vec![b(b"<>")]));
}

#[test]
fn rcpt() {
    check_command(
        b"\x00\x00\x00\x13R<bob@example.org>\0",
        Command::Rcpt(vec![b(b"<bob@example.org>")]),
    );
}

#[test]
fn rcpt_with_esmtp_args() {
    check_command(
        b"\x00\x00\x00\x20R<bob@example.org>\0NOTIFY=NEVER\0",
        Command::Rcpt(vec![b(b"<bob@example.org>"), b(b"NOTIFY=NEVER")]),
    );
}

#[test]
fn data() {
    check_command(b"\x00\x00\x00\x01T", Command::Data);
}

#[test]
fn header() {
    check_command(
        b"\x00\x00\x00\x15LSubject\0hello world\0",
        Command::Header {
            name: b(b"Subject"),
            value: b(b"hello world"),
        },
    );
}

#[test]
fn header_folded_with_leading_space() {
    // With HDR_LEADSPC the value keeps its leading space; folds are LF + tab.
    check_command(
        b"\x00\x00\x00\x0fLTo\0 a@b,\n\tc@d\0",
        Command::Header {
            name: b(b"To"),
            value: b(b" a@b,\n\tc@d"),
        },
    );
}

#[test]
fn end_of_headers() {
    check_command(b"\x00\x00\x00\x01N", Command::EndOfHeaders);
}

#[test]
fn body_chunk() {
    check_command(
        b"\x00\x00\x00\x11Bline 1\r\nline 2\r\n",
        Command::Body(b(b"line 1\r\nline 2\r\n")),
    );
}

#[test]
fn body_chunk_is_raw_and_may_hold_nul() {
    check_command(b"\x00\x00\x00\x06Ba\0b\r\n", Command::Body(b(b"a\0b\r\n")));
    check_command(b"\x00\x00\x00\x01B", Command::Body(b(b"")));
}

#[test]
fn end_of_message() {
    check_command(b"\x00\x00\x00\x01E", Command::EndOfMessage(b(b"")));
    // libmilter treats a non-empty payload as a last body chunk.
    check_command(b"\x00\x00\x00\x05Etail", Command::EndOfMessage(b(b"tail")));
}

#[test]
fn abort_quit_and_quit_new_connection() {
    check_command(b"\x00\x00\x00\x01A", Command::Abort);
    check_command(b"\x00\x00\x00\x01Q", Command::Quit);
    check_command(b"\x00\x00\x00\x01K", Command::QuitNewConnection);
}

#[test]
fn unknown_command() {
    check_command(
        b"\x00\x00\x00\x0aUXFOO bar\0",
        Command::Unknown(b(b"XFOO bar")),
    );
}

// ---------------------------------------------------------------------------
// Responses, milter -> MTA
// ---------------------------------------------------------------------------

#[test]
fn optneg_reply_without_macros() {
    check_response(
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00\x00\x03",
        Response::OptNeg(OptNeg {
            version: 6,
            actions: Actions::ADD_HEADERS,
            protocol: Protocol::NO_CONNECT | Protocol::NO_HELO,
            macros: vec![],
        }),
    );
}

#[test]
fn optneg_reply_with_two_macro_lists() {
    // Actions ADDHDRS | SETSYMLIST = 0x101; protocol NOCONNECT | NOHELO |
    // NOEOH | SKIP = 0x443; then [stage 2 (MAIL), list] [stage 5 (EOM), list].
    check_response(
        b"\x00\x00\x00\x31O\x00\x00\x00\x06\x00\x00\x01\x01\x00\x00\x04\x43\
          \x00\x00\x00\x02{auth_authen} {mail_addr}\0\
          \x00\x00\x00\x05i\0",
        Response::OptNeg(OptNeg {
            version: 6,
            actions: Actions::ADD_HEADERS | Actions::SET_SYMLIST,
            protocol: Protocol::NO_CONNECT | Protocol::NO_HELO | Protocol::NO_EOH | Protocol::SKIP,
            macros: vec![
                MacroRequest {
                    stage: 2,
                    names: b(b"{auth_authen} {mail_addr}"),
                },
                MacroRequest {
                    stage: 5,
                    names: b(b"i"),
                },
            ],
        }),
    );
}

#[test]
fn optneg_reply_with_empty_macro_list() {
    // An empty list asks for no macros at that stage.
    check_response(
        b"\x00\x00\x00\x12O\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\0",
        Response::OptNeg(OptNeg {
            version: 6,
            actions: Actions::SET_SYMLIST,
            protocol: Protocol::empty(),
            macros: vec![MacroRequest {
                stage: 0,
                names: b(b""),
            }],
        }),
    );
}

#[test]
fn verdicts_without_payload() {
    let cases: [(&[u8], Response); 9] = [
        (b"\x00\x00\x00\x01c", Response::Continue),
        (b"\x00\x00\x00\x01a", Response::Accept),
        (b"\x00\x00\x00\x01r", Response::Reject),
        (b"\x00\x00\x00\x01t", Response::Tempfail),
        (b"\x00\x00\x00\x01d", Response::Discard),
        (b"\x00\x00\x00\x01s", Response::Skip),
        (b"\x00\x00\x00\x01f", Response::ConnFail),
        (b"\x00\x00\x00\x014", Response::Shutdown),
        (b"\x00\x00\x00\x01p", Response::Progress),
    ];
    for (wire, resp) in cases {
        check_response(wire, resp.clone());
        assert!(!resp.is_modification(), "{resp:?}");
        assert_eq!(resp.required_action(), None);
        assert_eq!(resp.is_final(), resp != Response::Progress, "{resp:?}");
    }
}

#[test]
fn reply_code() {
    check_response(
        b"\x00\x00\x00\x0ey550 5.7.1 no\0",
        Response::ReplyCode(b(b"550 5.7.1 no")),
    );
    check_response(
        b"\x00\x00\x00\x23y451-4.3.0 first\r\n451 4.3.0 second\0",
        Response::ReplyCode(b(b"451-4.3.0 first\r\n451 4.3.0 second")),
    );
    assert!(Response::ReplyCode(b(b"x")).is_final());
}

#[test]
fn add_header() {
    let r = Response::AddHeader {
        name: b(b"X-Spam"),
        value: b(b"yes"),
    };
    check_response(b"\x00\x00\x00\x0chX-Spam\0yes\0", r.clone());
    assert_eq!(r.required_action(), Some(Actions::ADD_HEADERS));
    assert!(r.is_modification() && !r.is_final());
}

#[test]
fn insert_header() {
    let r = Response::InsertHeader {
        index: 0,
        name: b(b"Received"),
        value: b(b"from x"),
    };
    check_response(
        b"\x00\x00\x00\x15i\x00\x00\x00\x00Received\0from x\0",
        r.clone(),
    );
    assert_eq!(r.required_action(), Some(Actions::ADD_HEADERS));
}

#[test]
fn change_header() {
    let r = Response::ChangeHeader {
        index: 1,
        name: b(b"Subject"),
        value: b(b"[SPAM] hi"),
    };
    check_response(
        b"\x00\x00\x00\x17m\x00\x00\x00\x01Subject\0[SPAM] hi\0",
        r.clone(),
    );
    assert_eq!(r.required_action(), Some(Actions::CHANGE_HEADERS));
}

#[test]
fn change_header_with_empty_value_deletes() {
    check_response(
        b"\x00\x00\x00\x0cm\x00\x00\x00\x02X-Old\0\0",
        Response::ChangeHeader {
            index: 2,
            name: b(b"X-Old"),
            value: b(b""),
        },
    );
}

#[test]
fn add_and_delete_recipient() {
    let add = Response::AddRcpt(b(b"<carol@example.net>"));
    check_response(b"\x00\x00\x00\x15+<carol@example.net>\0", add.clone());
    assert_eq!(add.required_action(), Some(Actions::ADD_RCPT));
    let del = Response::DelRcpt(b(b"<bob@example.org>"));
    check_response(b"\x00\x00\x00\x13-<bob@example.org>\0", del.clone());
    assert_eq!(del.required_action(), Some(Actions::DELETE_RCPT));
}

#[test]
fn add_recipient_with_parameters() {
    let with = Response::AddRcptPar {
        rcpt: b(b"<dave@example.net>"),
        args: Some(b(b"NOTIFY=SUCCESS,FAILURE")),
    };
    check_response(
        b"\x00\x00\x00\x2b2<dave@example.net>\0NOTIFY=SUCCESS,FAILURE\0",
        with.clone(),
    );
    assert_eq!(with.required_action(), Some(Actions::ADD_RCPT_PAR));
    check_response(
        b"\x00\x00\x00\x142<dave@example.net>\0",
        Response::AddRcptPar {
            rcpt: b(b"<dave@example.net>"),
            args: None,
        },
    );
}

#[test]
fn change_from() {
    let with = Response::ChangeFrom {
        sender: b(b"<bounce@example.com>"),
        args: Some(b(b"SIZE=2048")),
    };
    check_response(
        b"\x00\x00\x00\x20e<bounce@example.com>\0SIZE=2048\0",
        with.clone(),
    );
    assert_eq!(with.required_action(), Some(Actions::CHANGE_FROM));
    check_response(
        b"\x00\x00\x00\x16e<bounce@example.com>\0",
        Response::ChangeFrom {
            sender: b(b"<bounce@example.com>"),
            args: None,
        },
    );
}

#[test]
fn replace_body() {
    let r = Response::ReplaceBody(b(b"new body\r\n"));
    check_response(b"\x00\x00\x00\x0bbnew body\r\n", r.clone());
    assert_eq!(r.required_action(), Some(Actions::CHANGE_BODY));
    check_response(b"\x00\x00\x00\x01b", Response::ReplaceBody(b(b"")));
    check_response(b"\x00\x00\x00\x03b\0\0", Response::ReplaceBody(b(b"\0\0")));
}

#[test]
fn quarantine() {
    let r = Response::Quarantine(b(b"virus found"));
    check_response(b"\x00\x00\x00\x0dqvirus found\0", r.clone());
    assert_eq!(r.required_action(), Some(Actions::QUARANTINE));
}

#[test]
fn set_symlist() {
    let r = Response::SetSymList {
        stage: 3,
        names: b(b"{rcpt_addr}"),
    };
    check_response(b"\x00\x00\x00\x11l\x00\x00\x00\x03{rcpt_addr}\0", r.clone());
    assert!(!r.is_modification() && !r.is_final());
}

// ---------------------------------------------------------------------------
// A stream of several packets
// ---------------------------------------------------------------------------

#[test]
fn postfix_stream_decodes_packet_by_packet() {
    let stream: &[u8] = b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff\
        \x00\x00\x00\x27DCj\0mx.example.org\0{daemon_name}\0smtpd\0\
        \x00\x00\x00\x1fCmail.example.com\x004\x00\x19192.0.2.1\0\
        \x00\x00\x00\x02DH\
        \x00\x00\x00\x12Hmail.example.com\0\
        \x00\x00\x00\x01Q";
    let expected = [b'O', b'D', b'C', b'D', b'H', b'Q'];
    let dec = FrameDecoder::new(CHUNK_SIZE);
    // Fed whole, then in every possible pair of pieces.
    for split in 0..=stream.len() {
        let mut buf = BytesMut::from(&stream[..split]);
        let mut got = Vec::new();
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            got.push(Command::parse(f).unwrap());
        }
        buf.extend_from_slice(&stream[split..]);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            got.push(Command::parse(f).unwrap());
        }
        assert!(buf.is_empty());
        assert_eq!(got.iter().map(Command::code).collect::<Vec<_>>(), expected);
        assert_eq!(got[5], Command::Quit);
    }
}

// ---------------------------------------------------------------------------
// Malformed payloads
// ---------------------------------------------------------------------------

#[test]
fn missing_nul_terminators() {
    use PayloadError::MissingNul;
    let cases: [(u8, &'static [u8], &str); 9] = [
        (b'H', b"mail.example.com", "HELO name"),
        (b'C', b"localhost", "host name"),
        (b'C', b"h\x004\x00\x19192.0.2.1", "address"),
        (b'M', b"<a@b>", "sender"),
        (b'M', b"<a@b>\0SIZE=1", "ESMTP argument"),
        (b'R', b"<a@b>", "recipient"),
        (b'L', b"Subject", "header name"),
        (b'L', b"Subject\0hi", "header value"),
        (b'U', b"XFOO", "command"),
    ];
    for (code, payload, field) in cases {
        assert_eq!(
            command_error(code, payload),
            MissingNul {
                code: code as char,
                field
            },
            "{:?} {payload:?}",
            code as char
        );
    }
    let cases: [(u8, &'static [u8], &str); 10] = [
        (b'y', b"550 no", "reply text"),
        (b'h', b"X-A", "header name"),
        (b'h', b"X-A\0v", "header value"),
        (b'i', b"\0\0\0\0X-A\0v", "header value"),
        (b'm', b"\0\0\0\x01X-A", "header name"),
        (b'+', b"<a@b>", "recipient"),
        (b'2', b"<a@b>\0NOTIFY=NEVER", "ESMTP arguments"),
        (b'e', b"<a@b>\0SIZE=1", "ESMTP arguments"),
        (b'q', b"reason", "reason"),
        (b'l', b"\0\0\0\x02i", "macro list"),
    ];
    for (code, payload, field) in cases {
        assert_eq!(
            response_error(code, payload),
            MissingNul {
                code: code as char,
                field
            },
            "{:?} {payload:?}",
            code as char
        );
    }
    assert_eq!(
        response_error(b'-', b"<a@b>"),
        MissingNul {
            code: '-',
            field: "recipient"
        }
    );
    // The macro list of a negotiation reply.
    assert_eq!(
        response_error(b'O', b"\0\0\0\x06\0\0\x01\0\0\0\0\0\0\0\0\x02i j"),
        MissingNul {
            code: 'O',
            field: "macro list"
        }
    );
}

#[test]
fn short_fields() {
    use PayloadError::Short;
    let cases: [(u8, &'static [u8], &str); 10] = [
        (b'O', b"", "version"),
        (b'O', b"\0\0\0\x06", "actions"),
        (b'O', b"\0\0\0\x06\0\0\x01\xff\0\x1f", "protocol flags"),
        (b'C', b"", "host name"),
        (b'C', b"localhost\0", "address family"),
        (b'C', b"localhost\x004\x00", "port"),
        (b'C', b"localhost\x004\x00\x19", "address"),
        (b'H', b"", "HELO name"),
        (b'M', b"", "sender"),
        (b'R', b"", "recipient"),
    ];
    for (code, payload, field) in cases {
        assert_eq!(
            command_error(code, payload),
            Short {
                code: code as char,
                field
            },
            "{:?} {payload:?}",
            code as char
        );
    }
    let more: [(u8, &'static [u8], &str); 3] = [
        (b'L', b"", "header name"),
        (b'L', b"Subject\0", "header value"),
        (b'U', b"", "command"),
    ];
    for (code, payload, field) in more {
        assert_eq!(
            command_error(code, payload),
            Short {
                code: code as char,
                field
            }
        );
    }
    let cases: [(u8, &'static [u8], &str); 12] = [
        (
            b'O',
            b"\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff\0\0",
            "macro stage",
        ),
        (
            b'O',
            b"\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff\0\0\0\x02",
            "macro list",
        ),
        (b'y', b"", "reply text"),
        (b'h', b"X-A\0", "header value"),
        (b'i', b"\0\0\0", "header index"),
        (b'm', b"", "header index"),
        (b'm', b"\0\0\0\x01", "header name"),
        (b'm', b"\0\0\0\x01X-A\0", "header value"),
        (b'+', b"", "recipient"),
        (b'e', b"", "sender"),
        (b'l', b"\0\0", "macro stage"),
        (b'l', b"\0\0\0\x02", "macro list"),
    ];
    for (code, payload, field) in cases {
        assert_eq!(
            response_error(code, payload),
            Short {
                code: code as char,
                field
            },
            "{:?} {payload:?}",
            code as char
        );
    }
    for (code, field) in [(b'-', "recipient"), (b'2', "recipient"), (b'q', "reason")] {
        assert_eq!(
            response_error(code, b""),
            Short {
                code: code as char,
                field
            }
        );
    }
}

#[test]
fn trailing_bytes() {
    use PayloadError::Trailing;
    let cases: [(u8, &'static [u8], usize); 10] = [
        (b'C', b"localhost\0Uxyz", 3),
        (b'C', b"h\x004\x00\x19192.0.2.1\0x", 1),
        (b'H', b"mx\0extra", 5),
        (b'L', b"Subject\0hi\0x\0", 2),
        (b'T', b"x", 1),
        (b'N', b"\0", 1),
        (b'A', b"ab", 2),
        (b'Q', b"abc", 3),
        (b'K', b"\0\0\0\0", 4),
        (b'U', b"XFOO\0bar", 3),
    ];
    for (code, payload, extra) in cases {
        assert_eq!(
            command_error(code, payload),
            Trailing {
                code: code as char,
                extra
            },
            "{:?} {payload:?}",
            code as char
        );
    }
    let cases: [(u8, &'static [u8], usize); 13] = [
        (b'c', b"x", 1),
        (b'a', b"\0", 1),
        (b'r', b"550", 3),
        (b'4', b"xy", 2),
        (b'p', b"\0\0", 2),
        (b'y', b"550 no\0x", 1),
        (b'h', b"X-A\0v\0w\0", 2),
        (b'i', b"\0\0\0\0X-A\0v\0z", 1),
        (b'+', b"<a@b>\0<c@d>\0", 6),
        (b'2', b"<a@b>\0A=1\0B=2\0", 4),
        (b'e', b"<a@b>\0A=1\0c\0", 2),
        (b'q', b"r\0r", 1),
        (b'l', b"\0\0\0\x02i\0x", 1),
    ];
    for (code, payload, extra) in cases {
        assert_eq!(
            response_error(code, payload),
            Trailing {
                code: code as char,
                extra
            },
            "{:?} {payload:?}",
            code as char
        );
    }
}

#[test]
fn unknown_address_family() {
    for fam in [b'X', b'5', b'u', b'\0', 0xff] {
        let mut payload = b"localhost\0".to_vec();
        payload.push(fam);
        payload.extend_from_slice(b"\x00\x19192.0.2.1\0");
        let err = Command::parse(Frame {
            code: b'C',
            payload: Bytes::from(payload),
        })
        .unwrap_err();
        assert_eq!(
            err,
            PayloadError::Invalid {
                code: 'C',
                field: "address family"
            }
        );
    }
}

#[test]
fn unknown_codes() {
    // Response codes are not commands and vice versa; `O` is both.
    for code in [b'Z', b'c', b'y', b'\0', 0xff, b'P', b'S'] {
        assert_eq!(command_error(code, b""), PayloadError::UnknownCode(code));
    }
    for code in [b'Z', b'C', b'M', b'\0', 0xff, b'B', b'E'] {
        assert_eq!(response_error(code, b""), PayloadError::UnknownCode(code));
    }
}

#[test]
fn errors_display_the_code_and_field() {
    let e = command_error(b'H', b"mx");
    assert_eq!(
        e.to_string(),
        "'H' packet: the HELO name is not NUL-terminated"
    );
    assert_eq!(
        PayloadError::UnknownCode(0x5a).to_string(),
        "unknown packet code 0x5a"
    );
}

#[test]
fn no_prefix_of_a_valid_packet_panics() {
    // Every truncation of every vector's payload parses or errors, never panics.
    let vectors: [&[u8]; 8] = [
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff",
        b"\x00\x00\x00\x2aC[IPv6:2001:db8::25]\x006\x00\x19IPv6:2001:db8::25\0",
        b"\x00\x00\x00\x2dM<alice@example.com>\0SIZE=1024\0BODY=8BITMIME\0",
        b"\x00\x00\x00\x27DCj\0mx.example.org\0{daemon_name}\0smtpd\0",
        b"\x00\x00\x00\x17m\x00\x00\x00\x01Subject\0[SPAM] hi\0",
        b"\x00\x00\x00\x2b2<dave@example.net>\0NOTIFY=SUCCESS,FAILURE\0",
        b"\x00\x00\x00\x11l\x00\x00\x00\x03{rcpt_addr}\0",
        b"\x00\x00\x00\x31O\x00\x00\x00\x06\x00\x00\x01\x01\x00\x00\x04\x43\
          \x00\x00\x00\x02{auth_authen} {mail_addr}\0\x00\x00\x00\x05i\0",
    ];
    for v in vectors {
        let code = v[4];
        for end in 5..=v.len() {
            let f = Frame {
                code,
                payload: Bytes::copy_from_slice(&v[5..end]),
            };
            let _ = Command::parse(f.clone());
            let _ = Response::parse(f);
        }
    }
}
