//! Finding the list a recipient names, list by list: the site data
//! (domains, alias domains, site bans) and each list read from the API on
//! first use through the per-list cache, and the list data kept in
//! `state_dir` soon after each read.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::RestError;
use super::backend::RestBackend;
use super::per_list::{Known, PerList};
use super::snapshot::{ListEntry, RawSnapshot, Site};
use super::state;
use crate::backend::ListIndex;

/// Writes the list data of `per_list` younger than `keep` to `dir` (if any).
pub(super) async fn keep_lists(
    dir: &Option<PathBuf>,
    base: &str,
    per_list: &PerList,
    keep: Duration,
) {
    let Some(dir) = dir.clone() else { return };
    let site = per_list.site.entries().into_iter().next();
    let (mut lists, mut absent) = (Vec::new(), Vec::new());
    let entries = per_list.lists.entries();
    for (address, age, known) in &entries {
        match known {
            Some(l) if *age < keep => lists.push((*age, &**l)),
            None if *age < keep => absent.push(address.clone()),
            _ => {}
        }
    }
    let written: HashSet<&str> = lists.iter().map(|(_, l)| l.raw.address.as_str()).collect();
    let complete = per_list.complete(&written, keep);
    let mut raw = RawSnapshot::of(
        site.as_ref().map(|(_, age, s)| (*age, &**s)),
        lists,
        absent,
        complete.is_none(),
    );
    raw.names_age = complete.map_or(0, |a| a.as_secs());
    let base = base.to_owned();
    let saved =
        tokio::task::spawn_blocking(move || state::save(&dir, &base, &raw).map_err(|e| (dir, e)))
            .await;
    if let Ok(Err((dir, e))) = saved {
        tracing::warn!(
            file = %state::path(&dir).display(),
            "cannot keep the list data on disk: {e}"
        );
    }
}

impl RestBackend {
    /// The site's domains and bans: cached, or read now.
    pub(super) async fn site(&self) -> Result<Arc<Site>, RestError> {
        let (api, per_list) = (self.api.clone(), self.per_list.clone());
        let fetch = || async move {
            let (domains, bans) = api.fetch_site().await?;
            Ok(Arc::new(Site::build(domains, bans, &api.base)?))
        };
        let keep = self.keep_soon();
        self.per_list
            .site
            .get(&(), fetch, move |site: &Arc<Site>| {
                per_list.learn_domains(site.domains.iter().map(String::as_str));
                keep();
            })
            .await
    }

    /// A closure that has the list data written to `state_dir` soon.
    fn keep_soon(&self) -> impl FnOnce() + Send + 'static {
        let twin = KeepSoon {
            state_dir: self.state_dir.clone(),
            base: self.api.base.clone(),
            per_list: self.per_list.clone(),
            saving: self.saving.clone(),
            keep: self.keep_age(),
        };
        move || twin.run()
    }

    /// What `address` (normalised, maybe in an alias domain) names: a
    /// list, or none. From the cache, else read from the API (the site
    /// data first, for the alias domains).
    pub(super) async fn known(&self, address: &str) -> Result<Known, RestError> {
        // The site data is as old as any whole read, or newer: if it
        // cannot be had, no whole read can say anything either.
        let site = self.site().await?;
        let (local, domain) = crate::address::split(address);
        let address = match site.aliases.get(domain) {
            Some(host) => format!("{local}@{host}"),
            None if site.mail_hosts.contains(domain) => address.to_owned(),
            // No list lives there.
            None => return Ok(None),
        };
        // A whole read that has no such list is a cached answer like any
        // other: used as it is within `cache_ttl`; past it, asked again,
        // and still used within `max_stale` if the API fails or is slow.
        let absent_for = self.per_list.absent_since(&address);
        if absent_for.is_some_and(|a| a < self.ttl) && self.per_list.lists.peek(&address).is_none()
        {
            self.api.metrics.hit("list");
            return Ok(None);
        }
        let fallback = absent_for.is_some_and(|a| !self.ttl.is_zero() && a < self.max_stale);
        if !fallback {
            return self.ask(address, site).await;
        }
        match tokio::time::timeout(self.timeout / 2, self.ask(address, site)).await {
            Ok(Ok(k)) => Ok(k),
            Ok(Err(_)) | Err(_) => {
                self.api.metrics.stale("list");
                Ok(None)
            }
        }
    }

    /// What `address` (a mail host's) names, from the per-list cache or
    /// the API.
    async fn ask(&self, address: String, site: Arc<Site>) -> Result<Known, RestError> {
        let (api, per_list) = (self.api.clone(), self.per_list.clone());
        let key = address.clone();
        let fetch = || async move {
            let Some((raw, refuse, hold)) = api.fetch_list(&key).await? else {
                return Ok(None);
            };
            let entry = ListEntry::build(raw, refuse, hold, &site, &api.base)?;
            Ok(Some(Arc::new(entry)))
        };
        let keep = self.keep_soon();
        self.per_list
            .lists
            .get(&address, fetch, move |known: &Known| {
                if let Some(l) = known {
                    per_list.learn_domains([crate::address::split(&l.raw.address).1]);
                    per_list.log_unevaluable([&**l]);
                }
                keep();
            })
            .await
    }

    /// The lists among `candidates` (normalised posting addresses, in the
    /// order a recipient is matched): each asked in turn until one is a
    /// list, which is then the only one in the index.
    pub(super) async fn find(&self, candidates: &[String]) -> Result<ListIndex, RestError> {
        let mut index = ListIndex::new();
        if candidates.is_empty() {
            // Nothing to find: the site data (list domains) is read.
            self.site().await?;
        }
        for c in candidates {
            if let Some(l) = self.known(c).await? {
                index.insert(c.clone(), l.policy.clone());
                break;
            }
        }
        Ok(index)
    }
}

/// What [`RestBackend::keep_soon`] needs.
struct KeepSoon {
    state_dir: Option<PathBuf>,
    base: String,
    per_list: Arc<PerList>,
    saving: Arc<AtomicBool>,
    keep: Duration,
}

impl KeepSoon {
    fn run(self) {
        if self.state_dir.is_none() || self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.saving.store(false, Ordering::Release);
            keep_lists(&self.state_dir, &self.base, &self.per_list, self.keep).await;
        });
    }
}
