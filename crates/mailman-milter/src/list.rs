//! What the milter knows about one list: its posting address, what Mailman
//! does with non-member posts, and its non-member accept patterns.

use serde::Deserialize;

use crate::header_match::HeaderRule;
use crate::pyregex::{Mode, PyRegex};

/// A Mailman moderation action: the list's `default_nonmember_action`
/// (`generic_nonmember_action` in Mailman 2), its `default_member_action`,
/// or a member's or non-member's own `moderation_action`. Mailman 3's
/// `defer` ("regular processing") is [`NonmemberAction::Defer`]: it passes
/// like accept, but a member's post still goes through the list's
/// header-match rules, which an accepted member's skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NonmemberAction {
    /// Mailman posts it.
    Accept,
    /// Mailman's regular processing: the later rules decide (for a
    /// member, the header-match rules; else the post is accepted).
    Defer,
    /// Mailman holds it for the moderators (and tells the sender: backscatter).
    #[default]
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
            NonmemberAction::Defer => "defer",
            NonmemberAction::Hold => "hold",
            NonmemberAction::Reject => "reject",
            NonmemberAction::Discard => "discard",
        }
    }

    /// Mailman 3's action names (`interfaces/action.py`). None for
    /// anything else.
    pub fn from_mailman(name: &str) -> Option<NonmemberAction> {
        match name {
            "accept" => Some(NonmemberAction::Accept),
            "defer" => Some(NonmemberAction::Defer),
            "hold" => Some(NonmemberAction::Hold),
            "reject" => Some(NonmemberAction::Reject),
            "discard" => Some(NonmemberAction::Discard),
            _ => None,
        }
    }

    /// Mailman would not deliver the post and would tell the sender or
    /// drop it: reject and discard always, hold when the list refuses holds.
    pub fn refused(self, refuse_hold: bool) -> bool {
        match self {
            NonmemberAction::Reject | NonmemberAction::Discard => true,
            NonmemberAction::Hold => refuse_hold,
            NonmemberAction::Accept | NonmemberAction::Defer => false,
        }
    }
}

/// The same type under the name Mailman gives it where members are
/// concerned (`moderation_action`, `default_member_action`).
pub type ModerationAction = NonmemberAction;

/// An entry of `accept_these_nonmembers` or of the ban list: a plain address
/// or (starting with `^`) a regular expression.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A plain address, as written: Mailman 3 compares it with `==`
    /// against the lowercased sender (and bans by SQL equality), so one
    /// with capitals never matches there, nor here.
    Address(String),
    /// A `^` regular expression (Python syntax), matched at the start of
    /// the lowercased address (Mailman 3: `re.match`; for bans with
    /// `re.IGNORECASE`).
    Regex(PyRegex),
    /// `@list@domain`: members of that other list (Mailman 3 honours these
    /// in `accept_these_nonmembers` only). The backend answers for it in
    /// [`crate::backend::SenderStatus::accepted_via`].
    ListMembers(String),
    /// A `^` entry that cannot be evaluated here (see [`crate::pyregex`]):
    /// it might match, so it never leads to a refusal.
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
    /// Cannot tell (a regex that cannot be evaluated here, or not within
    /// its time bound).
    Unknown,
}

impl Pattern {
    /// Parses an entry: `^...` is a regex, anything else an address.
    pub fn parse(entry: &str) -> Pattern {
        Pattern::parse_with(entry, false)
    }

    /// Parses a ban: as [`Pattern::parse`], but a regex ignores case, as
    /// Mailman 3's ban manager matches it (`re.IGNORECASE`).
    pub fn parse_ban(entry: &str) -> Pattern {
        Pattern::parse_with(entry, true)
    }

    /// As Mailman 3 reads an entry: `^` first makes it a regex; anything
    /// else is compared with `==`, as written, against the lowercased
    /// sender (so `Boss@Example.com` or ` x@y` never match).
    fn parse_with(entry: &str, ignore_case: bool) -> Pattern {
        if entry.starts_with('^') {
            match PyRegex::new(entry, Mode::Match, ignore_case) {
                Ok(re) => Pattern::Regex(re),
                Err(e) => Pattern::Unsupported {
                    source: entry.to_owned(),
                    error: e,
                },
            }
        } else if let Some(list) = entry.strip_prefix('@').filter(|l| l.contains('@')) {
            Pattern::ListMembers(list.to_lowercase())
        } else {
            Pattern::Address(entry.to_owned())
        }
    }

    /// Matches a normalised (lowercased) address.
    pub fn matches(&self, addr: &str) -> PatternMatch {
        let hit = match self {
            Pattern::Address(a) => a == addr,
            Pattern::Regex(re) => match re.matches(addr) {
                Some(hit) => hit,
                None => return PatternMatch::Unknown,
            },
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

/// A pattern of the list data that cannot be evaluated here (see
/// [`crate::pyregex`]). Posts it might match are left to Mailman.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unevaluable {
    /// The list's posting address.
    pub list: String,
    /// Where the pattern is (`accept_these_nonmembers`, `bans`, ...).
    pub key: String,
    /// The pattern as written.
    pub entry: String,
    /// Why it cannot be evaluated.
    pub error: String,
}

impl std::fmt::Display for Unevaluable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:?} ({})",
            self.list, self.key, self.entry, self.error
        )
    }
}

/// The unevaluable patterns of `patterns` (under `key` of `list`).
pub fn unevaluable_in<'a>(
    list: &str,
    key: &str,
    patterns: impl IntoIterator<Item = &'a Pattern>,
) -> Vec<Unevaluable> {
    patterns
        .into_iter()
        .filter_map(|p| match p {
            Pattern::Unsupported { source, error } => Some(Unevaluable {
                list: list.to_owned(),
                key: key.to_owned(),
                entry: source.clone(),
                error: error.lines().next().unwrap_or_default().to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// All of `items` on one log line (None if there are none), sorted.
pub fn unevaluable_line(items: &[Unevaluable]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let mut items = items.to_vec();
    items.sort();
    let all: Vec<String> = items.iter().map(ToString::to_string).collect();
    Some(format!(
        "{} pattern(s) cannot be evaluated here; posts they might match are left to Mailman: {}",
        all.len(),
        all.join("; ")
    ))
}

/// The posting policy of one list.
#[derive(Debug, Clone)]
pub struct ListPolicy {
    /// The posting address, normalised (`team@lists.example.org`).
    pub address: String,
    /// What Mailman does with non-member posts.
    pub nonmember_action: NonmemberAction,
    /// Refuse at SMTP what Mailman would hold (held-post notices are
    /// backscatter too). None: the configuration decides (see
    /// [`crate::overrides::ListOverrides`]); unset everywhere means no.
    pub refuse_hold: Option<bool>,
    /// Non-members who may post (`accept_these_nonmembers`).
    pub accept_nonmembers: Vec<Pattern>,
    /// Non-members whose posts Mailman holds (`hold_these_nonmembers`).
    pub hold_nonmembers: Vec<Pattern>,
    /// Non-members whose posts Mailman rejects (`reject_these_nonmembers`).
    pub reject_nonmembers: Vec<Pattern>,
    /// Non-members whose posts Mailman discards (`discard_these_nonmembers`).
    pub discard_nonmembers: Vec<Pattern>,
    /// What Mailman does with a member's post when the member has no
    /// `moderation_action` of their own (`default_member_action`; Mailman
    /// 3's default is `defer`).
    pub default_member_action: ModerationAction,
    /// Some member or non-member has reject or discard as own
    /// `moderation_action` (so the list is guarded even if its defaults
    /// refuse nothing).
    pub moderated_refuse: bool,
    /// Some member or non-member has hold as own `moderation_action`
    /// (guards the list if it refuses holds).
    pub moderated_hold: bool,
    /// Emergency moderation is on: Mailman holds every post for the
    /// moderators, members' included. The milter then leaves the list to
    /// Mailman (a held member post must reach the moderators).
    pub emergency: bool,
    /// The list has banned addresses (Mailman 3 discards their posts).
    pub has_bans: bool,
    /// The refusal text for this list, if it has its own.
    pub reject_text: Option<String>,
    /// The list's header-match rules, in Mailman's order.
    pub header_matches: Vec<HeaderRule>,
    /// The list has a moderator password (Mailman's `moderator_password`
    /// is set). Without one Mailman ignores `Approved:` headers and lines;
    /// None: not known, so a post claiming approval is left to Mailman.
    pub moderator_password: Option<bool>,
}

impl Default for ListPolicy {
    /// Mailman 3's defaults for a new list: non-members held, members
    /// deferred to the regular rules; nothing refused here.
    fn default() -> Self {
        ListPolicy {
            address: String::new(),
            nonmember_action: NonmemberAction::Hold,
            refuse_hold: None,
            accept_nonmembers: Vec::new(),
            hold_nonmembers: Vec::new(),
            reject_nonmembers: Vec::new(),
            discard_nonmembers: Vec::new(),
            default_member_action: NonmemberAction::Defer,
            moderated_refuse: false,
            moderated_hold: false,
            emergency: false,
            has_bans: false,
            reject_text: None,
            header_matches: Vec::new(),
            moderator_password: None,
        }
    }
}

impl ListPolicy {
    /// The list's own patterns that cannot be evaluated here (bans are the
    /// backend's).
    pub fn unevaluable(&self) -> Vec<Unevaluable> {
        let a = &self.address;
        let mut out = unevaluable_in(a, "accept_these_nonmembers", &self.accept_nonmembers);
        out.extend(unevaluable_in(
            a,
            "hold_these_nonmembers",
            &self.hold_nonmembers,
        ));
        out.extend(unevaluable_in(
            a,
            "reject_these_nonmembers",
            &self.reject_nonmembers,
        ));
        out.extend(unevaluable_in(
            a,
            "discard_these_nonmembers",
            &self.discard_nonmembers,
        ));
        out.extend(unevaluable_in(
            a,
            "header_matches",
            self.header_matches.iter().map(|r| &r.pattern),
        ));
        out
    }

    /// A post claiming pre-approval may be approved by Mailman: the list
    /// has (or may have) a moderator password. Mailman 3's `approved` rule
    /// ignores the claim on a list without one.
    pub fn approval_possible(&self) -> bool {
        self.moderator_password != Some(false)
    }

    /// Holds are refused on this list.
    pub fn refuses_hold(&self) -> bool {
        self.refuse_hold.unwrap_or(false)
    }

    /// Non-member posts are refused at SMTP time: Mailman would reject or
    /// discard them (or hold them, and the list refuses holds).
    pub fn refuses_nonmembers(&self) -> bool {
        self.nonmember_action.refused(self.refuses_hold())
    }

    /// The milter has something to refuse on this list (non-members,
    /// moderated members, senders on a refusing legacy list, banned
    /// senders), so its posting address is guarded. Other lists, and lists
    /// in emergency moderation, are left entirely to Mailman.
    pub fn is_guarded(&self) -> bool {
        if self.emergency {
            // Mailman 3's built-in chain (`chains/builtin.py`) runs
            // `emergency` (hold) before `banned-address`: every post is held
            // for the moderators, banned senders' included.
            return false;
        }
        let hold = self.refuses_hold();
        self.refuses_nonmembers()
            || self.has_bans
            || self.moderated_refuse
            || (hold && self.moderated_hold)
            || self.default_member_action.refused(hold)
            || !self.reject_nonmembers.is_empty()
            || !self.discard_nonmembers.is_empty()
            || (hold && !self.hold_nonmembers.is_empty())
            || self.header_matches.iter().any(|r| r.refuses(hold))
    }
}
