//! Mailman's patterns (`*_these_nonmembers`, bans, header-match rules) are
//! Python `re` expressions; the milter evaluates them in Rust
//! (`mailman_milter::pyregex`). This compares the two on patterns built
//! from the pieces where the two syntaxes differ, against Python 3 itself
//! (Debian's, which Mailman runs on): whenever the milter gives an answer,
//! Python must compile the pattern and give the same answer. A pattern
//! Python refuses is skipped by Mailman (`*_these_nonmembers`, header
//! rules: logged, then a miss), so the milter must not evaluate it either:
//! a `reject_these_nonmembers` entry `^.*@spam\.example\z` (`\z` is an
//! error in Python) would otherwise refuse posts Mailman accepts.
//!
//! Needs python3 (`/usr/bin/python3`, else `python3` on PATH).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use mailman_milter::pyregex::{Mode, PyRegex};

/// Pieces patterns are made of: Python and Rust syntax, and the places
/// where they part.
const PIECES: &[&str] = &[
    "a",
    "b",
    "k",
    "@",
    "\\.",
    ".",
    "*",
    "+",
    "?",
    "*?",
    "{2}",
    "{,2}",
    "{1,}",
    "{ 1}",
    "{1, 2}",
    "{x}",
    "(",
    ")",
    "(?:",
    "(?i)",
    "(?s)",
    "(?x)",
    "(?U)",
    "(?R)",
    "(?i:",
    "(?-i:",
    "(?<n>",
    "(?P<n>",
    "(?=",
    "(?!",
    "(?<=a)",
    "(?<!b)",
    "(?>",
    "[",
    "]",
    "[^",
    "-",
    "|",
    "^",
    "$",
    "\\d",
    "\\w",
    "\\s",
    "\\b",
    "\\B",
    "\\z",
    "\\Z",
    "\\A",
    "\\pL",
    "\\p{L}",
    "\\x61",
    "\\x{61}",
    "\\u0061",
    "\\u{61}",
    "\\e",
    "\\h",
    "\\K",
    "\\G",
    "\\Q",
    "\\E",
    "\\1",
    "\\0",
    "\\n",
    "\\t",
    "\\-",
    "\\@",
    "s",
    "S",
    "\u{df}",
    "\u{3c3}",
    "i",
    "I",
    "[a-z]",
    "[^a-z]",
    "[k-s]",
    "\\W",
    "\\S",
    "\\D",
    "[\\w]",
    "\\s",
    "$",
    "&&",
    "~~",
    "--",
    "\\<",
    "[[:alpha:]]",
    "(?#c)",
    "{",
    "}",
    "#",
    " ",
];

/// Text the patterns are tried on: addresses and header values.
const SUBJECTS: &[&str] = &[
    "a@b.example",
    "aa@spam.example",
    "ab@x.example",
    "k@b.example",
    "b",
    "",
    "a b",
    "A@B.EXAMPLE",
    "aab",
    "{x}",
    "a{ 1}",
    "a-b@x.example",
    "\u{17f}@x.example",
    "\u{212a}",
    "\u{130}",
    "\u{131}",
    "\u{df}",
    "\u{1e9e}",
    "ss",
    "SS",
    "\u{3c3}\u{3c2}\u{3a3}",
    "e\u{301}",
    "\u{660}",
    "\u{1c}",
    "\u{a0}",
    "a\n",
    "\u{69}",
    "\u{73}",
    "\u{b5}",
    "\u{131}",
    "\u{17f}",
    "\u{345}",
    "\u{390}",
    "\u{3b0}",
    "\u{3b2}",
    "\u{3b5}",
    "\u{3b8}",
    "\u{3b9}",
    "\u{3ba}",
    "\u{3bc}",
    "\u{3c0}",
    "\u{3c1}",
    "\u{3c2}",
    "\u{3c3}",
    "\u{3c6}",
    "\u{3d0}",
    "\u{3d1}",
    "\u{3d5}",
    "\u{3d6}",
    "\u{3f0}",
    "\u{3f1}",
    "\u{3f5}",
    "\u{432}",
    "\u{434}",
    "\u{43e}",
    "\u{441}",
    "\u{442}",
    "\u{44a}",
    "\u{463}",
    "\u{1c80}",
    "\u{1c81}",
    "\u{1c82}",
    "\u{1c83}",
    "\u{1c84}",
    "\u{1c85}",
    "\u{1c86}",
    "\u{1c87}",
    "\u{1c88}",
    "\u{1e61}",
    "\u{1e9b}",
    "\u{3b9}",
    "\u{390}",
    "\u{3b0}",
    "\u{a64b}",
    "\u{fb05}",
    "\u{fb06}",
];

fn python() -> String {
    std::env::var("MAILMAN_PYTHON").unwrap_or_else(|_| {
        if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".into()
        } else {
            "python3".into()
        }
    })
}

const SCRIPT: &str = r#"
import json, re, sys, warnings
warnings.simplefilter("ignore")
cases = json.load(sys.stdin)
out = []
for pattern, search, icase, subjects in cases:
    try:
        r = re.compile(pattern, re.IGNORECASE if icase else 0)
    except (re.error, RecursionError, OverflowError):
        out.append(None)
        continue
    f = r.search if search else r.match
    out.append([f(s) is not None for s in subjects])
json.dump(out, sys.stdout)
"#;

/// A deterministic stream (xorshift), so every run tries the same patterns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn patterns() -> Vec<String> {
    let mut out: Vec<String> = [
        "^(?i)loud@",
        "^.*@spam\\.example\\z",
        "^(?<u>.*)@spam\\.example$",
        "^\\p{L}+@spam\\.example$",
        "^a{1}{2}@x",
        "^x\\x{61}@",
        "^(?U)a+@",
        "^a(?s).@",
        "^a{ 1}@",
        "^a{1,2 }@",
        "^\\h@",
        "^ab*?+@",
        "^[\\A]",
        "spam(?i)",
        "(?i)^yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..6000 {
        let n = 1 + (rng.next() % 6) as usize;
        let mut p = String::new();
        if rng.next().is_multiple_of(2) {
            p.push('^');
        }
        for _ in 0..n {
            p.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
        }
        out.push(p);
    }
    out
}

#[test]
#[ignore = "needs python3"]
fn the_milter_answers_only_where_python_gives_the_same_answer() {
    let patterns = patterns();
    // (pattern, search, ignore case): as Mailman applies them to
    // `*_these_nonmembers` entries, bans and header rules.
    let modes = [
        (Mode::Match, false),
        (Mode::Match, true),
        (Mode::Search, true),
    ];
    let mut cases = Vec::new();
    for p in &patterns {
        for (mode, icase) in modes {
            cases.push((p.clone(), mode, icase));
        }
    }
    let input: Vec<_> = cases
        .iter()
        .map(|(p, mode, icase)| serde_json::json!([p, *mode == Mode::Search, icase, SUBJECTS]))
        .collect();
    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python3 failed");
    let python: Vec<Option<Vec<bool>>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(python.len(), cases.len());
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for ((pattern, mode, icase), py) in cases.iter().zip(&python) {
        let Ok(re) = PyRegex::new(pattern, *mode, *icase) else {
            continue;
        };
        for (i, subject) in SUBJECTS.iter().enumerate() {
            let Some(ours) = re.matches(subject) else {
                continue;
            };
            evaluated += 1;
            match py {
                None => {
                    failures.push(format!(
                        "{pattern:?} ({mode:?}, ignore case {icase}): Python refuses it, the milter answers {ours} for {subject:?}"
                    ));
                    break;
                }
                Some(answers) if answers[i] != ours => failures.push(format!(
                    "{pattern:?} ({mode:?}, ignore case {icase}) on {subject:?}: Python {}, the milter {ours}",
                    answers[i]
                )),
                Some(_) => {}
            }
        }
    }
    failures.sort();
    failures.dedup();
    // Different answers first: they are the worst.
    failures.sort_by_key(|f| !f.contains(": Python true") && !f.contains(": Python false"));
    assert!(
        failures.is_empty(),
        "{} disagreements, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Most patterns are still evaluated.
    assert!(evaluated > 10_000, "only {evaluated} answers");
}
