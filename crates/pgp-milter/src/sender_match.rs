//! The `From:` check for authenticated submissions (`from_must_match_sender`).
//!
//! A relay knows who its own users are (SASL login, macro `{auth_authen}`),
//! and Postfix can tie the envelope sender to the login
//! (`smtpd_sender_login_maps`, `reject_sender_login_mismatch`). What the
//! recipient's client shows is the `From:` header field, which Postfix does
//! not check. So a user could send in another user's name. For an
//! authenticated submission this check asks that the message have exactly
//! one `From:` field holding exactly one mailbox, the envelope sender
//! (compared canonically, as every address here: case, quoting and a
//! trailing dot in the domain do not matter; an address extension does).
//!
//! Mail that is not authenticated is not checked here: its `From:` is the
//! business of DKIM/DMARC, not of an encryption filter.
//!
//! The reading of the field is deliberately narrow: `Name <addr>`,
//! `<addr>` or a bare `addr`, with a quoted or encoded-word display name.
//! A group, a list, a comment inside the address or anything else a
//! reader could show differently is a mismatch: users' own clients write
//! the plain forms.

use thiserror::Error;

use crate::address::Address;

/// Why the `From:` field does not match the envelope sender.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    /// No `From:` field.
    #[error("no From header field")]
    Missing,
    /// More than one `From:` field.
    #[error("more than one From header field")]
    Several,
    /// Not one plain mailbox.
    #[error("From header field is not one plain mailbox")]
    Unreadable,
    /// A mailbox other than the sender.
    #[error("From <{from}> does not match envelope sender <{sender}>")]
    Other {
        /// The `From:` mailbox, canonical.
        from: String,
        /// The envelope sender, canonical.
        sender: String,
    },
}

/// The one mailbox of a `From:` field's value (unfolded), canonical, or
/// `None` if it is not one plain mailbox.
pub fn from_mailbox(value: &str) -> Option<Address> {
    let value = value.replace(['\r', '\n'], "");
    let mut quoted = false;
    let mut escaped = false;
    let mut angle: Option<usize> = None;
    let mut end: Option<usize> = None;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if angle.is_none() => quoted = !quoted,
            _ if quoted => {}
            '<' if angle.is_none() => angle = Some(i),
            '>' if angle.is_some() && end.is_none() => end = Some(i),
            // A second address, a group, a comment, or text after the
            // address: not one plain mailbox.
            ',' | ';' | '(' | ')' | '<' | '>' => return None,
            ':' if angle.is_none() => return None,
            _ if end.is_some() && !c.is_ascii_whitespace() => return None,
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    let spec = match (angle, end) {
        (Some(a), Some(e)) => &value[a + 1..e],
        (None, None) => value.trim(),
        _ => return None,
    };
    let spec = spec.trim();
    if spec.is_empty() || spec.contains(|c: char| c.is_whitespace() || c == ':') {
        return None;
    }
    let address = Address::parse(&format!("<{spec}>"))?;
    address.domain()?;
    Some(address)
}

/// The `From:` fields of a message as the milter sees them: the first
/// two values (two mean "more than one"), so its memory is bounded.
#[derive(Debug, Default)]
pub struct FromFields(Vec<String>);

impl FromFields {
    /// One header field, name and value as the MTA gives them.
    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"from") && self.0.len() < 2 {
            self.0.push(String::from_utf8_lossy(value).into_owned());
        }
    }

    /// [`check`] on these fields.
    pub fn check(&self, sender: &str) -> Result<(), Mismatch> {
        check(&self.0, sender)
    }
}

/// Checks the `From:` field values of a message (all of them, in order)
/// against the envelope `sender` (canonical, as the milter keeps it).
pub fn check(from_fields: &[String], sender: &str) -> Result<(), Mismatch> {
    let value = match from_fields {
        [] => return Err(Mismatch::Missing),
        [one] => one,
        _ => return Err(Mismatch::Several),
    };
    let from = from_mailbox(value).ok_or(Mismatch::Unreadable)?;
    let sender = Address::parse(sender).map_or_else(String::new, |a| a.as_str().to_owned());
    if from.as_str() == sender {
        Ok(())
    } else {
        Err(Mismatch::Other {
            from: from.as_str().to_owned(),
            sender,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Vec<String> {
        vec![v.to_owned()]
    }

    #[test]
    fn from_fields_keep_two_at_most() {
        let mut f = FromFields::default();
        f.header(b"Subject", b"alice@relay.example");
        assert_eq!(f.check("alice@relay.example"), Err(Mismatch::Missing));
        f.header(b"FROM", b" Alice <alice@relay.example>");
        assert_eq!(f.check("alice@relay.example"), Ok(()));
        for _ in 0..1000 {
            f.header(b"from", b"alice@relay.example");
        }
        assert_eq!(f.0.len(), 2);
        assert_eq!(f.check("alice@relay.example"), Err(Mismatch::Several));
    }

    #[test]
    fn the_forms_clients_write_match() {
        for v in [
            "alice@relay.example",
            " <alice@relay.example> ",
            "Alice <alice@relay.example>",
            "\"Alice, the <real> one\" <Alice@Relay.Example.>",
            "=?utf-8?q?Al=C3=AFce?= <alice@relay.example>",
            "\"a \\\" b\" <alice@relay.example>",
            "Alice\r\n <alice@relay.example>",
        ] {
            assert_eq!(check(&one(v), "alice@relay.example"), Ok(()), "{v}");
        }
    }

    #[test]
    fn another_mailbox_or_an_unclear_field_does_not() {
        assert_eq!(check(&[], "alice@relay.example"), Err(Mismatch::Missing));
        assert_eq!(
            check(
                &[
                    "alice@relay.example".to_owned(),
                    "bob@relay.example".to_owned()
                ],
                "alice@relay.example"
            ),
            Err(Mismatch::Several)
        );
        assert_eq!(
            check(&one("Bob <bob@relay.example>"), "alice@relay.example"),
            Err(Mismatch::Other {
                from: "bob@relay.example".into(),
                sender: "alice@relay.example".into()
            })
        );
        // An extension is another address; the null sender matches nothing.
        assert!(matches!(
            check(&one("alice+x@relay.example"), "alice@relay.example"),
            Err(Mismatch::Other { .. })
        ));
        assert!(matches!(
            check(&one("alice@relay.example"), ""),
            Err(Mismatch::Other { .. })
        ));
        for v in [
            "",
            "Alice",
            "alice@relay.example, bob@relay.example",
            "<alice@relay.example>, <bob@relay.example>",
            "friends: alice@relay.example;",
            "alice@relay.example (Alice)",
            "<alice@relay.example> bob@relay.example",
            "<alice@relay.example",
            "\"Alice <alice@relay.example>",
            "<@route:alice@relay.example>",
            "<alice>",
            "<>",
        ] {
            assert_eq!(
                check(&one(v), "alice@relay.example"),
                Err(Mismatch::Unreadable),
                "{v:?}"
            );
        }
    }
}
