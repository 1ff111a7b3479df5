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
use crate::list::{ListPolicy, Pattern, Unevaluable, unevaluable_in};

/// Everything read from the API about the lists, at one time.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) index: Arc<ListIndex>,
    /// Posting address -> `list_id`.
    pub(super) list_ids: HashMap<String, String>,
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
    /// Posting addresses known to name no list (read one by one).
    #[serde(default)]
    pub(super) absent: Vec<String>,
    /// Not every list is in `lists` (data read list by list, never whole):
    /// a name missing here may still be a list.
    #[serde(default)]
    pub(super) partial: bool,
    /// Seconds `domains` and `site_bans` were older than the file.
    #[serde(default)]
    pub(super) site_age: u64,
    /// Seconds the whole read that `lists` completes was older than the
    /// file (when not `partial`).
    #[serde(default)]
    pub(super) names_age: u64,
}

/// One list's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RawList {
    /// `fqdn_listname`, lowercased.
    pub(super) address: String,
    /// `list_id`, lowercased.
    pub(super) list_id: String,
    /// `/lists/{id}/config`.
    pub(super) config: Value,
    /// `/lists/{id}/bans`.
    pub(super) bans: Vec<Value>,
    /// `/lists/{id}/header-matches`.
    pub(super) header_matches: Vec<Value>,
    /// Seconds these answers were older than the file.
    #[serde(default)]
    pub(super) age: u64,
}

/// The site-wide part of the list data: domains and site bans.
#[derive(Debug, Default)]
pub(super) struct Site {
    /// `/domains`, as Mailman sent it.
    pub(super) raw_domains: Vec<Value>,
    /// `/bans`, as Mailman sent it.
    pub(super) raw_bans: Vec<Value>,
    /// Alias domain -> its mail host.
    pub(super) aliases: HashMap<String, String>,
    /// Mail host -> its alias domains.
    pub(super) aliases_of: HashMap<String, Vec<String>>,
    /// Mail hosts.
    pub(super) mail_hosts: HashSet<String>,
    /// Mail hosts and alias domains.
    pub(super) domains: HashSet<String>,
    /// The site-wide bans.
    pub(super) bans: Vec<Pattern>,
}

impl Site {
    /// The site data these answers (from the API at `base`) make.
    pub(super) fn build(
        raw_domains: Vec<Value>,
        raw_bans: Vec<Value>,
        base: &str,
    ) -> Result<Site, RestError> {
        let bans = ban_patterns(&raw_bans, base)?;
        let aliases_of = alias_domains(&raw_domains);
        let mail_hosts: HashSet<String> = raw_domains
            .iter()
            .filter_map(|d| d.get("mail_host").and_then(Value::as_str))
            .map(|d| d.trim().trim_end_matches('.').to_lowercase())
            .collect();
        let mut domains: HashSet<String> = aliases_of.values().flatten().cloned().collect();
        domains.extend(mail_hosts.iter().cloned());
        let aliases = aliases_of
            .iter()
            .flat_map(|(host, a)| a.iter().map(move |a| (a.clone(), host.clone())))
            .collect();
        Ok(Site {
            raw_domains,
            raw_bans,
            aliases,
            aliases_of,
            mail_hosts,
            domains,
            bans,
        })
    }
}

/// One list as the milter uses it.
#[derive(Debug)]
pub(super) struct ListEntry {
    /// Mailman's answers it was made of.
    pub(super) raw: RawList,
    /// Some address has its own refusing (or holding) action.
    pub(super) moderated_refuse: bool,
    pub(super) moderated_hold: bool,
    /// The posting policy (site bans counted in `has_bans`).
    pub(super) policy: Arc<ListPolicy>,
    /// The list's bans plus the site-wide bans.
    pub(super) bans: Vec<Pattern>,
}

impl ListEntry {
    /// The list these answers (from the API at `base`) make, with the
    /// site's bans.
    pub(super) fn build(
        raw: RawList,
        moderated_refuse: bool,
        moderated_hold: bool,
        site: &Site,
        base: &str,
    ) -> Result<ListEntry, RestError> {
        let id = enc(&raw.list_id);
        let mut policy = list_policy(
            &raw.config,
            &raw.address,
            &raw.list_id,
            &format!("{base}/lists/{id}/config"),
        )?;
        let mut bans = ban_patterns(&raw.bans, base)?;
        bans.extend(site.bans.iter().cloned());
        policy.header_matches = header_rules(
            &raw.header_matches,
            &format!("{base}/lists/{id}/header-matches"),
        )?;
        policy.moderated_refuse = moderated_refuse;
        policy.moderated_hold = moderated_hold;
        policy.has_bans = !bans.is_empty();
        Ok(ListEntry {
            raw,
            moderated_refuse,
            moderated_hold,
            policy: Arc::new(policy),
            bans,
        })
    }

    /// Its patterns that cannot be evaluated here.
    pub(super) fn unevaluable(&self) -> Vec<Unevaluable> {
        let mut out = self.policy.unevaluable();
        out.extend(unevaluable_in(&self.policy.address, "bans", &self.bans));
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
            ..RawSnapshot::default()
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
                age: 0,
            });
        }
        Ok(raw)
    }
}

impl RawSnapshot {
    /// The site data and lists these answers (from the API at `base`) make.
    pub(super) fn parts(&self, base: &str) -> Result<(Site, Vec<ListEntry>), RestError> {
        let site = Site::build(self.domains.clone(), self.site_bans.clone(), base)?;
        let refuse: HashSet<&str> = self.moderated_refuse.iter().map(String::as_str).collect();
        let hold: HashSet<&str> = self.moderated_hold.iter().map(String::as_str).collect();
        let lists = self
            .lists
            .iter()
            .map(|l| {
                let id = l.list_id.as_str();
                ListEntry::build(
                    l.clone(),
                    refuse.contains(id),
                    hold.contains(id),
                    &site,
                    base,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((site, lists))
    }

    /// The answers that make `site` and `lists` (`partial` if they may not
    /// be every list), each with its age now.
    pub(super) fn of(
        site: Option<(std::time::Duration, &Site)>,
        lists: Vec<(std::time::Duration, &ListEntry)>,
        absent: Vec<String>,
        partial: bool,
    ) -> RawSnapshot {
        let mut raw = RawSnapshot {
            absent,
            partial,
            ..RawSnapshot::default()
        };
        if let Some((age, site)) = site {
            raw.domains = site.raw_domains.clone();
            raw.site_bans = site.raw_bans.clone();
            raw.site_age = age.as_secs();
        }
        for (age, l) in lists {
            if l.moderated_refuse {
                raw.moderated_refuse.push(l.raw.list_id.clone());
            }
            if l.moderated_hold {
                raw.moderated_hold.push(l.raw.list_id.clone());
            }
            let mut r = l.raw.clone();
            r.age = age.as_secs();
            raw.lists.push(r);
        }
        raw
    }

    /// The list data these answers (from the API at `base`) make.
    pub(super) fn build(&self, base: &str) -> Result<Snapshot, RestError> {
        let (site, lists) = self.parts(base)?;
        let mut domains = site.domains.clone();
        let mut index = ListIndex::new();
        let mut list_ids = HashMap::new();
        for l in lists {
            let address = l.raw.address.clone();
            // Mailman's LMTP runner reads `list@alias_domain` as
            // `list@mail_host`: the same list, under both keys.
            let (local, domain) = crate::address::split(&address);
            domains.insert(domain.to_owned());
            for alias in site.aliases_of.get(domain).into_iter().flatten() {
                index.insert(format!("{local}@{alias}"), l.policy.clone());
            }
            index.insert(address.clone(), l.policy.clone());
            list_ids.insert(address, l.raw.list_id.clone());
        }
        Ok(Snapshot {
            index: Arc::new(index),
            list_ids,
            domains,
        })
    }
}
