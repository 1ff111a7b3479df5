//! Damaged, foreign and oversized transcript files, as `check --transcript`
//! and `replay` meet them: a one-line error that names the file and the
//! line, never a panic, a misleading display or memory that follows the
//! file's size.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("mm-damage-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A whole transcript as `record` writes it (abridged: a milter that
/// asked only for end of message and accepted).
const GOOD: &str = concat!(
    r#"{"bodies":"keep","connection":1,"recorder":"minimilter record 0.1.0","schema":"minimilter-transcript","started_unix_ms":1796579803792,"transaction":1,"type":"transcript","version":1}"#,
    "\n",
    r#"{"after_us":370,"answer":{"actions":1,"protocol":2047,"version":6},"at_us":153,"offer":{"actions":511,"protocol":2097151,"version":6},"type":"negotiate"}"#,
    "\n",
    r#"{"at_us":1321,"pairs":[["j","mx.example"]],"stage":"C","type":"macros"}"#,
    "\n",
    r#"{"at_us":55509,"body":"","code":"E","reply":"answer","step":"eom","type":"command"}"#,
    "\n",
    r#"{"after_us":69,"answer":"accept","at_us":55578,"code":"a","step":"eom","type":"response"}"#,
    "\n",
    r#"{"at":"eom","at_us":55578,"reason":"end-of-message","type":"end","verdict":"accept"}"#,
    "\n",
);

fn minimilter(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_minimilter"));
    c.args(args);
    // A bound in time: every case here is read from a local file.
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = Command::new("kill").arg(id.to_string()).status();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `check --transcript` refuses the file with exit status 1, one line on
/// standard error naming the file and containing `want`, and nothing on
/// standard output (a half display would pass for a transaction).
fn refused(path: &Path, want: &str) {
    let o = minimilter(&["check", "--transcript", path.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{path:?}: {err}");
    assert!(
        o.stdout.is_empty(),
        "{path:?}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&path.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains(want), "{want:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_good_transcript_is_read() {
    let d = temp_dir("good");
    let p = d.0.join("good.jsonl");
    std::fs::write(&p, GOOD).unwrap();
    let o = minimilter(&["check", "--transcript", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: accept"));
}

#[test]
fn invalid_utf8_names_its_line() {
    let d = temp_dir("utf8");
    let p = d.0.join("binary.jsonl");
    let mut bytes = Vec::new();
    for (n, line) in GOOD.lines().enumerate() {
        if n == 2 {
            bytes.extend_from_slice(b"{\"type\":\"macros\",\"x\":\"\xff\xfe\"}");
        } else {
            bytes.extend_from_slice(line.as_bytes());
        }
        bytes.push(b'\n');
    }
    std::fs::write(&p, bytes).unwrap();
    refused(&p, "line 3");
}

#[test]
fn a_file_cut_short_at_a_line_boundary_is_refused_not_shown_half() {
    let d = temp_dir("cut");
    let p = d.0.join("cut.jsonl");
    let kept: String = GOOD.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, kept).unwrap();
    refused(&p, "line 4: the file ends before its \"end\" line");
}

#[test]
fn line_numbers_count_blank_lines() {
    let d = temp_dir("blank");
    let p = d.0.join("blank.jsonl");
    let text = GOOD
        .replacen('\n', "\n\n\n", 1)
        .replace(r#""code":"E""#, r#""code":"Z""#);
    std::fs::write(&p, text).unwrap();
    // The command is on the fourth line of the file's six, plus two blank.
    refused(&p, "line 6:");
}

#[test]
fn a_file_larger_than_any_transcript_is_refused_unread() {
    let d = temp_dir("huge");
    let p = d.0.join("huge.jsonl");
    std::fs::write(&p, GOOD).unwrap();
    // Sparse: costs no disk, and reading it whole would cost 1 GiB.
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    refused(&p, "larger than");
}

#[test]
fn replay_reports_each_damaged_file_with_its_line_and_valid_json() {
    let d = temp_dir("replaydir");
    let period = d.0.join("20261206T170000Z");
    std::fs::create_dir_all(&period).unwrap();
    std::fs::write(
        period.join("1-c1-t1.jsonl"),
        GOOD.replace("\"version\":1", "\"version\":7"),
    )
    .unwrap();
    let cut: String = GOOD.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(period.join("2-c1-t2.jsonl"), cut).unwrap();
    std::fs::write(period.join("3-c1-t3.jsonl"), &GOOD[..200]).unwrap();
    // No milter at all: the damaged files are reported before any
    // connection is tried.
    let sock = d.0.join("no-milter.sock");
    let spec = format!("unix:{}", sock.display());
    let o = minimilter(&["replay", "--json", d.0.to_str().unwrap(), &spec]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    let unreadable = v["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 3, "{v:#}");
    let errors: Vec<&str> = unreadable
        .iter()
        .map(|u| u["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].contains("version 7"), "{errors:?}");
    assert!(
        errors[1].contains("line 3: the file ends before"),
        "{errors:?}"
    );
    assert!(errors[2].contains("line 2: not JSON"), "{errors:?}");
    for e in &errors {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// A transaction Postfix aborted (the client sent RSET after RCPT), as
/// `record` wrote it through Postfix 3.7 at protocol 6.
const ABORTED: &str = concat!(
    r#"{"bodies":"keep","connection":1,"recorder":"minimilter record 0.1.0","schema":"minimilter-transcript","started_unix_ms":1796633997149,"transaction":2,"type":"transcript","version":1}"#,
    "\n",
    r#"{"after_us":300,"answer":{"actions":257,"macros":[{"names":"i","stage":5}],"protocol":1859,"version":6},"at_us":100,"offer":{"actions":511,"protocol":2097151,"version":6},"type":"negotiate"}"#,
    "\n",
    r#"{"args":["<b@client.example>"],"at_us":5000,"code":"M","reply":"answer","step":"mail","type":"command"}"#,
    "\n",
    r#"{"after_us":130,"answer":"continue","at_us":5130,"code":"c","step":"mail","type":"response"}"#,
    "\n",
    r#"{"args":["<ok@example.org>"],"at_us":6000,"code":"R","reply":"answer","step":"rcpt","type":"command"}"#,
    "\n",
    r#"{"after_us":690,"answer":"continue","at_us":6690,"code":"c","step":"rcpt","type":"response"}"#,
    "\n",
    r#"{"at_us":7000,"code":"A","type":"command"}"#,
    "\n",
    r#"{"at_us":7000,"reason":"abort","type":"end","verdict":"none"}"#,
    "\n",
);

#[test]
fn a_transaction_without_a_verdict_is_shown_whole_with_its_own_status() {
    let d = temp_dir("aborted");
    let p = d.0.join("aborted.jsonl");
    std::fs::write(&p, ABORTED).unwrap();
    let o = minimilter(&["check", "--transcript", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    // Not an error of ours (1): the transcript was read; it holds no verdict.
    assert_eq!(o.status.code(), Some(8), "{out}{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // The negotiation and the milter's times, as for any other transaction.
    assert!(
        out.contains("milter (recorded): protocol version 6"),
        "{out}"
    );
    assert!(out.contains("macros at EndOfMessage: i"), "{out}");
    let mail = out
        .lines()
        .find(|l| l.contains("MAIL FROM:<b@client.example>"))
        .unwrap();
    assert!(mail.ends_with("-> continue (0.13 ms)"), "{mail}");
    let rcpt = out
        .lines()
        .find(|l| l.contains("RCPT TO:<ok@example.org>"))
        .unwrap();
    assert!(rcpt.ends_with("-> continue (0.69 ms)"), "{rcpt}");
    assert!(
        out.contains("verdict: none (the transaction ended before the milter decided: abort)"),
        "{out}"
    );
}

/// With `--json`, an error of ours (exit status 1) is a JSON object on
/// standard output too, `{"error": "..."}`, so that a script reading the
/// output as JSON reads the error instead of failing on nothing; standard
/// error keeps its one line.
#[test]
fn json_errors_are_json_on_standard_output() {
    let d = temp_dir("jsonerr");
    let cut = d.0.join("cut.jsonl");
    std::fs::write(&cut, GOOD.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let missing = d.0.join("missing.eml");
    let sock = format!("unix:{}", d.0.join("none.sock").display());
    let cases: [&[&str]; 4] = [
        &["check", "--json", "--transcript", cut.to_str().unwrap()],
        &["check", "--json", &sock, missing.to_str().unwrap()],
        &[
            "bench",
            "--json",
            "--message",
            missing.to_str().unwrap(),
            &sock,
        ],
        &[
            "replay",
            "--json",
            d.0.to_str().unwrap(),
            "no-such-socket-kind:x",
        ],
    ];
    for args in cases {
        let o = minimilter(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&o.stdout)
            )
        });
        let err = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{args:?}: {v}"));
        assert!(stderr(&o).contains(err), "{args:?}: {err} / {}", stderr(&o));
    }
}

/// A packet larger than any milter packet (an edited transcript: `record`
/// relays at most 1 MiB − 1 of payload) is refused at its line, not sent
/// to the milter, which would drop the connection.
#[test]
fn a_packet_larger_than_the_protocol_allows_is_refused_at_its_line() {
    let d = temp_dir("bigpacket");
    for (name, line) in [
        (
            "body",
            format!(
                r#"{{"at_us":55509,"body":"{}","code":"B","reply":"answer","step":"body","type":"command"}}"#,
                "a".repeat(2 << 20)
            ),
        ),
        (
            "macros",
            format!(
                r#"{{"at_us":55509,"body":"","code":"E","macros":[["i","{}"]],"reply":"answer","step":"eom","type":"command"}}"#,
                "b".repeat(2 << 20)
            ),
        ),
    ] {
        let p = d.0.join(format!("{name}.jsonl"));
        let text: String = GOOD
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 3 {
                    format!("{line}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&p, text).unwrap();
        refused(&p, "line 4: ");
        refused(&p, "more than a milter packet holds");
    }
}

/// A FIFO, a device or a directory named like a transcript is refused at
/// once: opening a FIFO for reading waits for a writer that never comes.
#[test]
fn a_file_that_is_not_a_regular_file_is_refused_without_waiting() {
    let d = temp_dir("fifo");
    let fifo = d.0.join("fifo.jsonl");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    refused(&fifo, "not a regular file");
    let dir = d.0.join("dir.jsonl");
    std::fs::create_dir_all(&dir).unwrap();
    refused(&dir, "not a regular file");
    let dev = d.0.join("dev.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &dev).unwrap();
    refused(&dev, "not a regular file");
    // replay reports it among the unreadable and goes on.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&dev).unwrap();
    let sock = format!("unix:{}", d.0.join("none.sock").display());
    let o = minimilter(&["replay", "--json", d.0.to_str().unwrap(), &sock]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["unreadable"].as_array().unwrap().len(), 1, "{v:#}");
}

/// A transcript `record` cut at its size limit, or written after protocol
/// trouble, says so in its end line; `check --transcript` and `replay`
/// pass that on, since what they show or replay is then not the whole
/// transaction.
#[test]
fn truncation_and_recorded_notes_are_shown_and_replay_notes_them() {
    let d = temp_dir("notes");
    let p = d.0.join("truncated.jsonl");
    let text = GOOD.replace(
        r#""type":"end","verdict":"accept"}"#,
        r#""notes":["transcript truncated: size limit reached"],"truncated":true,"type":"end","verdict":"accept"}"#,
    );
    assert_ne!(text, GOOD);
    std::fs::write(&p, text).unwrap();
    let o = minimilter(&["check", "--transcript", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("warning: the recording was truncated at its size limit"),
        "{out}"
    );
    assert!(
        out.contains("note (recorded): transcript truncated: size limit reached"),
        "{out}"
    );
    let sock = format!("unix:{}", d.0.join("none.sock").display());
    let o = minimilter(&["replay", "--json", p.to_str().unwrap(), &sock]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let notes = v["messages"][0]["notes"].to_string();
    assert!(notes.contains("truncated"), "{v:#}");
}

/// A step the recorded milter negotiated away (its macros were recorded
/// alone) gets a "not sent" line, as `check` gives it, with the macro
/// values the MTA sent for it.
#[test]
fn steps_negotiated_away_are_shown_not_sent_as_check_shows_them() {
    let d = temp_dir("notsent");
    let p = d.0.join("good.jsonl");
    std::fs::write(&p, GOOD).unwrap();
    let o = minimilter(&["check", "--transcript", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    let connect = out
        .lines()
        .find(|l| l.trim_start().starts_with("CONNECT"))
        .unwrap_or_else(|| panic!("no CONNECT line:\n{out}"));
    assert!(
        connect.contains("-> not sent (negotiated away)"),
        "{connect}"
    );
    let eom = out
        .lines()
        .position(|l| l.contains("END OF MESSAGE"))
        .unwrap();
    let c = out
        .lines()
        .position(|l| l.trim_start().starts_with("CONNECT"))
        .unwrap();
    assert!(c < eom, "in order:\n{out}");
}

/// Memory follows the steps, not the number of lines: three million
/// lines a reader skips (9 MB) are read within 100 MB of address space
/// (the reader used to keep every line's JSON: about 190 MB).
#[test]
fn many_small_lines_are_read_in_bounded_memory() {
    let d = temp_dir("manylines");
    let p = d.0.join("many.jsonl");
    let mut lines: Vec<&str> = GOOD.lines().collect();
    let end = lines.pop().unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    text.push_str(&"{}\n".repeat(3_000_000));
    text.push_str(end);
    text.push('\n');
    std::fs::write(&p, text).unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 100000 && exec \"$0\" check --transcript \"$1\"")
        .arg(env!("CARGO_BIN_EXE_minimilter"))
        .arg(&p)
        // One runtime thread and one malloc arena, so the address space
        // does not grow with the machine's cores.
        .env("TOKIO_WORKER_THREADS", "1")
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: accept"));
}

/// A directory with no transcript (a mistyped path, the parent of the
/// transcript directory) is an error: a replay that compared nothing
/// cannot report "no difference".
#[test]
fn replay_of_a_directory_without_transcripts_is_an_error() {
    let d = temp_dir("empty");
    let deeper = d.0.join("transcripts").join("20261206T170000Z");
    std::fs::create_dir_all(&deeper).unwrap();
    std::fs::write(deeper.join("1-c1-t1.jsonl"), GOOD).unwrap();
    let sock = format!("unix:{}", d.0.join("none.sock").display());
    // The parent of the transcript directory: two levels above the files.
    let o = minimilter(&["replay", d.0.to_str().unwrap(), &sock]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(stderr(&o).contains("no transcripts"), "{}", stderr(&o));
    assert!(stderr(&o).contains(d.0.to_str().unwrap()), "{}", stderr(&o));
}

/// The queue id (macro `i`), when the MTA sent it, is shown at the top,
/// so a transcript can be matched with the MTA's log line and found from
/// it.
#[test]
fn the_queue_id_is_shown_to_match_the_mta_log() {
    let d = temp_dir("queueid");
    let p = d.0.join("qid.jsonl");
    let text = GOOD.replace(
        r#""code":"E","reply""#,
        r#""code":"E","macros":[["i","CE98698D0FC"]],"reply""#,
    );
    assert_ne!(text, GOOD);
    std::fs::write(&p, text).unwrap();
    let o = minimilter(&["check", "--transcript", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let second = out.lines().nth(1).unwrap_or_default();
    assert_eq!(second, "queue id (macro i): CE98698D0FC", "{out}");
}

/// replay names each differing message's queue id too (text and JSON).
#[test]
fn replay_names_the_queue_id_of_each_differing_message() {
    let d = temp_dir("replayqid");
    let p = d.0.join("qid.jsonl");
    let text = GOOD.replace(
        r#""code":"E","reply""#,
        r#""code":"E","macros":[["i","CE98698D0FC"]],"reply""#,
    );
    std::fs::write(&p, text).unwrap();
    let sock = format!("unix:{}", d.0.join("none.sock").display());
    let o = minimilter(&["replay", p.to_str().unwrap(), &sock]);
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("qid.jsonl: accept → error"), "{out}");
    assert_eq!(lines[1], "  queue id (macro i): CE98698D0FC", "{out}");
    let o = minimilter(&["replay", "--json", p.to_str().unwrap(), &sock]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"][0]["queue_id"], "CE98698D0FC", "{v:#}");
}
