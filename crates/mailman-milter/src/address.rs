//! Email addresses the way Mailman compares them: lowercased whole (local
//! part included), without angle brackets, and the addresses of a header
//! value as Python's `email.utils.getaddresses` finds them.

/// An address normalised for comparison: trimmed, angle brackets removed,
/// lowercased. The null sender gives `None`.
pub fn normalize(raw: &str) -> Option<String> {
    let mut t = raw.trim();
    // Brackets and source routes (`<@relay:user@domain>`, the mailbox is
    // after the colon) are peeled until none is left, so normalising is
    // idempotent even for nested forms SMTP itself would refuse.
    loop {
        let before = t;
        if let Some(inner) = t.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
            t = inner.trim();
        }
        if let Some(route) = t.strip_prefix('@') {
            t = route.split_once(':').map(|(_, a)| a).unwrap_or("").trim();
        }
        if t == before {
            break;
        }
    }
    if t.is_empty() {
        None
    } else {
        Some(t.to_lowercase())
    }
}

/// Splits a normalised address into local part and domain (at the last `@`).
/// An address without a domain has an empty one.
pub fn split(addr: &str) -> (&str, &str) {
    match addr.rsplit_once('@') {
        Some((local, domain)) => (local, domain),
        None => (addr, ""),
    }
}

/// Every address in a header value (`From:`, `Sender:`, `Reply-To:`),
/// normalised, in order. Display names, comments and groups are skipped;
/// folded lines are joined first. Entries without `@` are dropped, as
/// Mailman 3's validator drops unqualified addresses.
pub fn header_addresses(value: &str) -> Vec<String> {
    let unfolded: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    split_top_level(&unfolded)
        .into_iter()
        .filter_map(|item| mailbox_of(&item))
        .filter_map(|a| normalize(&a))
        .filter(|a| matches!(split(a), (local, domain) if !local.is_empty() && !domain.is_empty()))
        .collect()
}

/// Splits on commas (and group `;`) outside quotes, comments and angle brackets.
fn split_top_level(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut escaped) = (false, false);
    let (mut comment_depth, mut angle_depth) = (0u32, 0u32);
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote || comment_depth > 0 => escaped = true,
            '"' if comment_depth == 0 => in_quote = !in_quote,
            '(' if !in_quote => comment_depth += 1,
            ')' if !in_quote && comment_depth > 0 => comment_depth -= 1,
            '<' if !in_quote && comment_depth == 0 => angle_depth += 1,
            '>' if !in_quote && comment_depth == 0 && angle_depth > 0 => angle_depth -= 1,
            ',' | ';' if !in_quote && comment_depth == 0 && angle_depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
}

/// The mailbox of one list item: the `<...>` part if there is one, else the
/// item without comments, quotes-aware; a group name (`team: a@b`) is cut off.
fn mailbox_of(item: &str) -> Option<String> {
    let mut out = String::new();
    let mut angle: Option<String> = None;
    let (mut in_quote, mut escaped) = (false, false);
    let mut comment_depth = 0u32;
    let mut in_angle = false;
    for c in item.chars() {
        if escaped {
            if comment_depth == 0 {
                push(&mut out, &mut angle, in_angle, c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote || comment_depth > 0 => escaped = true,
            '"' if comment_depth == 0 => {
                in_quote = !in_quote;
                push(&mut out, &mut angle, in_angle, c);
            }
            '(' if !in_quote => comment_depth += 1,
            ')' if !in_quote && comment_depth > 0 => comment_depth -= 1,
            _ if comment_depth > 0 => {}
            '<' if !in_quote => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if !in_quote && in_angle => in_angle = false,
            ':' if !in_quote && !in_angle => out.clear(), // group display name
            _ => push(&mut out, &mut angle, in_angle, c),
        }
    }
    let addr = match angle {
        Some(a) => a,
        None => out.split_whitespace().collect::<Vec<_>>().join(""),
    };
    let addr = addr.trim().to_owned();
    (!addr.is_empty()).then_some(addr)
}

fn push(out: &mut String, angle: &mut Option<String>, in_angle: bool, c: char) {
    match (in_angle, angle.as_mut()) {
        (true, Some(a)) => a.push(c),
        _ => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_the_whole_address_and_strips_brackets() {
        assert_eq!(
            normalize(" <Alice.Smith@Example.ORG> ").as_deref(),
            Some("alice.smith@example.org")
        );
        assert_eq!(
            normalize("bob@example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(normalize("<>"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(
            normalize("<@relay.example:Carol@Example.org>").as_deref(),
            Some("carol@example.org")
        );
    }

    #[test]
    fn split_at_the_last_at_sign() {
        assert_eq!(split("\"a@b\"@example.org"), ("\"a@b\"", "example.org"));
        assert_eq!(split("postmaster"), ("postmaster", ""));
    }

    #[test]
    fn header_addresses_finds_every_mailbox() {
        assert_eq!(
            header_addresses("\"Smith, Alice\" <Alice@Example.org>, bob@example.org (Bob)"),
            ["alice@example.org", "bob@example.org"]
        );
        assert_eq!(
            header_addresses("Team: carol@example.org, <dave@example.org>;"),
            ["carol@example.org", "dave@example.org"]
        );
        assert_eq!(
            header_addresses("Eve\r\n <eve@example.org>"),
            ["eve@example.org"]
        );
        assert_eq!(
            header_addresses("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
        assert_eq!(
            header_addresses("\"x <fake@evil.example>\" <real@example.org>"),
            ["real@example.org"]
        );
    }
}
