//! Which recipients are a list's posting address, the way Mailman's LMTP
//! runner and Postfix's lookups resolve them: the full address first, then a
//! Mailman sub-address (`-request`, `-bounces`, ...), then the same after
//! cutting the address extension (`list+anything@`).
//!
//! All of it on the canonical envelope address
//! ([`crate::address::envelope_mailbox`]) with quoting undone: Postfix cuts
//! the extension of `"team+a b"@example.org` and delivers to `team`, so the
//! unquoted local part is what is compared, never the quoted text.

use std::collections::HashMap;

use crate::address::envelope_mailbox;
use minimilter::envelope_address;

/// Suffixes Mailman 3 (and Mailman 2's `-admin`) serves besides the posting
/// address. Mail to them always passes: non-members use them legitimately.
pub const SERVICE_SUFFIXES: [&str; 9] = [
    "bounces",
    "confirm",
    "join",
    "leave",
    "owner",
    "request",
    "subscribe",
    "unsubscribe",
    "admin",
];

/// How to read recipient addresses.
#[derive(Debug, Clone)]
pub struct AddressRules {
    /// Characters that start an address extension (Postfix
    /// `recipient_delimiter`; Mailman 3 wants `+`). Empty: no extensions.
    pub recipient_delimiters: String,
    /// Alias domain -> the list domain it stands for (lowercase).
    pub alias_domains: HashMap<String, String>,
}

impl Default for AddressRules {
    fn default() -> Self {
        AddressRules {
            recipient_delimiters: "+".into(),
            alias_domains: HashMap::new(),
        }
    }
}

/// What a recipient is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The posting address of this list (normalised list address).
    Post(String),
    /// A service address of a list (`-request`, `-bounces`, ...): passes.
    Service {
        /// The list.
        list: String,
        /// The suffix.
        suffix: String,
    },
    /// Not a list address.
    Other,
}

impl AddressRules {
    /// The domain `rcpt` is for, lowercased, alias domains mapped to their
    /// list domain; None if `rcpt` is not an address with a domain.
    pub fn domain_of(&self, rcpt: &str) -> Option<String> {
        let mailbox = envelope_mailbox(rcpt)?;
        let domain = mailbox.domain()?.as_str().to_lowercase();
        Some(self.alias_domains.get(&domain).cloned().unwrap_or(domain))
    }

    /// Classifies `rcpt` (raw or normalised) against the known posting
    /// addresses, `is_list` answering for a normalised `local@domain`.
    pub fn classify(&self, rcpt: &str, is_list: impl Fn(&str) -> bool) -> Recipient {
        let Some(mailbox) = envelope_mailbox(rcpt) else {
            return Recipient::Other;
        };
        let local = mailbox.local_part().to_lowercase();
        let domain = mailbox
            .domain()
            .map(|d| d.as_str().to_lowercase())
            .unwrap_or_default();
        let (local, domain) = (local.as_str(), domain.as_str());
        let domain = self
            .alias_domains
            .get(domain)
            .map(String::as_str)
            .unwrap_or(domain);
        if let Some(r) = self.classify_local(local, domain, &is_list) {
            return r;
        }
        // Cut the extension at the first delimiter, as Postfix and Mailman do.
        if let Some(base) = envelope_address::without_extension(local, &self.recipient_delimiters)
            && let Some(r) = self.classify_local(base, domain, &is_list)
        {
            return r;
        }
        Recipient::Other
    }

    /// Every address [`AddressRules::classify`] may ask about for `rcpt`,
    /// in the order it asks (at most four).
    pub fn candidates(&self, rcpt: &str) -> Vec<String> {
        let asked = std::cell::RefCell::new(Vec::new());
        self.classify(rcpt, |a| {
            asked.borrow_mut().push(a.to_owned());
            false
        });
        let mut out = asked.into_inner();
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(a.clone()));
        out
    }

    fn classify_local(
        &self,
        local: &str,
        domain: &str,
        is_list: &impl Fn(&str) -> bool,
    ) -> Option<Recipient> {
        let full = format!("{local}@{domain}");
        if is_list(&full) {
            return Some(Recipient::Post(full));
        }
        let (base, suffix) = local.rsplit_once('-')?;
        if SERVICE_SUFFIXES.contains(&suffix) {
            let list = format!("{base}@{domain}");
            if is_list(&list) {
                return Some(Recipient::Service {
                    list,
                    suffix: suffix.to_owned(),
                });
            }
        }
        None
    }
}
