//! TOML parse errors on one line, in the same form as mailman-milter's:
//! ``line L, column C (`key = value`): what``. The `toml` crate's own
//! message spreads the offending line and a caret over several lines; the
//! daemon folds those into one with ` | `, which leaves the reader to find
//! the key in ASCII art. Quoting the source line names the key (the
//! administrator's typo or wrong value) next to what is wrong with it.

/// The most of the source line quoted, in characters.
const QUOTE_MAX: usize = 60;

/// `e` (from parsing `text`) as one line:
/// ``line L, column C (`source line`): message``.
pub fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(span) = e.span() else {
        return message;
    };
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
    fn positions_count_characters_and_survive_odd_offsets() {
        assert_eq!(position("ä=\nxy", 5), (2, 2));
        assert_eq!(position("ä", 1), (1, 1));
        assert_eq!(position("", 99), (1, 1));
    }
}
