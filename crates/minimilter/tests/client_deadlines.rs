//! The client's timeouts are deadlines for a whole exchange: a milter that
//! trickles its answer a byte at a time, each byte well within the timeout,
//! is still cut off when the whole answer is late. The fake milter here
//! speaks just enough of the protocol over a loopback TCP socket.
//!
//! Each test is built so the old per-read timeout would have succeeded (every
//! byte arrives well inside the limit) and the deadline must fail it; no test
//! asserts on measured durations.

use std::time::Duration;

use milter_proto::{Offer, Step};
use minimilter::{ClientConfig, ClientError, MessageSpec, MilterClient, SocketSpec, run_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake milter answers.
#[derive(Clone, Copy)]
enum Plan {
    /// Every answer at once.
    Prompt,
    /// The answer to the command with this code, one byte per interval.
    Drip(u8, Duration),
    /// At end of message: this many progress packets, one per interval,
    /// then the answer.
    Progress(u32, Duration),
    /// At end of message: silence for this long, then the answer.
    Late(Duration),
}

fn optneg() -> Vec<u8> {
    // Version 6, all actions, no protocol flags (every step, every reply).
    let mut v = vec![0, 0, 0, 13, b'O'];
    for w in [6u32, 0x1FF, 0] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v
}

const CONTINUE: [u8; 5] = [0, 0, 0, 1, b'c'];
const PROGRESS: [u8; 5] = [0, 0, 0, 1, b'p'];

async fn drip(s: &mut TcpStream, bytes: &[u8], every: Duration) -> std::io::Result<()> {
    for b in bytes {
        tokio::time::sleep(every).await;
        s.write_all(&[*b]).await?;
    }
    Ok(())
}

/// Serves one connection on a fresh loopback port according to `plan`;
/// at most 200 packets, so the task always ends.
async fn fake_milter(plan: Plan) -> SocketSpec {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..200 {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let n = u32::from_be_bytes(len) as usize;
            if n == 0 || n > buf.len() || s.read_exact(&mut buf[..n]).await.is_err() {
                return;
            }
            let code = buf[0];
            let answer = match code {
                b'O' => optneg(),
                b'D' | b'A' | b'Q' => continue,
                _ => CONTINUE.to_vec(),
            };
            let sent = match plan {
                Plan::Drip(c, every) if c == code => drip(&mut s, &answer, every).await,
                Plan::Progress(count, every) if code == b'E' => {
                    let mut r = Ok(());
                    for _ in 0..count {
                        tokio::time::sleep(every).await;
                        r = r.and(s.write_all(&PROGRESS).await);
                    }
                    r.and(s.write_all(&answer).await)
                }
                Plan::Late(after) if code == b'E' => {
                    tokio::time::sleep(after).await;
                    s.write_all(&answer).await
                }
                _ => s.write_all(&answer).await,
            };
            if sent.is_err() {
                return;
            }
        }
    });
    format!("inet:127.0.0.1:{port}").parse().unwrap()
}

fn config(connect: f64, command: f64, content: f64) -> ClientConfig {
    ClientConfig {
        offer: Offer::postfix(),
        connect_timeout: Duration::from_secs_f64(connect),
        command_timeout: Duration::from_secs_f64(command),
        content_timeout: Duration::from_secs_f64(content),
        ..ClientConfig::default()
    }
}

/// Runs the default message; the error if any.
async fn run(spec: &SocketSpec, cfg: ClientConfig) -> Result<minimilter::Transcript, ClientError> {
    let mut c = MilterClient::connect(spec, cfg).await?;
    run_message(&mut c, &MessageSpec::default())
        .await
        .map_err(|i| i.error)
}

#[tokio::test]
async fn a_dripped_negotiation_is_cut_off_at_the_connect_timeout() {
    // 17 bytes, one every 150 ms: about 2.5 s in all, each read within 1 s.
    let spec = fake_milter(Plan::Drip(b'O', Duration::from_millis(150))).await;
    match MilterClient::connect(&spec, config(1.0, 30.0, 30.0)).await {
        Err(ClientError::Timeout { what, after }) => {
            assert!(what.contains("negotiation"), "{what}");
            assert_eq!(after, Duration::from_secs(1));
        }
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(_) => panic!("a negotiation dripped over 2.5 s passed a 1 s timeout"),
    }
}

#[tokio::test]
async fn a_dripped_command_answer_is_cut_off_at_the_command_timeout() {
    // The CONNECT answer (5 bytes) one byte every 400 ms: 2 s for a 1 s limit.
    let spec = fake_milter(Plan::Drip(b'C', Duration::from_millis(400))).await;
    match run(&spec, config(30.0, 1.0, 30.0)).await {
        Err(ClientError::Timeout { what, .. }) => {
            assert_eq!(what, format!("at {}", Step::Connect));
        }
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(t) => panic!("a CONNECT answer dripped over 2 s passed a 1 s timeout: {t:?}"),
    }
}

#[tokio::test]
async fn a_dripped_content_answer_is_cut_off_at_the_content_timeout() {
    // The end-of-message answer one byte every 400 ms: 2 s for a 1 s limit;
    // the command timeout (long) must not be the one applied.
    let spec = fake_milter(Plan::Drip(b'E', Duration::from_millis(400))).await;
    match run(&spec, config(30.0, 30.0, 1.0)).await {
        Err(ClientError::Timeout { what, .. }) => {
            assert_eq!(what, format!("at {}", Step::EndOfMessage));
        }
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(t) => panic!("an answer dripped over 2 s passed a 1 s timeout: {t:?}"),
    }
}

#[tokio::test]
async fn an_answer_split_into_bytes_within_the_deadline_is_read_whole() {
    // Same split answers, but all within the limits: nothing is lost in
    // reassembly.
    let spec = fake_milter(Plan::Drip(b'O', Duration::from_millis(10))).await;
    let t = run(&spec, config(10.0, 10.0, 10.0)).await.unwrap();
    assert_eq!(t.outcome, minimilter::Outcome::Accepted);
    let spec = fake_milter(Plan::Drip(b'H', Duration::from_millis(10))).await;
    let t = run(&spec, config(10.0, 10.0, 10.0)).await.unwrap();
    assert_eq!(t.outcome, minimilter::Outcome::Accepted);
}

#[tokio::test]
async fn progress_packets_start_the_content_deadline_afresh() {
    // Six progress packets 400 ms apart: 2.4 s in all for a 1.5 s limit,
    // but never more than 400 ms of silence.
    let spec = fake_milter(Plan::Progress(6, Duration::from_millis(400))).await;
    let t = run(&spec, config(30.0, 30.0, 1.5)).await.unwrap();
    assert_eq!(t.outcome, minimilter::Outcome::Accepted);
    let eom = t.steps.last().unwrap();
    assert_eq!(eom.outcome.step, Step::EndOfMessage);
    assert_eq!(eom.outcome.progress, 6);
}

#[tokio::test]
async fn the_same_wait_without_progress_times_out() {
    // The control for the test above.
    let spec = fake_milter(Plan::Late(Duration::from_millis(2400))).await;
    match run(&spec, config(30.0, 30.0, 1.5)).await {
        Err(ClientError::Timeout { what, .. }) => {
            assert_eq!(what, format!("at {}", Step::EndOfMessage));
        }
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(_) => panic!("2.4 s of silence passed a 1.5 s timeout"),
    }
}

#[tokio::test]
async fn prompt_answers_pass() {
    let spec = fake_milter(Plan::Prompt).await;
    let t = run(&spec, config(5.0, 5.0, 5.0)).await.unwrap();
    assert_eq!(t.outcome, minimilter::Outcome::Accepted);
}
