//! `minimilter record` and `minimilter replay` without an MTA: the scripted
//! MTA is minimilter's own client, the milter a policy milter served
//! in-process (tests/support). Proves the proxy transparent (the MTA reads
//! byte for byte what it reads from the milter directly), the transcripts
//! right, replay silent against the same milter and precise against a
//! stricter one, and the proxy unharmed by hostile input from either side.

mod support;

use std::path::Path;
use std::process::Command as Process;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minimilter::transaction::run_message;
use minimilter::{ClientConfig, MessageSpec, MilterClient};
use serde_json::Value;
use support::{Proxy, Tap, minimilter, scratch, serve_policy, wait_for_transcripts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn spec(from: &str, rcpts: &[&str], subject: &str) -> MessageSpec {
    MessageSpec {
        from: from.into(),
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        message: format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\nsecond line\r\n",
            rcpts[0]
        )
        .into(),
        ..MessageSpec::default()
    }
}

/// The batch: (message, verdict the normal policy gives, verdict the
/// strict one gives).
fn batch() -> Vec<(MessageSpec, &'static str, &'static str)> {
    vec![
        (
            spec("a@example.com", &["ok@example.org"], "hello"),
            "accept",
            "accept",
        ),
        (
            spec("tempfail@example.com", &["ok@example.org"], "later"),
            "tempfail",
            "tempfail",
        ),
        (
            spec(
                "b@example.com",
                &["refused@example.org", "ok@example.org"],
                "partly",
            ),
            "accept",
            "accept",
        ),
        (
            spec("c@example.com", &["ok@example.org"], "[reject] spam"),
            "reject",
            "reject",
        ),
        (
            spec("d@example.com", &["ok@example.org"], "[modify] me"),
            "accept",
            "accept",
        ),
        (
            spec("e@example.com", &["ok@example.org"], "[strict] borderline"),
            "accept",
            "reject",
        ),
        (
            spec("f@example.com", &["ok@example.org"], "[discard] it"),
            "discard",
            "discard",
        ),
        (
            MessageSpec {
                macros: vec![("{client_tag}".into(), "blocked".into())],
                ..spec("g@example.com", &["ok@example.org"], "tagged")
            },
            "tempfail",
            "tempfail",
        ),
    ]
}

/// Plays one message on a fresh connection to `sock`; returns the outcome
/// and every byte the milter side sent.
async fn play(sock: &Path, spec: &MessageSpec) -> (&'static str, Vec<u8>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stream = UnixStream::connect(sock).await.expect("connect");
    let tap = Tap {
        inner: stream,
        seen: seen.clone(),
    };
    let mut c = MilterClient::negotiate(Box::new(tap), ClientConfig::default())
        .await
        .expect("negotiate");
    let t = run_message(&mut c, spec).await.expect("run the message");
    if t.session_ended {
        c.close().await;
    } else {
        c.quit().await.expect("quit");
    }
    let bytes = seen.lock().unwrap().clone();
    (t.outcome.name(), bytes)
}

fn run_replay(args: &[&str]) -> (i32, String) {
    let out = Process::new(minimilter())
        .arg("replay")
        .args(args)
        .output()
        .expect("run minimilter replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_is_transparent_and_replay_finds_exactly_the_changed_verdicts() {
    let tmp = scratch("record");
    let (normal, strict) = (tmp.join("normal.sock"), tmp.join("strict.sock"));
    serve_policy(&normal, false).await;
    serve_policy(&strict, true).await;
    let dir = tmp.join("transcripts");
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", normal.display());
    let mut proxy = Proxy::start(&listen, &to, &dir, &[]);

    let batch = batch();
    for (spec, expected, _) in &batch {
        let (direct, direct_bytes) = play(&normal, spec).await;
        let (proxied, proxied_bytes) = play(&listen, spec).await;
        assert_eq!(direct, *expected, "the policy milter itself");
        assert_eq!(proxied, direct, "same verdict through the proxy");
        assert_eq!(
            proxied_bytes, direct_bytes,
            "the MTA reads byte for byte what the milter sends"
        );
    }

    // One transcript per transaction, with the verdict the MTA acted on.
    let files = wait_for_transcripts(&dir, batch.len());
    assert_eq!(files.len(), batch.len(), "{}", proxy.log_text());
    let mut by_conn: Vec<(u64, Vec<Value>)> = files
        .iter()
        .map(|f| {
            let l = lines(f);
            (l[0]["connection"].as_u64().unwrap(), l)
        })
        .collect();
    by_conn.sort_by_key(|(c, _)| *c);
    for ((_, l), (spec, expected, _)) in by_conn.iter().zip(&batch) {
        assert_eq!(l[0]["schema"], "minimilter-transcript");
        assert_eq!(l[0]["version"], 1);
        assert_eq!(l[1]["type"], "negotiate");
        assert_eq!(l[1]["offer"]["version"], 6);
        let end = l.last().unwrap();
        assert_eq!(end["type"], "end");
        assert_eq!(end["verdict"], *expected, "{l:?}");
        assert!(
            end.get("notes").is_none(),
            "no protocol trouble noted: {end}"
        );
        let mail = l.iter().find(|e| e["code"] == "M").expect("MAIL recorded");
        assert_eq!(mail["args"][0], format!("<{}>", spec.from));
    }
    // Modifications and bodies are recorded as sent.
    let modify = &by_conn[4].1;
    assert!(
        modify
            .iter()
            .any(|e| e["type"] == "response" && e["code"] == "h" && e["name"] == "X-Policy"),
        "{modify:?}"
    );
    let body = modify.iter().find(|e| e["code"] == "B").unwrap();
    assert_eq!(body["body"], "body of [modify] me\r\nsecond line\r\n");
    let refused = &by_conn[2].1;
    let rcpt_answers: Vec<&Value> = refused
        .iter()
        .filter(|e| e["type"] == "response" && e["step"] == "rcpt")
        .map(|e| &e["answer"])
        .collect();
    assert_eq!(rcpt_answers, ["reject", "continue"]);

    // check --transcript shows a recorded transaction as check shows a live one.
    let show = |f: &Path, extra: &[&str]| {
        let o = Process::new(minimilter())
            .arg("check")
            .arg("--transcript")
            .arg(f)
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let file_of = |needle: &str| {
        files
            .iter()
            .find(|f| std::fs::read_to_string(f).unwrap().contains(needle))
            .unwrap()
            .clone()
    };
    let (code, out) = show(&file_of("[modify] me"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("HEADER Subject"), "{out}");
    assert!(out.contains("+ add header X-Policy: modified"), "{out}");
    assert!(out.contains("verdict: accept (delivered)"), "{out}");
    let (code, out) = show(&file_of("[reject] spam"), &[]);
    assert_eq!(code, 3, "rejected, as check exits: {out}");
    assert!(out.contains("verdict: reject at eom"), "{out}");
    assert!(out.contains("message refused by policy"), "{out}");
    let (code, out) = show(&file_of("refused@example.org"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("recipient <refused@example.org> rejected"),
        "{out}"
    );
    let (code, out) = show(&file_of("tempfail@example.com"), &["--json"]);
    assert_eq!(code, 4, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"]["verdict"], "tempfail");
    assert_eq!(v["verdict"]["at"], "mail");

    // Replay to the same milter: nothing differs.
    let d = dir.to_str().unwrap();
    let (code, out) = run_replay(&[d, &to, "--conns", "3"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("8 transcripts replayed, 8 the same, 0 different"),
        "{out}"
    );

    // Replay to the strict milter: exactly the [strict] message changes
    // verdict, and the [modify] one its header.
    let strict_to = format!("unix:{}", strict.display());
    let (code, out) = run_replay(&[d, &strict_to]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("8 transcripts replayed, 6 the same, 2 different"),
        "{out}"
    );
    assert!(out.contains("accept → reject: 1 message"), "{out}");
    assert!(
        out.contains("accept (same verdict, other answers or modifications): 1 message"),
        "{out}"
    );
    assert!(out.contains("eom: modifications differ"), "{out}");
    assert!(out.contains("modified strictly"), "{out}");
    let strict_file = &files
        .iter()
        .find(|f| std::fs::read_to_string(f).unwrap().contains("[strict]"))
        .unwrap();
    assert!(
        out.contains(&format!("{}: accept → reject", strict_file.display())),
        "{out}"
    );
    assert!(out.contains("refused by the strict policy"), "{out}");
    assert_eq!(
        out.matches(" → ").count(),
        3,
        "two messages and one summary line: {out}"
    );

    let (code, out) = run_replay(&[d, &strict_to, "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("--json is one JSON object");
    assert_eq!(v["transcripts"], 8);
    assert_eq!(v["different"], 2);
    assert_eq!(
        v["changes"],
        serde_json::json!([
            {"from": "accept", "to": "accept", "messages": 1},
            {"from": "accept", "to": "reject", "messages": 1},
        ])
    );
    assert!(proxy.alive());

    // A damaged file is reported, and is a difference.
    std::fs::write(dir.join("damaged.jsonl"), "{\"type\": \"transcript\"").unwrap();
    let (code, out) = run_replay(&[d, &to]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("damaged.jsonl: unreadable"), "{out}");
    assert!(
        out.contains("8 transcripts replayed, 8 the same, 0 different, 1 unreadable"),
        "{out}"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}

async fn read_all(s: &mut UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy closes within 10 s")
        .ok();
    got
}

/// What Postfix offers.
fn offer_bytes() -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    milter_proto::Command::OptNeg(milter_proto::OptNeg {
        version: 6,
        actions: milter_proto::Actions::from_bits_retain(0x1FF),
        protocol: milter_proto::Protocol::from_bits_retain(0x1F_FFFF),
        macros: vec![],
    })
    .encode(&mut out);
    out.to_vec()
}

/// A fake milter that answers the first packet with `reply` and then waits.
async fn fake_milter(path: &Path, reply: &'static [u8]) {
    let l = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                let _ = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_from_either_side_closes_that_connection_only() {
    let tmp = scratch("hostile");
    let milter = tmp.join("milter.sock");
    serve_policy(&milter, false).await;
    let listen = tmp.join("proxy.sock");
    let mut proxy = Proxy::start(
        &listen,
        &format!("unix:{}", milter.display()),
        &tmp.join("t"),
        &[],
    );

    // MTA side: an HTTP request (a 1 GiB length), a zero length, a packet
    // cut short. The proxy closes without passing anything back.
    for bad in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"\0\0\0\0O",
        b"\0\0\0\x0dO\0\0",
    ] {
        let mut s = UnixStream::connect(&listen).await.unwrap();
        s.write_all(bad).await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(
            read_all(&mut s).await,
            b"",
            "nothing comes back for {bad:?}"
        );
    }
    // A valid offer, then garbage mid-session.
    let mut s = UnixStream::connect(&listen).await.unwrap();
    s.write_all(&offer_bytes()).await.unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], b'O', "the negotiation answer comes through");
    let mut rest = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize - 1];
    s.read_exact(&mut rest).await.unwrap();
    s.write_all(b"\xff\xff\xff\xffC").await.unwrap();
    assert_eq!(read_all(&mut s).await, b"", "then the end, nothing more");

    // Milter side: a 4 GiB length -> the MTA sees the connection end, and
    // nothing of the bad packet.
    let huge = tmp.join("huge.sock");
    fake_milter(&huge, b"\xff\xff\xff\xf0O").await;
    let listen2 = tmp.join("proxy2.sock");
    let mut proxy2 = Proxy::start(
        &listen2,
        &format!("unix:{}", huge.display()),
        &tmp.join("t2"),
        &[],
    );
    let mut s = UnixStream::connect(&listen2).await.unwrap();
    s.write_all(&offer_bytes()).await.unwrap();
    assert_eq!(read_all(&mut s).await, b"");

    // A well-framed packet that does not parse is relayed as it is: judging
    // it is the MTA's business, not the proxy's.
    let odd = tmp.join("odd.sock");
    fake_milter(&odd, b"\0\0\0\x03Oxy").await;
    let listen3 = tmp.join("proxy3.sock");
    let mut proxy3 = Proxy::start(
        &listen3,
        &format!("unix:{}", odd.display()),
        &tmp.join("t3"),
        &[],
    );
    let mut s = UnixStream::connect(&listen3).await.unwrap();
    s.write_all(&offer_bytes()).await.unwrap();
    let mut got = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"\0\0\0\x03Oxy");
    drop(s);

    // Milter down: the MTA's connection closes with nothing said, so it
    // applies its default action as with the milter down.
    let listen4 = tmp.join("proxy4.sock");
    let mut proxy4 = Proxy::start(
        &listen4,
        &format!("unix:{}", tmp.join("nobody.sock").display()),
        &tmp.join("t4"),
        &[],
    );
    let mut s = UnixStream::connect(&listen4).await.unwrap();
    let _ = s.write_all(&offer_bytes()).await;
    assert_eq!(read_all(&mut s).await, b"");

    // Slowloris: half a packet, then silence. A proxy with a 1 s idle
    // timeout closes both sides rather than wait for ever.
    let listen5 = tmp.join("proxy5.sock");
    let mut proxy5 = Proxy::start(
        &listen5,
        &format!("unix:{}", milter.display()),
        &tmp.join("t5"),
        &["--idle-timeout", "1"],
    );
    let mut s = UnixStream::connect(&listen5).await.unwrap();
    s.write_all(&offer_bytes()[..3]).await.unwrap();
    assert_eq!(read_all(&mut s).await, b"", "closed after the idle timeout");
    assert!(proxy5.alive());

    // 100 MTA connections at once, each a whole message: all relayed.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let listen = listen.clone();
        set.spawn(async move {
            let s = spec(
                "a@example.com",
                &["ok@example.org"],
                &format!("[modify] {i}"),
            );
            play(&listen, &s).await.0
        });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap(), "accept");
    }

    // Every proxy still runs, and the first still relays a whole message.
    for p in [&mut proxy, &mut proxy2, &mut proxy3, &mut proxy4] {
        assert!(p.alive(), "{}", p.log_text());
    }
    let (outcome, _) = play(&listen, &batch()[3].0).await;
    assert_eq!(outcome, "reject");
    assert!(
        proxy.log_text().contains("bad packet from the MTA"),
        "{}",
        proxy.log_text()
    );
    assert!(
        proxy2.log_text().contains("bad packet from the milter"),
        "{}",
        proxy2.log_text()
    );
    assert!(
        proxy4.log_text().contains("cannot connect to the milter"),
        "{}",
        proxy4.log_text()
    );
    drop((proxy, proxy2, proxy3, proxy4, proxy5));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_bodies_stay_out_and_the_directory_stays_under_its_limit() {
    let tmp = scratch("bounded");
    let milter = tmp.join("milter.sock");
    serve_policy(&milter, false).await;
    let dir = tmp.join("t");
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", milter.display());
    let _proxy = Proxy::start(
        &listen,
        &to,
        &dir,
        &["--bodies", "hash", "--max-bytes", "12000"],
    );
    for i in 0..12 {
        let s = spec(
            "a@example.com",
            &["ok@example.org"],
            &format!("message {i}"),
        );
        assert_eq!(play(&listen, &s).await.0, "accept");
    }
    // Wait for the last one (connection 12) to be written.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let files = loop {
        let f = support::transcripts(&dir);
        let last = f.iter().any(|p| p.to_string_lossy().contains("-c12-"));
        if last || std::time::Instant::now() > deadline {
            break f;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= 12_000, "{total} bytes");
    assert!(files.len() < 12, "the oldest were deleted: {}", files.len());
    assert!(
        files.iter().any(|p| p.to_string_lossy().contains("-c12-")),
        "the newest kept"
    );
    assert!(
        !files.iter().any(|p| p.to_string_lossy().contains("-c1-")),
        "the oldest gone"
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains("body of"), "no body text with --bodies hash");
        assert!(text.contains("\"sha256\""));
    }
    // Replay sends everything but the body and says so; this milter does
    // not read bodies, so the verdicts are the same.
    let (code, out) = run_replay(&[dir.to_str().unwrap(), &to, "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["different"], 0);
    let notes = v["messages"][0]["notes"].to_string();
    assert!(notes.contains("the body was not kept"), "{notes}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A message far larger than the relay's read buffer and than a socket
/// buffer: 64 KiB body chunks arrive over several reads each, and writes
/// must wait for the reader. It passes byte for byte and is recorded whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_passes_whole_and_is_recorded_whole() {
    let tmp = scratch("large");
    let milter = tmp.join("milter.sock");
    serve_policy(&milter, false).await;
    let dir = tmp.join("t");
    let listen = tmp.join("proxy.sock");
    let mut proxy = Proxy::start(&listen, &format!("unix:{}", milter.display()), &dir, &[]);
    // 3 MiB of lines that differ (a repeated block would hide a chunk
    // relayed twice or out of order).
    let mut body = String::new();
    let mut n = 0u64;
    while body.len() < 3 << 20 {
        body.push_str(&format!(
            "line {n:08} {:016x}\r\n",
            n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ));
        n += 1;
    }
    let mut s = spec("a@example.com", &["ok@example.org"], "[modify] large");
    s.message = format!(
        "From: <a@example.com>\r\nTo: <ok@example.org>\r\nSubject: [modify] large\r\n\r\n{body}"
    )
    .into();
    let (direct, direct_bytes) = play(&milter, &s).await;
    let (proxied, proxied_bytes) = play(&listen, &s).await;
    assert_eq!(direct, "accept");
    assert_eq!(proxied, direct);
    assert_eq!(proxied_bytes, direct_bytes);
    let files = wait_for_transcripts(&dir, 1);
    assert_eq!(files.len(), 1, "{}", proxy.log_text());
    let l = lines(&files[0]);
    let chunks: Vec<&str> = l
        .iter()
        .filter(|e| e["type"] == "command" && e["code"] == "B")
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert!(
        chunks.len() >= 48,
        "sent in 64 KiB chunks: {}",
        chunks.len()
    );
    assert!(
        chunks.concat() == body,
        "the body is recorded whole and in order"
    );
    assert_eq!(l.last().unwrap()["verdict"], "accept");
    assert!(proxy.alive());
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}
