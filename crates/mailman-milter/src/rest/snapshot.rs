//! The list data read from the API at one time: every list's posting
//! settings and bans.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    pub(super) async fn fetch_snapshot(&self) -> Result<Snapshot, RestError> {
        let site_bans = ban_patterns(&self.collection("/bans").await?, &self.base)?;
        let lists = self.collection("/lists").await?;
        let aliases = alias_domains(&self.collection("/domains").await?);
        // Which lists have addresses with their own refusing action: three
        // site-wide searches rather than three per list.
        let mut moderated: HashMap<&str, HashSet<String>> = HashMap::new();
        for action in ["reject", "discard", "hold"] {
            let found = self
                .collection(&format!("/members/find?moderation_action={action}"))
                .await?;
            moderated.insert(
                action,
                found
                    .iter()
                    .filter_map(|m| m.get("list_id").and_then(Value::as_str))
                    .map(str::to_lowercase)
                    .collect(),
            );
        }
        let mut index = ListIndex::new();
        let mut list_ids = HashMap::new();
        let mut bans = HashMap::new();
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
            let config = match self.get(&format!("/lists/{id}/config")).await {
                Ok(c) => c,
                // Deleted since the collection was read.
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut policy = list_policy(
                &config,
                &address,
                &list_id,
                &format!("{}/lists/{id}/config", self.base),
            )?;
            let moderated_refuse = ["reject", "discard"]
                .iter()
                .any(|a| moderated.get(*a).is_some_and(|ids| ids.contains(&list_id)));
            let moderated_hold = moderated
                .get("hold")
                .is_some_and(|ids| ids.contains(&list_id));
            let mut list_bans = match self.collection(&format!("/lists/{id}/bans")).await {
                Ok(b) => ban_patterns(&b, &self.base)?,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            list_bans.extend(site_bans.iter().cloned());
            let path = format!("/lists/{id}/header-matches");
            policy.header_matches = match self.collection(&path).await {
                Ok(h) => header_rules(&h, &format!("{}{path}", self.base))?,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            policy.moderated_refuse = moderated_refuse;
            policy.moderated_hold = moderated_hold;
            policy.has_bans = !list_bans.is_empty();
            let policy = Arc::new(policy);
            // Mailman's LMTP runner reads `list@alias_domain` as
            // `list@mail_host`: the same list, under both keys.
            let (local, domain) = crate::address::split(&address);
            for alias in aliases.get(domain).into_iter().flatten() {
                index.insert(format!("{local}@{alias}"), policy.clone());
            }
            index.insert(address.clone(), policy);
            list_ids.insert(address.clone(), list_id);
            bans.insert(address, list_bans);
        }
        Ok(Snapshot {
            index: Arc::new(index),
            list_ids,
            bans,
        })
    }
}
