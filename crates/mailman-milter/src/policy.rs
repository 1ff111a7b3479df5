//! The posting decision, as Mailman 3's default posting chain would take it
//! for the part that matters at SMTP time: `approved` -> `banned-address` ->
//! `member-moderation` -> `nonmember-moderation`. Pure: no I/O.

use std::fmt;

use crate::backend::SenderStatus;
use crate::list::{ListPolicy, NonmemberAction, PatternMatch};

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

/// Everything the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The list posted to.
    pub list: &'a ListPolicy,
    /// Candidate sender addresses, normalised, in Mailman's order.
    pub senders: &'a [String],
    /// The backend's answer for each sender (same order).
    pub status: &'a [SenderStatus],
    /// The message carries an `Approved:`-style header.
    pub approved: bool,
}

/// Why a post passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassReason {
    /// `Approved:`/`Approve:`/`X-Approved:`/`X-Approve:`: Mailman checks the password.
    Approved,
    /// A sender is a member.
    Member(String),
    /// A sender matches an accept pattern.
    AcceptPattern {
        /// The sender.
        sender: String,
        /// The pattern.
        pattern: String,
    },
    /// An accept pattern the milter cannot evaluate might match: Mailman decides.
    UnsupportedPattern(String),
    /// Mailman would deliver non-member posts to this list anyway (or hold them
    /// and the list does not refuse holds).
    NotRefused(NonmemberAction),
}

/// Why a post is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefuseReason {
    /// A sender is banned (Mailman discards).
    Banned(String),
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
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::Banned(s) => write!(f, "{s} is banned"),
            RefuseReason::Nonmember(a) => {
                write!(
                    f,
                    "no sender is a member; non-member action is {}",
                    a.name()
                )
            }
            RefuseReason::NoSenders => f.write_str("no sender address"),
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

/// Decides one post.
pub fn decide(post: &Post<'_>) -> Decision {
    if post.approved {
        return Decision::Pass(PassReason::Approved);
    }
    let none = SenderStatus::default();
    let status = |i: usize| post.status.get(i).unwrap_or(&none);
    if let Some(i) = (0..post.senders.len()).find(|&i| status(i).banned) {
        return Decision::Refuse(RefuseReason::Banned(post.senders[i].clone()));
    }
    if let Some(i) = (0..post.senders.len()).find(|&i| status(i).member) {
        return Decision::Pass(PassReason::Member(post.senders[i].clone()));
    }
    let mut unknown = None;
    for (i, sender) in post.senders.iter().enumerate() {
        if let Some(list) = &status(i).accepted_via {
            return Decision::Pass(PassReason::AcceptPattern {
                sender: sender.clone(),
                pattern: format!("@{list}"),
            });
        }
        for pattern in &post.list.accept_nonmembers {
            match pattern.matches(sender) {
                PatternMatch::Yes => {
                    return Decision::Pass(PassReason::AcceptPattern {
                        sender: sender.clone(),
                        pattern: pattern.text().to_owned(),
                    });
                }
                PatternMatch::Unknown => {
                    unknown.get_or_insert_with(|| pattern.text().to_owned());
                }
                PatternMatch::No => {}
            }
        }
    }
    if let Some(p) = unknown {
        return Decision::Pass(PassReason::UnsupportedPattern(p));
    }
    if !post.list.refuses_nonmembers() {
        return Decision::Pass(PassReason::NotRefused(post.list.nonmember_action));
    }
    if post.senders.is_empty() {
        return Decision::Refuse(RefuseReason::NoSenders);
    }
    Decision::Refuse(RefuseReason::Nonmember(post.list.nonmember_action))
}
