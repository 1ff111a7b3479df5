//! The pre-encoded fast path (`MessageScript` + `MilterClient::play_script`)
//! against its oracle, the live player (`run_message`): for every shape of
//! negotiation and every way a message can end, both must put the same bytes
//! on the wire and reach the same verdict; and a misbehaving milter must be
//! caught by the script just as by `run_message`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use milter_proto::{Response, Step, Violation};
use minimilter::interop::ActionMilter;
use minimilter::transaction::{Outcome, run_next_message};
use minimilter::{
    Actions, ClientConfig, ClientError, ConnectInfo, Ctx, Envelope, Header, MacroStage,
    MessageScript, MessageSpec, Milter, MilterClient, Modifications, Requirements, Server,
    ServerConfig, Shutdown, StepResult, Steps, Verdict, run_message,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// A stream that keeps a copy of everything the client writes.
struct Tap {
    inner: DuplexStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn tapped<F: Milter>(filter: F) -> (MilterClient, Arc<Mutex<Vec<u8>>>) {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(filter, ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let log = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: a,
        log: log.clone(),
    };
    let c = MilterClient::negotiate(Box::new(tap), ClientConfig::default())
        .await
        .unwrap();
    (c, log)
}

/// What must agree between the two ways of playing a message.
#[derive(Debug, PartialEq)]
struct Seen {
    outcome: Outcome,
    session_ended: bool,
    refused_rcpts: u32,
    modifications: Vec<Response>,
}

/// Plays `specs` on one connection with `run_message`, then on another with
/// the script, and checks that the milter got the same bytes and the
/// verdicts agree. Returns the verdicts.
async fn both_ways<F: Milter + Clone>(filter: F, specs: &[MessageSpec]) -> Vec<Seen> {
    let (mut c, reference_log) = tapped(filter.clone()).await;
    let mut reference = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let t = if i == 0 {
            run_message(&mut c, s).await
        } else {
            run_next_message(&mut c, s).await
        }
        .unwrap();
        reference.push(Seen {
            outcome: t.outcome.clone(),
            session_ended: t.session_ended,
            refused_rcpts: t.refused_rcpts.len() as u32,
            modifications: t
                .steps
                .iter()
                .flat_map(|r| r.outcome.modifications.clone())
                .collect(),
        });
        if t.session_ended {
            break;
        }
    }
    let ended = reference.last().is_some_and(|s| s.session_ended);
    if ended {
        c.close().await;
    } else {
        c.quit().await.unwrap();
    }

    let (mut c, script_log) = tapped(filter).await;
    let mut scripted = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let script = MessageScript::new(c.options(), s).unwrap();
        let mut modifications = Vec::new();
        let r = c
            .play_script(&script, i == 0, &mut |m| modifications.push(m.clone()))
            .await
            .unwrap();
        scripted.push(Seen {
            outcome: r.outcome,
            session_ended: r.session_ended,
            refused_rcpts: r.refused_rcpts,
            modifications,
        });
        if r.session_ended {
            break;
        }
    }
    if ended {
        c.close().await;
    } else {
        c.quit().await.unwrap();
    }
    assert_eq!(scripted, reference);
    // The server has read everything once the client shut down; both logs
    // are what the client wrote, so they are complete here.
    let (a, b) = (reference_log.lock().unwrap(), script_log.lock().unwrap());
    assert!(a.len() > 40, "the reference wrote {} bytes", a.len());
    if *a != *b {
        let at = a
            .iter()
            .zip(b.iter())
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let from = at.saturating_sub(400);
        panic!(
            "the script wrote different bytes than run_message at {at} ({} vs {} bytes):\n{:?}\n{:?}",
            a.len(),
            b.len(),
            String::from_utf8_lossy(&a[from..(at + 40).min(a.len())]),
            String::from_utf8_lossy(&b[from..(at + 40).min(b.len())])
        );
    }
    reference
}

fn spec(headers: &str, rcpts: &[&str], body: &str) -> MessageSpec {
    MessageSpec {
        from: "a@example.com".into(),
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        message: Bytes::from(format!(
            "From: a@example.com\r\nSubject: hi\r\n  folded\r\n{headers}\r\n{body}"
        )),
        macros: vec![
            ("{auth_authen}".into(), "alice".into()),
            ("{client_ptr}".into(), "client.example.net".into()),
        ],
        ..MessageSpec::default()
    }
}

/// Decides at whichever step a message asks it to (in `X-Decide`), and at
/// RCPT by the address; what it negotiates is configurable.
#[derive(Clone)]
struct Decider {
    no_reply: Steps,
    leading_space: bool,
    macros: Vec<(MacroStage, String)>,
}

#[derive(Default)]
struct Decide {
    at: String,
}

impl Milter for Decider {
    type Connection = ();
    type Message = Decide;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::all(),
            no_reply: self.no_reply,
            actions: Actions::ADD_HEADERS | Actions::QUARANTINE,
            macros: self.macros.clone(),
            header_leading_space: self.leading_space,
            ..Requirements::default()
        }
    }

    async fn connect(&self, _cx: Ctx<'_, Self>, info: &ConnectInfo) -> StepResult {
        Ok(if info.hostname_str() == "refused.example" {
            Verdict::Reject(None)
        } else {
            Verdict::Continue
        })
    }

    async fn rcpt(&self, _cx: Ctx<'_, Self>, r: &Envelope) -> StepResult {
        let a = r.address();
        Ok(if a.starts_with("refuse") {
            Verdict::Reject(None)
        } else if a.starts_with("later") {
            Verdict::Tempfail(None)
        } else {
            Verdict::Continue
        })
    }

    async fn header(&self, cx: Ctx<'_, Self>, h: &Header) -> StepResult {
        if h.is("X-Decide") {
            cx.msg.at = h.value_str().trim().to_owned();
        }
        Ok(if cx.msg.at == "header" {
            Verdict::Discard
        } else {
            Verdict::Continue
        })
    }

    async fn end_of_headers(&self, cx: Ctx<'_, Self>) -> StepResult {
        Ok(if cx.msg.at == "eoh" {
            Verdict::Tempfail(None)
        } else {
            Verdict::Continue
        })
    }

    async fn body(&self, cx: Ctx<'_, Self>, _chunk: Bytes) -> StepResult {
        Ok(match cx.msg.at.as_str() {
            "skip" => Verdict::Skip,
            "body" => Verdict::Reject(None),
            _ => Verdict::Continue,
        })
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let seen = cx
            .macro_value("i")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        mods.add_header("X-Seen", &format!("{seen:?}"))?;
        if cx.msg.at == "quarantine" {
            mods.quarantine("held")?;
        }
        Ok(if cx.msg.at == "accept" {
            Verdict::Accept
        } else {
            Verdict::Continue
        })
    }
}

fn decider() -> Decider {
    Decider {
        no_reply: Steps::empty(),
        leading_space: false,
        macros: Vec::new(),
    }
}

/// Every way a message ends, one after another on one connection.
fn every_ending() -> Vec<MessageSpec> {
    let big = "A line of body text, long enough to need several chunks.\r\n".repeat(4000);
    vec![
        spec("", &["b@example.org"], "Hello.\r\n"),
        spec("X-Decide: header\r\n", &["b@example.org"], "x\r\n"),
        spec("X-Decide: eoh\r\n", &["b@example.org"], "x\r\n"),
        spec("X-Decide: skip\r\n", &["b@example.org"], &big),
        spec("X-Decide: body\r\n", &["b@example.org"], &big),
        spec("X-Decide: quarantine\r\n", &["b@example.org"], "x\r\n"),
        spec("X-Decide: accept\r\n", &["b@example.org"], "x\r\n"),
        spec("", &["refuse@example.org", "c@example.org"], "x\r\n"),
        spec("", &["refuse@example.org", "later@example.org"], "x\r\n"),
        spec("", &["later@example.org", "refuse@example.org"], "x\r\n"),
        spec("", &[], "x\r\n"),
        spec("", &["b@example.org"], &big),
    ]
}

#[tokio::test]
async fn the_script_sends_what_run_message_sends_and_reaches_the_same_verdicts() {
    let seen = both_ways(decider(), &every_ending()).await;
    // The endings really differ (the comparison is not of twelve accepts).
    let names: Vec<&str> = seen.iter().map(|s| s.outcome.name()).collect();
    assert_eq!(
        names,
        [
            "accept", "discard", "tempfail", "accept", "reject", "accept", "accept", "accept",
            "tempfail", "reject", "reject", "accept"
        ]
    );
    assert_eq!(seen[7].refused_rcpts, 1);
    assert!(
        seen[5]
            .modifications
            .iter()
            .any(|m| matches!(m, Response::Quarantine(_)))
    );
}

#[tokio::test]
async fn the_script_follows_every_negotiation_shape() {
    // No-reply steps, leading space, macro lists the milter asked for.
    let shapes = [
        Decider {
            no_reply: Steps::HEADER | Steps::BODY | Steps::CONNECT | Steps::END_OF_HEADERS,
            ..decider()
        },
        Decider {
            leading_space: true,
            ..decider()
        },
        Decider {
            macros: vec![
                (MacroStage::EndOfMessage, "i {auth_authen}".into()),
                (MacroStage::Connect, "j".into()),
            ],
            ..decider()
        },
    ];
    for d in shapes {
        let specs: Vec<MessageSpec> = every_ending()
            .into_iter()
            // With no reply to headers or body, a milter cannot decide there.
            .filter(|s| {
                d.no_reply.is_empty() || !String::from_utf8_lossy(&s.message).contains("X-Decide")
            })
            .collect();
        both_ways(d, &specs).await;
    }
    // Every optional step negotiated away (the null milter).
    #[derive(Clone)]
    struct Null;
    impl Milter for Null {
        type Connection = ();
        type Message = ();
        fn requirements(&self) -> Requirements {
            Requirements {
                steps: Steps::empty(),
                ..Requirements::default()
            }
        }
    }
    both_ways(Null, &every_ending()).await;
    // The interop milter's modifications and multi-line replies.
    let actions = |a: &str| spec(&format!("X-Action: {a}\r\n"), &["b@example.org"], "x\r\n");
    both_ways(
        ActionMilter,
        &[
            actions("add-header X-Added one"),
            actions("replace-body 150000"),
            actions("reject 550 5.7.1 first|second"),
            actions("chgfrom <bounce@example.com>"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_decision_at_connect_ends_the_session_in_both() {
    let mut s = spec("", &["b@example.org"], "x\r\n");
    s.client_name = "refused.example".into();
    let seen = both_ways(decider(), &[s.clone(), s]).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0].session_ended);
    assert!(matches!(
        seen[0].outcome,
        Outcome::Rejected {
            at: Step::Connect,
            ..
        }
    ));
}

#[tokio::test]
async fn the_queue_id_changes_in_place() {
    let (c, _) = tapped(decider()).await;
    let mut s = spec("", &["b@example.org"], "x\r\n");
    s.queue_id = "AAAA0000001".into();
    let mut script = MessageScript::new(c.options(), &s).unwrap();
    assert!(script.set_queue_id("BBBB0000002"));
    assert!(
        !script.set_queue_id("short"),
        "only an id of the same length fits"
    );
    assert!(!script.set_queue_id("BBBB000000\0"), "no NUL");
    // The id the milter sees is the new one.
    s.queue_id = "BBBB0000002".into();
    let (mut reference, _) = tapped(decider()).await;
    let t = run_message(&mut reference, &s).await.unwrap();
    let (mut c, _) = tapped(decider()).await;
    let mut mods = Vec::new();
    c.play_script(&script, true, &mut |m| mods.push(m.clone()))
        .await
        .unwrap();
    assert_eq!(mods, t.modifications);
    assert!(format!("{mods:?}").contains("BBBB0000002"), "{mods:?}");
}

#[tokio::test]
async fn copies_of_a_script_each_send_their_own_queue_id() {
    // bench gives every connection a copy of one encoded script and its own
    // ids: the copies share the encoded bytes, so a change of id in one
    // must not show in another, and the first must still send its own.
    let (c, _) = tapped(decider()).await;
    let mut s = spec("", &["b@example.org"], "x\r\n");
    s.queue_id = "AAAA0000001".into();
    let original = MessageScript::new(c.options(), &s).unwrap();
    let mut copies = [original.clone(), original.clone(), original];
    assert!(copies[1].set_queue_id("BBBB0000002"));
    assert!(copies[2].set_queue_id("CCCC0000003"));
    for (script, id) in copies
        .iter()
        .zip(["AAAA0000001", "BBBB0000002", "CCCC0000003"])
    {
        let (mut c, _) = tapped(decider()).await;
        let mut mods = Vec::new();
        c.play_script(script, true, &mut |m| mods.push(m.clone()))
            .await
            .unwrap();
        let seen = format!("{mods:?}");
        assert!(seen.contains(id), "{id}: {seen}");
        for other in ["AAAA0000001", "BBBB0000002", "CCCC0000003"] {
            assert!(
                other == id || !seen.contains(other),
                "{id} sent {other}: {seen}"
            );
        }
    }
}

#[tokio::test]
async fn a_script_refuses_what_the_protocol_cannot_carry() {
    let (c, _) = tapped(decider()).await;
    let mut s = spec("", &["b@example.org"], "x\r\n");
    s.helo = "bad\0helo".into();
    let e = MessageScript::new(c.options(), &s).unwrap_err();
    assert!(matches!(e, ClientError::Unsendable { .. }), "{e}");
}

/// A fake milter that negotiates `optneg`, then answers every step with
/// `reply`.
async fn rogue_script(optneg: Vec<u8>, reply: Vec<u8>) -> ClientError {
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
            if first {
                first = false;
                let _ = z.write_all(&optneg).await;
            } else if !matches!(buf[0], b'D' | b'A' | b'Q') {
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
    let mut c = MilterClient::negotiate(Box::new(a), cfg).await.unwrap();
    let script = MessageScript::new(c.options(), &MessageSpec::default()).unwrap();
    c.play_script(&script, true, &mut |_| {})
        .await
        .expect_err("the rogue milter must be caught")
}

fn optneg(version: u32, actions: u32, protocol: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 13, b'O'];
    for w in [version, actions, protocol] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v
}

#[tokio::test]
async fn the_script_catches_a_misbehaving_milter() {
    let ok = optneg(6, 0x1FF, 0);
    // A modification at connect.
    let e = rogue_script(ok.clone(), b"\x00\x00\x00\x05ha\0b\0".to_vec()).await;
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
    // Two answers to one step: the second is a reply nobody asked for.
    let e = rogue_script(ok.clone(), b"\x00\x00\x00\x01c\x00\x00\x00\x01c".to_vec()).await;
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
    // Skip at connect.
    let e = rogue_script(optneg(6, 0x1FF, 0x400), b"\x00\x00\x00\x01s".to_vec()).await;
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
    // No answer at all: the step's timeout.
    let e = rogue_script(ok, Vec::new()).await;
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
}
