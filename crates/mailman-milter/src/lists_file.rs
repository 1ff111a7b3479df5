//! The lists file: lists, members, accept patterns, bans and actions in TOML,
//! and the [`FileBackend`] that serves it from memory and reloads it.
//!
//! ```toml
//! [[list]]
//! address = "team@lists.example.org"    # the posting address
//! nonmember_action = "reject"           # accept | hold (default) | reject | discard
//! refuse_hold = false                   # also refuse what Mailman would hold
//! members = ["alice@example.org"]       # case is ignored
//! accept_nonmembers = ["boss@example.com", "^.*@example\\.org$"]
//! hold_nonmembers = []                  # Mailman 3's hold_these_nonmembers
//! reject_nonmembers = ["^.*@rival\\.example$"]
//! discard_nonmembers = []
//! default_member_action = "defer"       # defer (Mailman's default) | accept | hold | reject | discard
//! emergency = false                     # Mailman holds everything: left to Mailman
//! moderator_password = true             # Approved: may pass (left out: assumed)
//! banned = ["^.*@spam\\.example$"]
//! reject_text = "<{list}>: members only, see https://lists.example.org/"
//!
//! [[list.header_matches]]               # Mailman's header_matches, in order
//! header = "x-spam-flag"
//! pattern = "yes"                       # Python re.search, ignoring case
//! action = "discard"                    # accept | hold | reject | discard; left out: the site's
//!
//! [list.moderation]                     # own moderation_action of members and non-members
//! "troll@example.org" = "discard"
//!
//! [[user]]                              # a Mailman user's addresses: one subscribed
//! addresses = ["alice@example.org", "alice@home.example"]   # makes the others members
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use serde::Deserialize;

use crate::address::normalize;
use crate::backend::{BackendError, ListBackend, ListIndex, SenderStatus};
use crate::header_match::HeaderRule;
use crate::list::{ListPolicy, NonmemberAction, Pattern, Unevaluable, unevaluable_in};

/// A lists file that cannot be used; names the file and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// What is wrong, starting with the key where one applies.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    list: Vec<RawList>,
    #[serde(default)]
    user: Vec<RawUser>,
}

/// `[[user]]`: the addresses of one Mailman user. A sender that is not a
/// member itself is a member through another address of its user, as in
/// Mailman 3 (`_find_sender_member`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    address: String,
    #[serde(default = "default_action")]
    nonmember_action: NonmemberAction,
    refuse_hold: Option<bool>,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    accept_nonmembers: Vec<String>,
    #[serde(default)]
    hold_nonmembers: Vec<String>,
    #[serde(default)]
    reject_nonmembers: Vec<String>,
    #[serde(default)]
    discard_nonmembers: Vec<String>,
    #[serde(default = "default_member_action")]
    default_member_action: NonmemberAction,
    #[serde(default)]
    emergency: bool,
    #[serde(default)]
    moderation: BTreeMap<String, NonmemberAction>,
    #[serde(default)]
    banned: Vec<String>,
    reject_text: Option<String>,
    moderator_password: Option<bool>,
    #[serde(default)]
    header_matches: Vec<RawHeaderMatch>,
}

/// `[[list.header_matches]]`: as Mailman's `lists/{id}/header-matches`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    header: String,
    pattern: String,
    action: Option<String>,
}

fn default_member_action() -> NonmemberAction {
    NonmemberAction::Defer
}

fn default_action() -> NonmemberAction {
    NonmemberAction::Hold
}

/// The contents of a lists file, checked.
#[derive(Debug, Default)]
pub struct ListsData {
    index: Arc<ListIndex>,
    members: HashMap<String, HashSet<String>>,
    bans: HashMap<String, Vec<Pattern>>,
    /// List -> address -> own moderation action.
    moderation: HashMap<String, HashMap<String, NonmemberAction>>,
    /// Address -> index in `users`.
    user_of: HashMap<String, usize>,
    /// Each user's addresses (normalised).
    users: Vec<Vec<String>>,
}

impl ListsData {
    /// Parses and checks the text of a lists file (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<ListsData, LoadError> {
        let err = |message: String| LoadError {
            file: file.to_owned(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            err(minimilter::daemon::toml_error_line(
                text,
                e.span(),
                e.message(),
            ))
        })?;
        let mut data = ListsData::default();
        let mut index = ListIndex::new();
        for (i, l) in raw.list.into_iter().enumerate() {
            let key = format!("list[{i}]");
            let address = checked_address(&l.address)
                .ok_or_else(|| err(format!("{key}.address: {:?} is not an address", l.address)))?;
            if index.contains_key(&address) {
                return Err(err(format!("{key}.address: {address} is listed twice")));
            }
            let mut members = HashSet::new();
            for (j, m) in l.members.iter().enumerate() {
                let a = checked_address(m)
                    .ok_or_else(|| err(format!("{key}.members[{j}]: {m:?} is not an address")))?;
                members.insert(a);
            }
            let bans = patterns(
                &l.banned,
                &format!("{key}.banned"),
                false,
                Pattern::parse_ban,
            )
            .map_err(err)?;
            let accept = patterns(
                &l.accept_nonmembers,
                &format!("{key}.accept_nonmembers"),
                true,
                Pattern::parse,
            )
            .map_err(err)?;
            let legacy = |entries: &[String], name: &str| {
                patterns(entries, &format!("{key}.{name}"), false, Pattern::parse).map_err(err)
            };
            let hold = legacy(&l.hold_nonmembers, "hold_nonmembers")?;
            let reject = legacy(&l.reject_nonmembers, "reject_nonmembers")?;
            let discard = legacy(&l.discard_nonmembers, "discard_nonmembers")?;
            let mut moderation = HashMap::new();
            for (a, action) in &l.moderation {
                let addr = checked_address(a)
                    .ok_or_else(|| err(format!("{key}.moderation: {a:?} is not an address")))?;
                moderation.insert(addr, *action);
            }
            let moderated =
                |wanted: &[NonmemberAction]| moderation.values().any(|a| wanted.contains(a));
            if let Some(t) = &l.reject_text {
                crate::milter::refusal_reply(t, &address)
                    .map_err(|e| err(format!("{key}.reject_text: {e}")))?;
            }
            let mut header_matches = Vec::new();
            for (j, h) in l.header_matches.iter().enumerate() {
                if h.header.trim().is_empty() {
                    return Err(err(format!("{key}.header_matches[{j}].header: empty")));
                }
                if let Some(a) = &h.action
                    && a != "defer"
                    && NonmemberAction::from_mailman(a).is_none()
                {
                    return Err(err(format!(
                        "{key}.header_matches[{j}].action: {a:?} is not accept, defer, hold, reject or discard"
                    )));
                }
                header_matches.push(HeaderRule::new(&h.header, &h.pattern, h.action.as_deref()));
            }
            let policy = ListPolicy {
                address: address.clone(),
                nonmember_action: l.nonmember_action,
                refuse_hold: l.refuse_hold,
                accept_nonmembers: accept,
                hold_nonmembers: hold,
                reject_nonmembers: reject,
                discard_nonmembers: discard,
                default_member_action: l.default_member_action,
                moderated_refuse: moderated(&[NonmemberAction::Reject, NonmemberAction::Discard]),
                moderated_hold: moderated(&[NonmemberAction::Hold]),
                emergency: l.emergency,
                has_bans: !bans.is_empty(),
                reject_text: l.reject_text,
                header_matches,
                moderator_password: l.moderator_password,
            };
            index.insert(address.clone(), Arc::new(policy));
            data.members.insert(address.clone(), members);
            data.bans.insert(address.clone(), bans);
            data.moderation.insert(address, moderation);
        }
        for (address, policy) in &index {
            for p in &policy.accept_nonmembers {
                if let Pattern::ListMembers(other) = p
                    && !index.contains_key(other)
                {
                    tracing::warn!(
                        "{file}: list {address}: accept entry @{other} names a list not in this file; it matches nobody"
                    );
                }
            }
        }
        for (i, u) in raw.user.iter().enumerate() {
            let mut addresses = Vec::new();
            for (j, a) in u.addresses.iter().enumerate() {
                let addr = checked_address(a).ok_or_else(|| {
                    err(format!("user[{i}].addresses[{j}]: {a:?} is not an address"))
                })?;
                if data
                    .user_of
                    .insert(addr.clone(), data.users.len())
                    .is_some()
                {
                    return Err(err(format!(
                        "user[{i}].addresses[{j}]: {addr} belongs to another user too"
                    )));
                }
                addresses.push(addr);
            }
            data.users.push(addresses);
        }
        data.index = Arc::new(index);
        Ok(data)
    }

    /// Reads and parses a lists file.
    pub fn load(path: &Path) -> Result<ListsData, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            file: file.clone(),
            message: format!("cannot read the lists file (`lists`, or --lists): {e}"),
        })?;
        ListsData::parse(&text, &file)
    }

    /// The lists.
    pub fn index(&self) -> &Arc<ListIndex> {
        &self.index
    }

    /// Status of one normalised sender on a list.
    pub fn status(&self, list: &str, sender: &str) -> SenderStatus {
        let is_member = |l: &str| self.members.get(l).is_some_and(|m| m.contains(sender));
        // Mailman 3: the sender itself, else another address of its user.
        let member_address = if is_member(list) {
            Some(sender)
        } else {
            self.user_of.get(sender).and_then(|&u| {
                self.users[u].iter().map(String::as_str).find(|a| {
                    *a != sender && self.members.get(list).is_some_and(|m| m.contains(*a))
                })
            })
        };
        let accepted_via = self.index.get(list).and_then(|p| {
            p.accept_nonmembers.iter().find_map(|pat| match pat {
                Pattern::ListMembers(other) if other != list && is_member(other) => {
                    Some(other.clone())
                }
                _ => None,
            })
        });
        SenderStatus {
            member: member_address.is_some(),
            banned: self.bans.get(list).is_some_and(|b| {
                b.iter()
                    .any(|p| p.matches(sender) == crate::list::PatternMatch::Yes)
            }),
            accepted_via,
            moderation: self
                .moderation
                .get(list)
                .and_then(|m| m.get(member_address.unwrap_or(sender)))
                .copied(),
        }
    }

    /// Every pattern of the file that cannot be evaluated here, sorted.
    pub fn unevaluable(&self) -> Vec<Unevaluable> {
        let mut out = Vec::new();
        for l in self.index.values() {
            out.extend(l.unevaluable());
            if let Some(b) = self.bans.get(&l.address) {
                out.extend(unevaluable_in(&l.address, "banned", b));
            }
        }
        out.sort();
        out
    }
}

fn checked_address(raw: &str) -> Option<String> {
    let a = normalize(raw)?;
    let (local, domain) = crate::address::split(&a);
    (!local.is_empty() && !domain.is_empty() && !a.contains(char::is_whitespace)).then_some(a)
}

fn patterns(
    entries: &[String],
    key: &str,
    list_refs: bool,
    parse: fn(&str) -> Pattern,
) -> Result<Vec<Pattern>, String> {
    let mut out = Vec::new();
    for (j, e) in entries.iter().enumerate() {
        let p = parse(e);
        if let Pattern::ListMembers(_) = &p
            && !list_refs
        {
            return Err(format!(
                "{key}[{j}]: {e:?}: @list entries are not allowed here"
            ));
        }
        if let Pattern::Address(a) = &p
            && checked_address(a).is_none()
        {
            return Err(format!(
                "{key}[{j}]: {e:?} is neither an address nor a ^regex"
            ));
        }
        out.push(p);
    }
    Ok(out)
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The file was read anew; this many lists.
    Loaded(usize),
    /// The file did not change since the last load.
    Unchanged,
}

#[derive(Debug)]
struct State {
    data: Option<Arc<ListsData>>,
    last_error: Option<LoadError>,
    stamp: Option<(SystemTime, u64)>,
}

/// Serves a lists file from memory. Reloads keep the old data when the new
/// file is invalid; until a first load succeeds, every question is answered
/// with [`BackendError`] (so the milter tempfails rather than refuses).
#[derive(Debug)]
pub struct FileBackend {
    path: PathBuf,
    state: RwLock<State>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl FileBackend {
    /// Loads `path`. On failure the backend still exists (answering
    /// "unavailable") and the error is returned beside it.
    pub fn open(path: impl Into<PathBuf>) -> (FileBackend, Option<LoadError>) {
        let backend = FileBackend {
            path: path.into(),
            state: RwLock::new(State {
                data: None,
                last_error: None,
                stamp: None,
            }),
        };
        let error = backend.reload().err();
        (backend, error)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again. On error the data loaded before is kept.
    pub fn reload(&self) -> Result<Reloaded, LoadError> {
        let before = stamp(&self.path);
        let result = ListsData::load(&self.path);
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        st.stamp = before;
        match result {
            Ok(data) => {
                let n = data.index.len();
                st.data = Some(Arc::new(data));
                st.last_error = None;
                Ok(Reloaded::Loaded(n))
            }
            Err(e) => {
                st.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Reloads if the file's modification time or size changed since the
    /// last attempt (an invalid file is reported once per change).
    pub fn reload_if_changed(&self) -> Result<Reloaded, LoadError> {
        let now = stamp(&self.path);
        let last = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp;
        if now == last {
            return Ok(Reloaded::Unchanged);
        }
        self.reload()
    }

    /// The data in use, if any was ever loaded.
    pub fn data(&self) -> Result<Arc<ListsData>, BackendError> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match (&st.data, &st.last_error) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(e)) => Err(BackendError(e.to_string())),
            (None, None) => Err(BackendError(format!("{}: not loaded", self.path.display()))),
        }
    }
}

impl ListBackend for FileBackend {
    async fn lists(&self) -> Result<Arc<ListIndex>, BackendError> {
        Ok(self.data()?.index.clone())
    }

    async fn senders(
        &self,
        list: &ListPolicy,
        senders: &[String],
    ) -> Result<Vec<SenderStatus>, BackendError> {
        let data = self.data()?;
        Ok(senders
            .iter()
            .map(|s| data.status(&list.address, s))
            .collect())
    }
}
