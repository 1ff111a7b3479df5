//! The posting decision, as Mailman 3's default posting chain would take it
//! for the part that matters at SMTP time: `approved` -> `emergency` ->
//! `banned-address` -> `member-moderation` -> `header-match` ->
//! `nonmember-moderation`
//! (`mailman/chains/builtin.py`, `mailman/rules/moderation.py`). Pure: no
//! I/O.

use std::fmt;

use crate::backend::SenderStatus;
use crate::header_match::SeenHeaders;
use crate::list::{ListPolicy, ModerationAction, NonmemberAction, Pattern, PatternMatch};

/// Whose addresses count as the sender of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderMode {
    /// As Mailman: `From:`, the envelope sender, `Reply-To:`, `Sender:`;
    /// decided at end of headers.
    #[default]
    Mailman,
    /// The envelope sender only; decided at RCPT.
    Envelope,
}

impl SenderMode {
    /// The name as written in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            SenderMode::Mailman => "mailman",
            SenderMode::Envelope => "envelope",
        }
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The list posted to.
    pub list: &'a ListPolicy,
    /// Candidate sender addresses, normalised, in Mailman's order.
    pub senders: &'a [String],
    /// The backend's answer for each sender (same order).
    pub status: &'a [SenderStatus],
    /// The message carries an `Approved:`-style header (it counts only on a
    /// list with a moderator password, as in Mailman).
    pub approved: bool,
}

/// Why a post passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassReason {
    /// `Approved:`/`Approve:`/`X-Approved:`/`X-Approve:`: Mailman checks the password.
    Approved,
    /// A sender is a member (whose moderation action lets the post through).
    Member(String),
    /// A non-member's own `moderation_action` is accept (or defer).
    NonmemberRecord(String),
    /// Emergency moderation: Mailman holds every post for the moderators.
    Emergency,
    /// A sender's action would be hold, and the list does not refuse holds.
    Held {
        /// The sender.
        sender: String,
        /// Where the hold comes from.
        by: String,
    },
    /// A sender matches an accept pattern.
    AcceptPattern {
        /// The sender.
        sender: String,
        /// The pattern.
        pattern: String,
    },
    /// An accept pattern the milter cannot evaluate might match: Mailman decides.
    UnsupportedPattern(String),
    /// A header-match rule hits whose action passes (accept), or whose
    /// action the milter does not model (none set: the site's jump chain).
    HeaderRule {
        /// The rule (`header: pattern`).
        rule: String,
        /// Its action (`""`: none set).
        action: String,
    },
    /// Mailman would deliver non-member posts to this list anyway (or hold them
    /// and the list does not refuse holds).
    NotRefused(NonmemberAction),
}

/// Why a post is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefuseReason {
    /// A sender is banned (Mailman discards).
    Banned(String),
    /// The first member among the senders is moderated (own
    /// `moderation_action`, or the list's `default_member_action`).
    ModeratedMember {
        /// The member.
        sender: String,
        /// Mailman's action for the post.
        action: ModerationAction,
    },
    /// A non-member's own `moderation_action`, or a `*_these_nonmembers`
    /// entry, refuses the sender.
    NonmemberRule {
        /// The sender.
        sender: String,
        /// Mailman's action for the post.
        action: ModerationAction,
        /// Where the action comes from.
        by: String,
    },
    /// A header-match rule hits and its action refuses.
    HeaderRule {
        /// The rule (`header: pattern`).
        rule: String,
        /// Mailman's action for the post.
        action: ModerationAction,
    },
    /// No sender is a member or accepted; Mailman's action would be this.
    Nonmember(NonmemberAction),
    /// There is no sender at all (Mailman's `no-senders` rule discards).
    NoSenders,
}

/// The decision for one post to one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let Mailman have it.
    Pass(PassReason),
    /// Refuse at SMTP time.
    Refuse(RefuseReason),
}

impl fmt::Display for PassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassReason::Approved => f.write_str("pre-approved (Approved: header)"),
            PassReason::Member(s) => write!(f, "{s} is a member"),
            PassReason::NonmemberRecord(s) => {
                write!(f, "non-member {s} has moderation action accept")
            }
            PassReason::Emergency => f.write_str("emergency moderation; Mailman holds the post"),
            PassReason::Held { sender, by } => {
                write!(f, "{sender}: {by} holds, and holds are not refused")
            }
            PassReason::AcceptPattern { sender, pattern } => {
                write!(f, "{sender} matches accept pattern {pattern}")
            }
            PassReason::UnsupportedPattern(p) => {
                write!(
                    f,
                    "accept pattern {p} cannot be evaluated here; Mailman decides"
                )
            }
            PassReason::NotRefused(a) => write!(f, "non-member action is {}", a.name()),
            PassReason::HeaderRule { rule, action } if action.is_empty() => {
                write!(
                    f,
                    "header rule {rule} hits; no action set: Mailman's jump chain decides"
                )
            }
            PassReason::HeaderRule { rule, action } => {
                write!(f, "header rule {rule} hits: {action}")
            }
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::Banned(s) => write!(f, "{s} is banned"),
            RefuseReason::ModeratedMember { sender, action } => {
                write!(f, "member {sender} is moderated: {}", action.name())
            }
            RefuseReason::NonmemberRule { sender, action, by } => {
                write!(f, "non-member {sender}: {by}: {}", action.name())
            }
            RefuseReason::Nonmember(a) => {
                write!(
                    f,
                    "no sender is a member; non-member action is {}",
                    a.name()
                )
            }
            RefuseReason::NoSenders => f.write_str("no sender address"),
            RefuseReason::HeaderRule { rule, action } => {
                write!(f, "header rule {rule} hits: {}", action.name())
            }
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Pass(r) => write!(f, "pass: {r}"),
            Decision::Refuse(r) => write!(f, "refuse: {r}"),
        }
    }
}

/// True for the header names Mailman 3's `approved` rule reads.
pub fn is_approval_header(name: &str) -> bool {
    ["approved", "approve", "x-approved", "x-approve"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Decides one post whose headers are not known (at RCPT): header-match
/// rules cannot tell.
pub fn decide(post: &Post<'_>) -> Decision {
    decide_with_headers(post, None)
}

/// Decides one post; `headers` are the post's headers the list's
/// header-match rules look at (None: not known).
pub fn decide_with_headers(post: &Post<'_>, headers: Option<&SeenHeaders>) -> Decision {
    if post.approved && post.list.approval_possible() {
        return Decision::Pass(PassReason::Approved);
    }
    let none = SenderStatus::default();
    let status = |i: usize| post.status.get(i).unwrap_or(&none);
    let list = post.list;
    let refuse_hold = list.refuses_hold();
    if list.emergency {
        return Decision::Pass(PassReason::Emergency);
    }
    if let Some(i) = (0..post.senders.len()).find(|&i| status(i).banned) {
        return Decision::Refuse(RefuseReason::Banned(post.senders[i].clone()));
    }
    // member-moderation: the first sender that is a member decides, unless
    // its action is defer (then the header rules come first).
    let member = (0..post.senders.len()).find(|&i| status(i).member);
    if let Some(i) = member {
        let sender = post.senders[i].clone();
        let action = status(i).moderation.unwrap_or(list.default_member_action);
        return match action {
            NonmemberAction::Accept => Decision::Pass(PassReason::Member(sender)),
            NonmemberAction::Defer => match header_match(post, headers, refuse_hold) {
                HeaderOutcome::Decided(d) => d,
                HeaderOutcome::Continue(_) => Decision::Pass(PassReason::Member(sender)),
            },
            NonmemberAction::Hold if !refuse_hold => Decision::Pass(PassReason::Held {
                sender,
                by: "member moderation".into(),
            }),
            action => Decision::Refuse(RefuseReason::ModeratedMember { sender, action }),
        };
    }
    // header-match, then nonmember-moderation: per sender, its own
    // record, then the legacy lists in Mailman's order; the first hit
    // decides.
    let mut unknown: Option<String> = match header_match(post, headers, refuse_hold) {
        HeaderOutcome::Decided(d) => return d,
        HeaderOutcome::Continue(unknown) => unknown,
    };
    let legacy: [(NonmemberAction, &str, &[Pattern]); 4] = [
        (
            NonmemberAction::Accept,
            "accept_these_nonmembers",
            &list.accept_nonmembers,
        ),
        (
            NonmemberAction::Hold,
            "hold_these_nonmembers",
            &list.hold_nonmembers,
        ),
        (
            NonmemberAction::Reject,
            "reject_these_nonmembers",
            &list.reject_nonmembers,
        ),
        (
            NonmemberAction::Discard,
            "discard_these_nonmembers",
            &list.discard_nonmembers,
        ),
    ];
    for (i, sender) in post.senders.iter().enumerate() {
        if let Some(action) = status(i).moderation {
            return nonmember_hit(sender, action, None, refuse_hold, unknown);
        }
        if let Some(other) = &status(i).accepted_via {
            return Decision::Pass(PassReason::AcceptPattern {
                sender: sender.clone(),
                pattern: format!("@{other}"),
            });
        }
        for (action, name, patterns) in legacy {
            for pattern in patterns {
                match pattern.matches(sender) {
                    PatternMatch::Yes if action == NonmemberAction::Accept => {
                        return Decision::Pass(PassReason::AcceptPattern {
                            sender: sender.clone(),
                            pattern: pattern.text().to_owned(),
                        });
                    }
                    PatternMatch::Yes => {
                        let by = format!("{name} entry {}", pattern.text());
                        return nonmember_hit(sender, action, Some(by), refuse_hold, unknown);
                    }
                    // A pattern that might match and would let the post
                    // through makes any later refusal uncertain.
                    PatternMatch::Unknown if !action.refused(refuse_hold) => {
                        unknown.get_or_insert_with(|| pattern.text().to_owned());
                    }
                    PatternMatch::Unknown | PatternMatch::No => {}
                }
            }
        }
    }
    if !list.refuses_nonmembers() {
        return Decision::Pass(PassReason::NotRefused(list.nonmember_action));
    }
    if let Some(p) = unknown {
        return Decision::Pass(PassReason::UnsupportedPattern(p));
    }
    if post.senders.is_empty() {
        return Decision::Refuse(RefuseReason::NoSenders);
    }
    Decision::Refuse(RefuseReason::Nonmember(list.nonmember_action))
}

/// A non-member rule hit `sender` with `action`: its own record (`entry`
/// None) or a legacy list entry (never accept: that is handled above).
fn nonmember_hit(
    sender: &str,
    action: ModerationAction,
    entry: Option<String>,
    refuse_hold: bool,
    unknown: Option<String>,
) -> Decision {
    let sender = sender.to_owned();
    let by = entry.unwrap_or_else(|| "own moderation action".into());
    match action {
        // A non-member's defer: the rule misses and Mailman accepts.
        NonmemberAction::Accept | NonmemberAction::Defer => {
            Decision::Pass(PassReason::NonmemberRecord(sender))
        }
        NonmemberAction::Hold if !refuse_hold => Decision::Pass(PassReason::Held { sender, by }),
        _ => match unknown {
            Some(p) => Decision::Pass(PassReason::UnsupportedPattern(p)),
            None => Decision::Refuse(RefuseReason::NonmemberRule { sender, action, by }),
        },
    }
}

/// What the header-match rules say.
enum HeaderOutcome {
    /// A rule hit and decides.
    Decided(Decision),
    /// No rule hit; a rule that could not tell and would have let the post
    /// through, if any (a later refusal is then uncertain).
    Continue(Option<String>),
}

/// Mailman's `header-match` chain over the list's rules, first hit wins.
/// A rule that cannot tell is taken as a miss when its hit would refuse
/// (a miss then only risks passing what Mailman refuses); otherwise later
/// refusals become passes.
fn header_match(
    post: &Post<'_>,
    headers: Option<&SeenHeaders>,
    refuse_hold: bool,
) -> HeaderOutcome {
    let mut unknown = None;
    for rule in &post.list.header_matches {
        let name = || format!("{}: {}", rule.header, rule.pattern.text());
        match rule.check(headers) {
            PatternMatch::Yes => {
                let decision = match rule.action {
                    Some(NonmemberAction::Hold) if !refuse_hold => {
                        Decision::Pass(PassReason::Held {
                            sender: String::new(),
                            by: format!("header rule {}", name()),
                        })
                    }
                    Some(action) if action.refused(refuse_hold) => match unknown {
                        Some(p) => Decision::Pass(PassReason::UnsupportedPattern(p)),
                        None => Decision::Refuse(RefuseReason::HeaderRule {
                            rule: name(),
                            action,
                        }),
                    },
                    _ => Decision::Pass(PassReason::HeaderRule {
                        rule: name(),
                        action: rule.action_name.clone(),
                    }),
                };
                return HeaderOutcome::Decided(decision);
            }
            PatternMatch::Unknown if !rule.refuses(refuse_hold) => {
                unknown.get_or_insert_with(|| format!("header rule {}", name()));
            }
            PatternMatch::Unknown | PatternMatch::No => {}
        }
    }
    HeaderOutcome::Continue(unknown)
}
