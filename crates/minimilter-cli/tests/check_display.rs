//! How `minimilter check` shows what real milters do: headers added with
//! leading-space handling negotiated, folded header values, steps the milter
//! negotiated away or skipped, and a replaced body. Each milter is served
//! in-process on a unix socket; the transcript lines are asserted exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use minimilter::interop::{ActionMilter, body_of};
use minimilter::{
    Actions, Ctx, Listener, Milter, Modifications, Requirements, Server, ServerConfig, SocketSpec,
    StepResult, Steps, Verdict,
};

struct Served {
    dir: PathBuf,
    spec: String,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let d = std::env::temp_dir().join(format!(
        "minimilter-display-{tag}-{}-{n:x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn serve<M: Milter>(milter: M) -> Served {
    let dir = temp_dir("milter");
    let path = dir.join("m.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let spec = SocketSpec::Unix(path.clone());
    let listener = runtime
        .block_on(Listener::bind(&spec, &Default::default()))
        .unwrap();
    runtime.spawn(
        Server::new(milter, ServerConfig::default()).serve(vec![listener], std::future::pending()),
    );
    Served {
        dir,
        spec: format!("unix:{}", path.display()),
        _runtime: runtime,
    }
}

/// Adds one folded header at end of message, the way DKIM signers do; asks
/// for headers only, or for headers and body.
#[derive(Clone, Copy)]
struct Signer {
    leading_space: bool,
    body: bool,
}

/// The folded value: a LF + tab fold, a LF + space fold, and a line without
/// folding whitespace (Postfix gives it a tab).
const FOLDED: &str = "v=1; a=rsa-sha256;\n\tbh=47DEQpj8=;\n b=abc\nend";

impl Milter for Signer {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: if self.body {
                Steps::HEADER | Steps::BODY
            } else {
                Steps::HEADER
            },
            actions: Actions::ADD_HEADERS,
            header_leading_space: self.leading_space,
            ..Requirements::default()
        }
    }

    async fn end_of_message(&self, _cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let value = if self.leading_space {
            format!(" {FOLDED}")
        } else {
            FOLDED.to_owned()
        };
        mods.add_header("X-Signature", &value)?;
        Ok(Verdict::Continue)
    }
}

fn check(spec: &str, extra: &[&str], message: &[u8]) -> Output {
    let dir = temp_dir("msg");
    let file = dir.join("message.eml");
    std::fs::write(&file, message).unwrap();
    let mut args = vec!["check", spec, file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The transcript line of a modification: under the step column, after `+ `.
fn modification_line(text: &str) -> String {
    format!("{}+ {text}", " ".repeat(46))
}

/// A continuation line of a modification: under the text of its first line.
fn continuation_line(text: &str) -> String {
    format!("{}{text}", " ".repeat(48))
}

fn has_line(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

fn lines_in_order(out: &str, expected: &[String]) {
    let lines: Vec<&str> = out.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == expected[0])
        .unwrap_or_else(|| panic!("no line {:?} in\n{out}", expected[0]));
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(
            lines.get(start + i).copied(),
            Some(want.as_str()),
            "line {i} after the first of {expected:#?} in\n{out}"
        );
    }
}

const MESSAGE: &[u8] =
    b"From: a@example.com\r\nTo: b@example.org\r\nSubject: fold\r\n\r\nHello.\r\n";

/// The header as the transcript must show it: one space after the colon
/// whichever way the milter sent it, continuation lines indented under the
/// first with their own folding whitespace (and a tab where there was none).
fn expected_signature_lines() -> Vec<String> {
    vec![
        modification_line("add header X-Signature: v=1; a=rsa-sha256;"),
        continuation_line("\tbh=47DEQpj8=;"),
        continuation_line(" b=abc"),
        continuation_line("\tend"),
    ]
}

#[test]
fn a_leading_space_value_prints_with_one_space_after_the_colon() {
    let m = serve(Signer {
        leading_space: true,
        body: true,
    });
    let o = check(&m.spec, &["--show-message"], MESSAGE);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("HEADER_LEADING_SPACE"), "{out}");
    lines_in_order(&out, &expected_signature_lines());
    // Delivery was right before and stays right: the value as sent.
    assert!(
        out.contains("X-Signature: v=1; a=rsa-sha256;\r\n\tbh=47DEQpj8=;\r\n b=abc\r\n\tend\r\n"),
        "{out}"
    );
}

#[test]
fn continuation_lines_are_indented_under_the_first() {
    let m = serve(Signer {
        leading_space: false,
        body: true,
    });
    let o = check(&m.spec, &["--show-message"], MESSAGE);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!out.contains("HEADER_LEADING_SPACE"), "{out}");
    lines_in_order(&out, &expected_signature_lines());
    assert!(
        out.contains("X-Signature: v=1; a=rsa-sha256;\r\n\tbh=47DEQpj8=;\r\n b=abc\r\n\tend\r\n"),
        "{out}"
    );
    // No line of the transcript before the delivered message starts at
    // column 0 but the fixed ones.
    let transcript = out.split("--- envelope").next().unwrap();
    for line in transcript.lines() {
        assert!(
            line.starts_with(' ') || line.starts_with("milter ") || line.starts_with("verdict: "),
            "line at column 0: {line:?} in\n{out}"
        );
    }
}

fn step_line(detail: &str, answer: &str) -> String {
    format!("  {detail:<40} -> {answer}")
}

#[test]
fn a_body_negotiated_away_gets_a_not_sent_line_like_helo_and_data() {
    let m = serve(Signer {
        leading_space: false,
        body: false,
    });
    let mut message = MESSAGE.to_vec();
    message.extend_from_slice(&b"0123456789abcdefghijklmnopqrstuvwxyz\r\n".repeat(3));
    // Body: "Hello.\r\n" and three 38-byte lines.
    let o = check(&m.spec, &[], &message);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("NO_BODY"), "{out}");
    for (detail, reason) in [
        ("HELO [127.0.0.1]", "negotiated away"),
        ("DATA", "negotiated away"),
        ("BODY 122 bytes in 1 chunk", "negotiated away"),
    ] {
        let want = format!("{} ({reason}) (0.", step_line(detail, "not sent"));
        assert!(
            out.lines().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in\n{out}"
        );
    }
    // Nothing was sent for it, so nothing was waited for: the whole line.
    assert!(
        has_line(
            &out,
            &step_line(
                "BODY 122 bytes in 1 chunk",
                "not sent (negotiated away) (0.00 ms)"
            )
        ),
        "{out}"
    );
    // A step the protocol version lacks says so.
    let o = check(&m.spec, &["--protocol-version", "3"], &message);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want = step_line("DATA", "not sent (not in protocol version 3) (0.");
    assert!(
        out.lines().any(|l| l.starts_with(&want)),
        "no line starting {want:?} in\n{out}"
    );
    // JSON says the same, with the counts.
    let o = check(&m.spec, &["--json"], &message);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(
        v["body_not_sent"],
        serde_json::json!({"bytes": 122, "chunks": 1, "reason": "negotiated away"})
    );
    let body: Vec<&serde_json::Value> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "body")
        .collect();
    assert_eq!(body.len(), 1, "{v:#}");
    assert_eq!(body[0]["sent"], false);
    assert_eq!(body[0]["not_sent"], "negotiated away");
    assert_eq!(body[0]["detail"], "BODY 122 bytes in 1 chunk");
}

fn action_message(actions: &[&str], body: &[u8]) -> Vec<u8> {
    let mut m = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: test\r\n".to_vec();
    for a in actions {
        m.extend_from_slice(format!("X-Action: {a}\r\n").as_bytes());
    }
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(body);
    m
}

#[test]
fn after_a_skip_the_rest_of_the_body_is_reported_not_sent() {
    let m = serve(ActionMilter);
    // 200000 bytes of 100-byte CRLF lines: one 65535-byte chunk is sent and
    // skipped; 134465 bytes (3 chunks) are not sent.
    let line = format!("{}\r\n", "x".repeat(98));
    let body = line.repeat(2000);
    let o = check(
        &m.spec,
        &["--show-message"],
        &action_message(&["skip-body"], body.as_bytes()),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines: Vec<&str> = out.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("  BODY "))
        .unwrap_or_else(|| panic!("no body line in\n{out}"));
    assert!(
        lines[first].starts_with(&step_line("BODY 65535 bytes", "skip (")),
        "{out}"
    );
    assert!(
        lines[first + 1]
            == step_line(
                "BODY rest, 134465 bytes in 3 chunks",
                "not sent (skipped) (0.00 ms)"
            ),
        "{out}"
    );
    assert!(lines[first + 2].starts_with("  END OF MESSAGE"), "{out}");
    // The milter saw the one chunk; Postfix delivers the whole body anyway.
    assert!(out.contains("X-Action-Body-Bytes: 65535\r\n"), "{out}");
    assert!(out.ends_with(&format!("\r\n\r\n{body}")), "{out}");

    let o = check(
        &m.spec,
        &["--json"],
        &action_message(&["skip-body"], body.as_bytes()),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(
        v["body_not_sent"],
        serde_json::json!({"bytes": 134465, "chunks": 3, "reason": "skipped"})
    );
}

#[test]
fn body_out_writes_the_replaced_body_exactly() {
    let m = serve(ActionMilter);
    let dir = temp_dir("body-out");
    let file = dir.join("new-body");
    let path = file.to_str().unwrap();
    // 70000 bytes take two replace-body chunks.
    let o = check(
        &m.spec,
        &["--json", "--body-out", path],
        &action_message(&["replace-body 70000"], b"old body\r\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(
        v["body_out"],
        serde_json::json!({"path": path, "bytes": 70000})
    );
    let chunks: Vec<u64> = v["modifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["action"] == "replace_body")
        .map(|m| m["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(chunks, [65535, 4465]);
    assert_eq!(std::fs::read(&file).unwrap(), body_of(70000).to_vec());

    // The transcript names the file; a run without a replacement leaves no
    // file behind (the one from the run before is removed).
    let o = check(
        &m.spec,
        &["--body-out", path],
        &action_message(&[], b"old body\r\n"),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        has_line(
            &out,
            &format!("--- the milter did not replace the body; {path} not written")
        ),
        "{out}"
    );
    assert!(!Path::new(&file).exists());
    let o = check(
        &m.spec,
        &["--body-out", path],
        &action_message(&["replace-body 100"], b"old body\r\n"),
    );
    let out = stdout(&o);
    assert!(
        has_line(
            &out,
            &format!("--- replaced body (100 bytes) written to {path}")
        ),
        "{out}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), body_of(100).to_vec());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A milter may give the new sender and added recipients with or without
/// angle brackets; Postfix stores the address without them (the Postfix
/// interop test sees `chgfrom <bounce@example.com>` delivered as
/// `Return-Path: <bounce@example.com>`), so the envelope line shows one
/// pair either way, never `<<...>>`.
#[test]
fn the_envelope_line_shows_one_pair_of_brackets_whatever_the_milter_gave() {
    let m = serve(ActionMilter);
    for (actions, want) in [
        (
            [
                "chgfrom <bounce@example.com>",
                "add-rcpt <carol@example.org>",
            ],
            "--- envelope: from <bounce@example.com> to <b@example.org> <carol@example.org>",
        ),
        (
            ["chgfrom bounce@example.com", "add-rcpt carol@example.org"],
            "--- envelope: from <bounce@example.com> to <b@example.org> <carol@example.org>",
        ),
    ] {
        let o = check(
            &m.spec,
            &[
                "--show-message",
                "--from",
                "a@example.com",
                "--rcpt",
                "b@example.org",
            ],
            &action_message(&actions, b"hi\r\n"),
        );
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(has_line(&out, want), "{actions:?}:\n{out}");
        let o = check(
            &m.spec,
            &[
                "--json",
                "--from",
                "a@example.com",
                "--rcpt",
                "b@example.org",
            ],
            &action_message(&actions, b"hi\r\n"),
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        assert_eq!(
            v["delivered"]["sender"], "bounce@example.com",
            "{actions:?}"
        );
        assert_eq!(
            v["delivered"]["recipients"][1]["address"], "carol@example.org",
            "{actions:?}"
        );
    }
}
