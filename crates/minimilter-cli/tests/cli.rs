//! `minimilter check` and `bench` as a user runs them, against the interop
//! milter served in-process on a unix socket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use minimilter::interop::ActionMilter;
use minimilter::{Listener, Server, ServerConfig, SocketSpec};

struct Milter {
    dir: PathBuf,
    spec: String,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Milter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let d = std::env::temp_dir().join(format!("minimilter-cli-{tag}-{}-{n:x}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The interop milter on a fresh unix socket, served by a background runtime.
fn milter() -> Milter {
    let dir = temp_dir("milter");
    let path = dir.join("m.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spec = SocketSpec::Unix(path.clone());
    let listener = runtime
        .block_on(Listener::bind(&spec, &Default::default()))
        .unwrap();
    runtime.spawn(
        Server::new(ActionMilter, ServerConfig::default())
            .serve(vec![listener], std::future::pending()),
    );
    Milter {
        dir,
        spec: format!("unix:{}", path.display()),
        _runtime: runtime,
    }
}

fn minimilter(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn message(actions: &[&str]) -> Vec<u8> {
    let mut m = String::from("From: a@example.com\r\nTo: b@example.org\r\nSubject: test\r\n");
    for a in actions {
        m.push_str(&format!("X-Action: {a}\r\n"));
    }
    m.push_str("\r\nHello.\r\n");
    m.into_bytes()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_shows_steps_modifications_and_the_delivered_message() {
    let m = milter();
    let o = minimilter(
        &[
            "check",
            &m.spec,
            "--from",
            "alice@example.com",
            "--rcpt",
            "bob@example.org",
            "--rcpt",
            "carol@example.org",
            "--client-addr",
            "192.0.2.10",
            "--client-name",
            "mail.example.net",
            "--macro",
            "{auth_authen}=alice",
            "--show-message",
        ],
        &message(&["add-header X-Hello world", "del-rcpt <carol@example.org>"]),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("CONNECT mail.example.net [192.0.2.10]"),
        "{out}"
    );
    assert!(out.contains("+ add header X-Hello: world"), "{out}");
    assert!(
        out.contains("+ delete recipient <carol@example.org>"),
        "{out}"
    );
    assert!(out.contains("verdict: accept (delivered)"), "{out}");
    assert!(
        out.contains("--- envelope: from <alice@example.com> to <bob@example.org>\n"),
        "{out}"
    );
    assert!(out.contains("X-Hello: world\r\n"), "{out}");
}

#[test]
fn check_exit_status_is_the_verdict() {
    let m = milter();
    for (action, code, words) in [
        (
            "reject 550 5.7.1 go away",
            3,
            "reject at eom: 550 5.7.1 go away",
        ),
        (
            "tempfail 451 4.7.1 later",
            4,
            "tempfail at eom: 451 4.7.1 later",
        ),
        ("discard", 5, "discard at eom"),
        ("accept", 0, "verdict: accept"),
    ] {
        let o = minimilter(&["check", &m.spec], &message(&[action]));
        let out = text(&o);
        assert_eq!(o.status.code(), Some(code), "{action}: {out}");
        assert!(out.contains(words), "{action}: {out}");
    }
}

#[test]
fn check_json_is_one_object_with_the_whole_result() {
    let m = milter();
    let o = minimilter(
        &["check", &m.spec, "--json"],
        &message(&["change-header Subject 1 new", "quarantine spam?"]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"]["verdict"], "accept");
    assert_eq!(v["result"]["quarantine"], "spam?");
    assert_eq!(v["negotiated"]["version"], 6);
    let mods = v["modifications"].as_array().unwrap();
    assert_eq!(mods[0]["action"], "change_header");
    assert!(
        v["delivered"]["message"]
            .as_str()
            .unwrap()
            .contains("Subject: new\r\n")
    );
    assert!(v["steps"].as_array().unwrap().len() >= 8);
}

#[test]
fn check_reports_an_unreachable_milter_and_bad_input() {
    let dir = temp_dir("none");
    let spec = format!("unix:{}", dir.join("nobody.sock").display());
    let o = minimilter(&["check", &spec], &message(&[]));
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(text(&o).contains("cannot connect"));

    let o = minimilter(&["check", &spec, "--macro", "novalue"], b"");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("NAME=VALUE"));

    let o = minimilter(&["check", "tcp:1.2.3.4:25"], b"");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("invalid socket"));

    let o = minimilter(&["check"], b"");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let o = minimilter(&["check", &spec, "/no/such/file.eml"], b"");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("/no/such/file.eml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A milter that negotiates, then answers HELO with a modification.
fn rogue_milter(dir: &Path) -> String {
    let path = dir.join("rogue.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut len = [0u8; 4];
        let mut buf = vec![0u8; 1 << 16];
        let mut first = true;
        while s.read_exact(&mut len).is_ok() {
            let n = u32::from_be_bytes(len) as usize;
            if s.read_exact(&mut buf[..n]).is_err() {
                return;
            }
            let reply: &[u8] = match (first, buf[0]) {
                (true, _) => b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00\x00\x00",
                (_, b'D') => b"",
                (_, b'H') => b"\x00\x00\x00\x05hX\0y\0",
                _ => b"\x00\x00\x00\x01c",
            };
            first = false;
            if s.write_all(reply).is_err() {
                return;
            }
        }
    });
    format!("unix:{}", path.display())
}

#[test]
fn check_names_a_protocol_violation() {
    let dir = temp_dir("rogue");
    let spec = rogue_milter(&dir);
    let o = minimilter(&["check", &spec], &message(&[]));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}");
    assert!(out.contains("modification at helo"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_reports_throughput_and_checks_the_verdict() {
    let m = milter();
    let o = minimilter(
        &[
            "bench",
            &m.spec,
            "--conns",
            "4",
            "--messages",
            "25",
            "--expect",
            "accept",
            "--json",
            "--quiet",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"], 100);
    assert_eq!(v["verdicts"]["accept"], 100);
    assert_eq!(v["actions"]["add_header"], 100);
    assert_eq!(v["fewest_messages_on_a_connection"], 25);
    assert_eq!(v["negotiations"], 4);
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() >= v["latency_ms"]["p50"].as_f64().unwrap());

    // A new connection per message negotiates every time.
    let o = minimilter(
        &[
            "bench",
            &m.spec,
            "--conns",
            "2",
            "--messages",
            "5",
            "--new-connection-per-message",
            "--json",
            "--quiet",
        ],
        b"",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["negotiations"], 10, "{}", text(&o));

    // The wrong expectation fails the run.
    let o = minimilter(
        &[
            "bench",
            &m.spec,
            "--conns",
            "1",
            "--messages",
            "3",
            "--expect",
            "reject",
            "--quiet",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("unexpected verdicts"), "{}", text(&o));
}
