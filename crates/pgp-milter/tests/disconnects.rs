//! The daemon when its peer goes away: MTA connections cut anywhere (in the
//! negotiation, in the header, inside a body packet, in the middle of a
//! large message judged on a blocking thread, right before end of
//! message), many at once. The daemon keeps serving, judges the next
//! messages right, logs no panic, and its memory stays bounded.

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, MessageSpec, MilterClient, run_message};
use testkit::MilterProcess;

/// One milter packet: length, command, data.
fn packet(cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(cmd);
    p.extend_from_slice(data);
    p
}

/// What an MTA sends for `message` (protocol version 6, as Postfix), up
/// to and including end of message.
fn session(message: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    let mut optneg = 6u32.to_be_bytes().to_vec();
    optneg.extend(0x1ffu32.to_be_bytes());
    optneg.extend(0x1f_ffffu32.to_be_bytes());
    s.extend(packet(b'O', &optneg));
    // Host name, family `4`, port 25, address.
    s.extend(packet(b'C', b"client.example\x004\x00\x19192.0.2.7\x00"));
    s.extend(packet(b'H', b"client.example\0"));
    s.extend(packet(b'M', b"<alice@client.example>\0"));
    s.extend(packet(b'R', b"<bob@example.org>\0"));
    let split = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(0);
    for line in message[..split].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let mut h = line[..colon].to_vec();
            h.push(0);
            h.extend_from_slice(line[colon + 1..].trim_ascii_start());
            h.push(0);
            s.extend(packet(b'L', &h));
        }
    }
    s.extend(packet(b'N', b""));
    for chunk in message[(split + 4).min(message.len())..].chunks(65_535) {
        s.extend(packet(b'B', chunk));
    }
    s.extend(packet(b'E', b""));
    s
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

async fn judge(socket: &Path, message: Vec<u8>) -> Outcome {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut c = MilterClient::negotiate(Box::new(stream), ClientConfig::default())
        .await
        .unwrap();
    let spec = MessageSpec {
        from: "alice@client.example".into(),
        rcpts: vec!["bob@example.org".into()],
        message: Bytes::from(message),
        ..MessageSpec::default()
    };
    let t = run_message(&mut c, &spec).await.unwrap();
    t.outcome
}

#[ignore = "needs gpg"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_anywhere_leave_the_daemon_serving() {
    let g = support::gpg();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pgp.sock");
    let config = dir.path().join("pgp-milter.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"unix:{}\"\n", socket.display()),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgp-milter"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    let daemon = MilterProcess::start(cmd, &socket, dir.path().join("log")).unwrap();
    let pid = daemon.pid().unwrap();

    // A small message (judged inline) and a 3 MB one (judged on a blocking
    // thread, chunk by chunk): PGP/MIME whose armor is repeated in blocks
    // of an inline multipart/mixed, so every byte is read.
    let small = support::pgp_mime("small", &g.encrypted);
    let big_parts: Vec<String> = (0..3000)
        .map(|_| format!("Content-Type: text/plain\r\n\r\n{}", g.encrypted))
        .collect();
    let big = support::mixed("big", &big_parts);
    assert!(big.len() > 1 << 20);
    let sessions = [session(&small), session(&big)];

    let cut_at = |s: &[u8], i: usize| -> usize {
        // Deterministic places: early, in the header, in the body, one
        // byte before the end.
        match i % 5 {
            0 => 3,
            1 => s.len() / 20,
            2 => s.len() / 2 + i,
            3 => s.len() * 9 / 10,
            _ => s.len() - 1,
        }
    };
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let socket = socket.clone();
            let sessions = sessions.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let s = &sessions[(t + i) % 2];
                    let cut = cut_at(s, t * 25 + i);
                    let mut c = UnixStream::connect(&socket).unwrap();
                    // The server may close first (it refuses as soon as it
                    // can): a failed write is a cut too.
                    let _ = c.write_all(&s[..cut]);
                    drop(c);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Give the daemon a moment to see the closed sockets.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Still serving, and right.
    assert_eq!(judge(&socket, small.clone()).await, Outcome::Accepted);
    assert_eq!(judge(&socket, big.clone()).await, Outcome::Accepted);
    let plain = support::plain("plain", "Hello in the clear.\n");
    assert!(matches!(
        judge(&socket, plain).await,
        Outcome::Rejected { .. }
    ));
    let log = daemon.log_text();
    assert!(!log.contains("panic"), "{log}");
    let rss = rss_kib(pid);
    assert!(rss < 64 << 10, "RSS {rss} KiB after 200 cut connections");
}
