//! `check` and `bench` stay bounded against a milter that trickles its
//! answers, refuse unsendable messages cleanly, and exit quietly when their
//! reader goes away. The milters here are in-process: the interop milter on
//! a unix socket, or a fake that drips every answer a byte at a time.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minimilter::interop::ActionMilter;
use minimilter::{Listener, Server, ServerConfig, SocketSpec};

fn temp_dir(tag: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let d = std::env::temp_dir().join(format!("minimilter-cli-{tag}-{}-{n:x}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes the directory on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The interop milter on a fresh unix socket; the runtime serves it until
/// dropped.
fn interop_milter(dir: &Path) -> (String, tokio::runtime::Runtime) {
    let path = dir.join("m.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(Listener::bind(
            &SocketSpec::Unix(path.clone()),
            &Default::default(),
        ))
        .unwrap();
    runtime.spawn(
        Server::new(ActionMilter, ServerConfig::default())
            .serve(vec![listener], std::future::pending()),
    );
    (format!("unix:{}", path.display()), runtime)
}

/// A milter that negotiates at once, then answers every step a byte every
/// `every`. Serves at most 20 connections, each in its own thread; a thread
/// ends when the client goes away.
fn dripping_milter(dir: &Path, every: Duration) -> String {
    let path = dir.join("drip.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for _ in 0..20 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                // Bounded: a message is well under 100 packets.
                for _ in 0..1000 {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes(len) as usize;
                    if n == 0 || n > buf.len() || s.read_exact(&mut buf[..n]).is_err() {
                        return;
                    }
                    let answer: &[u8] = match buf[0] {
                        b'O' => {
                            b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x00\x00\x00"
                        }
                        b'D' | b'A' | b'Q' => continue,
                        _ => b"\x00\x00\x00\x01c",
                    };
                    if buf[0] == b'O' {
                        if s.write_all(answer).is_err() {
                            return;
                        }
                        continue;
                    }
                    for b in answer {
                        std::thread::sleep(every);
                        if s.write_all(&[*b]).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("unix:{}", path.display())
}

/// What a finished run left.
struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Waits for `child` at most `limit` (killing it then, and failing).
fn finish(mut child: Child, limit: Duration) -> Run {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("minimilter still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout).unwrap();
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    Run {
        status: status.code(),
        stdout,
        stderr,
    }
}

/// Runs minimilter with `stdin`, output captured, bounded by `limit`.
fn minimilter(args: &[&str], stdin: &[u8], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    finish(child, limit)
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn check_gives_up_on_a_dripped_answer_at_the_command_timeout() {
    // Each answer takes 5 x 400 ms = 2 s; every byte is within the 1 s
    // command timeout, the whole answer is not.
    let dir = TempDir(temp_dir("drip-check"));
    let spec = dripping_milter(&dir.0, Duration::from_millis(400));
    let r = minimilter(
        &["check", &spec, "--command-timeout", "1", "--json"],
        b"Subject: x\r\n\r\nbody\r\n",
        LIMIT,
    );
    assert_eq!(r.status, Some(7), "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"]["verdict"], "unreachable", "{}", r.text());
    let error = v["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("no complete answer from the milter at connect within 1s"),
        "{error}"
    );
    // Nothing was answered, so no step completed.
    assert_eq!(v["steps"].as_array().unwrap().len(), 0, "{}", r.text());
}

#[test]
fn bench_duration_is_a_hard_cap_and_the_report_is_printed() {
    // Answers dripped over 2.5 s each, timeouts at their 30 s defaults:
    // only --duration can end this run early.
    let dir = TempDir(temp_dir("drip-bench"));
    let spec = dripping_milter(&dir.0, Duration::from_millis(500));
    let r = minimilter(
        &[
            "bench",
            &spec,
            "--conns",
            "2",
            "--messages",
            "3",
            "--duration",
            "2",
            "--json",
            "--quiet",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(r.status, Some(1), "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["messages"], 0, "{}", r.text());
    assert_eq!(v["unfinished"], 2, "{}", r.text());
    assert_eq!(v["negotiations"], 2, "{}", r.text());
    // Without the cap, one message alone would take 8 steps x 2.5 s.
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    assert!(elapsed < 15.0, "ran {elapsed} s for --duration 2");

    // The text report too.
    let r = minimilter(
        &[
            "bench",
            &spec,
            "--conns",
            "1",
            "--messages",
            "1",
            "--duration",
            "1",
            "--quiet",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(r.status, Some(1), "{}", r.text());
    assert!(
        r.stdout
            .contains("unfinished (in flight when --duration ended the run): 1"),
        "{}",
        r.text()
    );
    assert!(r.stdout.contains("errors: 0"), "{}", r.text());
}

#[test]
fn bench_takes_the_timeouts_of_check() {
    // A 1 s command timeout ends each message at CONNECT (answer dripped
    // over 2.5 s) long before the 60 s duration; each is an error.
    let dir = TempDir(temp_dir("drip-bench-timeout"));
    let spec = dripping_milter(&dir.0, Duration::from_millis(500));
    let r = minimilter(
        &[
            "bench",
            &spec,
            "--conns",
            "1",
            "--messages",
            "2",
            "--command-timeout",
            "1",
            "--json",
            "--quiet",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(r.status, Some(1), "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["messages"], 0, "{}", r.text());
    assert_eq!(v["unfinished"], 0, "{}", r.text());
    let errors = v["errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{}", r.text());
    let (text, count) = errors.iter().next().unwrap();
    assert_eq!(count, 2, "{}", r.text());
    assert!(
        text.contains("no complete answer from the milter at connect within 1s"),
        "{text}"
    );

    let help = minimilter(&["bench", "--help"], b"", LIMIT);
    for option in [
        "--connect-timeout",
        "--command-timeout",
        "--content-timeout",
    ] {
        assert!(help.stdout.contains(option), "{option}: {}", help.text());
    }
}

#[test]
fn out_of_range_times_are_errors_not_panics() {
    let dir = TempDir(temp_dir("times"));
    let spec = format!("unix:{}", dir.0.join("nobody.sock").display());
    for args in [
        vec!["check", &spec, "--connect-timeout", "1e30"],
        vec!["check", &spec, "--content-timeout", "0"],
        vec!["bench", &spec, "--duration", "1e30"],
        vec!["bench", &spec, "--command-timeout=-1"],
        vec!["bench", &spec, "--duration", "NaN"],
    ] {
        let r = minimilter(&args, b"", LIMIT);
        // A usage error, like --conns 0.
        assert_eq!(r.status, Some(2), "{args:?}: {}", r.text());
        assert!(
            r.stderr.contains("positive number of seconds"),
            "{args:?}: {}",
            r.text()
        );
    }
}

#[test]
fn an_oversized_generated_body_is_a_usage_error_not_gigabytes_of_memory() {
    let dir = TempDir(temp_dir("body"));
    let spec = format!("unix:{}", dir.0.join("nobody.sock").display());
    let r = minimilter(
        &[
            "bench",
            &spec,
            "--body-bytes",
            "999999999999",
            "--duration",
            "2",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(r.status, Some(2), "{}", r.text());
    assert!(r.stderr.contains("--body-bytes"), "{}", r.text());
}

#[test]
fn check_cuts_a_header_line_at_a_nul_as_postfix_does() {
    // Postfix 3.7 cuts a header line at a NUL byte (for the milter and in
    // delivery); check says so and goes on. It used to panic (exit 101).
    let dir = TempDir(temp_dir("nul"));
    let (spec, _rt) = interop_milter(&dir.0);
    let message = b"Subject: \0nul\n\nbody\n";
    let r = minimilter(&["check", &spec, "--show-message"], message, LIMIT);
    assert_eq!(r.status, Some(0), "{}", r.text());
    assert!(
        r.stdout.contains(
            "warning: header \"Subject\": a NUL byte cuts its line short there, as Postfix does"
        ),
        "{}",
        r.text()
    );
    let delivered = r.stdout.split("--- message as delivered\n").nth(1).unwrap();
    assert!(delivered.starts_with("Subject: \r\n"), "{}", r.text());
    assert!(!delivered.contains('\0'), "{}", r.text());
    assert!(!r.stderr.contains("panicked"), "{}", r.text());

    let r = minimilter(&["check", &spec, "--json"], message, LIMIT);
    assert_eq!(r.status, Some(0), "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"]["verdict"], "accept", "{}", r.text());
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1, "{}", r.text());

    // A NUL in the body is data like any other.
    let r = minimilter(&["check", &spec], b"Subject: x\n\nbo\0dy\n", LIMIT);
    assert_eq!(r.status, Some(0), "{}", r.text());
}

/// Runs minimilter with its standard output a pipe nobody reads: the read
/// end is closed before the child writes anything.
fn with_closed_stdout(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    finish(child, LIMIT)
}

#[test]
fn a_closed_standard_output_ends_quietly_with_the_verdict_status() {
    let dir = TempDir(temp_dir("epipe"));
    let (spec, _rt) = interop_milter(&dir.0);
    let message = dir.0.join("m.eml");
    std::fs::write(
        &message,
        "Subject: x\r\nX-Action: reject 550 5.7.1 go away\r\n\r\nbody\r\n",
    )
    .unwrap();
    let message = message.to_str().unwrap();

    let r = with_closed_stdout(&["check", &spec, message, "--show-message"]);
    assert_eq!(
        r.status,
        Some(3),
        "the verdict (reject) stands: {}",
        r.text()
    );
    assert_eq!(r.stderr, "", "{}", r.text());

    let r = with_closed_stdout(&["check", &spec, message, "--json"]);
    assert_eq!(r.status, Some(3), "{}", r.text());
    assert_eq!(r.stderr, "", "{}", r.text());

    let r = with_closed_stdout(&["bench", &spec, "--conns", "1", "--messages", "2", "--quiet"]);
    assert_eq!(r.status, Some(0), "{}", r.text());
    assert_eq!(r.stderr, "", "{}", r.text());
}
