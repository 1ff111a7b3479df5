//! `mailman_address`: arbitrary text through mailman-milter's address
//! handling (`normalize`, `split`, `header_addresses`).
//!
//! Only invariants that do not compare the milter with itself live here
//! (an earlier "parse your own output again" check kept failing on forms
//! where two readings of the milter differed, which says nothing about
//! Mailman). How a header *should* be read is judged against Mailman's own
//! reader, Python's `email` package, by `tests/mailman_reader.rs` over this
//! corpus and generated headers.
//!
//! Invariants:
//! - no panic;
//! - `normalize` gives lowercase, trimmed text, and `split` cuts it into
//!   parts that join back to it;
//! - every address found in a header value has a non-empty local part and
//!   domain, is lowercase and holds no space, tab or ASCII control;
//! - bounded output: no more text than three times the input, and without
//!   encoded words at most one address per comma-separated item;
//! - never an address from a comment or a quoted display name: a decoy
//!   there is never found, whatever else the value holds;
//! - nothing from a value with an item of bare words (`alice`), which the
//!   MTA may complete into a member's address before Mailman reads it.

use mailman_milter::address::{header_addresses, normalize, split};

use crate::{Outcome, ensure, ensure_eq};

/// An address that must never be found: it only ever appears inside quotes
/// or comments.
const DECOY: &str = "decoy@evil.example";

/// The fuzz entry: the text (lossy UTF-8).
pub fn run(data: &[u8]) -> Outcome {
    check_text(&String::from_utf8_lossy(data))
}

/// Checks `s` as an envelope address and as a header value.
pub fn check_text(s: &str) -> Outcome {
    if let Some(n) = normalize(s) {
        ensure_eq!(n.to_lowercase(), n, "normalize({s:?})");
        ensure_eq!(n.trim(), n.as_str(), "normalize({s:?})");
        let (local, domain) = split(&n);
        let joined = if n.contains('@') {
            format!("{local}@{domain}")
        } else {
            local.to_owned()
        };
        ensure_eq!(joined, n, "split({n:?})");
    }

    let found = header_addresses(s);
    check_found(s, &found)?;
    // An encoded word may decode to anything, the decoy included (Mailman
    // then finds it too); without one the decoy can only come from the text.
    if !s.contains("=?") && !s.to_lowercase().contains(DECOY) {
        ensure!(!found.iter().any(|a| a == DECOY), "decoy from {s:?}");
    }

    // Words without an `@` as an item of their own (`alice`): Postfix
    // completes them before Mailman reads them, so nothing is found in the
    // value (whatever else it holds, the milter then refuses nothing).
    if !s.contains("=?") {
        let value = format!("{s}, alice");
        ensure!(
            header_addresses(&value).is_empty(),
            "an address from {value:?} beside a bare word"
        );
    }

    // The text inside a quoted display name and inside a comment, next to
    // the decoy: neither may leak out. Encoded words are broken up first
    // (Python decodes them inside quotes and comments too, so one could
    // close the quote for Mailman as well).
    let t = s.replace("=?", "= ?");
    let quoted = t.replace('\\', "\\\\").replace('"', "\\\"");
    let commented = t
        .replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)");
    for value in [
        format!("\"{quoted} <{DECOY}>, {DECOY}\" <a@example.org>"),
        format!("a@example.org ({commented} {DECOY})"),
        format!("\"{DECOY}\" ({commented}) <a@example.org> ({DECOY}, {quoted})"),
    ] {
        let found = header_addresses(&value);
        check_found(&value, &found)?;
        ensure!(!found.iter().any(|a| a == DECOY), "decoy from {value:?}");
    }
    Ok(())
}

/// What holds for every address found in `value`, whatever `value` is.
fn check_found(value: &str, found: &[String]) -> Outcome {
    // A decoded encoded word may hold commas of its own.
    if !value.contains("=?") {
        let items = value.matches(',').count() + 1;
        ensure!(found.len() <= items, "{found:?} from {value:?}");
    }
    let out: usize = found.iter().map(|a| a.chars().count()).sum();
    ensure!(
        out <= 3 * value.chars().count(),
        "{out} chars from {value:?}"
    );
    for a in found {
        let (local, domain) = split(a);
        ensure!(
            !local.is_empty() && !domain.is_empty(),
            "{a:?} from {value:?}"
        );
        ensure_eq!(&a.to_lowercase(), a, "from {value:?}");
        ensure!(
            !a.chars()
                .any(|c| c == ' ' || c == '\t' || c.is_ascii_control()),
            "{a:?} from {value:?}"
        );
    }
    Ok(())
}
