//! A TOML error (syntax, or a value serde refused) on one line:
//! ``line L, column C in [TABLE] (`key = value`): what``.
//!
//! The `toml` crate's own message quotes the offending line with a caret
//! under it, over several lines; in a log (journald splits on newlines)
//! that becomes several unrelated entries, and the line that says what is
//! wrong arrives last. Quoting the source line instead names the key as
//! the administrator wrote it (their typo, their value), and the table it
//! stands in tells `max = 5` under `[lists."a@b"]` from the same key under
//! another list. The column counts characters, as an editor does, not
//! bytes.
//!
//! Takes the error's span and message rather than the error itself, so a
//! milter on another major version of `toml` uses it too.

use std::ops::Range;

use super::errors::fold;

/// The most of the source line quoted, in characters.
const QUOTE_MAX: usize = 60;

/// An error at `span` (byte offsets into `text`, as `toml`'s
/// `Error::span` gives them) saying `message`, as one line:
/// ``line L, column C in [TABLE] (`source line`): message``. ` in [TABLE]`
/// is left out at the top level and on a table's own header line; the
/// quote is left out for an empty line. Without a span, just the message.
pub fn toml_error_line(text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let message = fold(message);
    let Some(span) = span else {
        return message;
    };
    let (line, column) = position(text, span.start);
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    let mut place = format!("line {line}, column {column}");
    if let Some(table) = table_of(text, line) {
        place.push_str(" in ");
        place.push_str(&table);
    }
    let mut quoted: String = source.chars().take(QUOTE_MAX).collect();
    if source.chars().count() > QUOTE_MAX {
        quoted.push_str("...");
    }
    if quoted.is_empty() {
        format!("{place}: {message}")
    } else {
        format!("{place} (`{quoted}`): {message}")
    }
}

/// 1-based line and column (in characters) of byte offset `at`, which may
/// be past the end or inside a character.
fn position(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The table that line `line` (from 1) belongs to, as its header is
/// written (`[lists."a@b"]`, or `the 2nd [[list]]` for an array of
/// tables); `None` at the top level or when `line` is itself a header.
/// Reads the lines above for headers, skipping multi-line strings; a line
/// of a multi-line array that looks exactly like a header (`["a"]`) would
/// be taken for one, which no configuration of ours writes.
fn table_of(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.get(line - 1).and_then(|l| header(l)).is_some() {
        return None;
    }
    let mut current: Option<(String, bool)> = None;
    let mut arrays: Vec<(String, usize)> = Vec::new();
    let mut ordinal = 0;
    let mut open: Option<&str> = None;
    for l in lines.iter().take(line - 1) {
        if let Some(delim) = open {
            if l.contains(delim) {
                open = None;
            }
            continue;
        }
        if let Some((name, array)) = header(l) {
            if array {
                ordinal = match arrays.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        arrays.push((name.clone(), 1));
                        1
                    }
                };
            }
            current = Some((name, array));
            continue;
        }
        open = ["\"\"\"", "'''"]
            .into_iter()
            .find(|d| l.matches(d).count() % 2 == 1);
    }
    current.map(|(name, array)| {
        if array {
            format!("the {} [[{name}]]", ordinal_word(ordinal))
        } else {
            format!("[{name}]")
        }
    })
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, ..., `21st`.
fn ordinal_word(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The name in a table header line (`[a."b c"]` gives `a."b c"`) and
/// whether it is an array of tables (`[[a]]`); `None` for any other line.
fn header(line: &str) -> Option<(String, bool)> {
    let l = line.trim();
    let (array, inner) = match l.strip_prefix("[[") {
        Some(rest) => (true, rest),
        None => (false, l.strip_prefix('[')?),
    };
    let len = key_len(inner)?;
    let name = inner[..len].trim();
    let close = if array { "]]" } else { "]" };
    let rest = inner[len..].strip_prefix(close)?.trim_start();
    (!name.is_empty() && (rest.is_empty() || rest.starts_with('#')))
        .then(|| (name.to_owned(), array))
}

/// The length of the dotted key at the start of `s` (bare and quoted parts,
/// dots, blanks), up to the first character that cannot be in one.
fn key_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return None;
                }
                i += 1;
            }
            b'\'' => {
                i += 1 + s[i + 1..].find('\'')?;
                i += 1;
            }
            b'.' | b' ' | b'\t' | b'-' | b'_' => i += 1,
            c if c.is_ascii_alphanumeric() => i += 1,
            _ => break,
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct List {
        max: Option<u32>,
        name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        a: Option<u8>,
        s: Option<String>,
        lists: Option<BTreeMap<String, List>>,
        list: Option<Vec<List>>,
    }

    /// `text` parsed as [`File`], its error as one line.
    fn error(text: &str) -> String {
        let e = toml::from_str::<File>(text).unwrap_err();
        let line = toml_error_line(text, e.span(), e.message());
        assert!(!line.contains('\n'), "{line}");
        line
    }

    #[test]
    fn a_value_of_the_wrong_type() {
        assert_eq!(
            error("a = 1\ns = 5\n"),
            "line 2, column 5 (`s = 5`): invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn an_unknown_key() {
        assert_eq!(
            error("a = 1\n\n  bogus = 1\n"),
            "line 3, column 3 (`bogus = 1`): unknown field `bogus`, expected one of \
             `a`, `s`, `lists`, `list`"
        );
    }

    #[test]
    fn a_key_without_equals() {
        assert_eq!(
            error("a = 1\nb\n"),
            "line 2, column 2 (`b`): key with no value, expected `=`"
        );
    }

    #[test]
    fn a_duplicate_key() {
        assert_eq!(
            error("a = 1\ns = \"x\"\na = 2\n"),
            "line 3, column 1 (`a = 2`): duplicate key"
        );
    }

    #[test]
    fn an_unterminated_string() {
        assert_eq!(
            error("a = 1\ns = \"open\n"),
            "line 2, column 10 (`s = \"open`): invalid basic string, expected `\"`"
        );
    }

    #[test]
    fn a_value_on_the_last_line_without_a_newline() {
        assert_eq!(
            error("a = 1\ns = 5"),
            "line 2, column 5 (`s = 5`): invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            error("a = 1\ns ="),
            "line 2, column 4 (`s =`): string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn a_key_in_a_sub_table_names_the_table() {
        assert_eq!(
            error("a = 1\n[lists.\"a@b\"]\nname = \"x\"\n[lists.\"c@d\"]\nmax = \"big\"\n"),
            "line 5, column 7 in [lists.\"c@d\"] (`max = \"big\"`): invalid type: string \
             \"big\", expected u32"
        );
        assert_eq!(
            error("[[list]]\nmax = 1\n[[list]]\nmax = 2\nmaxx = 3\n"),
            "line 5, column 1 in the 2nd [[list]] (`maxx = 3`): unknown field `maxx`, \
             expected `max` or `name`"
        );
        // A header in a multi-line string is text, not a table.
        assert_eq!(
            error("[lists.x]\nname = \"\"\"\n[lists.y]\n\"\"\"\nmax = -1\n"),
            "line 5, column 7 in [lists.x] (`max = -1`): invalid value: integer `-1`, \
             expected u32"
        );
        // An error on a header line is not "in" the table above it.
        assert_eq!(
            error("[lists.x]\nmax = 1\n[lists.x]\n"),
            "line 3, column 8 (`[lists.x]`): duplicate key"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            error("s = \"äöü€\" ; a = 1\n"),
            "line 1, column 12 (`s = \"äöü€\" ; a = 1`): unexpected key or value, \
             expected newline, `#`"
        );
        assert_eq!(position("ä=\nxy", 5), (2, 2));
        assert_eq!(position("ä", 1), (1, 1));
        assert_eq!(position("", 99), (1, 1));
    }

    #[test]
    fn long_lines_are_cut_and_a_missing_span_leaves_the_message() {
        let long = format!("s = {}\n", "9".repeat(80));
        let e = error(&long);
        assert!(
            e.starts_with(&format!("line 1, column 5 (`s = {}...`): ", "9".repeat(56))),
            "{e}"
        );
        assert_eq!(toml_error_line("", None, "bad\n  thing"), "bad thing");
    }

    #[test]
    fn headers_are_told_from_other_lines() {
        assert_eq!(
            header(" [a.\"b]c\" ] # x"),
            Some(("a.\"b]c\"".into(), false))
        );
        assert_eq!(header("[[list]]"), Some(("list".into(), true)));
        assert_eq!(header("[1, 2],"), None);
        assert_eq!(header("[\"x\"] = 1"), None);
        assert_eq!(header("a = [1]"), None);
        assert_eq!(ordinal_word(11), "11th");
        assert_eq!(ordinal_word(22), "22nd");
    }
}
