//! TOML parse errors on one line. The `toml` crate's message quotes the
//! offending line with a caret under it, over several lines; in a log
//! (journald splits on newlines) that becomes several unrelated entries, and
//! the line that says what is wrong arrives last. This gives
//! ``line L, column C (`key = value`): what`` instead: the quoted source
//! line names the key, as the snippet did.

/// The most of the source line quoted, in characters.
const QUOTE_MAX: usize = 60;

/// `e` (from parsing `text`) as one line:
/// ``line L, column C (`source line`): message``.
pub fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let (line, column) = position(text, span.start);
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            let mut quoted: String = source.chars().take(QUOTE_MAX).collect();
            if source.chars().count() > QUOTE_MAX {
                quoted.push_str("...");
            }
            if quoted.is_empty() {
                format!("line {line}, column {column}: {message}")
            } else {
                format!("line {line}, column {column} (`{quoted}`): {message}")
            }
        }
        None => message,
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_reported_on_one_line_with_its_place() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u8,
        }
        let text = "a = 1\n\n  bogus = 1\n";
        let e = toml::from_str::<T>(text).unwrap_err();
        let line = one_line(text, &e);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("line 3, column 3 (`bogus = 1`): unknown field `bogus`"),
            "{line}"
        );
    }

    #[test]
    fn positions_count_characters_and_survive_odd_offsets() {
        assert_eq!(position("ä=\nxy", 5), (2, 2));
        assert_eq!(position("ä", 1), (1, 1));
        assert_eq!(position("", 99), (1, 1));
    }
}
