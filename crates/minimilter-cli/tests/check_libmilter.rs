//! `minimilter check` against a milter written on Sendmail's libmilter (the
//! reference implementation): it must report exactly what that milter did.
//! Needs `libmilter-dev` and a C compiler (scripts/install-test-deps.sh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The libmilter interop milter, compiled for this test and running on a
/// unix socket; killed on drop.
struct CMilter {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Drop for CMilter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn c_milter(extra: &[&str]) -> CMilter {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let dir = std::env::temp_dir().join(format!("check-lm-{}-{n:x}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../minimilter/tests/interop/libmilter/action_milter.c");
    assert!(
        Path::new("/usr/include/libmilter/mfapi.h").exists(),
        "libmilter-dev is missing: run scripts/install-test-deps.sh as root"
    );
    let bin = dir.join("action_milter");
    let cc = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&source)
        .args(["-lmilter", "-lpthread"])
        .output()
        .expect("a C compiler (cc): run scripts/install-test-deps.sh as root");
    assert!(
        cc.status.success(),
        "building {}: {}",
        source.display(),
        String::from_utf8_lossy(&cc.stderr)
    );
    let socket = dir.join("m.sock");
    let child = Command::new(&bin)
        .arg("-p")
        .arg(format!("unix:{}", socket.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "libmilter milter did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    CMilter { child, dir, socket }
}

fn check(m: &CMilter, args: &[&str], message: &str) -> Output {
    use std::io::Write;
    let spec = format!("unix:{}", m.socket.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .arg("check")
        .arg(&spec)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn message(actions: &[&str]) -> String {
    let mut m =
        String::from("From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\nX-A: one\r\n");
    for a in actions {
        m.push_str(&format!("X-Action: {a}\r\n"));
    }
    m + "\r\nHello.\r\n"
}

#[ignore = "needs libmilter"]
#[test]
fn check_reports_what_the_libmilter_milter_did() {
    for extra in [&[][..], &["-n"][..]] {
        let m = c_milter(extra);
        let o = check(
            &m,
            &[
                "--rcpt",
                "b@example.org",
                "--rcpt",
                "c@example.org",
                "--json",
            ],
            &message(&[
                "add-header X-Added yes",
                "change-header X-A 1 changed",
                "add-rcpt <d@example.org>",
                "del-rcpt <c@example.org>",
                "chgfrom <bounce@example.com>",
                "replace-body 120",
                "quarantine held",
            ]),
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let actions: Vec<&str> = v["modifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "add_header",
                "change_header",
                "add_rcpt",
                "delete_rcpt",
                "change_from",
                "replace_body",
                "quarantine",
                "add_header"
            ],
            "{extra:?}: {v:#}"
        );
        assert_eq!(v["result"]["verdict"], "accept");
        assert_eq!(v["result"]["quarantine"], "held");
        let delivered = &v["delivered"];
        assert_eq!(delivered["sender"], "bounce@example.com");
        let rcpts: Vec<&str> = delivered["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["address"].as_str().unwrap())
            .collect();
        assert_eq!(rcpts, ["b@example.org", "d@example.org"]);
        let text = delivered["message"].as_str().unwrap();
        assert!(text.contains("X-A: changed\r\n"), "{text}");
        assert!(text.contains("X-Added: yes\r\n"), "{text}");
        // 120 bytes of the milter's text lines; the cut last line gets its end.
        assert!(
            text.ends_with("\r\n\r\nThe quick brown fox jumps over the lazy dog. 0123456789\r\nThe quick brown fox jumps over the lazy dog. 0123456789\r\nThe qu\r\n"),
            "{text}"
        );

        // Verdicts and their exit codes, with the milter's own text.
        let o = check(&m, &[], &message(&["reject 550 5.7.1 first|second"]));
        assert_eq!(o.status.code(), Some(3));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("reject at eom: 550-5.7.1 first\n550 5.7.1 second"),
            "{out}"
        );
        let o = check(&m, &[], &message(&["discard"]));
        assert_eq!(o.status.code(), Some(5));
        let o = check(&m, &[], &message(&["skip-body"]));
        assert_eq!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stdout).contains("-> skip"));
    }
}
