//! `mailman_address`: arbitrary text through mailman-milter's address
//! handling (`normalize`, `split`, `header_addresses`).
//!
//! Invariants:
//! - no panic;
//! - normalisation is idempotent and yields lowercase, trimmed text, the
//!   same with or without one more pair of angle brackets around it;
//!   `split` cuts it into parts that join back to it;
//! - a bare address of atext is found as itself, nothing of it dropped
//!   (unless the whole of it is shaped like an RFC 2047 encoded word);
//! - every address found in a header value contains `@`, is already
//!   normalised, and is found again when the value is parsed a second time
//!   from its own output (`a, b, c` gives `a, b, c`);
//! - never an address taken from inside a comment or a quoted display name:
//!   wrapping the value's addresses in a display name and comment that hold
//!   another address (`"x@evil" (y@evil) <addr>`) finds exactly the same
//!   addresses, never the decoys;
//! - folding (CRLF + space) between list items changes nothing.

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
    // The MTA hands the envelope over in brackets; they change nothing.
    ensure_eq!(
        normalize(&format!("<{s}>")),
        normalize(s),
        "brackets around {s:?}"
    );
    if let Some(once) = normalize(s) {
        ensure_eq!(
            normalize(&once),
            Some(once.clone()),
            "not idempotent on {s:?}"
        );
        ensure_eq!(once.to_lowercase(), once);
        ensure_eq!(once.trim(), once.as_str());
        let (local, domain) = split(&once);
        let joined = if once.contains('@') {
            format!("{local}@{domain}")
        } else {
            local.to_owned()
        };
        ensure_eq!(joined, once);
    }

    let found = header_addresses(s);
    // A bare addr-spec of atext (no specials, quotes, comments or white
    // space) is found as itself, as Python's `getaddresses` (Mailman) finds
    // it: nothing in it may be taken for structure and dropped.
    // Exception, by design (mailman-milter README, "How addresses are
    // compared"): an item that as a whole has the shape of an RFC 2047
    // encoded word (`=?charset?q?text?=`) is display text, never a source
    // of addresses; Mailman then sees one odd non-member address more, which
    // never makes a non-member post pass.
    let t = s.trim();
    let encoded_word_shape = t.starts_with("=?") && t.ends_with("?=");
    if !encoded_word_shape
        && t.chars()
            .all(|c| c.is_ascii_graphic() && !"()<>[]:;,\"\\".contains(c))
        && t.matches('@').count() == 1
        && !t.starts_with('@')
        && !t.ends_with('@')
    {
        ensure_eq!(found, vec![t.to_lowercase()], "bare address {t:?}");
    }
    for a in &found {
        ensure!(a.contains('@'), "{a:?} from {s:?}");
        ensure_eq!(normalize(a).as_deref(), Some(a.as_str()), "from {s:?}");
    }
    // The decoy never appears in the input, so it must not be found.
    if !s.to_lowercase().contains(DECOY) {
        ensure!(!found.iter().any(|a| a == DECOY), "decoy from {s:?}");
    }

    // Only for addresses whose text cannot end or open a quote, comment or
    // bracket; those are what an MTA or a mail client puts there.
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_graphic() && !"\"()<>,;:\\[]".contains(c))
    };
    if found.iter().all(|a| plain(a)) {
        // Parsing our own output again gives the same list.
        let listed = found.join(", ");
        ensure_eq!(
            header_addresses(&listed),
            found,
            "list {listed:?} from {s:?}"
        );
        // Folded between the items.
        let folded = found.join(",\r\n\t");
        ensure_eq!(header_addresses(&folded), found, "folded {folded:?}");
        // Each behind a display name and a comment holding the decoy.
        let wrapped: Vec<String> = found
            .iter()
            .map(|a| format!("\"Someone <{DECOY}>, {DECOY}\" ({DECOY}, \"x\") <{a}> ({DECOY})"))
            .collect();
        let wrapped = wrapped.join(", ");
        ensure_eq!(header_addresses(&wrapped), found, "decoys in {wrapped:?}");
        // In a group.
        if !found.is_empty() {
            let group = format!("Team ({DECOY}): {};", found.join(", "));
            ensure_eq!(header_addresses(&group), found, "group {group:?}");
        }
    }
    Ok(())
}
