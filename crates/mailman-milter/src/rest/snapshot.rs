//! The list data read from the API at one time: the domains, every list's
//! posting settings, bans and header rules. Read as Mailman's JSON
//! ([`RawSnapshot`], which is also what is kept on disk), then mapped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RestError;
use super::client::{Api, enc};
use super::model::{alias_domains, ban_patterns, header_rules, list_policy};
use crate::backend::ListIndex;
use crate::list::{Pattern, Unevaluable, unevaluable_in};

/// Everything read from the API about the lists, at one time.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) index: Arc<ListIndex>,
    /// Posting address -> `list_id`.
    pub(super) list_ids: HashMap<String, String>,
    /// Posting address -> the list's bans plus the site-wide bans.
    pub(super) bans: HashMap<String, Vec<Pattern>>,
    /// The lists' domains: mail hosts and their alias domains.
    pub(super) domains: HashSet<String>,
}

/// The API's answers the list data is made of, as Mailman sent them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RawSnapshot {
    /// `/domains`.
    domains: Vec<Value>,
    /// `/bans` (site-wide).
    site_bans: Vec<Value>,
    /// `list_id`s with a member or non-member whose own action is reject
    /// or discard, and hold.
    moderated_refuse: Vec<String>,
    moderated_hold: Vec<String>,
    lists: Vec<RawList>,
}

/// One list's answers.
#[derive(Debug, Serialize, Deserialize)]
struct RawList {
    /// `fqdn_listname`, lowercased.
    address: String,
    /// `list_id`, lowercased.
    list_id: String,
    /// `/lists/{id}/config`.
    config: Value,
    /// `/lists/{id}/bans`.
    bans: Vec<Value>,
    /// `/lists/{id}/header-matches`.
    header_matches: Vec<Value>,
}

impl Snapshot {
    /// Every pattern of the list data that cannot be evaluated here.
    pub(super) fn unevaluable(&self) -> Vec<Unevaluable> {
        let mut out = Vec::new();
        // Once per list, not per alias key.
        for l in self
            .index
            .iter()
            .filter(|(k, l)| **k == l.address)
            .map(|(_, l)| l)
        {
            out.extend(l.unevaluable());
            if let Some(b) = self.bans.get(&l.address) {
                out.extend(unevaluable_in(&l.address, "bans", b));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Api {
    /// Reads the list data's answers, one request at a time.
    pub(super) async fn fetch_raw(&self) -> Result<RawSnapshot, RestError> {
        let site_bans = self.collection("/bans").await?;
        let lists = self.collection("/lists").await?;
        let domains = self.collection("/domains").await?;
        // Which lists have addresses with their own refusing action: three
        // site-wide searches rather than three per list.
        let ids = |found: Vec<Value>, into: &mut Vec<String>| {
            into.extend(
                found
                    .iter()
                    .filter_map(|m| m.get("list_id").and_then(Value::as_str))
                    .map(str::to_lowercase),
            )
        };
        let (mut moderated_refuse, mut moderated_hold) = (Vec::new(), Vec::new());
        for action in ["reject", "discard", "hold"] {
            let found = self
                .collection(&format!("/members/find?moderation_action={action}"))
                .await?;
            let into = if action == "hold" {
                &mut moderated_hold
            } else {
                &mut moderated_refuse
            };
            ids(found, into);
        }
        let mut raw = RawSnapshot {
            domains,
            site_bans,
            moderated_refuse,
            moderated_hold,
            lists: Vec::with_capacity(lists.len()),
        };
        for entry in &lists {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_lowercase)
                    .ok_or_else(|| RestError::Garbage {
                        url: format!("{}/lists", self.base),
                        message: format!("a list without {name}"),
                    })
            };
            let address = field("fqdn_listname")?;
            let list_id = field("list_id")?;
            let id = enc(&list_id);
            // A 404 on any of these: deleted since the collection was read.
            let config = match self.get(&format!("/lists/{id}/config")).await {
                Ok(c) => c,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let bans = match self.collection(&format!("/lists/{id}/bans")).await {
                Ok(b) => b,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let header_matches = match self
                .collection(&format!("/lists/{id}/header-matches"))
                .await
            {
                Ok(h) => h,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            raw.lists.push(RawList {
                address,
                list_id,
                config,
                bans,
                header_matches,
            });
        }
        Ok(raw)
    }
}

impl RawSnapshot {
    /// The list data these answers (from the API at `base`) make.
    pub(super) fn build(&self, base: &str) -> Result<Snapshot, RestError> {
        let site_bans = ban_patterns(&self.site_bans, base)?;
        let aliases = alias_domains(&self.domains);
        let mut domains: HashSet<String> = aliases.values().flatten().cloned().collect();
        domains.extend(
            self.domains
                .iter()
                .filter_map(|d| d.get("mail_host").and_then(Value::as_str))
                .map(|d| d.trim().trim_end_matches('.').to_lowercase()),
        );
        let refuse: HashSet<&str> = self.moderated_refuse.iter().map(String::as_str).collect();
        let hold: HashSet<&str> = self.moderated_hold.iter().map(String::as_str).collect();
        let mut index = ListIndex::new();
        let mut list_ids = HashMap::new();
        let mut bans = HashMap::new();
        for l in &self.lists {
            let id = enc(&l.list_id);
            let mut policy = list_policy(
                &l.config,
                &l.address,
                &l.list_id,
                &format!("{base}/lists/{id}/config"),
            )?;
            let mut list_bans = ban_patterns(&l.bans, base)?;
            list_bans.extend(site_bans.iter().cloned());
            policy.header_matches = header_rules(
                &l.header_matches,
                &format!("{base}/lists/{id}/header-matches"),
            )?;
            policy.moderated_refuse = refuse.contains(l.list_id.as_str());
            policy.moderated_hold = hold.contains(l.list_id.as_str());
            policy.has_bans = !list_bans.is_empty();
            let policy = Arc::new(policy);
            // Mailman's LMTP runner reads `list@alias_domain` as
            // `list@mail_host`: the same list, under both keys.
            let (local, domain) = crate::address::split(&l.address);
            domains.insert(domain.to_owned());
            for alias in aliases.get(domain).into_iter().flatten() {
                index.insert(format!("{local}@{alias}"), policy.clone());
            }
            index.insert(l.address.clone(), policy);
            list_ids.insert(l.address.clone(), l.list_id.clone());
            bans.insert(l.address.clone(), list_bans);
        }
        Ok(Snapshot {
            index: Arc::new(index),
            list_ids,
            bans,
            domains,
        })
    }
}
