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

/// An address without a domain (`alice`) or with a one-label domain
/// (`alice@host`). Postfix completes these before Mailman reads them: the
/// envelope sender always, header addresses of local clients
/// (`local_header_rewrite_clients`): `@$myorigin` is appended
/// (`append_at_myorigin`), and `.$mydomain` to a one-label domain with
/// `append_dot_mydomain = yes` (the default before Postfix 3.0). Mailman
/// may see a member in the completed address, so a refusal cannot rest on
/// one of these.
pub fn incomplete(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        None => true,
        Some((_, domain)) => !domain.contains('.') && !domain.starts_with('['),
    }
}

/// Whether Mailman 3 keeps `addr` (lowercased) among a post's senders.
///
/// `Message.senders` drops every address its `IEmailValidator`
/// (`mailman/email/validate.py`) refuses, before any rule looks at it: an
/// address Mailman drops can be neither banned nor matched by a
/// `*_these_nonmembers` entry there, so the milter must not refuse a post
/// for it either (`root@localhost` in `Reply-To:` matching a ban `^root@`
/// while the envelope sender is a member). The validator splits at the
/// first `@`; the local part may hold only letters, digits and
/// ``-!#$%&'*+./=?@_`{}~``, the domain at least two dot-separated labels of
/// letters, digits and `-`, none empty or starting with `-`. Python matches
/// those classes ignoring case, which also lets `İ`, `ı`, `ſ` and the Kelvin
/// sign `K` through.
pub fn mailman_keeps(addr: &str) -> bool {
    fn letter_or_digit(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '\u{130}' | '\u{131}' | '\u{17f}' | '\u{212a}')
    }
    let (local, domain) = match addr.split_once('@') {
        Some(parts) => parts,
        None => return false,
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| letter_or_digit(c) || "-!#$%&'*+./=?@_`{}~".contains(c));
    let mut labels = domain.split('.');
    let domain_ok = domain.contains('.')
        && labels.all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.chars().all(|c| letter_or_digit(c) || c == '-')
        });
    local_ok && domain_ok
}

/// Every address in a sender header value (`From:`, `Reply-To:`,
/// `Sender:`), lowercased, in order, read the way Mailman 3 reads it or
/// more cautiously.
///
/// Mailman finds the poster in `Message.senders`: it decodes the RFC 2047
/// encoded words of the value (`email.header.decode_header`, `make_header`),
/// deletes CR and LF, reads the result with `email.utils.getaddresses`
/// (strict since CVE-2023-27043: a value whose shape it distrusts gives no
/// address at all), lowercases, and drops what its validator refuses. The
/// milter must never find an address Mailman would not (that could pass a
/// post of someone Mailman sees as a non-member), so it reads a strict
/// subset of that language and gives up on the whole value otherwise:
///
/// - encoded words are found where Python finds them (anywhere, even inside
///   an address or quotes) and decoded, so a `,` or `<` inside one splits or
///   opens as it does for Mailman; a charset outside a short list of
///   ASCII-compatible ones, broken base64, a control or `\` in the decoded
///   text, or raw non-ASCII next to encoded words gives no address;
/// - items are cut at every comma outside quoted strings (Python's strict
///   count), and each must be one mailbox (`addr@domain`, or a display name
///   then `<addr@domain>`, with comments around), optionally opening or
///   closing a group; an empty item, a second address in an item, white
///   space or a comment inside an address, a domain literal, a quoted local
///   part, a `\` outside quotes or an unbalanced quote or parenthesis gives
///   no address for the whole value;
/// - decoded text is surrounded by spaces where Python may join it to its
///   neighbours; since an address may hold no white space, that can only
///   make the milter find less.
///
/// A value given up on is `None` from [`read_header_addresses`]: Mailman may
/// still find a member there, so the milter then refuses nothing for the
/// post and leaves it to Mailman.
/// `crates/fuzz-checks/tests/mailman_reader.rs` checks this against
/// Python's reader.
pub fn header_addresses(value: &str) -> Vec<String> {
    read_header_addresses(value).unwrap_or_default()
}

/// [`header_addresses`], telling apart a value that holds no address
/// (`Some(vec![])`, e.g. an empty group) from one the milter cannot read the
/// way Mailman does (`None`): Mailman may find a member there, so a refusal
/// for want of one must not rest on such a value.
pub fn read_header_addresses(value: &str) -> Option<Vec<String>> {
    let text = as_mailman_reads(value)?;
    let chars: Vec<char> = text.chars().collect();
    let (found, _) = read_list(&chars)?;
    // Words without an `@` in the value as sent (`From: alice`): Postfix
    // completes them with `@$myorigin` for local clients before Mailman
    // reads them, and Mailman may then see a member. (Words that come from
    // an encoded word, `=?utf-8?q?Doe=2C_John?=`, are not completed.)
    // (Line breaks of a folded value go, as Mailman deletes them.)
    let raw: Vec<char> = value.chars().filter(|&c| c != '\r' && c != '\n').collect();
    if matches!(read_list(&raw), Some((_, true))) {
        return None;
    }
    // Text decoded from a charset the milter has no table for: Mailman
    // decodes it and may find an address there.
    if found
        .iter()
        .any(|a| a.contains(char::REPLACEMENT_CHARACTER))
    {
        return None;
    }
    // An address the MTA may complete before Mailman reads it, where
    // Mailman may then see a member.
    if found.iter().any(|a| !a.is_empty() && incomplete(a)) {
        return None;
    }
    Some(
        found
            .into_iter()
            .map(|a| a.to_lowercase())
            .filter(
                |a| matches!(split(a), (local, domain) if !local.is_empty() && !domain.is_empty()),
            )
            .collect(),
    )
}

/// What Python's `str.splitlines` breaks lines at; `decode_header` finds
/// encoded words line by line.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// An encoded word as Python's `email.header` regex finds it:
/// `=?charset?q|b?text?=`, charset up to the first `?`, text up to the
/// first `?=`, anywhere in the text.
struct EncodedWord {
    start: usize,
    end: usize,
    charset: String,
    base64: bool,
    text: String,
}

/// The encoded words of `chars`, left to right, not overlapping.
/// `breaks_charset`/`breaks_text` say which characters the charset and the
/// text may not hold. Linear: the next `?` and the next `?=` are looked up,
/// not searched for again from every `=?`.
fn encoded_words(
    chars: &[char],
    breaks_charset: impl Fn(char) -> bool,
    breaks_text: impl Fn(char) -> bool,
) -> Vec<EncodedWord> {
    let n = chars.len();
    // next_q[i]: the first `?` at or after i with no charset break before it;
    // next_end[i]: the first `?=` at or after i with no text break before it.
    let mut next_q = vec![None; n + 1];
    let mut next_end = vec![None; n + 1];
    for i in (0..n).rev() {
        next_q[i] = match chars[i] {
            '?' => Some(i),
            c if breaks_charset(c) => None,
            _ => next_q[i + 1],
        };
        next_end[i] = match chars[i] {
            '?' if chars.get(i + 1) == Some(&'=') => Some(i),
            c if breaks_text(c) => None,
            _ => next_end[i + 1],
        };
    }
    let mut words = Vec::new();
    let mut i = 0;
    while i + 1 < n {
        if chars[i] == '=' && chars[i + 1] == '?' {
            let k = next_q[i + 2];
            if let Some(k) = k
                && matches!(chars.get(k + 1), Some('q' | 'Q' | 'b' | 'B'))
                && chars.get(k + 2) == Some(&'?')
                && let Some(m) = next_end.get(k + 3).copied().flatten()
            {
                words.push(EncodedWord {
                    start: i,
                    end: m + 2,
                    charset: chars[i + 2..k].iter().collect(),
                    base64: matches!(chars[k + 1], 'b' | 'B'),
                    text: chars[k + 3..m].iter().collect(),
                });
                i = m + 2;
                continue;
            }
        }
        i += 1;
    }
    words
}

/// The value as Mailman hands it to `getaddresses` (encoded words decoded,
/// CR and LF deleted), with white space around decoded text; `None` where
/// the milter does not follow Mailman's decoding safely.
fn as_mailman_reads(value: &str) -> Option<String> {
    let chars: Vec<char> = value.chars().collect();
    let words = encoded_words(&chars, is_line_break, is_line_break);
    // `decode_header` takes the decoding path when its regex matches the
    // whole value ('.' stops only at LF there), even if no line holds a
    // whole encoded word.
    let decodes = !words.is_empty() || !encoded_words(&chars, |_| false, |c| c == '\n').is_empty();
    if !decodes {
        return Some(
            chars
                .into_iter()
                .filter(|&c| c != '\r' && c != '\n')
                .collect(),
        );
    }
    // On that path Python turns raw text into bytes and back through
    // us-ascii (non-ASCII raises or becomes `\uXXXX` text) and joins lines
    // with spaces.
    if chars
        .iter()
        .any(|&c| !c.is_ascii() || (c.is_ascii_control() && !matches!(c, '\t' | '\r' | '\n')))
    {
        return None;
    }
    let mut out = String::new();
    let mut at = 0;
    let raw = |s: &[char], out: &mut String| {
        out.extend(
            s.iter()
                .map(|&c| if c == '\r' || c == '\n' { ' ' } else { c }),
        );
    };
    for w in &words {
        raw(&chars[at..w.start], &mut out);
        out.push(' ');
        out.push_str(&decode(w)?);
        out.push(' ');
        at = w.end;
    }
    raw(&chars[at..], &mut out);
    Some(out)
}

/// How the milter turns a charset's bytes into text.
enum Charset {
    Ascii,
    Utf8,
    Latin1,
    /// ASCII-compatible single-byte charsets: bytes below 0x80 are ASCII,
    /// the others some non-ASCII letter (shown as U+FFFD: never part of an
    /// address the milter reports).
    EightBit,
}

fn charset(name: &str) -> Option<Charset> {
    let name = name.to_ascii_lowercase();
    Some(match name.as_str() {
        "us-ascii" | "ascii" => Charset::Ascii,
        "utf-8" | "utf8" => Charset::Utf8,
        "iso-8859-1" | "latin1" | "latin-1" | "latin_1" => Charset::Latin1,
        "koi8-r" | "koi8-u" => Charset::EightBit,
        _ => {
            let n = name
                .strip_prefix("iso-8859-")
                .or_else(|| name.strip_prefix("windows-"))
                .and_then(|n| n.parse::<u32>().ok())?;
            if (2..=16).contains(&n) && n != 12 || (1250..=1258).contains(&n) {
                Charset::EightBit
            } else {
                return None;
            }
        }
    })
}

/// The decoded text of an encoded word, `None` if the milter will not
/// read a value holding it.
fn decode(w: &EncodedWord) -> Option<String> {
    let cs = charset(&w.charset)?;
    let bytes = if w.base64 {
        decode_b(&w.text)?
    } else {
        decode_q(&w.text)
    };
    // A control (CR and LF are deleted after decoding, joining what is
    // around them) or a `\` (an escape whose next character depends on
    // Python's spacing) could change what follows.
    if bytes.iter().any(|&b| b.is_ascii_control() || b == b'\\') {
        return None;
    }
    match cs {
        Charset::Ascii => bytes
            .is_ascii()
            .then(|| bytes.iter().map(|&b| b as char).collect()),
        Charset::Utf8 => String::from_utf8(bytes).ok(),
        Charset::Latin1 => Some(bytes.iter().map(|&b| b as char).collect()),
        Charset::EightBit => Some(
            bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii() {
                        b as char
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect(),
        ),
    }
}

/// RFC 2047 Q as Python decodes it: `_` is a space, `=XX` a byte, anything
/// else itself.
fn decode_q(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push((hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap()) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// RFC 2047 B, only in its plain form (Python's decoder also skips stray
/// characters and mends some padding; the milter does not guess along).
fn decode_b(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const B: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let data = text.trim_end_matches('=');
    let pad = text.len() - data.len();
    if !data
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        || pad > 2
        || (pad > 0 && !text.len().is_multiple_of(4))
        || data.len() % 4 == 1
    {
        return None;
    }
    B.decode(data).ok()
}

/// The items of a decoded value: cut at every comma outside a quoted
/// string, with `\` escaping the next character anywhere (Python's strict
/// count of the addresses it expects).
fn items(chars: &[char]) -> Vec<&[char]> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&chars[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&chars[start..]);
    out
}

/// What one item of an address list holds.
enum Item {
    /// One mailbox.
    Address(String),
    /// An empty group.
    Empty,
    /// Words without an `@`: Python reads them as an address without a
    /// domain.
    Words,
}

/// The addresses of a decoded value, and whether an item was words
/// without an `@`; `None` if any item is not one plain mailbox (or group
/// start or end) or such words.
fn read_list(chars: &[char]) -> Option<(Vec<String>, bool)> {
    let mut found = Vec::new();
    let mut words = false;
    let mut in_group = false;
    for item in items(chars) {
        let mut r = ItemReader { s: item, i: 0 };
        match r.mailbox(&mut in_group)? {
            Item::Address(addr) => found.push(addr),
            Item::Empty => {}
            // Part of an encoded word cut at a comma in the raw value is
            // not an address there.
            Item::Words => words |= !item.windows(2).any(|w| w == ['=', '?']),
        }
    }
    Some((found, words))
}

/// A character of an atom (RFC 5322 atext, any non-ASCII, and `.`), as
/// Python's address parser ends atoms at specials, space and tab.
fn is_atom_char(c: char) -> bool {
    !(c == ' ' || c == '\t' || c.is_ascii_control() || "()<>[]:;@\\,\"".contains(c))
}

struct ItemReader<'a> {
    s: &'a [char],
    i: usize,
}

impl ItemReader<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    /// Skips white space and comments; `None` for a comment that is not
    /// closed or holds a quote.
    fn cfws(&mut self) -> Option<()> {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.i += 1,
                '(' => {
                    let mut depth = 0u32;
                    loop {
                        let c = self.peek()?;
                        self.i += 1;
                        match c {
                            '\\' => {
                                self.peek()?;
                                self.i += 1;
                            }
                            '"' => return None,
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => break,
            }
        }
        Some(())
    }

    fn atom(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_atom_char) {
            self.i += 1;
        }
        self.s[start..self.i].iter().collect()
    }

    /// A quoted string (the opening quote is next); `None` if not closed.
    fn quoted(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                '\\' => {
                    self.peek()?;
                    self.i += 1;
                }
                '"' => return Some(()),
                _ => {}
            }
        }
    }

    /// `local@domain` with no white space or comment inside, no quotes, no
    /// domain literal.
    fn addr_spec(&mut self) -> Option<String> {
        let local = self.atom();
        (!local.is_empty() && self.peek() == Some('@')).then_some(())?;
        self.i += 1;
        let domain = self.atom();
        (!domain.is_empty()).then(|| format!("{local}@{domain}"))
    }

    /// After the mailbox: comments, a group end, nothing else.
    fn end(&mut self, in_group: &mut bool) -> Option<()> {
        self.cfws()?;
        if self.peek() == Some(';') && *in_group {
            self.i += 1;
            *in_group = false;
            self.cfws()?;
        }
        (self.i == self.s.len()).then_some(())
    }

    /// One item, `None` if it is not one the milter reads.
    fn mailbox(&mut self, in_group: &mut bool) -> Option<Item> {
        let mut group_opened = false;
        loop {
            self.cfws()?;
            // Display-name words (or the local part of a bare address).
            let mut words = 0;
            let mut last_atom: Option<(usize, usize)> = None;
            loop {
                match self.peek() {
                    Some('"') => {
                        self.quoted()?;
                        last_atom = None;
                    }
                    Some(c) if is_atom_char(c) => {
                        let start = self.i;
                        self.atom();
                        last_atom = Some((start, self.i));
                    }
                    _ => break,
                }
                words += 1;
                let before = self.i;
                self.cfws()?;
                if self.i != before {
                    last_atom = None;
                }
            }
            match self.peek() {
                Some(':') if words > 0 && !*in_group && !group_opened => {
                    self.i += 1;
                    *in_group = true;
                    group_opened = true;
                    self.cfws()?;
                    if self.peek() == Some(';') {
                        self.i += 1;
                        *in_group = false;
                        self.cfws()?;
                        return (self.i == self.s.len()).then_some(Item::Empty);
                    }
                }
                Some('<') => {
                    self.i += 1;
                    // A source route (`<@relay:user@domain>`), one hop.
                    if self.peek() == Some('@') {
                        self.i += 1;
                        (!self.atom().is_empty() && self.peek() == Some(':')).then_some(())?;
                        self.i += 1;
                    }
                    let addr = self.addr_spec()?;
                    (self.peek() == Some('>')).then_some(())?;
                    self.i += 1;
                    self.end(in_group)?;
                    return Some(Item::Address(addr));
                }
                Some('@') => {
                    // A bare address: one atom right before the `@`.
                    let (start, _) = last_atom.filter(|_| words == 1)?;
                    self.i = start;
                    let addr = self.addr_spec()?;
                    self.end(in_group)?;
                    return Some(Item::Address(addr));
                }
                // Words and no `@` (`alice`, `John Smith`): Python reads
                // an address without a domain there.
                None | Some(';') if words > 0 => {
                    self.end(in_group)?;
                    return Some(Item::Words);
                }
                _ => return None,
            }
        }
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

    // The expectations below are what Mailman 3 finds in the same value
    // (Python's decode_header + getaddresses, legacy and strict), except
    // where a comment says the milter finds less on purpose.

    #[test]
    fn encoded_words_are_decoded_as_mailman_decodes_them() {
        assert_eq!(
            header_addresses("=?utf-8?q?Doe=2C_John?= <john@example.org>, d@e.example"),
            ["john@example.org", "d@e.example"]
        );
        // The decoded comma splits, the decoded address is one: as in Mailman.
        assert_eq!(
            header_addresses("=?utf-8?q?a, b@evil.example, ?= <real@example.org>"),
            ["b@evil.example", "real@example.org"]
        );
        assert_eq!(
            header_addresses("=?utf-8?q?x@evil.example?="),
            ["x@evil.example"]
        );
        // Inside quotes a decoded comma is display text.
        assert_eq!(
            header_addresses("\"=?utf-8?q?a,b?=\" <real@example.org>"),
            ["real@example.org"]
        );
        assert_eq!(
            header_addresses("=?utf-8?q?Doe=2C?=\r\n =?utf-8?q?_John?= <john@example.org>"),
            ["john@example.org"]
        );
        assert_eq!(
            header_addresses("=?ISO-8859-1?Q?M=FCller?= <m@example.org>"),
            ["m@example.org"]
        );
        assert_eq!(
            header_addresses("=?utf-8?B?TcO8bGxlcg==?= <m@example.org>"),
            ["m@example.org"]
        );
        // Not an encoded word (never closed): plain text, as for Mailman.
        assert_eq!(
            header_addresses("=?utf-8?q?Doe, John <john@example.org>"),
            ["john@example.org"]
        );
    }

    #[test]
    fn nothing_mailman_would_not_find() {
        // Found by comparing with Python's reader: each gave an address
        // Mailman does not find.
        for value in [
            // Decoded, a quote opens and swallows the rest.
            "=?utf-8?q?\"?= <real@example.org>, other@example.org",
            // Two addresses in one item: strict getaddresses gives none.
            "=?utf-8?q?<fake@evil.example>?= <real@example.org>",
            "=?utf-8?b?ZXZpbEBldmlsLmV4YW1wbGU=?= <real@example.org>, bob@example.org",
            "<a@b.example>, <c@d.example> <e@f.example>",
            // A comma inside a comment or a trailing one: strict gives none.
            "a@b.example (Smith, John)",
            "a@example.org,",
            // Python finds encoded words inside addresses too, and spaces
            // them apart (`a x b@example.org`).
            "a=?utf-8?q?x?=b@example.org",
            // Unknown charsets: Mailman's decoding raises.
            "bob@ex=?x?q?y?=ample.org",
            "=?@$?q?, =?@$?q?=@x.example",
            "=?x@?q??=",
            "=?y?q?@?=(g",
            // Odd forms the milter does not follow.
            "\"q\"@example.org",
            "a@[192.0.2.1]",
            "a @example.org",
            "a@b.example;",
            "John Smith john@example.org",
            "<a@b.example",
        ] {
            assert_eq!(header_addresses(value), Vec::<String>::new(), "{value:?}");
        }
    }

    #[test]
    fn decoding_that_could_change_the_structure_gives_nothing() {
        for value in [
            // A decoded backslash or control, broken base64, a charset
            // whose bytes may hide ASCII, raw non-ASCII next to an
            // encoded word.
            "=?utf-8?q?a=5C?= <a@example.org>",
            "=?utf-8?q?a=0D=0A?= <a@example.org>",
            "=?utf-8?b?QQ=?= <a@example.org>",
            "=?utf-8?b?Q?= <a@example.org>",
            "=?utf-7?q?+ACI-?= <a@example.org>",
            "=?shift_jis?b?gUA=?= <a@example.org>",
            "Müller =?utf-8?q?x?= <a@example.org>",
        ] {
            assert_eq!(header_addresses(value), Vec::<String>::new(), "{value:?}");
        }
        // Without an encoded word, Mailman reads non-ASCII display names.
        assert_eq!(
            header_addresses("Müller <a@example.org>"),
            ["a@example.org"]
        );
        // A letter from a charset without a table is never part of an address.
        assert_eq!(
            header_addresses("=?koi8-r?q?=C1?=x@example.org, =?koi8-r?q?=C1?= <a@example.org>"),
            Vec::<String>::new()
        );
        assert_eq!(
            header_addresses("=?koi8-r?q?=C1?= <a@example.org>"),
            ["a@example.org"]
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
    fn encoded_words_are_found_where_python_finds_them() {
        let find = |s: &str| {
            let chars: Vec<char> = s.chars().collect();
            encoded_words(&chars, is_line_break, is_line_break)
                .iter()
                .map(|w| (w.start, w.end, w.charset.clone(), w.base64, w.text.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            find("=?utf-8?q?Doe=2C_John?= <j@x>"),
            [(0, 23, "utf-8".into(), false, "Doe=2C_John".into())]
        );
        assert_eq!(
            find("=?UTF-8?B?QQ==?="),
            [(0, 16, "UTF-8".into(), true, "QQ==".into())]
        );
        assert_eq!(find("a=?x?q??=b"), [(1, 9, "x".into(), false, "".into())]);
        assert_eq!(find("=?utf-8?q?a, b@c <d>?= x")[0].1, 22);
        assert!(find("=?utf-8?x?a?=").is_empty());
        assert!(find("=?utf-8?q?never closed").is_empty());
        assert!(find("=?utf-8?q?a\r\n ?=").is_empty());
        assert!(find("=?").is_empty());
        assert!(find("=?x?q?=").is_empty());
        assert!(find("=?x?q?a?").is_empty());
    }

    #[test]
    fn long_values_are_read_in_linear_time() {
        // Quadratic scanning would take minutes on these (Postfix allows
        // 100 KB of header).
        for piece in ["=?a?q?", "=?", "a@b.example, ", "(", "\"", "=?a?q?b?=x"] {
            let value = piece.repeat(200_000 / piece.len());
            let _ = header_addresses(&value);
        }
    }
}
