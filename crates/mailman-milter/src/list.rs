//! What the milter knows about one list: its posting address, what Mailman
//! does with non-member posts, and its non-member accept patterns.

use regex::Regex;
use serde::Deserialize;

/// Mailman's action for a post that is not from a member and matches no
/// accept pattern (`default_nonmember_action` in Mailman 3,
/// `generic_nonmember_action` in Mailman 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonmemberAction {
    /// Mailman posts it.
    Accept,
    /// Mailman holds it for the moderators (and tells the sender: backscatter).
    Hold,
    /// Mailman rejects it with a notice to the sender (backscatter).
    Reject,
    /// Mailman drops it.
    Discard,
}

impl NonmemberAction {
    /// Lower-case name, as in the lists file.
    pub fn name(self) -> &'static str {
        match self {
            NonmemberAction::Accept => "accept",
            NonmemberAction::Hold => "hold",
            NonmemberAction::Reject => "reject",
            NonmemberAction::Discard => "discard",
        }
    }
}

/// An entry of `accept_these_nonmembers` or of the ban list: a plain address
/// or (starting with `^`) a regular expression.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A plain address, lowercased (Mailman 2 folds case; Mailman 3 compares
    /// with the lowercased sender, so folding never refuses what it accepts).
    Address(String),
    /// A `^` regular expression, matched at the start of the lowercased
    /// address (Mailman 3: `re.match`).
    Regex(Regex),
    /// `@list@domain`: members of that other list (Mailman 3 honours these
    /// in `accept_these_nonmembers` only). The backend answers for it in
    /// [`crate::backend::SenderStatus::accepted_via`].
    ListMembers(String),
    /// A `^` entry Rust's regex engine cannot compile (Python-only syntax
    /// such as look-around): it might match, so it never leads to a refusal.
    Unsupported {
        /// The entry as written.
        source: String,
        /// Why it did not compile.
        error: String,
    },
}

/// Whether a pattern matches an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternMatch {
    /// It matches.
    Yes,
    /// It does not.
    No,
    /// Cannot tell (unsupported regex).
    Unknown,
}

impl Pattern {
    /// Parses an entry: `^...` is a regex, anything else an address.
    pub fn parse(entry: &str) -> Pattern {
        let entry = entry.trim();
        if entry.starts_with('^') {
            match Regex::new(entry) {
                Ok(re) => Pattern::Regex(re),
                Err(e) => Pattern::Unsupported {
                    source: entry.to_owned(),
                    error: e.to_string(),
                },
            }
        } else if let Some(list) = entry.strip_prefix('@').filter(|l| l.contains('@')) {
            Pattern::ListMembers(list.to_lowercase())
        } else {
            Pattern::Address(crate::address::normalize(entry).unwrap_or_default())
        }
    }

    /// Matches a normalised (lowercased) address.
    pub fn matches(&self, addr: &str) -> PatternMatch {
        let hit = match self {
            Pattern::Address(a) => a == addr,
            Pattern::Regex(re) => re.find(addr).is_some_and(|m| m.start() == 0),
            // Needs membership data: see `SenderStatus::accepted_via`.
            Pattern::ListMembers(_) => false,
            Pattern::Unsupported { .. } => return PatternMatch::Unknown,
        };
        if hit {
            PatternMatch::Yes
        } else {
            PatternMatch::No
        }
    }

    /// The entry as text (for logs).
    pub fn text(&self) -> &str {
        match self {
            Pattern::Address(a) => a,
            Pattern::Regex(re) => re.as_str(),
            Pattern::ListMembers(l) => l,
            Pattern::Unsupported { source, .. } => source,
        }
    }
}

/// The posting policy of one list.
#[derive(Debug, Clone)]
pub struct ListPolicy {
    /// The posting address, normalised (`team@lists.example.org`).
    pub address: String,
    /// What Mailman does with non-member posts.
    pub nonmember_action: NonmemberAction,
    /// Refuse at SMTP what Mailman would hold (held-post notices are
    /// backscatter too).
    pub refuse_hold: bool,
    /// Non-members who may post (`accept_these_nonmembers`).
    pub accept_nonmembers: Vec<Pattern>,
    /// The list has banned addresses (Mailman 3 discards their posts).
    pub has_bans: bool,
    /// The refusal text for this list, if it has its own.
    pub reject_text: Option<String>,
}

impl ListPolicy {
    /// Non-member posts are refused at SMTP time: Mailman would reject or
    /// discard them (or hold them, and the list refuses holds).
    pub fn refuses_nonmembers(&self) -> bool {
        match self.nonmember_action {
            NonmemberAction::Reject | NonmemberAction::Discard => true,
            NonmemberAction::Hold => self.refuse_hold,
            NonmemberAction::Accept => false,
        }
    }

    /// The milter has something to refuse on this list (non-members or
    /// banned senders), so its posting address is guarded. Other lists are
    /// left entirely to Mailman.
    pub fn is_guarded(&self) -> bool {
        self.refuses_nonmembers() || self.has_bans
    }
}
