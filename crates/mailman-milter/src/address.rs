//! Email addresses the way Mailman compares them: lowercased whole (local
//! part included), without angle brackets, and the addresses of a header
//! value as Python's `email.utils.getaddresses` finds them.
//!
//! Envelope addresses (MAIL FROM, RCPT TO) go through
//! [`minimilter::envelope_address`] first: the MTA routes
//! `"team"@example.org` and `team@example.org.` to `team@example.org`, and
//! Mailman receives them so; comparing the raw text would let them past the
//! guard.

use minimilter::envelope_address::{EnvelopeAddress, Mailbox};

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

/// An envelope address as the MTA will route it and Mailman will see it:
/// canonicalised ([`EnvelopeAddress`]), then lowercased whole. The null
/// sender gives `None`.
pub fn envelope(raw: &str) -> Option<String> {
    envelope_mailbox(raw).map(|m| m.to_string().to_lowercase())
}

/// The canonical mailbox of an envelope address, `None` for `<>`.
pub fn envelope_mailbox(raw: &str) -> Option<Mailbox> {
    match EnvelopeAddress::parse(raw) {
        EnvelopeAddress::Null => None,
        EnvelopeAddress::Mailbox(m) => Some(m),
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
///
/// RFC 2047 encoded words (`=?charset?q?...?=`) are opaque: the structure
/// is parsed first and encoded words are never decoded, so a `,`, `<`, `@`
/// or `"` inside one cannot split an item, open an address or close a
/// quote, and no address is ever taken out of one. Mailman 3 decodes
/// before parsing, so `=?utf-8?q?Doe=2C_John?= <john@example.org>` yields
/// john@example.org for both; a display name that decodes to an address is
/// a sender for Mailman but not here (the milter then sees fewer senders,
/// which can only make it refuse where Mailman would decide otherwise if
/// that hidden address were a member: a forged-looking case, left so).
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

/// The length in chars of the encoded word starting at `chars[start]`, if
/// one starts there *as a word*: RFC 2047 §5 only allows an encoded word
/// separated from its neighbours (white space, a comment's parenthesis, a
/// list or group separator, or the `<` of the address that follows). Inside
/// a bare address (`bob@ex=?x?q?y?=ample.org`) `=` and `?` are ordinary
/// address characters, as Python's `getaddresses` (Mailman) reads them.
fn encoded_word_at(chars: &[char], start: usize) -> Option<usize> {
    let before_ok = start == 0 || {
        let p = chars[start - 1];
        p.is_whitespace() || matches!(p, '(' | ',' | ';' | ':')
    };
    if !before_ok {
        return None;
    }
    let n = encoded_word_len(&chars[start..])?;
    let after_ok = chars
        .get(start + n)
        .is_none_or(|&c| c.is_whitespace() || matches!(c, ')' | ',' | ';' | '<'));
    after_ok.then_some(n)
}

/// The length in chars of the encoded word starting at `s[0]`, if one
/// does: `=?charset?q|b?text?=` with Python's `email.header` syntax (what
/// Mailman decodes): any charset without `?`, text up to the first `?=`.
fn encoded_word_len(s: &[char]) -> Option<usize> {
    if s.len() < 2 || s[0] != '=' || s[1] != '?' {
        return None;
    }
    let charset_end = 2 + s[2..].iter().position(|&c| c == '?')?;
    // RFC 2047 §2: the charset is a token, no white space, controls or
    // especials; `=?@$?q?…` is not an encoded word.
    if charset_end == 2
        || !s[2..charset_end]
            .iter()
            .all(|&c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?.=".contains(c))
    {
        return None;
    }
    let enc = *s.get(charset_end + 1)?;
    if !matches!(enc, 'q' | 'Q' | 'b' | 'B') || s.get(charset_end + 2) != Some(&'?') {
        return None;
    }
    let text = charset_end + 3;
    (text..s.len().saturating_sub(1))
        .find(|&i| s[i] == '?' && s[i + 1] == '=')
        .map(|end| end + 2)
}

/// Splits on commas (and group `;`) outside quotes, comments, angle
/// brackets and encoded words.
fn split_top_level(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut items = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut escaped) = (false, false);
    let (mut comment_depth, mut angle_depth) = (0u32, 0u32);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if !escaped
            && !in_quote
            && comment_depth == 0
            && let Some(n) = encoded_word_at(&chars, i - 1)
        {
            cur.extend(&chars[i - 1..i - 1 + n]);
            i += n - 1;
            continue;
        }
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
/// Encoded words outside `<...>` are display text: skipped whole.
fn mailbox_of(item: &str) -> Option<String> {
    let chars: Vec<char> = item.chars().collect();
    let mut out = String::new();
    let mut angle: Option<String> = None;
    let (mut in_quote, mut escaped) = (false, false);
    let mut comment_depth = 0u32;
    let mut in_angle = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if !escaped
            && !in_quote
            && !in_angle
            && comment_depth == 0
            && let Some(n) = encoded_word_at(&chars, i - 1)
        {
            // A space keeps the words around it apart.
            out.push(' ');
            i += n - 1;
            continue;
        }
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
    fn encoded_word_look_alikes_inside_an_address_are_address_text() {
        // Found by fuzzing: these are bare addresses to Python's
        // getaddresses (and so to Mailman), not encoded words.
        assert_eq!(
            header_addresses("bob@ex=?x?q?y?=ample.org"),
            ["bob@ex=?x?q?y?=ample.org"]
        );
        // A charset must be a token (found by fuzzing: `=?@$?q?` pieces
        // re-joined into one "encoded word" across a comma).
        assert_eq!(
            header_addresses("=?@$?q?, =?@$?q?=@x.example"),
            ["=?@$?q?", "=?@$?q?=@x.example"]
        );
        assert_eq!(header_addresses("=?x@?q??="), ["=?x@?q??="]);
        assert_eq!(
            header_addresses("a=?x?q?y?=b@example.org"),
            ["a=?x?q?y?=b@example.org"]
        );
        assert_eq!(
            header_addresses("=?utf-8?q?Doe=2C_John?= <john@example.org>, d@e.example"),
            ["john@example.org", "d@e.example"]
        );
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

    #[test]
    fn encoded_words_are_recognised_as_python_does() {
        let len = |s: &str| encoded_word_len(&s.chars().collect::<Vec<_>>());
        assert_eq!(len("=?utf-8?q?Doe=2C_John?= <j@x>"), Some(23));
        assert_eq!(len("=?UTF-8?B?QQ==?="), Some(16));
        assert_eq!(len("=?utf-8?q?a, b@c <d>?= x"), Some(22));
        assert_eq!(len("=?utf-8?x?a?="), None);
        assert_eq!(len("=?utf-8?q?never closed"), None);
        assert_eq!(len("=?"), None);
        assert_eq!(len("a=?utf-8?q?x?="), None);
    }
}
