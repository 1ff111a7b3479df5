//! Mailman 3's REST API as a [`ListBackend`]: the list data and membership
//! answers behind their caches, each call bounded by one `timeout`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::answer_cache::{AnswerCache, Cached, Key};
use super::client::{Api, enc};
use super::list_cache::Slot;
use super::members::MemberInfo;
use super::snapshot::Snapshot;
use super::{RestConfig, RestError, check_url};
use crate::backend::{BackendError, ListBackend, ListIndex, SenderStatus};
use crate::list::{ListPolicy, Pattern, PatternMatch, Unevaluable};

/// Mailman 3's REST API as a [`ListBackend`].
pub struct RestBackend {
    api: Arc<Api>,
    timeout: Duration,
    ttl: Duration,
    max_stale: Duration,
    lists: Arc<Slot>,
    members: Arc<AnswerCache<MemberInfo>>,
}

impl std::fmt::Debug for RestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestBackend")
            .field("base", &self.api.base)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("max_stale", &self.max_stale)
            .finish_non_exhaustive()
    }
}

impl RestBackend {
    /// A backend for `config`. Nothing is fetched yet.
    pub fn new(config: &RestConfig) -> Result<RestBackend, RestError> {
        let api = Api::new(check_url(&config.url)?, config);
        Ok(RestBackend {
            api: Arc::new(api),
            timeout: config.timeout,
            ttl: config.cache_ttl,
            max_stale: config.max_stale,
            lists: Arc::new(Slot::default()),
            members: Arc::new(AnswerCache::new(
                config.cache_ttl,
                config.max_stale,
                config.cache_size,
            )),
        })
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.api.base
    }

    /// The unevaluable patterns of the list data read last (none before
    /// the first read).
    pub fn unevaluable(&self) -> Vec<Unevaluable> {
        self.lists
            .get()
            .map(|(_, s)| s.unevaluable())
            .unwrap_or_default()
    }

    /// Number of cached membership answers (for tests and diagnostics).
    pub fn cached_answers(&self) -> usize {
        self.members.len()
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, RestError>>,
    ) -> Result<T, RestError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or(Err(RestError::Timeout(self.timeout)))
    }
}

impl RestBackend {
    /// The list data. Fresh (younger than `cache_ttl`): from the cache.
    /// Stale (younger than `max_stale`): from the cache, while one
    /// background refresh (bounded by `timeout`) reads it anew. Older or
    /// absent: read now, one reader at a time.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, RestError> {
        match self.lists.get() {
            Some((at, s)) if at.elapsed() < self.ttl => return Ok(s),
            // No TTL means no cache: nothing is served stale either.
            Some((at, s)) if !self.ttl.is_zero() && at.elapsed() < self.max_stale => {
                self.refresh_in_background();
                return Ok(s);
            }
            _ => {}
        }
        let _one = self.lists.fetching.lock().await;
        if let Some((at, s)) = self.lists.get()
            && at.elapsed() < self.ttl
        {
            return Ok(s);
        }
        let s = Arc::new(self.api.fetch_snapshot().await?);
        tracing::debug!(lists = s.index.len(), "Mailman lists read");
        self.lists.set(s.clone());
        Ok(s)
    }

    fn refresh_in_background(&self) {
        if self.lists.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (api, slot, timeout) = (self.api.clone(), self.lists.clone(), self.timeout);
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, api.fetch_snapshot()).await {
                Ok(Ok(s)) => {
                    tracing::debug!(lists = s.index.len(), "Mailman lists refreshed");
                    slot.set(Arc::new(s));
                }
                Ok(Err(e)) => tracing::warn!("refreshing the Mailman lists: {e}"),
                Err(_) => {
                    tracing::warn!("refreshing the Mailman lists: no answer within {timeout:?}")
                }
            }
            slot.refreshing.store(false, Ordering::Release);
        });
    }

    /// What Mailman knows about `sender` (normalised) on the list
    /// `list_id`: fresh from the cache; stale from the cache while a
    /// background refresh asks again; otherwise asked now.
    async fn member_info(&self, list_id: &str, sender: &str) -> Result<MemberInfo, RestError> {
        let key = (list_id.to_owned(), sender.to_owned());
        match self.members.get(&key) {
            Cached::Fresh(info) => return Ok(info),
            Cached::Stale(info) => {
                self.refresh_member_in_background(key);
                return Ok(info);
            }
            Cached::Missing => {}
        }
        let info = self.api.lookup_member(list_id, sender).await?;
        self.members.insert(key, info);
        Ok(info)
    }

    fn refresh_member_in_background(&self, key: Key) {
        if !self.members.start_refresh(&key) {
            return;
        }
        let (api, cache, timeout) = (self.api.clone(), self.members.clone(), self.timeout);
        tokio::spawn(async move {
            let (list_id, sender) = &key;
            match tokio::time::timeout(timeout, api.lookup_member(list_id, sender)).await {
                Ok(Ok(info)) => cache.insert(key.clone(), info),
                Ok(Err(e)) => {
                    tracing::warn!(
                        list_id,
                        sender,
                        "refreshing a membership answer: {e}; the cached one stays in use"
                    )
                }
                Err(_) => tracing::warn!(
                    list_id,
                    sender,
                    "refreshing a membership answer: no answer within {timeout:?}; the cached one stays in use"
                ),
            }
            cache.end_refresh(&key);
        });
    }

    async fn status(
        &self,
        snapshot: &Snapshot,
        list: &ListPolicy,
        sender: &str,
    ) -> Result<SenderStatus, RestError> {
        let list_id = snapshot
            .list_ids
            .get(&list.address)
            .ok_or_else(|| RestError::NotFound {
                url: format!("{}/lists/{}", self.api.base, enc(&list.address)),
            })?;
        let banned = snapshot
            .bans
            .get(&list.address)
            .is_some_and(|b| b.iter().any(|p| p.matches(sender) == PatternMatch::Yes));
        let info = if banned {
            MemberInfo::default()
        } else {
            self.member_info(list_id, sender).await?
        };
        let member = info.member;
        let mut accepted_via = None;
        if !banned && !member {
            for p in &list.accept_nonmembers {
                if let Pattern::ListMembers(other) = p
                    && other != &list.address
                    && let Some(other_id) = snapshot.list_ids.get(other)
                    && self.member_info(other_id, sender).await?.member
                {
                    accepted_via = Some(other.clone());
                    break;
                }
            }
        }
        Ok(SenderStatus {
            member,
            banned,
            accepted_via,
            moderation: info.moderation,
        })
    }
}

impl ListBackend for RestBackend {
    async fn lists(&self) -> Result<Arc<ListIndex>, BackendError> {
        let s = self.bounded(self.snapshot()).await?;
        Ok(s.index.clone())
    }

    async fn senders(
        &self,
        list: &ListPolicy,
        senders: &[String],
    ) -> Result<Vec<SenderStatus>, BackendError> {
        let all = async {
            let snapshot = self.snapshot().await?;
            let mut out = Vec::with_capacity(senders.len());
            for s in senders {
                out.push(self.status(&snapshot, list, s).await?);
            }
            Ok(out)
        };
        Ok(self.bounded(all).await?)
    }
}
