//! `replay` against a milter that is down, hangs, closes in the middle of
//! a message or breaks the protocol: each transcript gets an error that
//! names the step, the replay goes on with the next, the exit status is 1,
//! and `--json` stays JSON.

mod support;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{minimilter, packet, read_packet, scratch};

/// A transcript of MAIL, RCPT and end of message, all answered continue.
const TRANSCRIPT: &str = concat!(
    r#"{"bodies":"keep","connection":1,"recorder":"test","schema":"minimilter-transcript","started_unix_ms":1796579803792,"transaction":1,"type":"transcript","version":1}"#,
    "\n",
    r#"{"answer":{"actions":0,"protocol":1,"version":6},"at_us":1,"offer":{"actions":511,"protocol":2097151,"version":6},"type":"negotiate"}"#,
    "\n",
    r#"{"args":["<a@example.com>"],"at_us":2,"code":"M","reply":"answer","step":"mail","type":"command"}"#,
    "\n",
    r#"{"after_us":1,"answer":"continue","at_us":3,"code":"c","step":"mail","type":"response"}"#,
    "\n",
    r#"{"args":["<b@example.org>"],"at_us":4,"code":"R","reply":"answer","step":"rcpt","type":"command"}"#,
    "\n",
    r#"{"after_us":1,"answer":"continue","at_us":5,"code":"c","step":"rcpt","type":"response"}"#,
    "\n",
    r#"{"at_us":6,"body":"","code":"E","reply":"answer","step":"eom","type":"command"}"#,
    "\n",
    r#"{"after_us":1,"answer":"continue","at_us":7,"code":"c","step":"eom","type":"response"}"#,
    "\n",
    r#"{"at":"eom","at_us":7,"reason":"end-of-message","type":"end","verdict":"accept"}"#,
    "\n",
);

/// A milter that negotiates (no connect step) and then, at RCPT, does
/// `fault`: "close", "hang" or "garbage". Serves `n` connections.
fn faulty_milter(path: &Path, fault: &'static str, n: usize) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                while let Some((code, _)) = read_packet(&mut s) {
                    match code {
                        b'O' => {
                            let w: Vec<u8> =
                                [6u32, 0, 1].iter().flat_map(|x| x.to_be_bytes()).collect();
                            s.write_all(&packet(b'O', &w)).unwrap();
                        }
                        b'R' => match fault {
                            "close" => return,
                            "hang" => std::thread::sleep(Duration::from_secs(20)),
                            _ => s.write_all(&packet(b'z', b"??")).unwrap(),
                        },
                        b'D' | b'A' => {}
                        b'Q' => return,
                        _ => s.write_all(&packet(b'c', b"")).unwrap(),
                    }
                }
            });
        }
    });
}

#[test]
fn a_faulty_milter_is_an_error_per_transcript_naming_the_step() {
    let base = scratch("milter-faults");
    let dir = base.join("tx");
    let period = dir.join("20261206T170000Z");
    std::fs::create_dir_all(&period).unwrap();
    for t in 1..=3 {
        std::fs::write(
            period.join(format!("1796579803792-c1-t{t}.jsonl")),
            TRANSCRIPT.replace("\"transaction\":1", &format!("\"transaction\":{t}")),
        )
        .unwrap();
    }
    for (fault, want) in [
        ("down", "cannot connect"),
        (
            "close",
            "rcpt <b@example.org>: the milter closed the connection",
        ),
        (
            "hang",
            "rcpt <b@example.org>: no complete answer from the milter at rcpt within 1s",
        ),
        (
            "garbage",
            "rcpt <b@example.org>: protocol violation at rcpt",
        ),
    ] {
        let sock = base.join(format!("{fault}.sock"));
        if fault != "down" {
            faulty_milter(&sock, fault, 3);
        }
        let o = Command::new(minimilter())
            .args(["replay", "--json", "--conns", "3", "--command-timeout", "1"])
            .arg(&dir)
            .arg(format!("unix:{}", sock.display()))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{fault}");
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["transcripts"], 3, "{fault}: {v:#}");
        assert_eq!(v["different"], 3, "{fault}: {v:#}");
        for m in v["messages"].as_array().unwrap() {
            let e = m["error"].as_str().unwrap_or_default();
            assert!(e.contains(want), "{fault}: {e:?} lacks {want:?}");
        }
        assert_eq!(v["changes"][0]["to"], "error", "{fault}: {v:#}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
