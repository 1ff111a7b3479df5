//! Mailman 3's REST API as a [`ListBackend`]: the list data and membership
//! answers behind their caches, each call bounded by one `timeout`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::answer_cache::{AnswerCache, Cached, Key};
use super::client::{Api, enc};
use super::find::keep_lists;
use super::list_cache::Slot;
use super::members::MemberInfo;
use super::per_list::PerList;
use super::snapshot::{ListEntry, Snapshot};
use super::state;
use super::{RestConfig, RestError, RestMetrics, check_url};
use crate::backend::{BackendError, ListBackend, ListIndex, SenderStatus};
use crate::list::{ListPolicy, Pattern, PatternMatch, Unevaluable};

/// Mailman 3's REST API as a [`ListBackend`].
pub struct RestBackend {
    pub(super) api: Arc<Api>,
    pub(super) timeout: Duration,
    pub(super) ttl: Duration,
    pub(super) max_stale: Duration,
    /// Whole reads of the list data (`lists`).
    pub(super) lists: Arc<Slot>,
    /// The list data read list by list, as RCPTs need it (also fed by
    /// whole reads and the state file).
    pub(super) per_list: Arc<PerList>,
    /// A write of the list data to `state_dir` is due.
    pub(super) saving: Arc<AtomicBool>,
    pub(super) members: Arc<AnswerCache<MemberInfo>>,
    /// Membership lookups in flight, shared by identical ones.
    pub(super) inflight: Arc<InFlight>,
    pub(super) state_dir: Option<PathBuf>,
    /// Configured list domains (`[mailman] list_domains`).
    pub(super) list_domains: Option<Arc<HashSet<String>>>,
}

/// Membership lookups in flight: one shared answer per (list, sender).
type InFlight = Mutex<HashMap<Key, Arc<OnceCell<Result<MemberInfo, RestError>>>>>;

/// How often the membership answers are kept in `state_dir`.
pub const KEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Writes the usable membership answers of `cache` to `dir` (if any).
async fn keep_members(dir: &Option<PathBuf>, base: &str, cache: &AnswerCache<MemberInfo>) {
    let Some(dir) = dir.clone() else { return };
    let data: Vec<state::KeptAnswer> = cache
        .entries()
        .into_iter()
        .map(|((l, s), age, info)| (l, s, age.as_secs(), info))
        .collect();
    let base = base.to_owned();
    let done = tokio::task::spawn_blocking(move || {
        state::save_members(&dir, &base, data).map_err(|e| (dir, e))
    })
    .await;
    if let Ok(Err((dir, e))) = done {
        tracing::warn!(dir = %dir.display(), "cannot keep the membership answers: {e}");
    }
}

/// Most time one load of the list data may take, all requests together.
/// Callers wait at most their `timeout` for it; the load goes on.
pub const LOAD_BOUND: Duration = Duration::from_secs(600);

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
    /// A backend for `config`. Nothing is fetched yet; the list data kept
    /// in `state_dir`, if any, is read (and served as long as its age
    /// allows: its domains always). Counts into unregistered counters.
    pub fn new(config: &RestConfig) -> Result<RestBackend, RestError> {
        RestBackend::counted(config, RestMetrics::default())
    }

    /// [`RestBackend::new`], counting HTTP requests, their failures and
    /// the caches' answers into `metrics`.
    pub fn counted(config: &RestConfig, metrics: RestMetrics) -> Result<RestBackend, RestError> {
        let base = check_url(&config.url)?;
        let lists = Arc::new(Slot::default());
        let per_list = Arc::new(PerList::new(config.cache_ttl, config.max_stale, &metrics));
        if let Some(dir) = &config.state_dir
            && let Some((age, raw)) = state::load(dir, &base)
        {
            match raw.build(&base).and_then(|s| Ok((s, raw.parts(&base)?))) {
                Ok((s, (site, entries))) => {
                    let usable = age < config.max_stale.max(config.cache_ttl);
                    tracing::info!(
                        file = %state::path(dir).display(),
                        age = ?age,
                        lists = s.list_ids.len(),
                        "list data kept from a previous run{}",
                        if usable { "" } else { " (too old to serve; its domains still count)" }
                    );
                    let at =
                        |more: u64| Instant::now().checked_sub(age + Duration::from_secs(more));
                    per_list.learn_domains(s.domains.iter().map(String::as_str));
                    per_list.log_unevaluable(&entries);
                    if let Some(t) = at(raw.site_age) {
                        per_list.site.insert((), t, Arc::new(site));
                    }
                    if !raw.partial
                        && let Some(t) = at(raw.names_age)
                    {
                        per_list.set_names(t, s.list_ids.keys().cloned().collect());
                    }
                    for e in entries {
                        if let Some(t) = at(e.raw.age) {
                            per_list
                                .lists
                                .insert(e.raw.address.clone(), t, Some(Arc::new(e)));
                        }
                    }
                    if let Some(t) = at(0) {
                        for a in &raw.absent {
                            per_list.lists.insert(a.clone(), t, None);
                        }
                    }
                    // Whole reads only: `lists` serves nothing less.
                    let whole = at(raw.names_age).filter(|_| usable && !raw.partial);
                    lists.set(whole, Arc::new(s));
                }
                Err(e) => tracing::warn!(
                    file = %state::path(dir).display(),
                    "kept list data unusable, ignored: {e}"
                ),
            }
        }
        let members = Arc::new(AnswerCache::new(
            config.cache_ttl,
            config.max_stale,
            config.cache_size,
        ));
        if let Some(dir) = &config.state_dir {
            let kept = state::load_members(dir, &base);
            let n = kept.len();
            for (list_id, sender, age, info) in kept {
                members.insert_aged((list_id, sender), info, age);
            }
            if n > 0 {
                tracing::info!(
                    answers = members.len(),
                    "membership answers kept from a previous run"
                );
            }
        }
        let api = Api::new(base, config, metrics)?;
        let backend = RestBackend {
            inflight: Arc::default(),
            state_dir: config.state_dir.clone(),
            list_domains: config
                .list_domains
                .as_ref()
                .map(|d| Arc::new(d.iter().cloned().collect())),
            api: Arc::new(api),
            timeout: config.timeout,
            ttl: config.cache_ttl,
            max_stale: config.max_stale,
            lists,
            per_list,
            saving: Arc::default(),
            members,
        };
        backend.keep_state_periodically();
        Ok(backend)
    }

    /// Keeps the membership answers in `state_dir` now (also done every
    /// [`KEEP_INTERVAL`] while the backend lives, inside a Tokio runtime).
    pub async fn keep_state(&self) {
        keep_members(&self.state_dir, &self.api.base, &self.members).await;
        keep_lists(
            &self.state_dir,
            &self.api.base,
            &self.per_list,
            self.keep_age(),
        )
        .await;
    }

    /// Age past which kept answers are useless.
    pub(super) fn keep_age(&self) -> Duration {
        self.ttl.max(self.max_stale)
    }

    fn keep_state_periodically(&self) {
        let (Some(_), Ok(handle)) = (&self.state_dir, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (dir, base) = (self.state_dir.clone(), self.api.base.clone());
        let cache = Arc::downgrade(&self.members);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(KEEP_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(cache) = cache.upgrade() else { return };
                keep_members(&dir, &base, &cache).await;
            }
        });
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.api.base
    }

    /// The unevaluable patterns of the list data read last (none before
    /// the first read).
    pub fn unevaluable(&self) -> Vec<Unevaluable> {
        self.per_list.unevaluable()
    }

    /// The list domains: configured, or else those of the list data last
    /// read (from the API or the state file), whatever its age. None:
    /// never known.
    pub fn known_list_domains(&self) -> Option<Arc<HashSet<String>>> {
        self.list_domains
            .clone()
            .or_else(|| self.per_list.domains())
    }

    /// Number of cached membership answers (for tests and diagnostics).
    pub fn cached_answers(&self) -> usize {
        self.members.len()
    }

    pub(super) async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, RestError>>,
    ) -> Result<T, RestError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or(Err(RestError::Timeout(self.timeout)))
    }
}

impl RestBackend {
    /// The list data. Fresh (younger than `cache_ttl`): from the cache, and
    /// past three quarters of it a background load starts. Stale (younger
    /// than `max_stale`): from the cache while a background load runs.
    /// Older or absent: a load is started (unless one runs) and waited for.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, RestError> {
        let asked = Instant::now();
        let done = self.lists.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        match self.lists.get() {
            Some((at, s)) if at.elapsed() < self.ttl => {
                if at.elapsed() >= self.ttl / 4 * 3 {
                    self.start_load();
                }
                self.api.metrics.hit("lists");
                return Ok(s);
            }
            // No TTL means no cache: nothing is served stale either.
            Some((at, s)) if !self.ttl.is_zero() && at.elapsed() < self.max_stale => {
                self.start_load();
                self.api.metrics.stale("lists");
                return Ok(s);
            }
            _ => {}
        }
        self.start_load();
        done.await;
        match self.lists.get() {
            Some((at, s)) if at >= asked || at.elapsed() < self.ttl => Ok(s),
            _ => Err(self
                .lists
                .last_error()
                .unwrap_or(RestError::Timeout(self.timeout))),
        }
    }

    /// Starts loading the list data in the background unless a load runs.
    /// The load is bounded by [`LOAD_BOUND`] in all (each request by
    /// `timeout`), not by any caller's wait.
    fn start_load(&self) {
        if self.lists.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let (api, slot, state_dir) = (self.api.clone(), self.lists.clone(), self.state_dir.clone());
        let (per_list, keep) = (self.per_list.clone(), self.keep_age());
        tokio::spawn(async move {
            let read = tokio::time::timeout(LOAD_BOUND, api.fetch_raw())
                .await
                .unwrap_or(Err(RestError::Timeout(LOAD_BOUND)));
            match read.and_then(|raw| Ok((raw.build(&api.base)?, raw.parts(&api.base)?))) {
                Ok((s, (site, entries))) => {
                    tracing::debug!(lists = s.list_ids.len(), "Mailman lists read");
                    let now = Instant::now();
                    per_list.learn_domains(s.domains.iter().map(String::as_str));
                    per_list.log_unevaluable(&entries);
                    per_list.site.insert((), now, Arc::new(site));
                    per_list.set_names(now, s.list_ids.keys().cloned().collect());
                    for e in entries {
                        per_list
                            .lists
                            .insert(e.raw.address.clone(), now, Some(Arc::new(e)));
                    }
                    slot.set(Some(now), Arc::new(s));
                    keep_lists(&state_dir, &api.base, &per_list, keep).await;
                }
                Err(e) => {
                    tracing::warn!("reading the Mailman lists: {e}");
                    slot.failed(e);
                }
            }
            slot.loading.store(false, Ordering::Release);
            slot.done.notify_waiters();
        });
    }

    /// What Mailman knows about `sender` (normalised) on the list
    /// `list_id`. Fresh in the cache: that (past three quarters of
    /// `cache_ttl` it is refreshed in the background). Stale: asked again
    /// before it is used, and used only if that fails. Otherwise asked now.
    /// Identical lookups in flight are one request.
    async fn member_info(&self, list_id: &str, sender: &str) -> Result<MemberInfo, RestError> {
        let key = (list_id.to_owned(), sender.to_owned());
        let stale = match self.members.get(&key) {
            Cached::Fresh(info) => {
                self.api.metrics.hit("member");
                return Ok(info);
            }
            Cached::Aging(info) => {
                self.api.metrics.hit("member");
                self.refresh_member_in_background(key);
                return Ok(info);
            }
            Cached::Stale(info) => Some(info),
            Cached::Missing => None,
        };
        let asked = self.lookup_once(&key);
        let Some(old) = stale else {
            return asked.await;
        };
        // Leave time for the rest of the decision within `timeout`.
        let answer = tokio::time::timeout(self.timeout / 2, asked).await;
        if !matches!(answer, Ok(Ok(_))) {
            self.api.metrics.stale("member");
        }
        match answer {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => {
                tracing::warn!(
                    list_id,
                    sender,
                    "asking again for a stale membership answer: {e}; the old one is used"
                );
                Ok(old)
            }
            Err(_) => {
                tracing::warn!(
                    list_id,
                    sender,
                    "asking again for a stale membership answer: no answer in time; the old one is used"
                );
                Ok(old)
            }
        }
    }

    /// Looks `key` up, sharing the request with identical lookups in
    /// flight, and caches a good answer.
    fn lookup_once(
        &self,
        key: &Key,
    ) -> impl Future<Output = Result<MemberInfo, RestError>> + Send + 'static {
        let cell = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let (api, cache, inflight, key) = (
            self.api.clone(),
            self.members.clone(),
            self.inflight.clone(),
            key.clone(),
        );
        async move {
            let result = cell
                .get_or_init(|| async {
                    let r = api.lookup_member(&key.0, &key.1).await;
                    if let Ok(info) = &r {
                        cache.insert(key.clone(), *info);
                    }
                    r
                })
                .await
                .clone();
            let mut map = inflight.lock().unwrap_or_else(PoisonError::into_inner);
            if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(&key);
            }
            result
        }
    }

    fn refresh_member_in_background(&self, key: Key) {
        if !self.members.start_refresh(&key) {
            return;
        }
        let (lookup, cache, timeout) = (self.lookup_once(&key), self.members.clone(), self.timeout);
        tokio::spawn(async move {
            let (list_id, sender) = &key;
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(_)) => {}
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
        entry: &ListEntry,
        list: &ListPolicy,
        sender: &str,
    ) -> Result<SenderStatus, RestError> {
        let list_id = &entry.raw.list_id;
        let banned = entry
            .bans
            .iter()
            .any(|p| p.matches(sender) == PatternMatch::Yes);
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
                    && let Some(other) = self.known(other).await?
                    && self.member_info(&other.raw.list_id, sender).await?.member
                {
                    accepted_via = Some(other.raw.address.clone());
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
    fn list_domains(&self) -> Option<Arc<HashSet<String>>> {
        self.known_list_domains()
    }

    async fn lists(&self) -> Result<Arc<ListIndex>, BackendError> {
        let s = self.bounded(self.snapshot()).await?;
        Ok(s.index.clone())
    }

    fn lazy(&self) -> bool {
        true
    }

    async fn find_lists(&self, candidates: &[String]) -> Result<Arc<ListIndex>, BackendError> {
        Ok(Arc::new(self.bounded(self.find(candidates)).await?))
    }

    async fn senders(
        &self,
        list: &ListPolicy,
        senders: &[String],
    ) -> Result<Vec<SenderStatus>, BackendError> {
        let all = async {
            let entry = self
                .known(&list.address)
                .await?
                .ok_or_else(|| RestError::NotFound {
                    url: format!("{}/lists/{}", self.api.base, enc(&list.address)),
                })?;
            let mut out = Vec::with_capacity(senders.len());
            for s in senders {
                out.push(self.status(&entry, list, s).await?);
            }
            Ok(out)
        };
        Ok(self.bounded(all).await?)
    }
}
