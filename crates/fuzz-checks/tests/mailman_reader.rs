//! mailman-milter's reading of sender headers against Mailman's own:
//! Python's `email.header` decoding then `email.utils.getaddresses`, as
//! `mailman.email.message.Message.senders` does it (the helper
//! `mailman_senders.py` says how, and runs once per test as a child process
//! speaking JSON lines).
//!
//! The milter reads headers more cautiously than Mailman on purpose (it
//! never decodes an encoded word that could change the structure, it gives
//! up on what it cannot read safely), so the two need not agree. What must
//! hold is the safe direction: **every address the milter finds that
//! Mailman's validator accepts (so that could be a member) is one Mailman
//! finds too**, with the legacy reader and, where the Python has it, the
//! strict one (CVE-2023-27043). Finding fewer, or addresses Mailman's
//! validator refuses, is safe: the milter drops the latter from the senders
//! as Mailman does (`address::mailman_keeps`, checked here against
//! Mailman's validator on every address found), so they are never a
//! member, banned or matched. A header Mailman's decoding raises on
//! puts the message in Mailman's shunt queue: nothing is distributed, so
//! any reading is safe there.
//!
//! Inputs: every file of `fuzz/corpus/mailman_address/` (whole and line by
//! line) and `GENERATED` headers from a fixed-seed generator of the forms
//! that matter: RFC 2047 encoded words (known and unknown charsets, Q and
//! B, decoding to specials), comments, quoted strings, groups, folding and
//! odd `@`/`<>` placement.
//!
//! The interpreter is `$MAILMAN_PYTHON`, else `/usr/bin/python3` (what
//! Debian's mailman3 package runs on), else `python3` from `PATH`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use base64::Engine;
use mailman_milter::address::{header_addresses, mailman_keeps};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

/// Generated headers per run.
const GENERATED: usize = 4000;
/// The generator's seed: the same headers on every run.
const SEED: [u8; 32] = *b"mailman-milter sender headers 01";

struct Reader {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    strict: bool,
}

/// What Mailman makes of one header value.
struct Reading {
    error: Option<String>,
    legacy: Vec<String>,
    strict: Option<Vec<String>>,
    /// Mailman's validator on each address the milter found.
    valid: Vec<bool>,
}

impl Reader {
    fn start() -> Reader {
        let python = std::env::var("MAILMAN_PYTHON").unwrap_or_else(|_| {
            if Path::new("/usr/bin/python3").exists() {
                "/usr/bin/python3".into()
            } else {
                "python3".into()
            }
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailman_senders.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} {}: {e} (needs python3)", script.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut reader = Reader {
            child,
            stdin,
            stdout,
            strict: false,
        };
        reader.strict = reader.read("a@example.org", &[]).strict.is_some();
        eprintln!(
            "oracle: {python}, getaddresses {}",
            if reader.strict {
                "legacy and strict"
            } else {
                "legacy only (no strict mode in this Python)"
            }
        );
        reader
    }

    fn read(&mut self, value: &str, found: &[String]) -> Reading {
        let line = json!({"value": value, "found": found}).to_string();
        writeln!(self.stdin, "{line}").expect("write to the python helper");
        self.stdin.flush().expect("flush to the python helper");
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("read from the python helper");
        assert!(!answer.is_empty(), "the python helper exited on {value:?}");
        let v: Value = serde_json::from_str(&answer).expect("helper's JSON");
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|s| s.as_str().expect("string").to_owned())
                .collect()
        };
        Reading {
            error: v["error"].as_str().map(str::to_owned),
            legacy: strings(&v["legacy"]),
            strict: (!v["strict"].is_null()).then(|| strings(&v["strict"])),
            valid: v["valid"]
                .as_array()
                .expect("valid")
                .iter()
                .map(|b| b.as_bool().expect("bool"))
                .collect(),
        }
    }

    /// `None` when the milter's reading of `value` is safe, else why not.
    fn judge(&mut self, value: &str, stats: &mut Stats) -> Option<String> {
        let found = header_addresses(value);
        let r = self.read(value, &found);
        stats.headers += 1;
        if r.error.is_some() {
            stats.mailman_raises += 1;
            return None;
        }
        if found.is_empty() && !r.legacy.is_empty() {
            stats.milter_found_none += 1;
        }
        let mailman = r.strict.as_ref().unwrap_or(&r.legacy);
        if !found.is_empty() && &found == mailman && found == r.legacy {
            stats.same_addresses += 1;
        }
        let mut unsafe_ = Vec::new();
        for (a, valid) in found.iter().zip(&r.valid) {
            if mailman_keeps(a) != *valid {
                unsafe_.push(format!(
                    "{a:?} (Mailman's validator says {valid}, mailman_keeps {})",
                    !valid
                ));
            }
            if !valid {
                continue;
            }
            if !r.legacy.contains(a) {
                unsafe_.push(format!("{a:?} (legacy reader: {:?})", r.legacy));
            }
            if let Some(strict) = &r.strict
                && !strict.contains(a)
            {
                unsafe_.push(format!("{a:?} (strict reader: {strict:?})"));
            }
        }
        (!unsafe_.is_empty()).then(|| {
            format!(
                "{value:?}: milter finds {found:?}; Mailman does not find {}",
                unsafe_.join(", ")
            )
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default, Debug)]
struct Stats {
    headers: usize,
    mailman_raises: usize,
    /// Mailman finds an address, the milter none.
    milter_found_none: usize,
    /// Both find the same non-empty list.
    same_addresses: usize,
}

fn report(what: &str, stats: &Stats, failures: &[String]) {
    eprintln!("{what}: {stats:?}");
    assert!(
        failures.is_empty(),
        "{} of {} headers: the milter finds a possible member Mailman does not:\n{}",
        failures.len(),
        stats.headers,
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
#[ignore = "needs python3"]
fn the_corpus_is_read_safely() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mailman_address");
    let mut reader = Reader::start();
    let (mut stats, mut failures) = (Stats::default(), Vec::new());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: only {} files",
        dir.display(),
        files.len()
    );
    for path in files {
        let text =
            String::from_utf8_lossy(&std::fs::read(&path).expect("corpus file")).into_owned();
        let lines = text.lines().map(str::to_owned);
        for value in std::iter::once(text.clone()).chain(lines) {
            if let Some(f) = reader.judge(&value, &mut stats) {
                failures.push(format!("{}: {f}", path.display()));
            }
        }
    }
    report("corpus", &stats, &failures);
}

#[test]
#[ignore = "needs python3"]
fn generated_headers_are_read_safely() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let strategy = header();
    let mut reader = Reader::start();
    let (mut stats, mut failures) = (Stats::default(), Vec::new());
    for _ in 0..GENERATED {
        let value = strategy.new_tree(&mut runner).expect("generate").current();
        if let Some(f) = reader.judge(&value, &mut stats) {
            failures.push(f);
        }
    }
    // The generator reaches the cases where Mailman's decoding raises, and
    // the milter is not trivially safe by finding nothing: on a good share
    // of the headers it finds exactly what Mailman finds.
    assert!(stats.mailman_raises > GENERATED / 50, "{stats:?}");
    assert!(stats.same_addresses > GENERATED / 4, "{stats:?}");
    report("generated", &stats, &failures);
}

/// `address::mailman_keeps` (which senders the milter keeps) against
/// Mailman's validator itself, on addresses built from the characters that
/// matter: the validator's own, those Python's case-insensitive classes
/// also let through (`İ`, `ı`, `ſ`, `K`), and ones it refuses.
#[test]
#[ignore = "needs python3"]
fn the_senders_kept_are_those_mailmans_validator_keeps() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    // Mostly valid shapes, each with at most one odd character in the
    // local part and one in the domain.
    let strategy = "[a-z0-9.+_-]{0,4}[a-z0-9!#$%&'*+./=?@_`{}~|^\" ()<>,;:éİıſK]?[a-z0-9]{0,3}\
                    @?[a-z0-9-]{0,4}[.a-z0-9_@\\[\\]éİıſK-]?[a-z0-9-]{0,3}\\.[a-z0-9-]{0,3}\\.?";
    let mut reader = Reader::start();
    let (mut kept, mut dropped) = (0, 0);
    for _ in 0..GENERATED {
        let batch: Vec<String> = (0..16)
            .map(|_| {
                strategy
                    .new_tree(&mut runner)
                    .expect("generate")
                    .current()
                    .to_lowercase()
            })
            .collect();
        let r = reader.read("", &batch);
        for (a, valid) in batch.iter().zip(&r.valid) {
            assert_eq!(mailman_keeps(a), *valid, "{a:?}");
            if *valid {
                kept += 1;
            } else {
                dropped += 1;
            }
        }
        if kept > 2000 && dropped > 2000 {
            break;
        }
    }
    assert!(
        kept > 500 && dropped > 500,
        "kept {kept}, dropped {dropped}"
    );
}

/// A local part: mostly atext, sometimes with characters Mailman's
/// validator refuses or that look like structure.
fn local() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z][a-zA-Z0-9._+-]{0,7}",
        1 => "[a-z=?'{}~#$%&*/!`]{1,6}",
        1 => "[a-z]{1,3}=\\?[a-z0-9-]{0,5}\\?[qQbBx]\\?[a-z@=]{0,3}\\?=[a-z]{0,3}",
        1 => "\"[a-z ,@<>]{1,6}\"",
    ]
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,6}\\.(org|example|ORG)",
        1 => "[a-z]{1,4}",
        1 => "[a-z]{1,3}\\.[a-z]{1,3}\\.[a-z]{2}",
        1 => "\\[[0-9.]{1,7}\\]",
    ]
}

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (local(), domain()).prop_map(|(l, d)| format!("{l}@{d}")),
        1 => (local(), domain(), domain()).prop_map(|(l, d, e)| format!("{l}@{d}@{e}")),
        1 => (domain(), local(), domain()).prop_map(|(r, l, d)| format!("@{r}:{l}@{d}")),
        1 => local(),
    ]
}

/// Text an encoded word can carry: plain, non-ASCII, or structure.
fn word_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z ]{0,8}",
        Just("Doe, John".to_owned()),
        Just("Müller".to_owned()),
        Just("x@evil.example".to_owned()),
        Just("<x@evil.example>".to_owned()),
        Just("\"".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("a, b@evil.example".to_owned()),
        Just("team:".to_owned()),
        "[a-z@<>,;:()\"\\\\ ]{1,5}",
    ]
}

fn charset() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("utf-8".to_owned()),
        1 => Just("UTF-8".to_owned()),
        2 => Just("iso-8859-1".to_owned()),
        1 => Just("us-ascii".to_owned()),
        1 => Just("iso-8859-15".to_owned()),
        1 => Just("windows-1252".to_owned()),
        1 => Just("koi8-r".to_owned()),
        1 => Just("utf-7".to_owned()),
        1 => Just("x-unknown".to_owned()),
        1 => Just("".to_owned()),
        1 => "[a-z@$, ]{1,3}",
    ]
}

fn q_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b' ' => "_".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("={b:02X}"),
        })
        .collect()
}

/// An RFC 2047 encoded word (or something shaped like one).
fn encoded_word() -> impl Strategy<Value = String> {
    (charset(), word_text(), 0u8..6).prop_map(|(cs, text, how)| {
        let bytes = if cs.starts_with("iso") || cs.starts_with("windows") {
            text.chars().map(|c| c as u32 as u8).collect::<Vec<_>>()
        } else {
            text.clone().into_bytes()
        };
        match how {
            0 | 1 => format!("=?{cs}?q?{}?=", q_encode(&bytes)),
            2 | 3 => format!(
                "=?{cs}?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            ),
            // Not encoded at all: the raw text between the markers.
            4 => format!("=?{cs}?q?{text}?="),
            // Broken base64.
            _ => format!("=?{cs}?b?{}?=", text.replace(' ', "")),
        }
    })
}

/// A display name: atoms, quoted strings, encoded words.
fn phrase() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => "[A-Za-z.]{1,6}",
            2 => "\"[A-Za-z ,<>@()]{0,8}\"",
            2 => encoded_word(),
            1 => "\"[a-z]{0,3}\\\\[\"a-z]{1,2}\"",
        ],
        1..4,
    )
    .prop_map(|v| v.join(" "))
}

fn comment() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\([A-Za-z @,<>\"]{0,8}\\)",
        encoded_word().prop_map(|w| format!("({w})")),
        "\\([a-z]{0,3}\\([a-z@.]{0,6}\\)[a-z]{0,2}\\)",
        Just("(".to_owned()),
    ]
}

/// One item of an address list.
fn mailbox() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => addr(),
        3 => (phrase(), addr()).prop_map(|(p, a)| format!("{p} <{a}>")),
        1 => addr().prop_map(|a| format!("<{a}>")),
        2 => (addr(), comment()).prop_map(|(a, c)| format!("{a} {c}")),
        1 => (comment(), addr()).prop_map(|(c, a)| format!("{c}{a}")),
        2 => (encoded_word(), addr()).prop_map(|(w, a)| format!("{w}<{a}>")),
        2 => (encoded_word(), addr()).prop_map(|(w, a)| format!("{w}{a}")),
        1 => (addr(), encoded_word()).prop_map(|(a, w)| format!("{a}{w}")),
        1 => encoded_word(),
        1 => (addr(), addr()).prop_map(|(a, b)| format!("<{a}> <{b}>")),
        1 => (addr(), addr()).prop_map(|(a, b)| format!("{a} {b}")),
        1 => addr().prop_map(|a| format!("<<{a}>>")),
        1 => addr().prop_map(|a| format!("<{a}")),
        1 => (addr(), "[\"()<>,;:@\\\\\\[\\] ]{1,3}").prop_map(|(a, j)| format!("{a}{j}")),
        1 => ("[\"()<>,;:@\\\\\\[\\] ]{1,3}", addr()).prop_map(|(j, a)| format!("{j}{a}")),
    ]
}

/// A header value: half of them as mail clients write them, half odd.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![list_of(usual_mailbox()), list_of(mailbox())]
}

/// A mailbox as mail clients write it (display names plain, quoted or
/// encoded, comments), so the milter must find what Mailman finds.
fn usual_mailbox() -> impl Strategy<Value = String> {
    let addr = (
        "[a-zA-Z][a-zA-Z0-9._+-]{0,7}",
        "[a-z]{1,6}\\.(org|example|ORG)",
    )
        .prop_map(|(l, d)| format!("{l}@{d}"));
    let name = prop_oneof![
        "[A-Za-z]{1,6}( [A-Za-z.]{1,6}){0,2}",
        "\"[A-Za-z]{1,6}, [A-Za-z]{1,6}\"",
        ("[A-Za-z ]{1,10}", any::<bool>()).prop_map(|(t, b)| {
            let bytes = format!("{t} \u{fc}");
            if b {
                format!(
                    "=?utf-8?B?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                )
            } else {
                format!("=?UTF-8?Q?{}?=", q_encode(bytes.as_bytes()))
            }
        }),
    ];
    prop_oneof![
        addr.clone(),
        (name, addr.clone()).prop_map(|(n, a)| format!("{n} <{a}>")),
        (addr, "[A-Za-z ]{0,8}").prop_map(|(a, c)| format!("{a} ({c})")),
    ]
}

/// Items joined by commas, maybe a group, maybe folded, maybe a stray
/// character at the end.
fn list_of(item: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let list = proptest::collection::vec(item, 1..4).prop_map(|v| v.join(", "));
    (
        list,
        proptest::option::weighted(0.15, phrase()),
        proptest::option::weighted(0.2, 0usize..64),
        proptest::option::weighted(0.1, "[,;:\"()<> ]"),
    )
        .prop_map(|(list, group, fold_at, junk)| {
            let mut v = match group {
                Some(name) => format!("{name}: {list};"),
                None => list,
            };
            if let Some(at) = fold_at {
                // Fold at a space, as a mail client would.
                if let Some((i, _)) = v.match_indices(' ').nth(at % 4) {
                    v.replace_range(i..i + 1, "\r\n ");
                }
            }
            if let Some(j) = junk {
                v.push_str(&j);
            }
            v
        })
}
