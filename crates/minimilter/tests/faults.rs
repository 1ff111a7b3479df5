//! The fault suite: the interop milter as a real daemon process on a unix
//! socket, hit with hostile input and broken peers. Every test ends with the
//! daemon still serving a normal message and no crash in its log.

mod interop;
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use interop::{ChildMilter, TempDir, rust_action_milter};
use milter_proto::{Command, Response};
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, MessageSpec, MilterClient, SocketSpec, run_message};
use support::{Mta, b, postfix_offer};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

fn daemon(extra: &[&str]) -> ChildMilter {
    ChildMilter::rust_action_milter(extra)
}

fn message(actions: &[&str]) -> MessageSpec {
    let mut m = String::from("From: a@example.com\r\nSubject: fault\r\n");
    for a in actions {
        m.push_str(&format!("X-Action: {a}\r\n"));
    }
    m.push_str("\r\nbody\r\n");
    MessageSpec {
        message: Bytes::from(m),
        ..MessageSpec::default()
    }
}

/// A normal message still gets through, and nothing crashed.
async fn assert_still_serving(m: &ChildMilter) {
    let spec: SocketSpec = m.socket_spec().parse().unwrap();
    let mut c = MilterClient::connect(&spec, ClientConfig::default())
        .await
        .unwrap_or_else(|e| panic!("daemon no longer serving: {e}\n{}", m.log_text()));
    let t = run_message(&mut c, &message(&["add-header X-Ok yes"]))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted, "{}", m.log_text());
    c.quit().await.unwrap();
    let log = m.log_text();
    assert!(
        !log.contains("panicked at") || log.contains("X-Action asked the filter to panic"),
        "a panic in the daemon log:\n{log}"
    );
}

/// Waits (bounded) for the daemon to log `needle`: it logs a connection's
/// end after closing it, so right after EOF the line may not be there yet.
async fn wait_for_log(m: &ChildMilter, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            m.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn raw(m: &ChildMilter) -> Mta<UnixStream> {
    Mta::new(UnixStream::connect(m.socket()).await.unwrap())
}

#[tokio::test]
async fn port_scanner_probes_are_closed_without_a_reply() {
    let m = daemon(&[]);
    let tls_hello = [
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0xde, 0xad,
    ];
    let random: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for probe in [&b"GET / HTTP/1.0\r\n\r\n"[..], &tls_hello, &random] {
        let mut mta = raw(&m).await;
        mta.send_raw(probe).await;
        mta.expect_eof().await;
    }
    wait_for_log(&m, "an HTTP request").await;
    wait_for_log(&m, "a TLS ClientHello").await;
    assert_still_serving(&m).await;
}

#[tokio::test]
async fn a_four_gigabyte_length_is_refused_before_allocating() {
    let m = daemon(&[]);
    let mut mta = raw(&m).await;
    mta.negotiate(postfix_offer()).await;
    mta.send_raw(b"\xff\xff\xff\xffL").await;
    mta.expect_eof().await;
    wait_for_log(&m, "exceeds the limit").await;
    assert_still_serving(&m).await;
}

#[tokio::test]
async fn a_stalled_packet_times_out() {
    let m = daemon(&["--io-timeout-ms", "500"]);
    let mut mta = raw(&m).await;
    mta.negotiate(postfix_offer()).await;
    let started = Instant::now();
    mta.send_raw(b"\x00\x00\x00\x20Lhalf a hea").await;
    mta.expect_eof().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_still_serving(&m).await;
}

#[tokio::test]
async fn the_mta_disconnecting_mid_message_is_survived() {
    let m = daemon(&[]);
    for stop_after in ["header", "body", "before-eom"] {
        let mut mta = raw(&m).await;
        mta.negotiate(postfix_offer()).await;
        mta.send(Command::Mail(vec![b("<a@b>")])).await;
        assert_eq!(mta.recv().await, Some(Response::Continue));
        mta.send(Command::Header {
            name: b("Subject"),
            value: b("x"),
        })
        .await;
        assert_eq!(mta.recv().await, Some(Response::Continue));
        if stop_after == "header" {
            // Half of the next header packet, then gone.
            mta.send_raw(b"\x00\x00\x00\x10LFro").await;
        } else {
            mta.send(Command::Body(b("some body\r\n"))).await;
            assert_eq!(mta.recv().await, Some(Response::Continue));
            if stop_after == "body" {
                mta.send_raw(b"\x00\x01\x00\x00Bpartial").await;
            }
        }
        drop(mta);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_still_serving(&m).await;
}

#[tokio::test]
async fn a_panicking_or_hanging_filter_gets_the_fail_safe_reply() {
    let m = daemon(&["--step-timeout-ms", "500"]);
    let spec: SocketSpec = m.socket_spec().parse().unwrap();
    for action in ["panic", "slow 30000"] {
        let mut c = MilterClient::connect(&spec, ClientConfig::default())
            .await
            .unwrap();
        let started = Instant::now();
        let t = run_message(&mut c, &message(&[action])).await.unwrap();
        match &t.outcome {
            Outcome::Tempfailed { reply: Some(r), .. } => {
                assert!(r.starts_with("451 4.3.0"), "{action}: {r}")
            }
            other => panic!("{action}: {other:?}\n{}", m.log_text()),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{action}");
        // The same connection carries on.
        let t = minimilter::transaction::run_next_message(&mut c, &message(&[]))
            .await
            .unwrap();
        assert_eq!(t.outcome, Outcome::Accepted);
    }
    wait_for_log(&m, "filter panicked").await;
    wait_for_log(&m, "did not answer within").await;
    assert_still_serving(&m).await;
}

fn raise_fd_limit(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = n.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_at_once_hit_the_limit_not_a_crash() {
    // The daemon inherits the raised limit; its connection cap is 1000.
    raise_fd_limit(30_000);
    let m = daemon(&["--max-connections", "1000"]);
    let mut conns = Vec::new();
    let mut refused_at_connect = 0;
    for _ in 0..10_000 {
        match UnixStream::connect(m.socket()).await {
            Ok(s) => conns.push(s),
            Err(_) => refused_at_connect += 1,
        }
    }
    // Every accepted connection beyond the cap is closed by the daemon.
    let mut served = 0;
    let mut closed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in conns.iter_mut() {
        let mut buf = bytes::BytesMut::new();
        Command::OptNeg(postfix_offer()).encode(&mut buf);
        if s.write_all(&buf).await.is_err() {
            closed += 1;
            continue;
        }
    }
    for s in conns.iter_mut() {
        let mut head = [0u8; 5];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(
            left.max(Duration::from_millis(100)),
            tokio::io::AsyncReadExt::read_exact(s, &mut head),
        )
        .await
        {
            Ok(Ok(_)) if head[4] == b'O' => served += 1,
            _ => closed += 1,
        }
    }
    assert!(
        (900..=1000).contains(&served),
        "served {served}, closed {closed}, refused {refused_at_connect}\n{}",
        m.log_text()
    );
    assert!(closed + refused_at_connect >= 9000);
    wait_for_log(&m, "connection limit reached").await;
    drop(conns);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_still_serving(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_32_messages_in_flight_ends_each_cleanly() {
    let m = daemon(&["--grace-ms", "5000"]);
    let mut open = Vec::new();
    for i in 0..32 {
        let mut mta = raw(&m).await;
        mta.negotiate(postfix_offer()).await;
        mta.send(Command::Mail(vec![b(&format!("<s{i}@example.com>"))]))
            .await;
        // The milter declined MAIL; sent anyway, it is answered for it.
        assert_eq!(mta.recv().await, Some(Response::Continue));
        mta.send(Command::Header {
            name: b("Subject"),
            value: b("in flight"),
        })
        .await;
        assert_eq!(mta.recv().await, Some(Response::Continue));
        open.push(mta);
    }
    let pid = nix::unistd::Pid::from_raw(m.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are no longer accepted...
    assert!(UnixStream::connect(m.socket()).await.is_err());
    // ...but every message in flight finishes with a whole final reply.
    let mut finished = 0;
    for mta in open.iter_mut() {
        mta.send(Command::EndOfMessage(b(""))).await;
        let (_mods, fin) = mta.until_final().await;
        assert_eq!(fin, Response::Continue);
        mta.expect_eof().await;
        finished += 1;
    }
    assert_eq!(finished, 32);
    let status = m.terminate(Duration::from_secs(10)).expect("daemon exited");
    assert!(status.success(), "exit status {status}");
}

#[ignore = "needs python3"]
#[tokio::test]
async fn a_user_without_access_to_the_socket_is_refused() {
    use std::os::unix::process::CommandExt;
    for (mode, allowed) in [("660", false), ("666", true)] {
        let dir = TempDir::new("perm");
        let socket = dir.path().join("m.sock");
        let args: Vec<String> = [
            "--listen".to_owned(),
            format!("unix:{}", socket.display()),
            "--socket-mode".to_owned(),
            mode.to_owned(),
        ]
        .into();
        let m = ChildMilter::spawn(&rust_action_milter(), &args, dir, socket.clone());
        // Connect as user nobody (65534), which is neither owner nor group.
        let out = std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')",
                socket.to_str().unwrap(),
            ])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if allowed {
            assert!(out.status.success(), "mode {mode}: {text}");
        } else {
            assert!(!out.status.success(), "mode {mode}: {text}");
            assert!(text.contains("PermissionError"), "mode {mode}: {text}");
        }
        assert_still_serving(&m).await;
    }
}
