//! The list data fetched per list, lazily: a list's settings, bans and
//! header rules are read on the first RCPT to it (and the site's domains
//! and bans once), kept for `cache_ttl`, refreshed in the background from
//! three quarters of it on, and served stale up to `max_stale` while a
//! refresh runs. Identical fetches in flight are one; each runs in its own
//! task, so a caller giving up at its `timeout` does not waste it.
//! Addresses that name no list are kept as such too (bounded in number).
//!
//! A whole read of the list data ([`super::RestBackend`]'s `lists`, the
//! daemon's start-up read and `--check-config`) and the state file feed
//! this cache; it is what the state file keeps.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::snapshot::{ListEntry, Site};
use super::{RestError, RestMetrics};
use crate::list::{Unevaluable, unevaluable_line};

/// Most entries (lists and addresses known to name none) kept; past it,
/// expired entries are dropped, then addresses naming no list.
pub(super) const MAX_ENTRIES: usize = 200_000;
/// Longest one fetch (a list or the site data) may run, all its requests
/// together; each request is bounded by `timeout` besides.
pub(super) const FETCH_BOUND: Duration = Duration::from_secs(60);
/// Reads in flight at most per store (each waits its turn for one of the
/// client's few connections); past it a new read fails at once instead of
/// queueing, so a flood of new addresses cannot pile up tasks.
pub(super) const MAX_FLIGHTS: usize = 1024;

/// How old a cached value is (see [`Timed::age_class`]).
pub(super) enum Age {
    Fresh,
    /// Past three quarters of the TTL: refresh in the background.
    Aging,
    /// Past the TTL, within `max_stale`: serve, refresh in the background.
    Stale,
    /// Too old to serve.
    Expired,
}

/// A cache of values fetched by key, with fetches in flight shared.
pub(super) struct Store<K, V> {
    ttl: Duration,
    max_stale: Duration,
    /// Values dropped first when the store is full.
    evictable: fn(&V) -> bool,
    map: Mutex<HashMap<K, (Instant, V)>>,
    flights: Mutex<HashMap<K, Flight<V>>>,
    /// Where answers from the cache are counted, as `cache`.
    metrics: RestMetrics,
    cache: &'static str,
}

type Flight<V> = watch::Receiver<Option<Result<V, RestError>>>;

impl<K: Eq + Hash + Clone + Send + Sync + 'static, V: Clone + Send + Sync + 'static> Store<K, V> {
    /// A store counting its answers into `metrics` as `cache`.
    pub(super) fn new(
        ttl: Duration,
        max_stale: Duration,
        evictable: fn(&V) -> bool,
        (metrics, cache): (RestMetrics, &'static str),
    ) -> Self {
        Store {
            ttl,
            max_stale,
            evictable,
            map: Mutex::default(),
            flights: Mutex::default(),
            metrics,
            cache,
        }
    }

    fn age(&self, at: Instant) -> Age {
        let e = at.elapsed();
        if e < self.ttl / 4 * 3 {
            Age::Fresh
        } else if e < self.ttl {
            Age::Aging
        } else if !self.ttl.is_zero() && e < self.max_stale {
            Age::Stale
        } else {
            Age::Expired
        }
    }

    /// The cached value of `key` and how old it is.
    pub(super) fn peek(&self, key: &K) -> Option<(Age, V)> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|(at, v)| (self.age(*at), v.clone()))
    }

    /// Keeps `value` for `key`, read at `at`.
    pub(super) fn insert(&self, key: K, at: Instant, value: V) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            let keep = self.ttl.max(self.max_stale);
            map.retain(|_, (at, _)| at.elapsed() < keep);
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, (_, v)| !(self.evictable)(v));
            }
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (at, value));
    }

    /// Every value with its age.
    pub(super) fn entries(&self) -> Vec<(K, Duration, V)> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, (at, v))| (k.clone(), at.elapsed(), v.clone()))
            .collect()
    }

    /// The value of `key`: cached and fresh, or cached and aging or stale
    /// (a background fetch is started), or else fetched now (sharing a
    /// fetch in flight). The fetch runs in its own task, bounded by
    /// [`FETCH_BOUND`]; a good answer is cached, with `then` run after.
    pub(super) async fn get<F, Fut>(
        self: &Arc<Self>,
        key: &K,
        fetch: F,
        then: impl FnOnce(&V) + Send + 'static,
    ) -> Result<V, RestError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, RestError>> + Send + 'static,
    {
        match self.peek(key) {
            Some((Age::Fresh, v)) => {
                self.metrics.hit(self.cache);
                return Ok(v);
            }
            Some((age @ (Age::Aging | Age::Stale), v)) => {
                if matches!(age, Age::Stale) {
                    self.metrics.stale(self.cache);
                } else {
                    self.metrics.hit(self.cache);
                }
                drop(self.start(key, fetch, then));
                return Ok(v);
            }
            Some((Age::Expired, _)) | None => {}
        }
        let mut rx = self.start(key, fetch, then);
        let done = rx.wait_for(Option::is_some).await;
        match done.as_deref() {
            Ok(Some(r)) => r.clone(),
            _ => Err(RestError::Timeout(FETCH_BOUND)),
        }
    }

    /// The fetch of `key` in flight, or a new one.
    fn start<F, Fut>(
        self: &Arc<Self>,
        key: &K,
        fetch: F,
        then: impl FnOnce(&V) + Send + 'static,
    ) -> Flight<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, RestError>> + Send + 'static,
    {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = flights.get(key) {
            return rx.clone();
        }
        if flights.len() >= MAX_FLIGHTS {
            return watch::channel(Some(Err(RestError::Busy(MAX_FLIGHTS)))).1;
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx.clone());
        drop(flights);
        let (this, key, fut) = (self.clone(), key.clone(), fetch());
        tokio::spawn(async move {
            let r = tokio::time::timeout(FETCH_BOUND, fut)
                .await
                .unwrap_or(Err(RestError::Timeout(FETCH_BOUND)));
            if let Ok(v) = &r {
                this.insert(key.clone(), Instant::now(), v.clone());
                then(v);
            }
            this.flights
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            tx.send_replace(Some(r));
        });
        rx
    }
}

/// A posting address's answer: the list, or no list.
pub(super) type Known = Option<Arc<ListEntry>>;

/// The lazily fetched list data.
pub(super) struct PerList {
    pub(super) site: Arc<Store<(), Arc<Site>>>,
    /// By posting address (mail host's).
    pub(super) lists: Arc<Store<String, Known>>,
    /// The complete set of posting addresses as of a whole read (API or
    /// state file) and when it was read: an address outside it names no
    /// list, as far as that read knows.
    names: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
    /// The list domains last known, whatever their age.
    domains: Mutex<Option<Arc<HashSet<String>>>>,
    /// Unevaluable patterns already logged.
    logged: Mutex<BTreeSet<Unevaluable>>,
}

impl PerList {
    /// Empty stores, counting their answers into `metrics`.
    pub(super) fn new(ttl: Duration, max_stale: Duration, metrics: &RestMetrics) -> PerList {
        PerList {
            site: Arc::new(Store::new(
                ttl,
                max_stale,
                |_| false,
                (metrics.clone(), "site"),
            )),
            lists: Arc::new(Store::new(
                ttl,
                max_stale,
                Option::is_none,
                (metrics.clone(), "list"),
            )),
            names: Mutex::default(),
            domains: Mutex::default(),
            logged: Mutex::default(),
        }
    }

    /// The list domains last known.
    pub(super) fn domains(&self) -> Option<Arc<HashSet<String>>> {
        self.domains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds the domains of `site` (and of list addresses) to the known ones.
    pub(super) fn learn_domains<'a>(&self, more: impl IntoIterator<Item = &'a str>) {
        let mut d = self.domains.lock().unwrap_or_else(PoisonError::into_inner);
        let mut set: HashSet<String> = d.as_deref().cloned().unwrap_or_default();
        let before = set.len();
        set.extend(more.into_iter().map(str::to_owned));
        if d.is_none() || set.len() != before {
            *d = Some(Arc::new(set));
        }
    }

    /// Keeps the set of every posting address, read at `at`.
    pub(super) fn set_names(&self, at: Instant, names: HashSet<String>) {
        *self.names.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, Arc::new(names)));
    }

    /// If a whole read says `address` names no list: how old that read is.
    pub(super) fn absent_since(&self, address: &str) -> Option<Duration> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names
            .as_ref()
            .filter(|(_, n)| !n.contains(address))
            .map(|(at, _)| at.elapsed())
    }

    /// Whether `lists` holds every list of a whole read younger than
    /// `keep` (so data made of them is complete as of that read).
    /// If so, the age of that read.
    pub(super) fn complete(&self, lists: &HashSet<&str>, keep: Duration) -> Option<Duration> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names
            .as_ref()
            .filter(|(at, n)| at.elapsed() < keep && n.iter().all(|a| lists.contains(a.as_str())))
            .map(|(at, _)| at.elapsed())
    }

    /// Logs the unevaluable patterns of `entries` not logged before, on
    /// one line.
    pub(super) fn log_unevaluable<'a>(&self, entries: impl IntoIterator<Item = &'a ListEntry>) {
        let found = entries.into_iter().flat_map(ListEntry::unevaluable);
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<Unevaluable> = found
            .into_iter()
            .filter(|u| logged.insert(u.clone()))
            .collect();
        if let Some(line) = unevaluable_line(&new) {
            tracing::warn!("{line}");
        }
    }

    /// Every unevaluable pattern of the cached lists, sorted.
    pub(super) fn unevaluable(&self) -> Vec<Unevaluable> {
        let mut out: Vec<Unevaluable> = self
            .lists
            .entries()
            .into_iter()
            .filter_map(|(_, _, v)| v)
            .flat_map(|l| l.unevaluable())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn store() -> Arc<Store<String, u32>> {
        Arc::new(Store::new(
            HOUR,
            2 * HOUR,
            |_| false,
            (RestMetrics::default(), "test"),
        ))
    }

    #[tokio::test]
    async fn identical_reads_in_flight_are_one_and_the_answer_is_cached() {
        let s = store();
        let calls = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = watch::channel(false);
        let get = |s: Arc<Store<String, u32>>| {
            let (calls, mut gate) = (calls.clone(), gate_rx.clone());
            async move {
                s.get(
                    &"k".to_owned(),
                    || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(7)
                    },
                    |_| {},
                )
                .await
            }
        };
        let waiting: Vec<_> = (0..10).map(|_| tokio::spawn(get(s.clone()))).collect();
        tokio::task::yield_now().await;
        gate_tx.send_replace(true);
        for w in waiting {
            assert_eq!(w.await.unwrap().unwrap(), 7);
        }
        assert_eq!(get(s.clone()).await.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(s.peek(&"k".to_owned()), Some((Age::Fresh, 7))));
    }

    #[tokio::test]
    async fn a_failed_read_is_not_cached() {
        let s = store();
        let r = s
            .get(
                &"k".to_owned(),
                || async { Err(RestError::Timeout(HOUR)) },
                |_| {},
            )
            .await;
        assert!(r.is_err());
        assert!(s.peek(&"k".to_owned()).is_none());
        let r = s.get(&"k".to_owned(), || async { Ok(1) }, |_| {}).await;
        assert_eq!(r.unwrap(), 1);
    }

    #[tokio::test]
    async fn past_the_bound_on_reads_in_flight_a_new_read_fails_at_once() {
        let s = store();
        let (_gate_tx, gate_rx) = watch::channel(false);
        for i in 0..MAX_FLIGHTS {
            let mut gate = gate_rx.clone();
            drop(s.start(
                &i.to_string(),
                || async move {
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(0)
                },
                |_| {},
            ));
        }
        let r = s
            .get(&"one more".to_owned(), || async { Ok(1) }, |_| {})
            .await;
        assert!(matches!(r, Err(RestError::Busy(_))), "{r:?}");
    }
}
