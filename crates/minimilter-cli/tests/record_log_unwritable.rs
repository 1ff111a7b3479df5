//! `record` whose standard error cannot be written (a full disk under its
//! log file, a log reader that went away): logging fails quietly, and the
//! mail and the transcripts go on. A failed log write used to panic the
//! thread that logged (a relay thread: the MTA's next packet was never
//! relayed, and the SMTP client waited for the milter timeout).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{minimilter, scratch, serve_policy, transcripts};

/// Kills the child on drop, so a failing assertion leaves no process.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn record_with_a_closed_log_pipe_relays_and_records_every_message() {
    let base = scratch("closed-log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let milter_sock = base.join("policy.sock");
    rt.block_on(serve_policy(&milter_sock, false));
    let listen = base.join("record.sock");
    let dir = base.join("transcripts");
    let child = Command::new(minimilter())
        .arg("record")
        .arg("--listen")
        .arg(format!("unix:{}", listen.display()))
        .arg("--to")
        .arg(format!("unix:{}", milter_sock.display()))
        .arg("--dir")
        .arg(&dir)
        // Every transaction logs a line.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    // The log reader goes away at once: every write to standard error
    // fails (EPIPE).
    drop(child.0.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listen.exists() {
        assert!(Instant::now() < deadline, "record did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let n = 20;
    let o = Command::new(minimilter())
        .args([
            "bench",
            "--conns",
            "2",
            "--messages",
            &n.to_string(),
            "--quiet",
        ])
        .args(["--command-timeout", "10", "--content-timeout", "10"])
        .arg(format!("unix:{}", listen.display()))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && report.contains(&format!("{} messages in", 2 * n)),
        "{o:?}"
    );
    // The writer survived too: one transcript per message.
    let deadline = Instant::now() + Duration::from_secs(30);
    while transcripts(&dir).len() < 2 * n {
        assert!(
            Instant::now() < deadline,
            "{} transcripts of {}",
            transcripts(&dir).len(),
            2 * n
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(matches!(child.0.try_wait(), Ok(None)), "record still runs");
    drop(child);
    let _ = std::fs::remove_dir_all(&base);
}
