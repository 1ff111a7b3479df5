//! The seed corpus, built from the protocol types so that the packet streams
//! are byte-exact what Postfix sends (macro names, ESMTP arguments and the
//! order of `D` packets as Postfix 3.x writes them) and the replies what a
//! milter writes. `examples/write_seeds.rs` writes them to `fuzz/corpus/`;
//! the pgp messages are added there from real GnuPG output (see the example).

use bytes::{Bytes, BytesMut};
use milter_proto::{Actions, Command, ConnectAddress, OptNeg, Protocol, Response, SmtpReply};

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn macros(stage: u8, pairs: &[(&'static str, &'static str)]) -> Command {
    Command::Macro {
        stage,
        pairs: pairs.iter().map(|(n, v)| (b(n), b(v))).collect(),
    }
}

fn optneg(version: u32, actions: u32, protocol: u32) -> OptNeg {
    OptNeg {
        version,
        actions: Actions::from_bits_retain(actions),
        protocol: Protocol::from_bits_retain(protocol),
        macros: vec![],
    }
}

/// One SMTP transaction as Postfix's smtpd sends it to a milter.
fn postfix_message(queue_id: &'static str, body: &'static str) -> Vec<Command> {
    vec![
        macros(
            b'M',
            &[
                ("i", queue_id),
                ("{mail_addr}", "alice@example.net"),
                ("{mail_mailer}", "smtp"),
                ("{mail_host}", "mx.example.net"),
            ],
        ),
        Command::Mail(vec![
            b("<alice@example.net>"),
            b("SIZE=1234"),
            b("BODY=8BITMIME"),
        ]),
        macros(
            b'R',
            &[
                ("{rcpt_addr}", "bob@example.org"),
                ("{rcpt_mailer}", "local"),
            ],
        ),
        Command::Rcpt(vec![b("<bob@example.org>")]),
        macros(
            b'R',
            &[
                ("{rcpt_addr}", "carol@example.org"),
                ("{rcpt_mailer}", "local"),
            ],
        ),
        Command::Rcpt(vec![b("<carol@example.org>"), b("NOTIFY=NEVER")]),
        macros(b'T', &[]),
        Command::Data,
        macros(b'L', &[]),
        Command::Header {
            name: b("Received"),
            value: b(
                " from client.example.net (client.example.net [192.0.2.10])\r\n\tby mx.example.org (Postfix) with ESMTP id 4XyZ",
            ),
        },
        Command::Header {
            name: b("From"),
            value: b(" Alice <alice@example.net>"),
        },
        Command::Header {
            name: b("To"),
            value: b(" bob@example.org, carol@example.org"),
        },
        Command::Header {
            name: b("Subject"),
            value: b(" hello"),
        },
        Command::Header {
            name: b("Message-ID"),
            value: b(" <1@example.net>"),
        },
        macros(b'N', &[]),
        Command::EndOfHeaders,
        Command::Body(b(body)),
        macros(b'E', &[]),
        Command::EndOfMessage(Bytes::new()),
    ]
}

/// A whole Postfix connection (protocol 6): negotiation, connect, EHLO, two
/// messages, the second aborted (RSET), a third after it, then QUIT.
fn postfix_connection(offer: OptNeg) -> Vec<Command> {
    let mut c = vec![
        Command::OptNeg(offer),
        macros(
            b'C',
            &[
                ("j", "mx.example.org"),
                ("{daemon_name}", "mx.example.org"),
                ("v", "Postfix 3.7.11"),
                ("_", "client.example.net [192.0.2.10]"),
                ("{client_addr}", "192.0.2.10"),
            ],
        ),
        Command::Connect {
            hostname: b("client.example.net"),
            address: ConnectAddress::Inet {
                port: 40000,
                addr: b("192.0.2.10"),
            },
        },
        macros(
            b'H',
            &[
                ("{tls_version}", "TLSv1.3"),
                ("{cipher}", "TLS_AES_256_GCM_SHA384"),
            ],
        ),
        Command::Helo(b("client.example.net")),
    ];
    c.extend(postfix_message("4XyZ1", "Hi Bob,\r\n\r\nsee you.\r\n"));
    let mut second = postfix_message("4XyZ2", "second\r\n");
    second.truncate(6);
    c.extend(second);
    c.push(Command::Abort);
    c.extend(postfix_message("4XyZ3", "third\r\n"));
    c.push(Command::Abort);
    c.push(Command::Quit);
    c
}

fn wire(cmds: &[Command]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for c in cmds {
        c.encode(&mut out);
    }
    out.to_vec()
}

fn wire_responses(rs: &[Response]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for r in rs {
        r.encode(&mut out);
    }
    out.to_vec()
}

/// The Postfix 3.x offers: protocol 6 (`0x1ff`/`0x1fffff`), and 2.
fn postfix6() -> OptNeg {
    optneg(6, 0x1ff, 0x001f_ffff)
}

/// The filter requirements of a `milter_session` input (see
/// [`crate::milter_session::run`]).
fn session_input(
    steps: u16,
    no_reply: u16,
    actions: u32,
    flags: u8,
    script: &[u8],
    stream: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&steps.to_be_bytes());
    v.extend_from_slice(&no_reply.to_be_bytes());
    v.extend_from_slice(&actions.to_be_bytes());
    v.push(flags);
    v.push(0); // no macro requests
    v.push(u8::try_from(script.len()).expect("short script"));
    v.extend_from_slice(script);
    v.extend_from_slice(stream);
    v
}

/// A `milter_session` input for a whole conversation, with the filter's
/// decision for each packet given by `decide`.
fn session_seed(
    steps: u16,
    no_reply: u16,
    actions: u32,
    flags: u8,
    cmds: &[Command],
    decide: impl FnMut(&Command) -> u8,
) -> Vec<u8> {
    let script: Vec<u8> = cmds.iter().map(decide).collect();
    session_input(steps, no_reply, actions, flags, &script, &wire(cmds))
}

fn postfix2() -> OptNeg {
    optneg(2, 0x3f, 0x7f)
}

/// Every seed: (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let pf6 = wire(&postfix_connection(postfix6()));
    let pf2 = wire(&postfix_connection(postfix2()));
    let mut s = Vec::new();

    // frame_decoder: limit choice, cut count and cuts, then the stream.
    let with_prefix = |limit_choice: u8, cuts: &[u16], stream: &[u8]| {
        let mut v = vec![limit_choice, u8::try_from(cuts.len()).expect("few cuts")];
        for c in cuts {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v.extend_from_slice(stream);
        v
    };
    s.push((
        "frame_decoder",
        "postfix6-connection",
        with_prefix(1, &[3, 17, 200], &pf6),
    ));
    s.push((
        "frame_decoder",
        "postfix2-small-limit",
        with_prefix(0, &[1], &[&[40u8][..], &pf2[..300]].concat()),
    ));
    s.push((
        "frame_decoder",
        "http-probe",
        with_prefix(1, &[], b"GET / HTTP/1.0\r\n\r\n"),
    ));
    s.push((
        "frame_decoder",
        "zero-length",
        with_prefix(1, &[], b"\0\0\0\0A"),
    ));
    // A length just within a 1 MiB limit and a few bytes: memory must follow
    // the bytes, not the claim.
    s.push((
        "frame_decoder",
        "claims-1mib",
        with_prefix(3, &[], b"\x00\x0f\xff\xffBpartial"),
    ));
    s.push((
        "frame_decoder",
        "length-4gib",
        with_prefix(3, &[2], b"\xff\xff\xff\xffB"),
    ));
    s.push((
        "frame_decoder",
        "truncated-eom",
        with_prefix(1, &[5], b"\0\0\0\x10Bpartial"),
    ));
    s.push((
        "frame_decoder",
        "milter-replies",
        with_prefix(2, &[7], &wire_responses(&milter_replies())),
    ));

    // milter_session: requirements, one script byte per packet, the stream.
    let all_steps = 0x3ff;
    let all_actions = 0x1ff;
    let pf6_cmds = postfix_connection(postfix6());
    // Every step delivered; every kind of modification at the two ends of
    // message, with progress before the second.
    let mut eom = [0x40u8, 0x70].into_iter().cycle();
    s.push((
        "milter_session",
        "postfix6-all-steps-modify",
        session_seed(all_steps, 0, all_actions, 0, &pf6_cmds, |c| match c {
            Command::EndOfMessage(_) => eom.next().expect("cycles"),
            _ => 0,
        }),
    ));
    // A body of two chunks, quarantine, a header after the body; then
    // invalid and oversized requests (64 KiB packets).
    let mut eom = [0x80u8, 0xa0, 0xc0, 0xe0].into_iter().cycle();
    let mut k = pf6_cmds.clone();
    k.pop();
    k.extend(postfix_message("4XyZ4", "fourth\r\n"));
    s.push((
        "milter_session",
        "postfix6-body-and-invalid-modifications",
        session_seed(all_steps, 0, all_actions, 0, &k, |c| match c {
            Command::EndOfMessage(_) => eom.next().expect("cycles"),
            _ => 0,
        }),
    ));
    // Headers only, declared no-reply (the README's example filter), which
    // rejects at a header: the decision waits for end of message.
    s.push((
        "milter_session",
        "postfix6-header-noreply",
        session_seed(0x20, 0x20, 0x1, 0, &pf6_cmds, |c| match c {
            Command::Header { .. } => 0x05,
            _ => 0,
        }),
    ));
    // No-reply HELO, MAIL, RCPT and headers; decisive verdicts there.
    s.push((
        "milter_session",
        "postfix6-defer",
        session_seed(all_steps, 0x2e, 0x3f, 0, &pf6_cmds, |c| match c {
            Command::Rcpt(_) => 0x07,
            Command::Data => 0x03,
            _ => 0,
        }),
    ));
    // Protocol 2: no no-reply flags, fewer actions; skip in the body,
    // progress asked for outside end of message.
    s.push((
        "milter_session",
        "postfix2-skip",
        session_seed(
            all_steps,
            0,
            0x3f,
            2,
            &postfix_connection(postfix2()),
            |c| match c {
                Command::Body(_) => 0x04,
                Command::Rcpt(_) => 0x10,
                _ => 0,
            },
        ),
    ));
    // Sendmail-like 1 MiB packets; a filter that never answers RCPT.
    s.push((
        "milter_session",
        "sendmail-1m-hang",
        session_seed(
            all_steps,
            0,
            all_actions,
            8,
            &postfix_connection(optneg(6, 0x1ff, 0x3f1f_ffff)),
            |c| match c {
                Command::Rcpt(_) => 0x08,
                _ => 0,
            },
        ),
    ));
    // K and a second negotiation on the same socket.
    let mut k = pf6_cmds.clone();
    k.pop();
    k.push(Command::QuitNewConnection);
    k.extend(pf6_cmds.clone());
    s.push((
        "milter_session",
        "postfix6-new-connection",
        session_seed(all_steps, 0, all_actions, 0, &k, |c| match c {
            Command::EndOfMessage(_) => 0x20,
            _ => 0,
        }),
    ));
    // Not negotiation first: a probe.
    s.push((
        "milter_session",
        "probe-first",
        session_input(all_steps, 0, 0, 0, &[], b"\0\0\0\x05GET /"),
    ));

    // mta_session: offer choice, script of moves, the milter's responses.
    let mta = |offer: u8, moves: &[u8], replies: &[Response]| {
        let mut v = vec![offer, u8::try_from(moves.len()).expect("few moves")];
        v.extend_from_slice(moves);
        v.extend_from_slice(&wire_responses(replies));
        v
    };
    let granted = |actions: u32, protocol: u32| Response::OptNeg(optneg(6, actions, protocol));
    // HELO, MAIL, RCPT, header, body, EOM.
    let msg = [0u8, 1, 2, 3, 4, 5];
    let mut good = vec![granted(0x1ff, 0x400)];
    good.extend([
        Response::Continue,
        Response::Continue,
        Response::Continue,
        Response::Continue,
        Response::Continue,
    ]);
    good.extend(milter_replies());
    s.push(("mta_session", "well-behaved", mta(0, &msg, &good)));
    let reply = SmtpReply::new(550, Some("5.7.1"), "Not welcome here").expect("valid");
    s.push((
        "mta_session",
        "reject-at-rcpt",
        mta(
            0,
            &msg,
            &[
                granted(0x1ff, 0),
                Response::Continue,
                Response::Continue,
                Response::ReplyCode(reply.wire().clone()),
            ],
        ),
    ));
    s.push((
        "mta_session",
        "modification-at-rcpt",
        mta(
            0,
            &msg,
            &[
                granted(0x1ff, 0),
                Response::Continue,
                Response::Continue,
                Response::AddHeader {
                    name: b("X-Early"),
                    value: b("1"),
                },
            ],
        ),
    ));
    s.push((
        "mta_session",
        "skip-in-body",
        mta(
            0,
            &[2, 4, 4, 5],
            &[
                granted(0x1ff, 0x400),
                Response::Skip,
                Response::Skip,
                Response::Accept,
            ],
        ),
    ));
    s.push((
        "mta_session",
        "progress-then-tempfail",
        mta(
            0,
            &[5],
            &[
                granted(0x1ff, 0),
                Response::Progress,
                Response::Progress,
                Response::Tempfail,
            ],
        ),
    ));
    s.push((
        "mta_session",
        "body-interleaved",
        mta(
            0,
            &[5],
            &[
                granted(0x1ff, 0),
                Response::ReplaceBody(b("a")),
                Response::AddHeader {
                    name: b("X-A"),
                    value: b("1"),
                },
                Response::ReplaceBody(b("b")),
                Response::Continue,
            ],
        ),
    ));
    s.push((
        "mta_session",
        "unsolicited",
        mta(
            0,
            &[5, 9],
            &[granted(0x1ff, 0), Response::Continue, Response::Continue],
        ),
    ));
    s.push((
        "mta_session",
        "postfix2-too-much",
        mta(1, &msg, &[granted(0x1ff, 0x7f)]),
    ));
    s.push((
        "mta_session",
        "bad-reply-text",
        mta(
            0,
            &[1],
            &[granted(0x3f, 0), Response::ReplyCode(b("250 2.0.0 ok"))],
        ),
    ));

    // mailman_address: the text.
    for (name, text) in [
        ("envelope", "<Alice.Smith@Example.ORG>"),
        ("source-route", "<@relay.example:Carol@Example.org>"),
        ("extension", "list+bounces@lists.example.org"),
        (
            "display-names",
            "\"Smith, Alice\" <Alice@Example.org>, bob@example.org (Bob)",
        ),
        ("group", "Team: carol@example.org, <dave@example.org>;"),
        (
            "quoted-decoy",
            "\"x <fake@evil.example>\" <real@example.org>",
        ),
        (
            "folded",
            "Eve\r\n <eve@example.org>,\r\n\tfrank@example.org",
        ),
        (
            "comment-nesting",
            "(a (b) c@d) \"q\\\"x@y\" <ok@example.org> (z@w)",
        ),
    ] {
        s.push(("mailman_address", name, text.as_bytes().to_vec()));
    }
    s
}

/// End-of-message replies of a milter using every action, then continue.
fn milter_replies() -> Vec<Response> {
    vec![
        Response::Progress,
        Response::AddHeader {
            name: b("X-Checked"),
            value: b("yes"),
        },
        Response::InsertHeader {
            index: 0,
            name: b("X-First"),
            value: b("1"),
        },
        Response::ChangeHeader {
            index: 1,
            name: b("Subject"),
            value: b("[tagged] hello"),
        },
        Response::AddRcpt(b("<archive@example.org>")),
        Response::AddRcptPar {
            rcpt: b("<audit@example.org>"),
            args: Some(b("NOTIFY=NEVER")),
        },
        Response::DelRcpt(b("<carol@example.org>")),
        Response::ChangeFrom {
            sender: b("<bounces@example.org>"),
            args: None,
        },
        Response::Quarantine(b("held for review")),
        Response::ReplaceBody(b("replaced body\r\n")),
        Response::Continue,
    ]
}
