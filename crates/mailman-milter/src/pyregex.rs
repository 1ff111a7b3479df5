//! Mailman's regular expressions (Python `re` syntax, as stored in its
//! database) evaluated in Rust.
//!
//! - Patterns Rust's `regex` compiles run there (linear time).
//! - Patterns it cannot compile (look-around, back-references, atomic
//!   groups) run on `fancy-regex`, a backtracking engine, bounded by
//!   [`BACKTRACK_LIMIT`] steps per match: a pattern that would take longer
//!   answers "cannot tell" ([`None`]), never hangs.
//! - Patterns that both Python and Rust accept but read differently are
//!   refused up front (see [`divergence`]): a wrong answer would be worse
//!   than none.
//!
//! Callers treat "cannot tell" and a refused pattern as "might match", and
//! never refuse mail on their account.

/// Most backtracking steps one match may take on `fancy-regex`; past it the
/// answer is "cannot tell". About a millisecond of work.
pub const BACKTRACK_LIMIT: usize = 100_000;

/// How a pattern is applied, as Mailman applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `re.match`: the match must start at the beginning of the text.
    Match,
    /// `re.search`: anywhere in the text.
    Search,
}

/// A compiled Python-syntax pattern.
#[derive(Debug, Clone)]
pub struct PyRegex {
    source: String,
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

impl PyRegex {
    /// Compiles `pattern` for `mode`, case-insensitively if `ignore_case`
    /// (Python's `re.IGNORECASE`). The error says why it cannot be
    /// evaluated here.
    pub fn new(pattern: &str, mode: Mode, ignore_case: bool) -> Result<PyRegex, String> {
        if let Some(why) = divergence(pattern) {
            return Err(why.to_owned());
        }
        // `\A(?:...)`: anchored at the start for `re.match`, also on the
        // backtracking engine (which would otherwise try every position).
        let wrapped = match mode {
            Mode::Match => format!("\\A(?:{pattern})"),
            Mode::Search => format!("(?:{pattern})"),
        };
        let linear = regex::RegexBuilder::new(&wrapped)
            .case_insensitive(ignore_case)
            .build();
        let engine = match linear {
            Ok(re) => Engine::Linear(re),
            Err(linear_error) => fancy_regex::RegexBuilder::new(&wrapped)
                .case_insensitive(ignore_case)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
                .map(Engine::Backtracking)
                .map_err(|e| format!("{e} (and Rust's regex: {})", first_line(&linear_error)))?,
        };
        Ok(PyRegex {
            source: pattern.to_owned(),
            engine,
        })
    }

    /// Whether the pattern matches `text`; None if that could not be
    /// decided within [`BACKTRACK_LIMIT`].
    pub fn matches(&self, text: &str) -> Option<bool> {
        match &self.engine {
            Engine::Linear(re) => Some(re.is_match(text)),
            Engine::Backtracking(re) => re.is_match(text).ok(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn first_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .next()
        .unwrap_or(text)
}

/// Why Python and Rust would read `pattern` differently, if they might.
/// Inside a character class Rust reads `[` as a nested class (or POSIX
/// `[:alpha:]`) and `&&`, `--`, `~~` as set operations, where Python reads
/// them literally; `\<` and `\>` are word boundaries in Rust and literal
/// `<`, `>` in Python; `\b{...}` is a Rust-only assertion.
pub fn divergence(pattern: &str) -> Option<&'static str> {
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Position in the class: right after `[` or `[^` a `]` is literal.
    let mut class_start = false;
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let next = chars.next();
                if !in_class {
                    match next {
                        Some('<' | '>') => {
                            return Some(
                                "\\< and \\> are word boundaries in Rust, literal in Python",
                            );
                        }
                        Some('b') if chars.peek() == Some(&'{') => {
                            return Some("\\b{...} is a Rust-only assertion");
                        }
                        _ => {}
                    }
                }
                prev = None;
                continue;
            }
            '[' if in_class => {
                return Some(
                    "[ inside a character class is a nested class in Rust, literal in Python",
                );
            }
            '[' => {
                in_class = true;
                class_start = true;
                if chars.peek() == Some(&'^') {
                    chars.next();
                    class_start = true;
                }
            }
            ']' if in_class && !at_start => in_class = false,
            '&' | '-' | '~' if in_class && prev == Some(c) => {
                return Some(
                    "&&, -- and ~~ in a character class are set operations in Rust, literal in Python",
                );
            }
            _ => {}
        }
        prev = Some(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, text: &str) -> Option<bool> {
        PyRegex::new(p, Mode::Match, false).unwrap().matches(text)
    }

    #[test]
    fn match_is_anchored_at_the_start_and_search_is_not() {
        assert_eq!(m("^a.*@x$", "ab@x"), Some(true));
        assert_eq!(m("b@x", "ab@x"), Some(false));
        let s = PyRegex::new("b@x", Mode::Search, false).unwrap();
        assert_eq!(s.matches("ab@x"), Some(true));
        // An alternation binds inside the anchor, as in Python.
        assert_eq!(m("x|b", "ab"), Some(false));
    }

    #[test]
    fn ignore_case_as_python() {
        let p = PyRegex::new("^.*@SPAMMER\\.example\\.org$", Mode::Match, true).unwrap();
        assert_eq!(p.matches("x@spammer.example.org"), Some(true));
        assert_eq!(
            m("^.*@SPAMMER\\.example\\.org$", "x@spammer.example.org"),
            Some(false)
        );
    }

    #[test]
    fn look_around_and_back_references_run_on_the_backtracking_engine() {
        assert_eq!(
            m("^(?!boss@).*@example\\.org$", "boss@example.org"),
            Some(false)
        );
        assert_eq!(
            m("^(?!boss@).*@example\\.org$", "ann@example.org"),
            Some(true)
        );
        assert_eq!(m("^(\\w+)\\.\\1@", "ab.ab@x"), Some(true));
        assert_eq!(m("^(\\w+)\\.\\1@", "ab.cd@x"), Some(false));
    }

    #[test]
    fn a_catastrophic_pattern_gives_no_answer_instead_of_hanging() {
        // Exponential on a backtracking engine (Python's included).
        let p = PyRegex::new("^(a|a)*\\1c", Mode::Match, false).unwrap();
        assert_eq!(p.matches(&"a".repeat(40)), None);
    }

    #[test]
    fn patterns_python_reads_differently_are_refused() {
        for p in [
            "^[[:alpha:]]+@x",
            "^[a-z&&b]@x",
            "^[a--b]@x",
            "^\\<x@y\\>",
            "^\\b{start}x",
        ] {
            assert!(PyRegex::new(p, Mode::Match, false).is_err(), "{p}");
        }
        // Literal in both.
        for p in ["^[]a]@x", "^[^]a]@x", "^[\\[]x", "^a--b&&c", "^[a-]-x"] {
            assert!(divergence(p).is_none(), "{p}");
        }
        assert_eq!(m("^[]a]+@x", "]a@x"), Some(true));
    }

    #[test]
    fn a_pattern_no_engine_compiles_is_an_error() {
        assert!(PyRegex::new("^a(", Mode::Match, false).is_err());
    }
}
