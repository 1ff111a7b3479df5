//! Envelope addresses as the policy compares them.
//!
//! Every policy decision (enforced domains, exemptions, role addresses,
//! keyring lookup) compares this form, never the raw `MAIL FROM`/`RCPT TO`
//! argument: the MTA delivers `bob@example.org.` and `"bob"@example.org` to
//! `bob@example.org`, so a comparison of raw text is a bypass. The
//! canonicalisation itself is `minimilter::envelope_address` (the one in
//! the project); this file only adds the policy's choices on top:
//!
//! - the whole address is compared without case: mailbox local parts are
//!   case-insensitive in practice, and the keyring's User IDs are written
//!   in any case;
//! - an address extension (`bob+tag@example.org`, Postfix's
//!   `recipient_delimiter`) belongs to the mailbox without it.

use minimilter::EnvelopeAddress;
use minimilter::envelope_address;

/// A canonical, lower-cased envelope address that is not the null
/// address.
#[derive(Debug, Clone)]
pub struct Address {
    text: String,
    parts: Parts,
}

/// Where an address's local part and domain are.
#[derive(Debug, Clone)]
enum Parts {
    /// In `text`, around the `@` at this offset (the plain spelling, whose
    /// text is `local@domain`): no copies to make.
    Around(usize),
    /// Copies (any other spelling: the text may quote the local part).
    Own {
        local: String,
        domain: Option<String>,
    },
}

impl PartialEq for Address {
    /// The same text, local part and domain, however they are stored.
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
            && self.local_part() == other.local_part()
            && self.domain() == other.domain()
    }
}

impl Eq for Address {}

impl Address {
    /// Canonicalises a `MAIL FROM`/`RCPT TO` argument (with or without
    /// angle brackets), a configured address or a keyring address. `None`
    /// for the null address `<>`.
    pub fn parse(raw: &str) -> Option<Address> {
        Address::parse_plain(raw).or_else(|| Address::parse_any(raw))
    }

    /// The common spelling, read without the general canonicaliser:
    /// `local@domain`, with or without angle brackets, the local part a
    /// dot-string of `atext` (so it needs no quotes), the domain letters,
    /// digits, `-` and `.`. Nothing in such an address is syntax to the
    /// canonicaliser (no quote, backslash, comment, white space, route or
    /// literal), so its reading is the text itself: the domain loses one
    /// trailing dot (not after a dot), the whole is lowercased. `None`
    /// for anything else, which [`Address::parse_any`] reads; a test
    /// checks the two agree wherever this one answers.
    fn parse_plain(raw: &str) -> Option<Address> {
        let inner = match raw.strip_prefix('<') {
            Some(r) => r.strip_suffix('>')?,
            None => raw,
        };
        let (local, domain) = inner.split_once('@')?;
        let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
        if local.is_empty()
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.bytes().all(|b| b == b'.' || atext(b))
        {
            return None;
        }
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return None;
        }
        let domain = match domain.strip_suffix('.') {
            Some(d) if domain.len() > 1 && !d.ends_with('.') => d,
            _ => domain,
        };
        let mut text = String::with_capacity(local.len() + 1 + domain.len());
        text.push_str(local);
        text.push('@');
        text.push_str(domain);
        text.make_ascii_lowercase();
        Some(Address {
            text,
            parts: Parts::Around(local.len()),
        })
    }

    /// Any spelling, through the project's canonicaliser.
    fn parse_any(raw: &str) -> Option<Address> {
        let parsed = EnvelopeAddress::parse(raw);
        let mailbox = parsed.mailbox()?;
        Some(Address {
            text: parsed.to_string().to_lowercase(),
            parts: Parts::Own {
                local: mailbox.local_part().to_lowercase(),
                domain: mailbox.domain().map(|d| d.as_str().to_lowercase()),
            },
        })
    }

    /// The canonical text (`bob@example.org`, quoted only where needed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The local part, unquoted.
    pub fn local_part(&self) -> &str {
        match &self.parts {
            Parts::Around(at) => &self.text[..*at],
            Parts::Own { local, .. } => local,
        }
    }

    /// The domain, `None` for an unqualified address (`postmaster`).
    pub fn domain(&self) -> Option<&str> {
        match &self.parts {
            Parts::Around(at) => Some(&self.text[at + 1..]),
            Parts::Own { domain, .. } => domain.as_deref(),
        }
    }

    /// The address without its extension: the local part cut at the first
    /// of the `delimiters` characters, as Postfix's `recipient_delimiter`
    /// does (`bob+tag@x` is `bob@x`). `None` when there is no extension,
    /// no delimiter is configured, or the local part starts with a
    /// delimiter (nothing would be left of the mailbox).
    pub fn without_extension(&self, delimiters: &str) -> Option<Address> {
        let base = envelope_address::without_extension(self.local_part(), delimiters)?;
        // Rebuilt through the canonicaliser with both parts quoted, so any
        // character in them stays content.
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let raw = match self.domain() {
            Some(d) => format!("{}@{}", quote(base), quote(d)),
            None => quote(base),
        };
        Address::parse(&raw)
    }
}

/// A configured domain (`enforce_domains`, `@domain` exemptions) in the
/// form [`Address::domain`] gives, or `None` if it is not a domain.
pub fn canonical_domain(configured: &str) -> Option<String> {
    let d = configured.trim();
    let d = d.strip_prefix('@').unwrap_or(d);
    if d.is_empty()
        || d.contains(['@', '"', '\\', '(', ')', '<', '>'])
        || d.contains(char::is_whitespace)
    {
        return None;
    }
    Address::parse(&format!("x@{d}"))?
        .domain()
        .map(str::to_owned)
        .filter(|d| !d.is_empty() && !d.starts_with('.') && !d.contains(".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        Address::parse(raw).unwrap().as_str().to_owned()
    }

    #[test]
    fn spellings_of_one_mailbox_compare_equal() {
        for raw in [
            "bob@example.org",
            "<bob@example.org>",
            "bob@example.org.",
            "<\"bob\"@example.org>",
            "Bob@EXAMPLE.org.",
            "<@relay.example:bob@example.org>",
        ] {
            assert_eq!(canon(raw), "bob@example.org", "{raw}");
        }
        assert_eq!(Address::parse("<>"), None);
        let p = Address::parse("<Postmaster>").unwrap();
        assert_eq!((p.local_part(), p.domain()), ("postmaster", None));
    }

    #[test]
    fn extensions_are_cut_at_the_first_delimiter() {
        let a = Address::parse("<\"Bob+Tag\"@Example.org.>").unwrap();
        assert_eq!(
            a.without_extension("+").unwrap().as_str(),
            "bob@example.org"
        );
        let a = Address::parse("bob-x+y@example.org").unwrap();
        assert_eq!(
            a.without_extension("+-").unwrap().as_str(),
            "bob@example.org"
        );
        assert_eq!(
            a.without_extension("+").unwrap().as_str(),
            "bob-x@example.org"
        );
        assert_eq!(a.without_extension(""), None);
        assert_eq!(
            Address::parse("+x@example.org")
                .unwrap()
                .without_extension("+"),
            None
        );
        assert_eq!(
            Address::parse("bob@example.org")
                .unwrap()
                .without_extension("+"),
            None
        );
        let unqualified = Address::parse("postmaster+x").unwrap();
        assert_eq!(
            unqualified.without_extension("+").unwrap().as_str(),
            "postmaster"
        );
        // A base that needs quotes keeps them.
        let a = Address::parse("<\"b b+x\"@example.org>").unwrap();
        assert_eq!(
            a.without_extension("+").unwrap().as_str(),
            "\"b b\"@example.org"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Any input: no panic, the canonical text reads back as itself
        /// (so canonicalising at every layer changes nothing), and cutting
        /// an extension gives a shorter mailbox that is stable too.
        #[test]
        fn canonical_text_is_stable(raw in "\\PC{0,40}", delims in "[+\\-=]{0,2}") {
            if let Some(a) = Address::parse(&raw) {
                proptest::prop_assert_eq!(Address::parse(a.as_str()), Some(a.clone()));
                if let Some(base) = a.without_extension(&delims) {
                    proptest::prop_assert!(base.local_part().len() < a.local_part().len());
                    proptest::prop_assert_eq!(base.domain(), a.domain());
                    proptest::prop_assert_eq!(Address::parse(base.as_str()), Some(base.clone()));
                }
            }
        }

        /// Every spelling Postfix delivers to one mailbox gives the same
        /// address.
        #[test]
        fn spellings_agree(
            local in "[a-z0-9][a-z0-9.+_-]{0,12}[a-z0-9]",
            domain in "[a-z][a-z0-9-]{0,10}\\.[a-z]{2,6}",
        ) {
            let want = Address::parse(&format!("{local}@{domain}")).unwrap();
            proptest::prop_assume!(!local.contains(".."));
            for spelling in [
                format!("<{local}@{domain}.>"),
                format!("<\"{local}\"@{}>", domain.to_uppercase()),
                format!("<@relay.example:{local}@{domain}>"),
                format!("{} (comment) @{domain}.", local.to_uppercase()),
            ] {
                proptest::prop_assert_eq!(Address::parse(&spelling), Some(want.clone()), "{}", spelling);
            }
        }
    }

    #[test]
    fn configured_domains() {
        assert_eq!(
            canonical_domain("Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            canonical_domain("@example.com").as_deref(),
            Some("example.com")
        );
        for bad in ["", "@", "a b", "a@b", "\"x\"", "."] {
            assert_eq!(canonical_domain(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_plain_reading_agrees_with_the_canonicaliser() {
        // Every string of up to 4 characters over an alphabet of the
        // characters that matter (syntax, atext, case, dots), and longer
        // ones from a fixed-seed generator: wherever the plain reading
        // answers, it gives what the canonicaliser gives.
        const ALPHABET: &[u8] = b"aZ9.@<>\"\\( )+-_!:,[]";
        let check = |raw: &str| {
            if let Some(plain) = Address::parse_plain(raw) {
                assert_eq!(Some(plain), Address::parse_any(raw), "{raw:?}");
            }
        };
        let mut answered = 0;
        let mut s = Vec::new();
        fn all(s: &mut Vec<u8>, left: usize, f: &mut dyn FnMut(&str)) {
            f(std::str::from_utf8(s).unwrap());
            if left == 0 {
                return;
            }
            for &c in ALPHABET {
                s.push(c);
                all(s, left - 1, f);
                s.pop();
            }
        }
        all(&mut s, 4, &mut |raw| {
            answered += usize::from(Address::parse_plain(raw).is_some());
            check(raw);
        });
        assert!(answered > 400, "{answered}");
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            let len = (x % 24) as usize + 3;
            let raw: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize])
                })
                .collect();
            check(&raw);
        }
        for raw in [
            "<Bob.Smith+tag@Example.ORG.>",
            "bob@example.org..",
            "bob@.",
            "{x}|y~@a-b.c",
        ] {
            check(raw);
        }
        assert_eq!(
            Address::parse_plain("<Bob@Example.ORG.>").unwrap().as_str(),
            "bob@example.org"
        );
    }
}
