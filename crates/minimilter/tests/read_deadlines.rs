//! The connection keeps one read timer for its whole life. It moves it
//! earlier at once when a nearer deadline is needed (a packet in progress
//! after an idle wait), and leaves it when the deadline moves later (idle
//! waits, each later than the last), moving it on when it fires early. These
//! tests pin both directions: later with activity, earlier when a packet
//! starts after a long idle wait, and an idle wait after a packet's nearer
//! deadline.

mod support;

use std::time::Duration;

use milter_proto::{Command, Response};
use minimilter::{ConnectionEnd, Milter, Requirements, Server, ServerConfig, Shutdown, Steps};
use support::{Mta, b, postfix_offer};

/// Answers MAIL and RCPT with the default continue.
struct Envelope;

impl Milter for Envelope {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::MAIL | Steps::RCPT,
            ..Requirements::default()
        }
    }
}

fn pipe(
    cfg: ServerConfig,
) -> (
    Mta<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<ConnectionEnd>,
) {
    let (a, z) = tokio::io::duplex(1 << 16);
    let server = Server::new(Envelope, cfg);
    let task = tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    (Mta::new(a), task)
}

async fn envelope(mta: &mut Mta<tokio::io::DuplexStream>) {
    mta.send(Command::Mail(vec![b("<a@example.org>")])).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::Rcpt(vec![b("<b@example.org>")])).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    mta.send(Command::Abort).await;
}

/// Each packet moves the idle deadline later: a connection never silent for
/// the idle timeout stays open for several idle timeouts in total.
#[tokio::test]
async fn activity_keeps_a_connection_open_past_the_idle_timeout() {
    let idle = Duration::from_millis(1500);
    let cfg = ServerConfig {
        idle_timeout: idle,
        io_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (mut mta, task) = pipe(cfg);
    mta.negotiate(postfix_offer()).await;
    let started = std::time::Instant::now();
    // Bounded in rounds and time: done once twice the idle timeout passed.
    for _ in 0..60 {
        if started.elapsed() > 2 * idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        envelope(&mut mta).await;
    }
    assert!(started.elapsed() > 2 * idle, "too few rounds");
    assert!(!task.is_finished(), "closed while active: {:?}", task.await);
    // And silence still ends it, as an idle timeout.
    mta.expect_eof().await;
    assert!(matches!(task.await.unwrap(), ConnectionEnd::IdleTimeout(_)));
}

/// A packet that starts while the timer is set to a far idle deadline gets
/// its own, much nearer one: the timer is moved earlier, not left waiting
/// for the idle deadline.
#[tokio::test]
async fn a_packet_stalled_after_an_idle_wait_ends_at_the_packet_deadline() {
    let cfg = ServerConfig {
        idle_timeout: Duration::from_secs(3600),
        io_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (mut mta, task) = pipe(cfg);
    mta.negotiate(postfix_offer()).await;
    envelope(&mut mta).await;
    // Let the connection settle into its idle wait (an hour's deadline).
    tokio::time::sleep(Duration::from_millis(200)).await;
    mta.send_raw(b"\x00\x00\x00\x10").await; // a packet that never completes
    // Bounded far below the idle hour: only the packet deadline ends it in time.
    let end = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the stalled packet was cut off by its deadline, not the idle one")
        .unwrap();
    assert!(matches!(end, ConnectionEnd::IoTimeout(_)), "{end:?}");
}

/// The other way round: after a packet that arrived in pieces (its nearer
/// deadline armed the timer), the idle wait that follows ends at the idle
/// deadline. The runtime leaves the timer at the packet's deadline and moves
/// it on when it fires early: that early firing must not end the connection.
#[tokio::test]
async fn an_idle_wait_after_a_packet_in_pieces_outlives_the_packet_deadline() {
    let io = Duration::from_millis(200);
    let cfg = ServerConfig {
        idle_timeout: Duration::from_millis(1500),
        io_timeout: io,
        ..ServerConfig::default()
    };
    let (mut mta, task) = pipe(cfg);
    mta.negotiate(postfix_offer()).await;
    let mut mail = Vec::new();
    let payload = b"M<a@example.org>\0";
    mail.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    mail.extend_from_slice(payload);
    mta.send_raw(&mail[..6]).await;
    // The connection now waits for the rest with the packet deadline.
    tokio::time::sleep(io / 2).await;
    mta.send_raw(&mail[6..]).await;
    assert_eq!(mta.recv().await, Some(Response::Continue));
    // Silent for three packet deadlines: the timer fired at the packet's
    // deadline and was moved on to the idle one.
    tokio::time::sleep(3 * io).await;
    assert!(!task.is_finished(), "closed early: {:?}", task.await);
    mta.expect_eof().await;
    let end = task.await.unwrap();
    assert!(matches!(end, ConnectionEnd::IdleTimeout(_)), "{end:?}");
}
