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
    /// Matches ignoring case (the flag, or `(?i)` in the pattern).
    folds: bool,
    /// Uses `\w`, `\W`, `\b`, `\B`, `\s` or `\S`.
    classes: bool,
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
            folds: ignore_case || inline_ignore_case(pattern),
            classes: uses_classes(pattern),
        })
    }

    /// Whether the pattern matches `text`; None if that could not be
    /// decided within [`BACKTRACK_LIMIT`], or if Python might answer
    /// otherwise for this text:
    /// - a final line break: Python's `$` also matches before it, and `\Z`
    ///   on the backtracking engine does;
    /// - ignoring case, `İ` or `ı`: Python takes them for `i`/`I`, Rust
    ///   does not;
    /// - `\w`, `\b`, `\s` (and their negations) on text beyond ASCII or
    ///   with the separators U+001C..U+001F: Python's `\w` leaves out
    ///   combining marks and its `\s` takes those separators in, Rust's
    ///   the other way round.
    pub fn matches(&self, text: &str) -> Option<bool> {
        if text.ends_with('\n') {
            return None;
        }
        if self.folds && text.contains(['\u{130}', '\u{131}']) {
            return None;
        }
        if self.classes
            && (!text.is_ascii() || text.contains(|c| ('\u{1c}'..='\u{1f}').contains(&c)))
        {
            return None;
        }
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

/// Whether `pattern` turns on ignoring case itself (`(?i)`, `(?i:…)`,
/// `(?mi-s:…)`); read loosely, which only gives fewer answers.
fn inline_ignore_case(pattern: &str) -> bool {
    pattern.match_indices("(?").any(|(at, _)| {
        pattern[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == '-')
            .any(|c| c == 'i')
    })
}

/// Whether `pattern` uses one of the classes Python and Rust draw
/// differently beyond ASCII: `\w`, `\W`, `\b`, `\B`, `\s`, `\S`.
fn uses_classes(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.next(), Some('w' | 'W' | 'b' | 'B' | 's' | 'S')) {
            return true;
        }
    }
    false
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
///
/// Read differently by both:
/// - inside a character class Rust reads `[` as a nested class (or POSIX
///   `[:alpha:]`) and `&&`, `--`, `~~` as set operations, where Python
///   reads them literally;
/// - `\<` and `\>` are word boundaries in Rust and literal `<`, `>` in
///   Python; `\b{...}` is a Rust-only assertion;
/// - braces with white space (`a{ 1}`, `a{1, 2}`) repeat in Rust and are
///   literal text in Python;
/// - `\B` never matches an empty text in Python (3.11).
///
/// Refused by Python (3.11, Debian's), which Mailman then skips (a
/// `*_these_nonmembers` entry, a header rule: logged, a miss) while Rust
/// would evaluate them:
/// - an escape of an ASCII letter Python does not know (`\z`, `\p{L}`,
///   `\h`, `\K`, `\e`, `\G`, `\Q`; `\A`, `\B`, `\Z` in a class) and
///   braced hex escapes (`\x{61}`);
/// - inline flags not at the very start (`^(?i)x`: every `^regex` entry),
///   and flags Python does not have (`(?U)`, `(?R)`); `(?x)` is refused
///   too (the two verbose modes differ);
/// - `(?<name>...)`, Rust's spelling of `(?P<name>...)`;
/// - a repeat of a repeat (`a{1}{2}`, `a*?+`).
pub fn divergence(pattern: &str) -> Option<&'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut in_class = false;
    // Position in the class: right after `[` or `[^` a `]` is literal.
    let mut class_start = false;
    let mut prev: Option<char> = None;
    // What the last item was, for repeats of repeats.
    #[derive(PartialEq, Clone, Copy)]
    enum Last {
        // Nothing a repeat could apply to: the start, `(`, `|`, an anchor.
        Nothing,
        Item,
        Repeat,
        // A repeat made lazy (`*?`) or possessive (`*+`).
        Modified,
    }
    let mut last = Last::Nothing;
    // Open groups: a `)` without one closes the anchor's wrapper in Rust
    // (`x)|(.*` would match anything); Python refuses it.
    // Each open group: its number and name if it captures.
    let mut open: Vec<Option<(usize, String)>> = Vec::new();
    let mut groups = 0usize;
    // Groups closed so far: a back-reference to any other is refused by
    // Python (an open or a later group).
    let mut closed: Vec<(usize, String)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        let at_start = std::mem::take(&mut class_start);
        if c == '\\' {
            let next = chars.get(i).copied();
            i += 1;
            prev = None;
            let Some(next) = next else { continue };
            if !in_class {
                last = if matches!(next, 'A' | 'Z' | 'b' | 'B') {
                    Last::Nothing
                } else {
                    Last::Item
                };
            }
            let known = if in_class {
                "abfnrtvxuUNdDsSwW"
            } else {
                "abfnrtvxuUNABZdDsSwW"
            };
            if next.is_ascii_alphabetic() && !known.contains(next) {
                return Some("an escape Python does not know (it refuses the pattern)");
            }
            if matches!(next, 'x' | 'u' | 'U') && chars.get(i) == Some(&'{') {
                return Some("a braced escape (\\x{...}) is Rust-only; Python refuses it");
            }
            if in_class {
                continue;
            }
            if next.is_ascii_digit() && next != '0' {
                let mut digits = String::from(next);
                while let Some(d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    i += 1;
                }
                let known = digits
                    .parse::<usize>()
                    .is_ok_and(|n| closed.iter().any(|(m, _)| *m == n));
                if digits.len() > 2 || !known {
                    return Some("a back-reference Python refuses (to an open or unknown group)");
                }
                continue;
            }
            match next {
                '<' | '>' => {
                    return Some("\\< and \\> are word boundaries in Rust, literal in Python");
                }
                'b' if chars.get(i) == Some(&'{') => {
                    return Some("\\b{...} is a Rust-only assertion");
                }
                'B' => return Some("\\B never matches an empty text in Python"),
                _ => {}
            }
            continue;
        }
        if in_class {
            match c {
                '[' => {
                    return Some(
                        "[ inside a character class is a nested class in Rust, literal in Python",
                    );
                }
                ']' if !at_start => {
                    in_class = false;
                    last = Last::Item;
                }
                '&' | '-' | '~' if prev == Some(c) => {
                    return Some(
                        "&&, -- and ~~ in a character class are set operations in Rust, literal in Python",
                    );
                }
                _ => {}
            }
            prev = Some(c);
            continue;
        }
        prev = Some(c);
        match c {
            '[' => {
                in_class = true;
                class_start = true;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                    class_start = true;
                }
            }
            '(' if chars.get(i) == Some(&'?') && chars.get(i + 1) == Some(&'#') => {
                // A comment, up to the first `)`; repeats see through it.
                match chars[i..].iter().position(|&x| x == ')') {
                    Some(close) => i += close + 1,
                    None => return Some("an unclosed comment"),
                }
            }
            '(' if chars.get(i) == Some(&'?') => {
                last = Last::Nothing;
                open.push(None);
                let rest: String = chars[i + 1..].iter().take(3).collect();
                if rest.starts_with('<') && !rest.starts_with("<=") && !rest.starts_with("<!") {
                    return Some("(?<name>...) is Rust's; Python refuses it");
                }
                // Past `(?`: the extension.
                let mut j = i + 1;
                match (chars.get(j), chars.get(j + 1)) {
                    (Some(':' | '=' | '!' | '>'), _) => i = j + 1,
                    (Some('<'), Some('=' | '!')) => i = j + 2,
                    (Some('P'), Some('<')) => match chars[j..].iter().position(|&x| x == '>') {
                        Some(close) => {
                            groups += 1;
                            let name: String = chars[j + 2..j + close].iter().collect();
                            open.pop();
                            open.push(Some((groups, name)));
                            i = j + close + 1;
                        }
                        None => return Some("an unclosed group name"),
                    },
                    (Some('P'), Some('=')) => {
                        // A back-reference by name: an item, not a group.
                        open.pop();
                        last = Last::Item;
                        match chars[j..].iter().position(|&x| x == ')') {
                            Some(close) => {
                                let name: String = chars[j + 2..j + close].iter().collect();
                                if !closed.iter().any(|(_, n)| *n == name) {
                                    return Some(
                                        "a back-reference Python refuses (to an open or unknown group)",
                                    );
                                }
                                i = j + close + 1;
                            }
                            None => return Some("an unclosed back-reference"),
                        }
                    }
                    _ => {
                        // Flags: `(?flags)` or `(?flags-flags:...)`.
                        while j < chars.len() && (chars[j].is_ascii_alphabetic() || chars[j] == '-')
                        {
                            j += 1;
                        }
                        let flags: String = chars[i + 1..j].iter().collect();
                        if flags.is_empty() || flags.chars().any(|f| !"imsu-".contains(f)) {
                            return Some("a group extension Python and Rust do not share");
                        }
                        match chars.get(j) {
                            Some(')') => {
                                if i != 1 {
                                    return Some(
                                        "inline flags not at the start; Python refuses the pattern",
                                    );
                                }
                                open.pop();
                                i = j + 1;
                            }
                            Some(':') => i = j + 1,
                            _ => return Some("a group extension Python and Rust do not share"),
                        }
                    }
                }
            }
            '(' => {
                last = Last::Nothing;
                groups += 1;
                open.push(Some((groups, String::new())));
            }
            ')' => {
                match open.pop() {
                    None => return Some("an unbalanced parenthesis; Python refuses the pattern"),
                    Some(Some(group)) => closed.push(group),
                    Some(None) => {}
                }
                last = Last::Item;
            }
            '|' | '^' | '$' => last = Last::Nothing,
            '*' | '+' | '?' => {
                last = match last {
                    Last::Repeat if c != '*' => Last::Modified,
                    Last::Repeat | Last::Modified => {
                        return Some("a repeat of a repeat; Python refuses it");
                    }
                    Last::Nothing => return Some("nothing to repeat; Python refuses it"),
                    Last::Item => Last::Repeat,
                };
            }
            '{' => {
                let close = chars[i..].iter().position(|&x| x == '}');
                let Some(close) = close else {
                    last = Last::Item;
                    continue;
                };
                let body = &chars[i..i + close];
                if body.iter().any(|x| x.is_whitespace()) {
                    return Some("braces with white space repeat in Rust, are literal in Python");
                }
                let counted = !body.is_empty()
                    && body.iter().all(|x| x.is_ascii_digit() || *x == ',')
                    && body.iter().filter(|x| **x == ',').count() <= 1;
                if counted {
                    match last {
                        Last::Item => {}
                        Last::Nothing => return Some("nothing to repeat; Python refuses it"),
                        _ => return Some("a repeat of a repeat; Python refuses it"),
                    }
                    last = Last::Repeat;
                    i += close + 1;
                } else {
                    last = Last::Item;
                }
            }
            _ => last = Last::Item,
        }
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
    fn patterns_python_refuses_are_not_evaluated() {
        // Mailman skips them (logged, a miss); Rust would read them.
        for p in [
            "^.*@spam\\.example\\z",
            "^(?i)loud@",
            "^a(?s).@",
            "^(?U)a+@",
            "^(?<u>.*)@x",
            "^\\p{L}+@x",
            "^\\h@",
            "^x\\x{61}@",
            "^[\\A]",
            "^a{1}{2}@x",
            "^ab*?+@",
            "^*",
            "a|*",
            "x)|(.*",
            "(\\1)",
            "\\1(a)",
            "(?P<n>a)(?P=m)",
        ] {
            assert!(PyRegex::new(p, Mode::Match, false).is_err(), "{p}");
        }
        // Read differently: literal in Python, a repeat in Rust; and `\B`
        // on an empty text.
        for p in ["^a{ 1}@", "^a{1,2 }@", "\\B"] {
            assert!(divergence(p).is_some(), "{p}");
        }
        // Python accepts these and reads them as Rust does.
        for p in [
            "(?i)^yes",
            "^(?i:LOUD)@",
            "^(?-i:a)b",
            "^a{,2}b@",
            "^a{2}+@",
            "^a*?@",
            "^(a)\\1@",
            "^(?P<n>a)(?P=n)@",
            "^a(?#note)*@",
            "^(?:(?=a)a)+@",
            "^\\d\\w\\s\\b\\A\\Z",
            "^a{}",
        ] {
            assert!(divergence(p).is_none(), "{p}");
        }
    }

    #[test]
    fn texts_python_reads_otherwise_get_no_answer() {
        // Python's IGNORECASE takes `ı` and `İ` for `i`.
        let ban = PyRegex::new("^[^a-z]", Mode::Match, true).unwrap();
        assert_eq!(ban.matches("\u{131}van@example.org"), None);
        assert_eq!(ban.matches("ivan@example.org"), Some(false));
        let inline = PyRegex::new("(?i)^i", Mode::Search, false).unwrap();
        assert_eq!(inline.matches("\u{130}"), None);
        // Case-sensitive: the same in both.
        assert_eq!(m("^[^a-z]", "\u{131}van@x"), Some(true));
        // Python's `\s` takes U+001C in, its `\w` leaves combining marks out.
        let space = PyRegex::new("\\S", Mode::Search, true).unwrap();
        assert_eq!(space.matches("\u{1c}"), None);
        let word = PyRegex::new("e\\b", Mode::Search, true).unwrap();
        assert_eq!(word.matches("cafe\u{301}"), None);
        assert_eq!(word.matches("cafe au lait"), Some(true));
        // `$` before a final line break.
        assert_eq!(m("^a$", "a\n"), None);
    }

    #[test]
    fn a_pattern_no_engine_compiles_is_an_error() {
        assert!(PyRegex::new("^a(", Mode::Match, false).is_err());
    }
}
