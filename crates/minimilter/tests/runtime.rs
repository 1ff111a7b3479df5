//! The server runtime against a scripted MTA: state handling, fail-safe
//! replies, hostile input, sockets and shutdown.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use milter_proto::{Command, ConnectAddress, Protocol, Response};
use minimilter::{
    Actions, Ctx, Envelope, Header, ListenError, Listener, MacroStage, Milter, Modifications,
    Requirements, Server, ServerConfig, Shutdown, SocketSpec, StepResult, Steps, UnixSocketOptions,
    Verdict,
};
use support::{Mta, b, postfix_offer};
use tokio::net::UnixStream;

#[derive(Default)]
struct TestFilter {
    closes: Arc<AtomicUsize>,
    aborts: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Conn {
    messages: u32,
    helo: String,
}

#[derive(Default)]
struct Msg {
    headers: u32,
    rcpts: Vec<String>,
}

impl Milter for TestFilter {
    type Connection = Conn;
    type Message = Msg;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::HELO | Steps::MAIL | Steps::RCPT | Steps::HEADER | Steps::BODY,
            no_reply: Steps::HEADER,
            actions: Actions::ADD_HEADERS | Actions::CHANGE_BODY,
            macros: vec![(MacroStage::Mail, "{auth_authen} i".into())],
            ..Requirements::default()
        }
    }

    async fn helo(&self, cx: Ctx<'_, Self>, name: &bytes::Bytes) -> StepResult {
        cx.conn.helo = String::from_utf8_lossy(name).into_owned();
        Ok(Verdict::Continue)
    }

    async fn mail(&self, cx: Ctx<'_, Self>, _sender: &Envelope) -> StepResult {
        cx.conn.messages += 1;
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, rcpt: &Envelope) -> StepResult {
        let addr = rcpt.address().into_owned();
        match addr.as_str() {
            "error@x" => return Err("backend unavailable".into()),
            "panic@x" => panic!("filter bug"),
            "hang@x" => tokio::time::sleep(Duration::from_secs(3600)).await,
            _ => {}
        }
        cx.msg.rcpts.push(addr);
        Ok(Verdict::Continue)
    }

    async fn header(&self, cx: Ctx<'_, Self>, h: &Header) -> StepResult {
        cx.msg.headers += 1;
        if h.is("X-Fail") {
            return Err("header check failed".into());
        }
        Ok(Verdict::Continue)
    }

    async fn body(&self, _cx: Ctx<'_, Self>, chunk: bytes::Bytes) -> StepResult {
        if chunk.windows(9).any(|w| w == b"reject-me") {
            return Ok(Verdict::Reject(None));
        }
        Ok(Verdict::Skip)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        if cx.msg.rcpts.iter().any(|r| r == "slow-eom@x") {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let auth = cx.macro_str("auth_authen").unwrap_or_default().into_owned();
        mods.add_header("X-Headers", &cx.msg.headers.to_string())?;
        mods.add_header("X-Msg-No", &cx.conn.messages.to_string())?;
        mods.add_header("X-Helo", &cx.conn.helo)?;
        mods.add_header("X-Auth", &auth)?;
        if cx.msg.rcpts.iter().any(|r| r == "bigbody@x") {
            mods.replace_body(bytes::Bytes::from(vec![b'x'; 150_000]))?;
        }
        Ok(Verdict::Continue)
    }

    async fn abort(&self, _cx: Ctx<'_, Self>) -> Result<(), minimilter::BoxError> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn close(&self, _cx: Ctx<'_, Self>) -> Result<(), minimilter::BoxError> {
        self.closes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn quick_config() -> ServerConfig {
    ServerConfig {
        command_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(800),
        progress_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// A server on a duplex pipe; returns the MTA end and the server task.
fn pipe<F: Milter>(
    filter: F,
    cfg: ServerConfig,
) -> (
    Mta<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<minimilter::ConnectionEnd>,
) {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(filter, cfg);
    let task = tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    (Mta::new(a), task)
}

fn headers(mods: &[Response]) -> Vec<(String, String)> {
    mods.iter()
        .filter_map(|m| match m {
            Response::AddHeader { name, value } => Some((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

async fn start_message<S>(mta: &mut Mta<S>, rcpt: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    mta.send(Command::Macro {
        stage: b'M',
        pairs: vec![(b("{auth_authen}"), b("alice"))],
    })
    .await;
    mta.send(Command::Mail(vec![b("<a@example.org>")])).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::Rcpt(vec![b(&format!("<{rcpt}>"))])).await;
}

#[tokio::test]
async fn negotiates_exactly_what_the_filter_declares() {
    let (mut mta, _task) = pipe(TestFilter::default(), quick_config());
    let reply = mta.negotiate(postfix_offer()).await;
    assert_eq!(reply.version, 6);
    assert_eq!(
        reply.actions,
        Actions::ADD_HEADERS | Actions::CHANGE_BODY | Actions::SET_SYMLIST
    );
    assert_eq!(
        reply.protocol,
        Protocol::NO_CONNECT
            | Protocol::NO_DATA
            | Protocol::NO_EOH
            | Protocol::NO_UNKNOWN
            | Protocol::NR_HEADER
            | Protocol::SKIP
    );
    assert_eq!(reply.macros.len(), 1);
    assert_eq!(&reply.macros[0].names[..], b"{auth_authen} i");
}

#[tokio::test]
async fn message_state_resets_and_connection_state_persists() {
    let filter = TestFilter::default();
    let aborts = filter.aborts.clone();
    let closes = filter.closes.clone();
    let (mut mta, task) = pipe(filter, quick_config());
    mta.negotiate(postfix_offer()).await;
    mta.send(Command::Helo(b("client.example"))).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));

    // Message 1: three headers (no replies: NR_HEADER), body skipped.
    start_message(&mut mta, "bob@example.org").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    for h in ["From", "To", "Subject"] {
        mta.send(Command::Header {
            name: b(h),
            value: b("v"),
        })
        .await;
    }
    mta.send(Command::Body(b("hello\r\n"))).await;
    assert_eq!(
        mta.recv().await,
        Some(Response::Skip),
        "headers got no reply"
    );
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert_eq!(
        headers(&mods),
        vec![
            ("X-Headers".into(), "3".into()),
            ("X-Msg-No".into(), "1".into()),
            ("X-Helo".into(), "client.example".into()),
            ("X-Auth".into(), "alice".into()),
        ]
    );

    // Message 2 is aborted after one header; message 3 must not see it.
    start_message(&mut mta, "bob@example.org").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::Header {
        name: b("From"),
        value: b("v"),
    })
    .await;
    mta.send(Command::Abort).await;
    // Message 3 without the auth macro: the old value must be gone.
    mta.send(Command::Mail(vec![b("<c@example.org>")])).await;
    assert_eq!(
        mta.recv().await,
        Some(Response::Continue),
        "no reply to ABORT"
    );
    mta.send(Command::Rcpt(vec![b("<bob@example.org>")])).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, _) = mta.until_final().await;
    assert_eq!(
        headers(&mods),
        vec![
            ("X-Headers".into(), "0".into()),
            ("X-Msg-No".into(), "3".into()),
            ("X-Helo".into(), "client.example".into()),
            ("X-Auth".into(), "".into()),
        ]
    );
    assert_eq!(aborts.load(Ordering::SeqCst), 1);
    mta.send(Command::Quit).await;
    mta.expect_eof().await;
    assert!(matches!(
        task.await.unwrap(),
        minimilter::ConnectionEnd::Closed
    ));
    assert_eq!(closes.load(Ordering::SeqCst), 1);
}

async fn assert_fail_safe_then_still_serving(rcpt: &str) {
    let (mut mta, _task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    start_message(&mut mta, rcpt).await;
    match mta.recv().await {
        Some(Response::ReplyCode(text)) => {
            assert!(text.starts_with(b"451 4.3.0 "), "{text:?}")
        }
        other => panic!("expected the tempfail reply, got {other:?}"),
    }
    // The same connection keeps working.
    mta.send(Command::Rcpt(vec![b("<ok@example.org>")])).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert_eq!(headers(&mods).len(), 4);
}

#[tokio::test]
async fn filter_error_gets_tempfail() {
    assert_fail_safe_then_still_serving("error@x").await;
}

#[tokio::test]
async fn filter_panic_gets_tempfail() {
    assert_fail_safe_then_still_serving("panic@x").await;
}

#[tokio::test]
async fn hanging_filter_times_out_with_tempfail() {
    assert_fail_safe_then_still_serving("hang@x").await;
}

#[tokio::test]
async fn failure_at_a_no_reply_step_is_reported_at_the_next_reply() {
    let (mut mta, _task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    start_message(&mut mta, "bob@example.org").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::Header {
        name: b("X-Fail"),
        value: b("1"),
    })
    .await;
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert!(mods.is_empty(), "no modifications for a failed message");
    assert!(matches!(fin, Response::ReplyCode(t) if t.starts_with(b"451 ")));
}

#[tokio::test]
async fn slow_end_of_message_sends_progress_and_big_bodies_are_chunked() {
    let (mut mta, _task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    start_message(&mut mta, "slow-eom@x").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::Rcpt(vec![b("<bigbody@x>")])).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert!(mods.contains(&Response::Progress));
    let chunks: Vec<usize> = mods
        .iter()
        .filter_map(|m| match m {
            Response::ReplaceBody(c) => Some(c.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, vec![65_535, 65_535, 18_930]);
}

#[tokio::test]
async fn probes_are_closed_without_an_answer() {
    for probe in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc][..],
        &b"\x00\x00\x00\x05Dabcd"[..],
    ] {
        let (mut mta, task) = pipe(TestFilter::default(), quick_config());
        mta.send_raw(probe).await;
        mta.expect_eof().await;
        let end = task.await.unwrap();
        assert!(
            matches!(end, minimilter::ConnectionEnd::Probe(_)),
            "{probe:?}: {end:?}"
        );
    }
}

#[tokio::test]
async fn huge_length_after_negotiation_closes_the_connection() {
    let (mut mta, task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    mta.send_raw(b"\xff\xff\xff\xffB").await;
    mta.expect_eof().await;
    assert!(matches!(
        task.await.unwrap(),
        minimilter::ConnectionEnd::Frame(_)
    ));
}

#[tokio::test]
async fn a_stalled_packet_times_out() {
    let (mut mta, task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    mta.send_raw(b"\x00\x00\x00\x10").await; // a header packet that never completes
    mta.expect_eof().await;
    assert!(matches!(
        task.await.unwrap(),
        minimilter::ConnectionEnd::IoTimeout(_)
    ));
}

#[tokio::test]
async fn dripping_bytes_does_not_extend_the_packet_deadline() {
    let (mut mta, task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    let started = std::time::Instant::now();
    mta.send_raw(b"\x00\x00\x01\x00L").await;
    // One byte every 100 ms, well inside the 300 ms I/O timeout each time.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio::io::AsyncWriteExt::write_all(&mut mta.stream, b"x")
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(matches!(
        task.await.unwrap(),
        minimilter::ConnectionEnd::IoTimeout(_)
    ));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_the_negotiation_timeout() {
    let cfg = ServerConfig {
        negotiation_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(60),
        ..quick_config()
    };
    let (mut mta, task) = pipe(TestFilter::default(), cfg);
    mta.expect_eof().await;
    assert!(matches!(
        task.await.unwrap(),
        minimilter::ConnectionEnd::IoTimeout(_)
    ));
}

#[tokio::test]
async fn an_idle_connection_times_out() {
    let (mut mta, task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    mta.expect_eof().await;
    assert!(matches!(
        task.await.unwrap(),
        minimilter::ConnectionEnd::IdleTimeout(_)
    ));
}

#[tokio::test]
async fn older_protocol_versions_are_served() {
    for (version, actions, protocol) in [
        (2u32, 0x3Fu32, 0x7Fu32),
        (4, 0x1FF, 0x3FF),
        (6, 0x1FF, 0x1F_FFFF),
    ] {
        let (mut mta, _task) = pipe(TestFilter::default(), quick_config());
        let offer = milter_proto::OptNeg {
            version,
            actions: Actions::from_bits_retain(actions),
            protocol: Protocol::from_bits_retain(protocol),
            macros: vec![],
        };
        let reply = mta.negotiate(offer.clone()).await;
        assert_eq!(reply.version, version);
        assert!(offer.actions.contains(reply.actions), "v{version}");
        assert!(offer.protocol.contains(reply.protocol), "v{version}");
        // Without NR_HDR offered (v2), each header is answered by the runtime.
        mta.send(Command::Connect {
            hostname: b("[192.0.2.1]"),
            address: ConnectAddress::Inet {
                port: 4000,
                addr: b("192.0.2.1"),
            },
        })
        .await;
        if !reply.protocol.contains(Protocol::NO_CONNECT) {
            assert_eq!(mta.recv().await, Some(Response::Continue), "v{version}");
        }
        mta.send(Command::Mail(vec![b("<a@b>")])).await;
        assert_eq!(mta.recv().await, Some(Response::Continue));
        mta.send(Command::Header {
            name: b("Subject"),
            value: b("x"),
        })
        .await;
        if !reply.protocol.contains(Protocol::NR_HEADER) {
            assert_eq!(mta.recv().await, Some(Response::Continue), "v{version}");
        }
        mta.send(Command::EndOfMessage(b(""))).await;
        let (_, fin) = mta.until_final().await;
        assert_eq!(fin, Response::Continue);
    }
}

/// Serves a `TestFilter` on `listener` until the sender fires (or is dropped).
fn spawn_server(
    listener: Listener,
    cfg: ServerConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(TestFilter::default(), cfg).serve(
        vec![listener],
        async move {
            let _ = stop_rx.await;
        },
    ));
    (stop_tx, server)
}

async fn unix_listener() -> (std::path::PathBuf, std::path::PathBuf, Listener) {
    let dir = temp_dir();
    let path = dir.join("m.sock");
    let listener = Listener::bind(&SocketSpec::Unix(path.clone()), &Default::default())
        .await
        .unwrap();
    (dir, path, listener)
}

/// A connection with a message in progress (MAIL and RCPT answered).
async fn open_message(path: &std::path::Path) -> Mta<UnixStream> {
    let mut mta = Mta::new(UnixStream::connect(path).await.unwrap());
    mta.negotiate(postfix_offer()).await;
    start_message(&mut mta, "bob@example.org").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "minimilter-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[tokio::test]
async fn unix_socket_lifecycle() {
    let dir = temp_dir();
    let path = dir.join("m.sock");
    let spec = SocketSpec::Unix(path.clone());
    let opts = UnixSocketOptions {
        mode: Some(0o660),
        ..Default::default()
    };

    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = Listener::bind(&spec, &opts)
        .await
        .expect("stale socket removed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o660
    );

    // It appeared whole: listening (a client connects the moment it sees
    // the file), and with no staging name left beside it.
    std::os::unix::net::UnixStream::connect(&path).expect("listening");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["m.sock"]);

    // A live one is not stolen.
    match Listener::bind(&spec, &opts).await {
        Err(ListenError::InUse { .. }) => {}
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(live);
    assert!(!path.exists(), "socket removed when the listener goes");

    // A regular file is never removed.
    std::fs::write(&path, b"precious").unwrap();
    match Listener::bind(&spec, &opts).await {
        Err(ListenError::NotASocket { .. }) => {}
        other => panic!("expected NotASocket, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A path too long for a staging name beside it (a socket address holds
/// 107 bytes) is bound in place, as before, and still works.
#[tokio::test]
async fn a_unix_path_near_the_address_limit_is_bound_in_place() {
    let dir = temp_dir();
    let room = 107 - dir.as_os_str().len() - 1;
    let path = dir.join("m".repeat(room - 5) + ".sock");
    assert_eq!(path.as_os_str().len(), 107);
    let opts = UnixSocketOptions {
        mode: Some(0o600),
        ..Default::default()
    };
    let live = Listener::bind(&SocketSpec::Unix(path.clone()), &opts)
        .await
        .expect("bound");
    std::os::unix::net::UnixStream::connect(&path).expect("listening");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    drop(live);
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connection_limit_closes_the_surplus_and_recovers() {
    let (dir, path, listener) = unix_listener().await;
    let cfg = ServerConfig {
        max_connections: 2,
        ..quick_config()
    };
    let (stop_tx, server) = spawn_server(listener, cfg);
    let mut a = Mta::new(UnixStream::connect(&path).await.unwrap());
    a.negotiate(postfix_offer()).await;
    let mut b2 = Mta::new(UnixStream::connect(&path).await.unwrap());
    b2.negotiate(postfix_offer()).await;
    let mut c = Mta::new(UnixStream::connect(&path).await.unwrap());
    c.expect_eof().await;
    a.send(Command::Quit).await;
    a.expect_eof().await;
    // A slot is free again.
    let mut d = None;
    for _ in 0..50 {
        let mut m = Mta::new(UnixStream::connect(&path).await.unwrap());
        m.send(Command::OptNeg(postfix_offer())).await;
        if let Ok(Some(Response::OptNeg(_))) = m.recv_within(Duration::from_secs(2)).await {
            d = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(d.is_some(), "a freed slot serves a new connection");
    stop_tx.send(()).unwrap();
    server.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn graceful_shutdown_finishes_messages_in_progress() {
    let (dir, path, listener) = unix_listener().await;
    let cfg = ServerConfig {
        idle_timeout: Duration::from_secs(60),
        ..quick_config()
    };
    let (stop_tx, server) = spawn_server(listener, cfg);
    let mut idle = Mta::new(UnixStream::connect(&path).await.unwrap());
    idle.negotiate(postfix_offer()).await;
    let mut busy = open_message(&path).await;

    stop_tx.send(()).unwrap();
    idle.expect_eof().await;
    // New connections are refused once the listener is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(UnixStream::connect(&path).await.is_err());
    // The busy connection finishes its message, then is closed.
    busy.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = busy.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert_eq!(headers(&mods).len(), 4);
    busy.expect_eof().await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server returns after its connections end")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_deadline_closes_stuck_messages() {
    let (dir, path, listener) = unix_listener().await;
    let cfg = ServerConfig {
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(300),
        ..quick_config()
    };
    let (stop_tx, server) = spawn_server(listener, cfg);
    let mut busy = open_message(&path).await;
    stop_tx.send(()).unwrap();
    // The MTA goes quiet mid-message; the deadline closes it cleanly.
    busy.expect_eof().await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server returns after the grace period")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn inet_listener_serves() {
    let spec: SocketSpec = "inet:127.0.0.1:0".parse().unwrap_or(SocketSpec::Inet {
        host: "127.0.0.1".into(),
        port: 0,
        v6: false,
    });
    let listener = Listener::bind(&spec, &Default::default()).await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let (stop_tx, server) = spawn_server(listener, quick_config());
    let mut mta = Mta::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    assert_eq!(mta.negotiate(postfix_offer()).await.version, 6);
    mta.send(Command::Quit).await;
    mta.expect_eof().await;
    stop_tx.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn data_on_end_of_message_is_a_last_body_chunk_with_one_reply() {
    let (mut mta, _task) = pipe(TestFilter::default(), quick_config());
    mta.negotiate(postfix_offer()).await;
    start_message(&mut mta, "bob@example.org").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::EndOfMessage(b("please reject-me\r\n")))
        .await;
    assert_eq!(mta.recv().await, Some(Response::Reject));
    // Exactly one reply: the next message starts cleanly.
    start_message(&mut mta, "bob@example.org").await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::EndOfMessage(b("fine\r\n"))).await;
    let (mods, fin) = mta.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert_eq!(headers(&mods).len(), 4);
}

#[tokio::test]
async fn sendmail_style_specs_bind_and_serve() {
    // inet:port@host and inet6:port@host, with a port found free a moment ago.
    for (family, host) in [("inet", "127.0.0.1"), ("inet6", "::1")] {
        let port = std::net::TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec: SocketSpec = format!("{family}:{port}@{host}").parse().unwrap();
        let listener = Listener::bind(&spec, &Default::default()).await.unwrap();
        let addr = listener.tcp_addr().unwrap();
        assert_eq!(addr.port(), port);
        assert_eq!(addr.is_ipv6(), family == "inet6");
        let (stop_tx, server) = spawn_server(listener, quick_config());
        let mut mta = Mta::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        assert_eq!(mta.negotiate(postfix_offer()).await.version, 6, "{spec}");
        stop_tx.send(()).unwrap();
        mta.expect_eof().await;
        server.await.unwrap();
    }
}

#[tokio::test]
async fn unix_socket_group_is_set_and_unknown_names_are_refused() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir();
    let path = dir.join("g.sock");
    let spec = SocketSpec::Unix(path.clone());
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .expect("Debian has group nogroup");
    let opts = UnixSocketOptions {
        mode: Some(0o660),
        group: Some("nogroup".into()),
        ..Default::default()
    };
    let l = Listener::bind(&spec, &opts).await.unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().gid(),
        nogroup.gid.as_raw()
    );
    drop(l);
    let bad = UnixSocketOptions {
        group: Some("no-such-group-here".into()),
        ..Default::default()
    };
    match Listener::bind(&spec, &bad).await {
        Err(ListenError::UnknownId { kind: "group", .. }) => {}
        other => panic!("expected UnknownId, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sees only the connect and the headers, answers neither.
struct HeaderOnly;

impl Milter for HeaderOnly {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::CONNECT | Steps::HEADER,
            no_reply: Steps::CONNECT | Steps::HEADER,
            actions: Actions::ADD_HEADERS,
            ..Requirements::default()
        }
    }

    async fn connect(&self, _cx: Ctx<'_, Self>, info: &minimilter::ConnectInfo) -> StepResult {
        if info.hostname_str() == "fail.example" {
            return Err("DNSBL backend down".into());
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, _cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        mods.add_header("X-Seen", "yes")?;
        Ok(Verdict::Skip)
    }
}

fn connect_cmd(host: &str) -> Command {
    Command::Connect {
        hostname: b(host),
        address: ConnectAddress::Inet {
            port: 25,
            addr: b("192.0.2.1"),
        },
    }
}

#[tokio::test]
async fn a_failure_at_a_no_reply_connect_is_answered_at_mail() {
    let (mut mta, _task) = pipe(HeaderOnly, quick_config());
    let reply = mta.negotiate(postfix_offer()).await;
    assert!(reply.protocol.contains(Protocol::NR_CONNECT));
    assert!(reply.protocol.contains(Protocol::NO_MAIL));
    mta.send(connect_cmd("fail.example")).await;
    // MAIL is declined, so the MTA only sends its macros; end of message is
    // the first step it waits for, and it carries the fail-safe tempfail.
    mta.send(Command::Macro {
        stage: b'M',
        pairs: vec![(b("{mail_addr}"), b("a@b"))],
    })
    .await;
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert!(mods.is_empty());
    assert!(matches!(fin, Response::ReplyCode(t) if t.starts_with(b"451 4.3.0")));
}

#[tokio::test]
async fn skip_at_end_of_message_still_delivers_the_modifications() {
    let (mut mta, _task) = pipe(HeaderOnly, quick_config());
    mta.negotiate(postfix_offer()).await;
    mta.send(connect_cmd("ok.example")).await;
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert_eq!(headers(&mods), vec![("X-Seen".into(), "yes".into())]);
}

#[tokio::test]
async fn shutdown_waits_for_a_transaction_the_filter_only_saw_macros_of() {
    let (dir, path, listener) = unix_listener().await;
    let cfg = ServerConfig {
        idle_timeout: Duration::from_secs(60),
        ..quick_config()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new(HeaderOnly, cfg).serve(vec![listener], async move {
            let _ = stop_rx.await;
        }),
    );
    let mut mta = Mta::new(UnixStream::connect(&path).await.unwrap());
    mta.negotiate(postfix_offer()).await;
    mta.send(connect_cmd("ok.example")).await;
    mta.send(Command::Macro {
        stage: b'M',
        pairs: vec![(b("{mail_addr}"), b("a@b"))],
    })
    .await;
    // Let the server take the packets in before shutdown begins.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The DATA phase goes on: headers, then end of message, still answered.
    mta.send(Command::Header {
        name: b("Subject"),
        value: b("x"),
    })
    .await;
    mta.send(Command::EndOfMessage(b(""))).await;
    let (mods, fin) = mta.until_final().await;
    assert_eq!(fin, Response::Continue);
    assert_eq!(headers(&mods).len(), 1);
    mta.expect_eof().await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
