//! One canonical form of an SMTP envelope address (`MAIL FROM`/`RCPT TO`
//! argument), the form the MTA routes it by.
//!
//! A milter that compares the raw argument with a configured address is
//! bypassed by any spelling the MTA treats as the same mailbox: Postfix
//! delivers `RCPT TO:<team@example.org.>` and `RCPT TO:<"team"@example.org>`
//! to `team@example.org`, so a guard that only knows `team@example.org`
//! never sees its address. [`EnvelopeAddress::parse`] undoes what RFC 5321
//! §4.1.2 (`Path`, `Mailbox`) and the MTA's own canonicalisation make
//! equivalent, and nothing more:
//!
//! - the angle brackets and an obsolete source route (`<@a,@b:user@d>`):
//!   RFC 5321 §4.1.2 says the route must be accepted and ignored;
//! - quoting in the local part (`"team"@x`, `"te\am"@x`, `"te"am@x`): the
//!   quotes are syntax, not part of the mailbox (RFC 5321 §4.1.2 says a
//!   local part should not be quoted when it need not be). Postfix keeps
//!   addresses internally unquoted and quotes again only when a character
//!   needs it; so do we: `"team x"@x` keeps its quotes;
//! - RFC 822 comments and whitespace outside quotes (`team (x) @x`), which
//!   Postfix's address tokenizer drops;
//! - the case of the domain (DNS names are case-insensitive; the local part
//!   is left as written, RFC 5321 §2.4 — comparing it case-insensitively is
//!   the caller's policy);
//! - ONE trailing dot of the domain (`example.org.`), as Postfix does:
//!   "allow trailing dot at the end of user@domain. Address canonicalization
//!   now strips it off" (Postfix change log 19981125, trivial-rewrite
//!   `rewrite.c`), and only when the dot does not follow another dot or the
//!   `@` (`x@a..` and `x@.` are left alone, bogus as they are).
//!
//! Left as is: UTF-8 local parts and domains (RFC 6531; no IDNA mapping, so
//! only ASCII letters are lowercased), and address literals (`[1.2.3.4]`,
//! `[IPv6:...]`).
//!
//! Parsing is total: any input gives an address, never a panic, and the
//! canonical form parses to itself, so canonicalising twice changes nothing.
//!
//! Checked against a real Postfix 3.7 (testkit, `recipient_delimiter = +`,
//! a virtual mailbox domain; mailman-milter's `tests/postfix.rs`): it
//! accepts and delivers to `team@example.org` each of `team@example.org.`,
//! `"team"@example.org`, `"team"@Example.ORG.`, `"team+a b"@example.org`
//! (extension cut on the unquoted local part), `team(x)@example.org`,
//! `team @example.org` and `@a.example:team@example.org`; all of them
//! canonicalise here to the list's address (with its extension). It refuses
//! `"t"eam@example.org` (501 5.1.3) itself. Not undone here, because they
//! are routing rather than spelling and depend on the MTA's configuration:
//! Postfix's `allow_percent_hack` (`team%example.org@host`), `swap_bangpath`
//! (`example.org!team@host`) and, with `resolve_dequoted_address = yes`
//! (the default), an `@` inside quotes (`"team@example.org"@host`). Postfix
//! applies these only when the outer domain is its own (`mydestination`
//! and the like); to a virtual mailbox domain it answered 550 "User
//! unknown" for each of them.

use std::fmt;

/// A canonicalised envelope address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnvelopeAddress {
    /// The null reverse-path `<>` (bounces), or nothing at all.
    Null,
    /// A mailbox.
    Mailbox(Mailbox),
}

/// A mailbox: local part (unquoted) and, unless the address is unqualified
/// (`postmaster`), a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local: String,
    domain: Option<Domain>,
}

/// The part after the `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A domain name: ASCII-lowercased, one trailing dot removed.
    Name(String),
    /// An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), verbatim.
    Literal(String),
}

impl Domain {
    /// The domain as text.
    pub fn as_str(&self) -> &str {
        match self {
            Domain::Name(s) | Domain::Literal(s) => s,
        }
    }
}

impl Mailbox {
    /// The local part with quoting undone (`"te\"am"` gives `te"am`).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, `None` for an unqualified address.
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }
}

impl EnvelopeAddress {
    /// Canonicalises a `MAIL FROM`/`RCPT TO` argument, with or without its
    /// angle brackets. Never fails: malformed input gives its best reading
    /// (an unterminated quote ends at the end of input).
    pub fn parse(raw: &str) -> EnvelopeAddress {
        let lexed = lex(raw);
        let toks = peel(&lexed);
        if toks.iter().all(|t| *t == Tok::Mark) {
            return EnvelopeAddress::Null;
        }
        let at = toks.iter().rposition(|t| *t == Tok::Plain('@'));
        let (local, domain) = match at {
            Some(i) => (&toks[..i], Some(&toks[i + 1..])),
            None => (toks, None),
        };
        EnvelopeAddress::Mailbox(Mailbox {
            local: local.iter().filter_map(Tok::content).collect(),
            domain: domain.map(|d| canonical_domain(d.iter().filter_map(Tok::content).collect())),
        })
    }

    /// The mailbox, `None` for the null address.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            EnvelopeAddress::Null => None,
            EnvelopeAddress::Mailbox(m) => Some(m),
        }
    }
}

/// The canonical text: `local@domain` without brackets, the local part
/// quoted only if it must be; `<>` for the null address.
impl fmt::Display for EnvelopeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeAddress::Null => f.write_str("<>"),
            EnvelopeAddress::Mailbox(m) => m.fmt(f),
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quoting(&self.local) {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        } else {
            f.write_str(&self.local)?;
        }
        if let Some(d) = &self.domain {
            f.write_str("@")?;
            // Characters the lexer would read as syntax are escaped so the
            // text parses back to the same domain. Real domains have none.
            for c in d.as_str().chars() {
                if matches!(c, '"' | '\\' | '(' | ')' | '@') || is_space(c) {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One lexed character: syntax (`Plain`) or quoted content (`Quoted`, from
/// a quoted string or a backslash pair), which is never syntax; `Mark` is
/// where a `"` was, so `""@a:b` does not start with a bare `@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Plain(char),
    Quoted(char),
    Mark,
}

impl Tok {
    fn content(&self) -> Option<char> {
        match *self {
            Tok::Plain(c) | Tok::Quoted(c) => Some(c),
            Tok::Mark => None,
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// RFC 822 lexing: quoted strings and quoted pairs become `Quoted`,
/// whitespace and (nested) comments outside quotes are dropped.
fn lex(raw: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(raw.len());
    let mut chars = raw.chars();
    let (mut in_quote, mut comment) = (false, 0usize);
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next()
                    && comment == 0
                {
                    out.push(Tok::Quoted(n));
                }
            }
            '"' if comment == 0 => {
                in_quote = !in_quote;
                out.push(Tok::Mark);
            }
            _ if in_quote => out.push(Tok::Quoted(c)),
            '(' => comment += 1,
            ')' if comment > 0 => comment -= 1,
            _ if comment > 0 || is_space(c) => {}
            _ => out.push(Tok::Plain(c)),
        }
    }
    out
}

/// Removes angle brackets and source routes (`@a,@b:`) until none is
/// left, so nested forms SMTP itself would refuse cannot hide an address.
/// Works on indices, so deep nesting costs linear time, not quadratic.
fn peel(toks: &[Tok]) -> &[Tok] {
    let mut t = toks;
    loop {
        let before = t.len();
        if let [Tok::Plain('<'), inner @ .., Tok::Plain('>')] = t {
            t = inner;
        }
        if t.first() == Some(&Tok::Plain('@')) {
            match t.iter().position(|x| *x == Tok::Plain(':')) {
                Some(colon) => t = &t[colon + 1..],
                // No colon now, none later (`t` only shrinks): a bare
                // `@domain`, read as an empty local part.
                None => return t,
            }
        }
        if t.len() == before {
            return t;
        }
    }
}

/// The local part without its address extension: `local` cut at the first
/// of the `delimiters` characters, as Postfix's `recipient_delimiter` cuts
/// it (`bob+tag` is `bob`). `None` when there is no delimiter in it, none is
/// configured, or it starts with one (nothing would be left of the mailbox).
pub fn without_extension<'a>(local: &'a str, delimiters: &str) -> Option<&'a str> {
    match local.find(|c| delimiters.contains(c))? {
        0 => None,
        cut => Some(&local[..cut]),
    }
}

fn canonical_domain(mut d: String) -> Domain {
    // One trailing dot, but not after a dot or the `@` (as Postfix).
    if d.len() > 1 && d.ends_with('.') && !d.ends_with("..") {
        d.pop();
    }
    if d.starts_with('[') && d.ends_with(']') {
        Domain::Literal(d)
    } else {
        d.make_ascii_lowercase();
        Domain::Name(d)
    }
}

/// RFC 5321 `Dot-string` of `atext` (RFC 6531 adds any non-ASCII): what
/// may stand unquoted.
fn needs_quoting(local: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c == '.' || atext(c) || (!c.is_ascii() && !c.is_control() && !is_space(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        EnvelopeAddress::parse(raw).to_string()
    }

    #[test]
    fn extensions_are_cut_at_the_first_delimiter() {
        assert_eq!(without_extension("bob+tag", "+"), Some("bob"));
        assert_eq!(without_extension("bob-x+y", "+-"), Some("bob"));
        assert_eq!(without_extension("bob", "+"), None);
        assert_eq!(without_extension("+tag", "+"), None);
        assert_eq!(without_extension("bob+tag", ""), None);
    }

    #[test]
    fn the_reviewers_bypasses_canonicalise_to_the_list_address() {
        assert_eq!(canon("<team@example.org>"), "team@example.org");
        assert_eq!(canon("<team@example.org.>"), "team@example.org");
        assert_eq!(canon("<\"team\"@example.org>"), "team@example.org");
        assert_eq!(canon("<\"te\\am\"@Example.ORG.>"), "team@example.org");
        assert_eq!(canon("<\"te\"am@example.org>"), "team@example.org");
        assert_eq!(canon("team (the list) @ example.org"), "team@example.org");
    }

    #[test]
    fn only_one_trailing_dot_and_never_after_a_dot_or_the_at() {
        assert_eq!(canon("a@example.org.."), "a@example.org..");
        assert_eq!(canon("a@."), "a@.");
        assert_eq!(canon("a@"), "a@");
    }

    #[test]
    fn source_routes_and_nested_brackets_are_dropped() {
        assert_eq!(
            canon("<@relay.example,@b.example:Carol@x.example>"),
            "Carol@x.example"
        );
        assert_eq!(canon("<<@r:team@example.org>>"), "team@example.org");
    }

    #[test]
    fn local_parts_that_need_quotes_keep_them() {
        assert_eq!(canon("<\"team x\"@example.org>"), "\"team x\"@example.org");
        assert_eq!(canon("<\"a@b\"@example.org>"), "\"a@b\"@example.org");
        assert_eq!(canon("<\"a\\\"b\"@example.org>"), "\"a\\\"b\"@example.org");
        assert_eq!(canon("<\".team\"@example.org>"), "\".team\"@example.org");
        assert_eq!(canon("<\"\"@example.org>"), "\"\"@example.org");
        let m = EnvelopeAddress::parse("<\"a\\\"b\"@x>");
        assert_eq!(m.mailbox().unwrap().local_part(), "a\"b");
    }

    #[test]
    fn local_part_case_utf8_and_literals_are_kept() {
        assert_eq!(canon("<Alice@EXAMPLE.org>"), "Alice@example.org");
        assert_eq!(canon("<jörg@BÜCHER.example>"), "jörg@bÜcher.example");
        let lit = EnvelopeAddress::parse("<root@[IPv6:2001:DB8::1]>");
        assert_eq!(lit.to_string(), "root@[IPv6:2001:DB8::1]");
        assert!(matches!(
            lit.mailbox().unwrap().domain(),
            Some(Domain::Literal(_))
        ));
        assert_eq!(canon("<root@[192.0.2.1]>"), "root@[192.0.2.1]");
    }

    #[test]
    fn null_and_unqualified_addresses() {
        assert_eq!(EnvelopeAddress::parse("<>"), EnvelopeAddress::Null);
        assert_eq!(EnvelopeAddress::parse("  "), EnvelopeAddress::Null);
        let p = EnvelopeAddress::parse("<postmaster>");
        assert_eq!(p.mailbox().unwrap().domain(), None);
        assert_eq!(p.to_string(), "postmaster");
    }

    #[test]
    fn deep_nesting_is_peeled_whole() {
        let n = 100_000;
        let raw = format!("{}team@example.org{}", "<@r:".repeat(n), ">".repeat(n));
        assert_eq!(canon(&raw), "team@example.org");
        let raw = format!("{}@x{}", "<".repeat(n), ">".repeat(n));
        assert_eq!(canon(&raw), "\"\"@x");
    }

    #[test]
    fn malformed_input_gets_a_reading_that_is_stable() {
        for raw in [
            "<\"team@example.org",
            "a@b\"c@d",
            "a@(b",
            "\\",
            "@x",
            "a@b\\ c",
        ] {
            let once = canon(raw);
            assert_eq!(canon(&once), once, "{raw:?}");
        }
        // The `>` is inside the unterminated quote: nothing is peeled.
        assert_eq!(canon("<\"team@example.org>"), "\"<team@example.org>\"");
    }
}
