//! The milter over the milter protocol: our MTA-side client (which plays an
//! SMTP session the way Postfix does) against an in-process server.

mod support;

use bytes::Bytes;
use minimilter::proto::{Answer, Offer, Step};
use minimilter::transaction::{Outcome, Transcript, run_next_message};
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, run_message,
};
use pgp_milter::policy::{Bounces, Require};
use pgp_milter::{PgpMilter, Policy};
use support::{Cte, cases, gpg, inline, pgp_mime, plain};

async fn client(policy: Policy, offer: Offer) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(PgpMilter::new(policy), ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer,
        ..ClientConfig::default()
    };
    MilterClient::negotiate(Box::new(a), cfg).await.unwrap()
}

fn spec(message: Vec<u8>) -> MessageSpec {
    MessageSpec {
        from: "alice@client.example".into(),
        rcpts: vec!["bob@example.org".into()],
        message: Bytes::from(message),
        ..MessageSpec::default()
    }
}

fn rejected_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rejected { reply, .. } => reply.clone().unwrap_or_default(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn the_whole_corpus_on_one_connection_per_policy() {
    for require in [Require::Encrypted, Require::EncryptedOrSigned] {
        let policy = Policy {
            require,
            ..Policy::default()
        };
        let mut c = client(policy, Offer::postfix()).await;
        let mut first = true;
        // Twice over, so every verdict follows every other on one
        // connection: nothing may leak from one message to the next.
        for round in 0..2 {
            for case in cases() {
                let s = spec(case.message);
                let t = if first {
                    first = false;
                    run_message(&mut c, &s).await.unwrap()
                } else {
                    run_next_message(&mut c, &s).await.unwrap()
                };
                let expect = match require {
                    Require::Encrypted => case.passes_encrypted,
                    Require::EncryptedOrSigned => case.passes_signed,
                };
                assert_eq!(
                    t.outcome == Outcome::Accepted,
                    expect,
                    "round {round}, {} under {require:?}: {:?}",
                    case.name,
                    t.outcome
                );
                if !expect {
                    let text = rejected_text(&t.outcome);
                    assert!(text.starts_with("550 5.7.1 Only OpenPGP-"), "{text}");
                }
            }
        }
        c.quit().await.unwrap();
    }
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn plain_after_encrypted_on_one_connection_is_refused() {
    // The seed kept its body buffer across messages: one PGP message made
    // every later one pass. Here each message is judged on its own.
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(pgp_mime("one", &gpg().encrypted)))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let t = run_next_message(&mut c, &spec(plain("two", "plain\n")))
        .await
        .unwrap();
    assert_eq!(
        rejected_text(&t.outcome),
        "550 5.7.1 Only OpenPGP-encrypted mail is accepted here \
         (unencrypted content: text/plain part)"
    );
    let t = run_next_message(
        &mut c,
        &spec(inline("three", &gpg().encrypted, Cte::Base64, true)),
    )
    .await
    .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    c.quit().await.unwrap();
}

/// The answers to the body chunks of a transcript.
fn body_answers(t: &Transcript) -> Vec<Option<Answer>> {
    t.steps
        .iter()
        .filter(|r| r.outcome.step == Step::Body)
        .map(|r| r.outcome.answer.clone())
        .collect()
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn pgp_mime_text_outside_the_multipart_is_read_and_bounded() {
    // A large epilogue: the closing boundary arrives in the first chunk,
    // the rest is still read (never SKIP, even where the MTA offers it),
    // and white space passes however long it is.
    let m = pgp_mime("big", &gpg().encrypted);
    let mut blank = m.clone();
    blank.extend(std::iter::repeat_n(b' ', 300_000));
    blank.extend_from_slice(b"\r\n");
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(blank)).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let answers = body_answers(&t);
    assert!(answers.len() > 1, "all chunks sent: {answers:?}");
    assert!(answers.iter().all(|a| *a == Some(Answer::Continue)));

    // Text: up to MAX_OUTER_TEXT bytes in the epilogue and in the preamble
    // pass (the support message has Enigmail's preamble line and an
    // epilogue word already), more is refused.
    let limit = pgp_milter::milter::MAX_OUTER_TEXT;
    let line = |n: usize| {
        let mut v = vec![b'x'; n];
        v.extend_from_slice(b"\r\n");
        v
    };
    let preamble_at = m.windows(7).position(|w| w == b"This is").unwrap();
    let with_preamble = |n: usize| {
        let mut v = m[..preamble_at].to_vec();
        v.extend(line(n));
        v.extend_from_slice(&m[preamble_at..]);
        v
    };
    let preamble_text = "ThisisanOpenPGP/MIMEencryptedmessage(RFC4880and3156)".len();
    let epilogue_text = "epilogue".len();
    let mut at_limit = m.clone();
    at_limit.extend(line(limit - epilogue_text));
    let mut over = m.clone();
    for _ in 0..40_000 {
        over.extend_from_slice(b"plaintext after the closing boundary\r\n");
    }
    for (name, message, accepted, reason) in [
        ("epilogue at the limit", at_limit, true, ""),
        (
            "epilogue over the limit",
            over,
            false,
            "(more than 8192 bytes of text after the closing boundary (epilogue), at most 4096)",
        ),
        (
            "preamble at the limit",
            with_preamble(limit - preamble_text),
            true,
            "",
        ),
        (
            "preamble over the limit",
            with_preamble(limit - preamble_text + 1),
            false,
            "(4097 bytes of text before the first boundary (preamble), at most 4096)",
        ),
    ] {
        let mut c = client(Policy::default(), Offer::postfix()).await;
        let t = run_message(&mut c, &spec(message)).await.unwrap();
        if accepted {
            assert_eq!(t.outcome, Outcome::Accepted, "{name}");
        } else {
            // Refused at the body step, without reading the rest.
            assert!(
                matches!(t.outcome, Outcome::Rejected { at: Step::Body, .. }),
                "{name}: {:?}",
                t.outcome
            );
            let text = rejected_text(&t.outcome);
            assert!(text.ends_with(reason), "{name}: {text}");
        }
    }
}

#[tokio::test]
async fn refused_early_when_the_structure_is_complete_and_wrong() {
    // multipart/mixed with a plaintext part: refused at the body step, as
    // soon as the closing boundary is in, not at end of message.
    let m = support::mixed("mix", &["Content-Type: text/plain\r\n\r\nhello".to_owned()]);
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(m)).await.unwrap();
    assert!(
        matches!(t.outcome, Outcome::Rejected { at: Step::Body, .. }),
        "{:?}",
        t.outcome
    );
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn size_is_no_reason_to_refuse_unless_message_size_limit_says_so() {
    // max_body_bytes bounds only what is kept whole: inline armor of 5000
    // bytes (judged as it streams) and 7 KB of headers pass a 4096 cap.
    let policy = Policy {
        max_body_bytes: 4096,
        ..Policy::default()
    };
    let mut c = client(policy, Offer::postfix()).await;
    let mut text = gpg().encrypted.clone();
    while text.len() < 5000 {
        text.push_str("\n\n");
    }
    let t = run_message(&mut c, &spec(inline("cap", &text, Cte::SevenBit, false)))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let mut big_headers = String::new();
    for i in 0..100 {
        big_headers.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(60)));
    }
    let mut m = big_headers.into_bytes();
    m.extend(inline("hdr", &gpg().encrypted, Cte::SevenBit, false));
    let t = run_next_message(&mut c, &spec(m)).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    c.quit().await.unwrap();

    // message_size_limit answers as Postfix's does, at the chunk that
    // crosses it.
    let policy = Policy {
        message_size_limit: Some(4096),
        ..Policy::default()
    };
    let mut c = client(policy, Offer::postfix()).await;
    let t = run_message(&mut c, &spec(inline("big", &text, Cte::SevenBit, false)))
        .await
        .unwrap();
    assert_eq!(
        rejected_text(&t.outcome),
        "552 5.3.4 Message size exceeds fixed limit"
    );
    // The next message, small, is judged afresh.
    let t = run_next_message(
        &mut c,
        &spec(inline("ok", &gpg().encrypted, Cte::SevenBit, false)),
    )
    .await
    .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
}

#[tokio::test]
async fn postmaster_and_abuse_always_get_plain_mail() {
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let mut first = true;
    for rcpt in ["Postmaster", "postmaster@example.org", "ABUSE@example.org"] {
        let s = MessageSpec {
            rcpts: vec![rcpt.into()],
            ..spec(plain("role", "Your server is misconfigured.\n"))
        };
        let t = if first {
            first = false;
            run_message(&mut c, &s).await.unwrap()
        } else {
            run_next_message(&mut c, &s).await.unwrap()
        };
        assert_eq!(t.outcome, Outcome::Accepted, "{rcpt}");
    }
    c.quit().await.unwrap();
}

#[tokio::test]
async fn mixed_recipients_are_split_into_separate_transactions() {
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let s = MessageSpec {
        rcpts: vec!["bob@example.org".into(), "postmaster@example.org".into()],
        ..spec(plain("mixed", "hello\n"))
    };
    let t = run_message(&mut c, &s).await.unwrap();
    assert_eq!(t.refused_rcpts.len(), 1, "{:?}", t.refused_rcpts);
    let r = &t.refused_rcpts[0];
    assert_eq!(r.rcpt.trim_matches(['<', '>']), "postmaster@example.org");
    assert!(r.temporary);
    assert_eq!(
        r.reply.as_deref(),
        Some(
            "452 4.5.3 <postmaster@example.org>: Recipient under a different OpenPGP policy; \
             send to this recipient separately"
        ),
        "{r:?}"
    );
    // Bob's copy is still checked (and refused: it is plain).
    assert!(matches!(t.outcome, Outcome::Rejected { .. }));
}

#[tokio::test]
async fn authenticated_submissions_are_skipped_unless_configured() {
    let auth = |s: MessageSpec| MessageSpec {
        macros: vec![("{auth_authen}".into(), "alice".into())],
        ..s
    };
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &auth(spec(plain("out", "outgoing\n"))))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    // Decided before the body: no body step was waited for.
    assert!(
        !t.steps
            .iter()
            .any(|r| r.outcome.step == Step::Body && r.outcome.answer.is_some()),
        "authenticated mail is accepted before the body"
    );
    c.quit().await.unwrap();

    let strict = Policy {
        skip_authenticated: false,
        ..Policy::default()
    };
    let mut c = client(strict, Offer::postfix()).await;
    let t = run_message(&mut c, &auth(spec(plain("out", "outgoing\n"))))
        .await
        .unwrap();
    assert!(
        matches!(t.outcome, Outcome::Rejected { .. }),
        "{:?}",
        t.outcome
    );
}

#[tokio::test]
async fn exempt_senders_and_unenforced_domains_pass() {
    let policy = Policy {
        exempt_senders: vec![
            pgp_milter::policy::AddressPattern::parse("@partner.example").unwrap(),
        ],
        enforce_domains: vec!["example.org".into()],
        ..Policy::default()
    };
    let mut c = client(policy, Offer::postfix()).await;
    let t = run_message(
        &mut c,
        &MessageSpec {
            from: "news@partner.example".into(),
            ..spec(plain("a", "hi\n"))
        },
    )
    .await
    .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let t = run_next_message(
        &mut c,
        &MessageSpec {
            rcpts: vec!["someone@elsewhere.example".into()],
            ..spec(plain("b", "hi\n"))
        },
    )
    .await
    .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let t = run_next_message(&mut c, &spec(plain("c", "hi\n")))
        .await
        .unwrap();
    assert!(matches!(t.outcome, Outcome::Rejected { .. }));
    c.quit().await.unwrap();
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn a_closing_boundary_split_across_body_chunks_is_found() {
    // Pad the preamble (white space, which is not counted as text) so that
    // the closing delimiter straddles the end of the first 65535-byte body
    // chunk.
    let m = pgp_mime("split", &gpg().encrypted);
    let body_start = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let closing = m
        .windows(16)
        .position(|w| w == b"--enc-b0undary--")
        .unwrap();
    let preamble_at = m.windows(7).position(|w| w == b"This is").unwrap();
    let want = body_start + minimilter::proto::CHUNK_SIZE - 6;
    let mut pad = want - closing;
    let mut padding = String::new();
    while pad > 0 {
        let n = pad.min(72);
        if n < 3 {
            padding.push_str(&" ".repeat(n));
            break;
        }
        padding.push_str(&" ".repeat(n - 2));
        padding.push_str("\r\n");
        pad -= n;
    }
    let mut padded = m[..preamble_at].to_vec();
    padded.extend_from_slice(padding.as_bytes());
    padded.extend_from_slice(&m[preamble_at..]);
    let closing = padded
        .windows(16)
        .position(|w| w == b"--enc-b0undary--")
        .unwrap();
    assert_eq!(closing - body_start, minimilter::proto::CHUNK_SIZE - 6);
    // An epilogue of text: refused as soon as the delimiter is complete
    // and the epilogue after it counted, which shows where it was found.
    padded.extend(std::iter::repeat_n(b'e', 100_000));
    padded.extend_from_slice(b"\r\n");

    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(padded)).await.unwrap();
    assert!(
        rejected_text(&t.outcome).contains("after the closing boundary (epilogue)"),
        "{:?}",
        t.outcome
    );
    let answers = body_answers(&t);
    assert_eq!(
        answers.len(),
        2,
        "decided on the chunk that completes the delimiter"
    );
    assert_eq!(answers[0], Some(Answer::Continue));
    assert!(matches!(answers[1], Some(Answer::Reply(_))), "{answers:?}");
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn smime_and_lone_key_blocks_are_refused_with_their_own_reasons() {
    let smime = support::smime_messages();
    // The OpenSSL output is what it claims to be.
    let claims = [
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data",
        "Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data",
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"",
        "Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"",
        "Content-Type: application/x-pkcs7-mime; smime-type=signed-data",
    ];
    for ((name, m), claim) in smime.iter().zip(claims) {
        assert!(
            String::from_utf8_lossy(m).contains(claim),
            "{name}: {claim}"
        );
    }
    let g = gpg();
    let key_attachment = support::mixed(
        "key",
        &[support::attachment(
            "application/pgp-keys",
            "bob.asc",
            g.public_key.as_bytes(),
        )],
    );
    let keys = [
        ("key block inline", plain("key", &g.public_key)),
        ("key block attached", key_attachment),
    ];
    // Signed S/MIME is no more OpenPGP-signed than encrypted S/MIME is
    // OpenPGP-encrypted: refused under both requirements (the reply
    // template is the Policy's default either way).
    for require in [Require::Encrypted, Require::EncryptedOrSigned] {
        let policy = Policy {
            require,
            ..Policy::default()
        };
        let mut c = client(policy, Offer::postfix()).await;
        let all = smime
            .iter()
            .map(|(n, m)| (*n, m.clone(), "S/MIME is not OpenPGP"))
            .chain(keys.iter().map(|(n, m)| {
                (
                    *n,
                    m.clone(),
                    "only an OpenPGP key block (PGP PUBLIC KEY BLOCK), no encrypted message",
                )
            }));
        for (i, (name, m, reason)) in all.enumerate() {
            let t = if i == 0 {
                run_message(&mut c, &spec(m)).await.unwrap()
            } else {
                run_next_message(&mut c, &spec(m)).await.unwrap()
            };
            assert_eq!(
                rejected_text(&t.outcome),
                format!("550 5.7.1 Only OpenPGP-encrypted mail is accepted here ({reason})"),
                "{name} under {require:?}"
            );
        }
        c.quit().await.unwrap();
    }
}

/// The first message of a connection, or the next one.
async fn next(c: &mut MilterClient, s: &MessageSpec, first: &mut bool) -> Transcript {
    if std::mem::replace(first, false) {
        run_message(c, s).await.unwrap()
    } else {
        run_next_message(c, s).await.unwrap()
    }
}

/// A message from the null sender `<>`.
fn bounce(message: Vec<u8>) -> MessageSpec {
    MessageSpec {
        from: String::new(),
        ..spec(message)
    }
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn bounces_pass_only_as_small_delivery_reports_from_the_null_sender() {
    use support::{DsnReturn, postfix_dsn};
    let original_headers = "From: bob@example.org\nTo: nobody@remote.example\n\
                            Subject: plans\nMessage-Id: <1@example.org>\n";
    let headers = postfix_dsn(
        "dsn-headers",
        &DsnReturn::Headers(original_headers.into()),
        "",
    );
    let nothing = postfix_dsn("dsn-nothing", &DsnReturn::Nothing, "");
    let encrypted = postfix_dsn(
        "dsn-encrypted",
        &DsnReturn::Message(pgp_mime("original", &gpg().encrypted)),
        "",
    );
    let clear = postfix_dsn(
        "dsn-clear",
        &DsnReturn::Message(plain("original", "The plans, in the clear.\n")),
        "",
    );
    let big = postfix_dsn(
        "dsn-big",
        &DsnReturn::Nothing,
        &"Padding the explanation.\n".repeat(6000),
    );
    let policy = Policy {
        bounces: Bounces::AcceptReports,
        ..Policy::default()
    };
    let mut c = client(policy, Offer::postfix()).await;
    let mut first = true;
    for (name, s) in [
        ("headers returned", bounce(headers.clone())),
        ("nothing returned", bounce(nothing.clone())),
        ("encrypted message returned", bounce(encrypted.clone())),
    ] {
        let t = next(&mut c, &s, &mut first).await;
        assert_eq!(t.outcome, Outcome::Accepted, "{name}");
    }
    for (name, s, reason) in [
        (
            "plaintext returned",
            bounce(clear),
            "(delivery status report returns a message that is not OpenPGP: \
             unencrypted content: text/plain part)",
        ),
        (
            "larger than max_bounce_bytes",
            bounce(big),
            "(delivery status report larger than 131072 bytes (max_bounce_bytes))",
        ),
        (
            "plain mail from the null sender",
            bounce(plain("not a report", "Hello from <>.\n")),
            "(unencrypted content: text/plain part)",
        ),
        (
            "a report from a real sender",
            spec(headers.clone()),
            "(unencrypted content: text/plain part)",
        ),
    ] {
        let t = next(&mut c, &s, &mut first).await;
        let text = rejected_text(&t.outcome);
        assert!(text.starts_with("550 5.7.1 "), "{name}: {text}");
        assert!(text.ends_with(reason), "{name}: {text}");
    }
    c.quit().await.unwrap();

    // The default refuses bounces like any plaintext.
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &bounce(headers)).await.unwrap();
    assert!(
        rejected_text(&t.outcome).ends_with("(unencrypted content: text/plain part)"),
        "{:?}",
        t.outcome
    );
    c.quit().await.unwrap();
}

#[tokio::test]
async fn a_report_is_read_to_the_end_and_its_epilogue_counted() {
    use support::{DsnReturn, postfix_dsn};
    let report = postfix_dsn("dsn-epilogue", &DsnReturn::Nothing, "");
    let policy = Policy {
        bounces: Bounces::AcceptReports,
        ..Policy::default()
    };
    // Text after the closing boundary: the milter must not SKIP at the
    // boundary, so it sees all of it, however much there is (the report
    // is read as it streams, nothing of it kept).
    let mut leak = report.clone();
    for i in 0..100 {
        leak.extend_from_slice(format!("plaintext line {i} after the report\r\n").as_bytes());
    }
    let mut big_leak = report.clone();
    for i in 0..20_000 {
        big_leak.extend_from_slice(format!("plaintext line {i} after the report\r\n").as_bytes());
    }
    // White space only, but more of it than max_bounce_bytes allows.
    let mut blank = report.clone();
    blank.extend(std::iter::repeat_n(b' ', 200_000));
    blank.extend_from_slice(b"\r\n");
    let mut c = client(policy, Offer::postfix()).await;
    let mut first = true;
    let t = next(&mut c, &bounce(report), &mut first).await;
    assert_eq!(t.outcome, Outcome::Accepted);
    for (name, m, reason) in [
        (
            "text epilogue",
            leak,
            "(null sender, but not a well-formed delivery status report: \
             text after the closing boundary (epilogue))",
        ),
        (
            "text epilogue over the cap",
            big_leak,
            "(null sender, but not a well-formed delivery status report: \
             text after the closing boundary (epilogue))",
        ),
        (
            "blank epilogue over the cap",
            blank,
            "(delivery status report larger than 131072 bytes (max_bounce_bytes))",
        ),
    ] {
        let t = next(&mut c, &bounce(m), &mut first).await;
        let skipped = t
            .steps
            .iter()
            .any(|r| r.outcome.answer == Some(Answer::Skip));
        assert!(!skipped, "{name}: the rest of the body was skipped");
        assert!(
            matches!(
                t.outcome,
                Outcome::Rejected {
                    at: Step::EndOfMessage,
                    ..
                }
            ),
            "{name}: {:?}",
            t.outcome
        );
        assert!(rejected_text(&t.outcome).ends_with(reason), "{name}");
    }
    c.quit().await.unwrap();
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn an_html_twin_is_compared_up_to_its_cap_and_refused_with_a_reason_beyond() {
    // Inline PGP as multipart/alternative whose HTML repeats the armor in
    // <pre>, followed by line breaks (blank lines: no text). Both twins are
    // held to be compared, so each is bounded by MAX_TWIN_PART.
    let armor = &gpg().encrypted;
    let alternative = |breaks: usize, html_tail: &str| {
        let mut m = format!(
            "From: alice@client.example\r\nTo: bob@example.org\r\nSubject: big twin\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
             --alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{armor}\r\n\
             --alt\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n\
             <html><body><pre>{armor}</pre>"
        )
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
        m.push_str(&"<br>\r\n".repeat(breaks));
        m.push_str(html_tail);
        m.push_str("</body></html>\r\n--alt--\r\n");
        m.into_bytes()
    };
    let cap = pgp_milter::detect::MAX_TWIN_PART;
    // Just under the cap (the HTML part is the armor, markup and breaks).
    let under = (cap - armor.len() - 200) / 6;
    let ok = alternative(under, "");
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(ok)).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    // The same size with a word of text at its end is still plaintext.
    let leak = alternative(under, "<p>the plans</p>");
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(leak)).await.unwrap();
    assert!(
        rejected_text(&t.outcome).ends_with("(unencrypted content: text/html part)"),
        "{:?}",
        t.outcome
    );
    // Over the cap: refused, saying why, without holding more of it.
    let big = alternative(1_000_000, "");
    assert!(big.len() > 5 << 20);
    let mut c = client(Policy::default(), Offer::postfix()).await;
    let t = run_message(&mut c, &spec(big)).await.unwrap();
    let why = rejected_text(&t.outcome);
    assert!(
        why.contains(&format!("text/html alternative of more than {cap} bytes")),
        "{why}"
    );
}

#[tokio::test]
async fn hostile_reports_are_refused_in_bounded_memory() {
    use support::{DsnReturn, postfix_dsn};
    let policy = Policy {
        bounces: Bounces::AcceptReports,
        ..Policy::default()
    };
    let boundary = "8C2D61E0A3.1795945200/mx.remote.example";
    // Huge: 20 MiB of explanation, more than max_body_bytes (16 MiB). Read
    // to its end and refused for its size, never for a buffering limit.
    let huge = postfix_dsn(
        "dsn-huge",
        &DsnReturn::Nothing,
        &"Padding the explanation.\n".repeat(840_000),
    );
    assert!(huge.len() > 20 << 20);
    // Ambiguous boundaries: two boundary parameters (readers disagree on
    // which one counts).
    let two = String::from_utf8(postfix_dsn("dsn-two", &DsnReturn::Nothing, ""))
        .unwrap()
        .replacen(
            &format!("boundary=\"{boundary}\""),
            &format!("boundary=\"{boundary}\"; boundary=\"other\""),
            1,
        )
        .into_bytes();
    // A delimiter look-alike that closes the multipart for some readers,
    // with a part after it that others show.
    let lookalike = String::from_utf8(postfix_dsn("dsn-look", &DsnReturn::Nothing, ""))
        .unwrap()
        .replacen(
            &format!("--{boundary}--"),
            &format!(
                "--{boundary}--x\r\nContent-Type: text/plain\r\n\r\nthe plans\r\n--{boundary}--"
            ),
            1,
        )
        .into_bytes();
    // Nested: a returned message holding a message holding a message...
    // deeper than the reader reads.
    let mut inner = plain("innermost", "The plans.\n");
    for _ in 0..12 {
        let mut m = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
        m.extend_from_slice(&inner);
        inner = m;
    }
    let nested = postfix_dsn("dsn-nested", &DsnReturn::Message(inner), "");
    let mut c = client(policy, Offer::postfix()).await;
    let mut first = true;
    for (name, m, reason) in [
        (
            "huge",
            huge,
            "(delivery status report larger than 131072 bytes (max_bounce_bytes))",
        ),
        ("two boundaries", two, "parameter boundary given twice"),
        (
            "delimiter look-alike",
            lookalike,
            "begins with a boundary but is not a delimiter",
        ),
        ("nested", nested, "nested"),
    ] {
        let t = next(&mut c, &bounce(m), &mut first).await;
        let text = rejected_text(&t.outcome);
        assert!(text.starts_with("550 5.7.1 "), "{name}: {text}");
        assert!(text.contains(reason), "{name}: {text}");
    }
    c.quit().await.unwrap();
}
