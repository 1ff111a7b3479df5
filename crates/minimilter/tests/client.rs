//! The MTA-side client against our own server: every action, every
//! negotiation shape, several messages per connection, and a misbehaving
//! milter reported precisely.

mod support;

use std::time::Duration;

use bytes::Bytes;
use milter_proto::{Answer, Dispatch, Offer, Protocol, Response, Step, Violation};
use minimilter::interop::ActionMilter;
use minimilter::transaction::{Outcome, UnsentBody, run_next_message};
use minimilter::{
    ClientConfig, ClientError, MessageSpec, MilterClient, Server, ServerConfig, Shutdown,
    run_message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client connected over a pipe to an in-process server.
async fn client_for<F: minimilter::Milter>(filter: F, offer: Offer) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(filter, ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer,
        ..ClientConfig::default()
    };
    MilterClient::negotiate(Box::new(a), cfg).await.unwrap()
}

fn message(actions: &[&str], body: &str) -> Bytes {
    let mut m = String::from("From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n");
    for a in actions {
        m.push_str(&format!("X-Action: {a}\r\n"));
    }
    m.push_str("\r\n");
    m.push_str(body);
    Bytes::from(m)
}

fn spec(actions: &[&str]) -> MessageSpec {
    MessageSpec {
        from: "a@example.com".into(),
        rcpts: vec!["b@example.org".into(), "c@example.org".into()],
        message: message(actions, "Hello.\r\n"),
        ..MessageSpec::default()
    }
}

fn delivered(t: &minimilter::Transcript) -> String {
    String::from_utf8(t.delivered.as_ref().expect("delivered").render()).unwrap()
}

#[tokio::test]
async fn every_header_action_is_applied_like_postfix() {
    let mut c = client_for(ActionMilter, Offer::postfix()).await;
    let t = run_message(
        &mut c,
        &spec(&[
            "add-header X-Added one two",
            "insert-header 0 X-Top first",
            "change-header Subject 1 changed subject",
            "delete-header To 1",
        ]),
    )
    .await
    .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let names: Vec<&str> = t
        .modifications
        .iter()
        .map(|m| match m {
            Response::AddHeader { .. } => "h",
            Response::InsertHeader { .. } => "i",
            Response::ChangeHeader { value, .. } if value.is_empty() => "del",
            Response::ChangeHeader { .. } => "m",
            _ => "?",
        })
        .collect();
    assert_eq!(names, ["h", "i", "m", "del", "h"]);
    let msg = delivered(&t);
    assert!(
        msg.starts_with("X-Top: first\r\nFrom: a@example.com\r\n"),
        "{msg}"
    );
    assert!(msg.contains("Subject: changed subject\r\n"), "{msg}");
    assert!(!msg.contains("To: b@example.org"), "{msg}");
    assert!(msg.contains("X-Added: one two\r\n"), "{msg}");
    assert!(msg.contains("X-Action-Body-Bytes: 8\r\n"), "{msg}");
    assert!(msg.ends_with("\r\n\r\nHello.\r\n"), "{msg}");
}

#[tokio::test]
async fn envelope_actions_change_sender_and_recipients() {
    let mut c = client_for(ActionMilter, Offer::postfix()).await;
    let t = run_message(
        &mut c,
        &spec(&[
            "add-rcpt <d@example.org>",
            "add-rcpt-par <e@example.org> NOTIFY=NEVER",
            "del-rcpt <c@example.org>",
            "chgfrom <bounce@example.com> RET=HDRS",
        ]),
    )
    .await
    .unwrap();
    let m = t.delivered.as_ref().unwrap();
    assert_eq!(m.sender.trim_matches(['<', '>']), "bounce@example.com");
    let rcpts: Vec<&str> = m
        .recipients
        .iter()
        .map(|r| r.address.trim_matches(['<', '>']))
        .collect();
    assert_eq!(rcpts, ["b@example.org", "d@example.org", "e@example.org"]);
}

#[tokio::test]
async fn a_large_replacement_body_arrives_chunked_and_whole() {
    let mut c = client_for(ActionMilter, Offer::postfix()).await;
    let t = run_message(&mut c, &spec(&["replace-body 150000"]))
        .await
        .unwrap();
    let chunks: Vec<usize> = t
        .modifications
        .iter()
        .filter_map(|m| match m {
            Response::ReplaceBody(b) => Some(b.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, [65_535, 65_535, 18_930]);
    let m = t.delivered.as_ref().unwrap();
    assert_eq!(m.body.len(), 150_000);
    assert_eq!(&m.body[..], &minimilter::interop::body_of(150_000)[..]);
}

#[tokio::test]
async fn verdicts_and_multi_line_replies() {
    let mut c = client_for(ActionMilter, Offer::postfix()).await;
    let t = run_message(&mut c, &spec(&["reject 550 5.7.1 first line|second line"]))
        .await
        .unwrap();
    assert_eq!(
        t.outcome,
        Outcome::Rejected {
            at: Step::EndOfMessage,
            reply: Some("550-5.7.1 first line\n550 5.7.1 second line".into())
        }
    );
    assert!(t.delivered.is_none());
    // The same connection carries the next messages, each judged afresh.
    let t = run_next_message(&mut c, &spec(&["tempfail 451 4.7.1 later"]))
        .await
        .unwrap();
    assert!(matches!(
        t.outcome,
        Outcome::Tempfailed {
            at: Step::EndOfMessage,
            ..
        }
    ));
    let t = run_next_message(&mut c, &spec(&["discard"])).await.unwrap();
    assert_eq!(
        t.outcome,
        Outcome::Discarded {
            at: Step::EndOfMessage
        }
    );
    let t = run_next_message(&mut c, &spec(&["quarantine held for review"]))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    assert_eq!(t.quarantine.as_deref(), Some("held for review"));
    let t = run_next_message(&mut c, &spec(&[])).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    assert_eq!(t.modifications.len(), 1, "only the body-size header");
    c.quit().await.unwrap();
}

#[tokio::test]
async fn skip_stops_the_body() {
    let mut c = client_for(ActionMilter, Offer::postfix()).await;
    let mut s = spec(&["skip-body"]);
    s.message = message(&["skip-body"], &"x".repeat(200_000));
    let t = run_message(&mut c, &s).await.unwrap();
    let body_steps: Vec<_> = t
        .steps
        .iter()
        .filter(|r| r.outcome.step == Step::Body)
        .collect();
    assert_eq!(
        body_steps.len(),
        2,
        "one chunk sent, one record of the rest"
    );
    assert_eq!(body_steps[0].outcome.answer, Some(Answer::Skip));
    // The rest (200000 bytes and the CRLF a last line gets, less the first
    // chunk) is one not-sent record.
    assert_eq!(body_steps[1].outcome.dispatch, Dispatch::NotSent);
    assert_eq!(body_steps[1].detail, "BODY rest, 134467 bytes in 3 chunks");
    assert_eq!(
        t.body_not_sent,
        Some(UnsentBody {
            bytes: 134_467,
            chunks: 3,
            skipped: true
        })
    );
    assert!(delivered(&t).contains("X-Action-Body-Bytes: 65535\r\n"));
}

#[tokio::test]
async fn every_postfix_protocol_version_works() {
    for version in [2, 3, 4, 6] {
        let offer = Offer::postfix_version(version).unwrap();
        let mut c = client_for(ActionMilter, offer.clone()).await;
        assert_eq!(c.options().version, version);
        assert!(offer.protocol.contains(c.options().protocol));
        let t = run_message(&mut c, &spec(&["add-header X-V yes"]))
            .await
            .unwrap();
        assert_eq!(t.outcome, Outcome::Accepted, "v{version}");
        assert!(delivered(&t).contains("X-V: yes"), "v{version}");
        // Older versions do not send DATA (and 2 not UNKNOWN); 6 does.
        let data = t
            .steps
            .iter()
            .find(|r| r.outcome.step == Step::Data)
            .unwrap();
        assert_eq!(
            data.outcome.dispatch == Dispatch::NotSent,
            version < 4 || c.options().protocol.contains(Protocol::NO_DATA),
            "v{version}"
        );
    }
}

#[tokio::test]
async fn no_reply_steps_are_not_waited_for() {
    // The keyword-style filter: headers only, no reply to them.
    struct Quiet;
    impl minimilter::Milter for Quiet {
        type Connection = ();
        type Message = ();
        fn requirements(&self) -> minimilter::Requirements {
            minimilter::Requirements {
                steps: minimilter::Steps::HEADER,
                no_reply: minimilter::Steps::HEADER,
                ..Default::default()
            }
        }
    }
    let mut c = client_for(Quiet, Offer::postfix()).await;
    let t = run_message(&mut c, &spec(&[])).await.unwrap();
    for r in &t.steps {
        let want = match r.outcome.step {
            Step::Header => Dispatch::NoReply,
            Step::EndOfMessage => Dispatch::AwaitAnswer,
            _ => Dispatch::NotSent,
        };
        assert_eq!(r.outcome.dispatch, want, "{}", r.detail);
    }
}

/// A fake milter that negotiates, then answers every step with `reply`.
async fn rogue(optneg: Vec<u8>, reply: Vec<u8>) -> ClientError {
    let (a, mut z) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut first = true;
        loop {
            let mut len = [0u8; 4];
            if z.read_exact(&mut len).await.is_err() {
                return;
            }
            let n = u32::from_be_bytes(len) as usize;
            if z.read_exact(&mut buf[..n]).await.is_err() {
                return;
            }
            let code = buf[0];
            if first {
                first = false;
                let _ = z.write_all(&optneg).await;
            } else if !matches!(code, b'D' | b'A' | b'Q') {
                let _ = z.write_all(&reply).await;
            }
        }
    });
    let cfg = ClientConfig {
        command_timeout: Duration::from_millis(300),
        content_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    match MilterClient::negotiate(Box::new(a), cfg).await {
        Err(e) => e,
        Ok(mut c) => {
            run_message(&mut c, &MessageSpec::default())
                .await
                .expect_err("the rogue milter must be caught")
                .error
        }
    }
}

fn optneg(version: u32, actions: u32, protocol: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 13, b'O'];
    for w in [version, actions, protocol] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v
}

#[tokio::test]
async fn misbehaving_milters_are_reported_precisely() {
    let ok = optneg(6, 0x1FF, 0);
    // A modification at connect.
    let e = rogue(ok.clone(), b"\x00\x00\x00\x05ha\0b\0".to_vec()).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::ModificationOutsideEom {
                    step: Step::Connect,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    // A version higher than offered.
    let e = rogue(optneg(7, 0x1FF, 0), vec![]).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::BadVersion { got: 7, .. },
                ..
            }
        ),
        "{e}"
    );
    // Actions not offered.
    let e = rogue(optneg(6, 0x400, 0), vec![]).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::ActionsNotOffered(_),
                ..
            }
        ),
        "{e}"
    );
    // A reply text Postfix would refuse.
    let e = rogue(ok.clone(), b"\x00\x00\x00\x08y250 ok\0".to_vec()).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::BadReplyText { .. },
                ..
            }
        ),
        "{e}"
    );
    // Connection failure reply.
    let e = rogue(ok.clone(), b"\x00\x00\x00\x01f".to_vec()).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::ConnFail,
                ..
            }
        ),
        "{e}"
    );
    // Skip where it is not allowed.
    let e = rogue(optneg(6, 0x1FF, 0x400), b"\x00\x00\x00\x01s".to_vec()).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::BadSkip { .. },
                ..
            }
        ),
        "{e}"
    );
    // Two answers to one step: the second is unsolicited.
    let e = rogue(ok.clone(), b"\x00\x00\x00\x01c\x00\x00\x00\x01c".to_vec()).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::Unsolicited('c'),
                ..
            }
        ),
        "{e}"
    );
    // Silence.
    let e = rogue(ok.clone(), vec![]).await;
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    // No negotiation reply at all.
    let e = rogue(vec![], vec![]).await;
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    // Garbage instead of the negotiation reply.
    let e = rogue(b"\x00\x00\x00\x01c".to_vec(), vec![]).await;
    assert!(
        matches!(
            e,
            ClientError::Violation {
                violation: Violation::NotOptNeg('c'),
                ..
            }
        ),
        "{e}"
    );
}
