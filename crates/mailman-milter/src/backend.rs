//! Where list data comes from. The milter asks a [`ListBackend`] two
//! questions: which lists exist (with their posting policy), and whether
//! given senders are members of (or banned from) one list. The lists file
//! ([`crate::lists_file::FileBackend`]) answers from memory; a Mailman 3
//! REST backend would answer over HTTP with a cache.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use crate::list::{ListPolicy, ModerationAction};

/// Every list the backend knows, by normalised posting address.
pub type ListIndex = HashMap<String, Arc<ListPolicy>>;

/// What the backend knows about one sender address on one list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderStatus {
    /// Subscribed (any delivery mode, nomail included): may post.
    pub member: bool,
    /// On the list's ban list: Mailman discards the post.
    pub banned: bool,
    /// A member of a list named by an `@list` entry of the list's accept
    /// patterns: that entry.
    pub accepted_via: Option<String>,
    /// The sender's own `moderation_action` on the list: as a member if
    /// `member`, else from its non-member record. None: the list's default
    /// (`default_member_action`, or the non-member rules) applies.
    pub moderation: Option<ModerationAction>,
}

/// The backend cannot answer now. Never a reason for a 5xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("list data unavailable: {0}")]
pub struct BackendError(pub String);

/// A source of list data.
pub trait ListBackend: Send + Sync + 'static {
    /// The domains lists live in (alias domains included), if known. Mail
    /// to any other domain is not for a list, and is decided without
    /// asking [`ListBackend::lists`]. None: not known (everything is
    /// asked).
    fn list_domains(&self) -> Option<Arc<HashSet<String>>> {
        None
    }

    /// All lists, with their posting policy.
    fn lists(&self) -> impl Future<Output = Result<Arc<ListIndex>, BackendError>> + Send;

    /// True if lists are read one by one as recipients need them
    /// ([`ListBackend::find_lists`]) rather than whole.
    fn lazy(&self) -> bool {
        false
    }

    /// An index holding every list among `candidates` (normalised posting
    /// addresses, in the order a recipient is matched; it may hold more).
    /// By default, all lists.
    fn find_lists(
        &self,
        candidates: &[String],
    ) -> impl Future<Output = Result<Arc<ListIndex>, BackendError>> + Send {
        let _ = candidates;
        self.lists()
    }

    /// The status of each of `senders` (normalised) on `list`, in order.
    fn senders(
        &self,
        list: &ListPolicy,
        senders: &[String],
    ) -> impl Future<Output = Result<Vec<SenderStatus>, BackendError>> + Send;
}
