//! The REST backend's cache of per-(list, address) answers: fresh for the
//! TTL, then served stale (while the caller refreshes it in the background)
//! up to `max_stale`, then gone. Bounded in entries and in concurrent
//! refreshes, so neither a flood of new senders nor a dead API grows it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How old a cached answer is.
pub(crate) enum Cached<V> {
    /// Younger than three quarters of the TTL: use it.
    Fresh(V),
    /// Younger than the TTL but older than three quarters of it: use it,
    /// and refresh it in the background before it goes stale.
    Aging(V),
    /// Older, but younger than `max_stale`: use it and refresh it.
    Stale(V),
    /// Absent or too old.
    Missing,
}

/// Most background refreshes of membership answers running at once; past
/// that, stale answers are served without a refresh until one finishes.
pub(crate) const MAX_REFRESHES: usize = 32;

pub(crate) type Key = (String, String);

/// A size-bounded cache whose entries go stale, then expire.
#[derive(Debug)]
pub(crate) struct AnswerCache<V> {
    ttl: Duration,
    max_stale: Duration,
    capacity: usize,
    map: Mutex<HashMap<Key, (Instant, V)>>,
    /// Keys being refreshed in the background.
    refreshing: Mutex<HashSet<Key>>,
}

impl<V: Clone> AnswerCache<V> {
    pub(crate) fn new(ttl: Duration, max_stale: Duration, capacity: usize) -> Self {
        AnswerCache {
            ttl,
            max_stale,
            capacity,
            map: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Cached<V> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl / 4 * 3 => Cached::Fresh(v.clone()),
            Some((at, v)) if at.elapsed() < self.ttl => Cached::Aging(v.clone()),
            Some((at, v)) if at.elapsed() < self.max_stale => Cached::Stale(v.clone()),
            _ => Cached::Missing,
        }
    }

    pub(crate) fn insert(&self, key: Key, value: V) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let keep = self.ttl.max(self.max_stale);
            map.retain(|_, (at, _)| at.elapsed() < keep);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }

    /// Keeps `value` as read `age` ago (from the state file); nothing if
    /// that is beyond `max_stale` (or the TTL, when not served stale).
    pub(crate) fn insert_aged(&self, key: Key, value: V, age: Duration) {
        if age >= self.ttl.max(self.max_stale) || self.ttl.is_zero() {
            return;
        }
        let Some(at) = Instant::now().checked_sub(age) else {
            return;
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() < self.capacity {
            map.insert(key, (at, value));
        }
    }

    /// Every answer still usable, with its age.
    pub(crate) fn entries(&self) -> Vec<(Key, Duration, V)> {
        let keep = self.ttl.max(self.max_stale);
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < keep)
            .map(|(k, (at, v))| (k.clone(), at.elapsed(), v.clone()))
            .collect()
    }

    /// Claims the refresh of `key`; false if it is already being refreshed
    /// or too many refreshes run.
    pub(crate) fn start_refresh(&self, key: &Key) -> bool {
        let mut r = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        r.len() < MAX_REFRESHES && r.insert(key.clone())
    }

    pub(crate) fn end_refresh(&self, key: &Key) {
        self.refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        ("list.example.org".into(), s.into())
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_answer_is_fresh_after_insertion_and_absent_keys_are_missing() {
        let c = AnswerCache::new(HOUR, 2 * HOUR, 10);
        c.insert(key("a"), true);
        assert!(matches!(c.get(&key("a")), Cached::Fresh(true)));
        assert!(matches!(c.get(&key("b")), Cached::Missing));
    }

    #[test]
    fn without_a_ttl_or_room_nothing_is_kept() {
        for c in [
            AnswerCache::new(Duration::ZERO, HOUR, 10),
            AnswerCache::new(HOUR, HOUR, 0),
        ] {
            c.insert(key("a"), 1);
            assert!(matches!(c.get(&key("a")), Cached::Missing));
            assert_eq!(c.len(), 0);
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let c = AnswerCache::new(HOUR, HOUR, 3);
        for i in 0..20 {
            c.insert(key(&i.to_string()), i);
            assert!(c.len() <= 3, "{}", c.len());
        }
        // The newest answer is always kept.
        assert!(matches!(c.get(&key("19")), Cached::Fresh(19)));
    }

    #[test]
    fn one_refresh_per_key_and_a_bounded_number_at_once() {
        let c: AnswerCache<bool> = AnswerCache::new(HOUR, HOUR, 10);
        assert!(c.start_refresh(&key("a")));
        assert!(!c.start_refresh(&key("a")));
        c.end_refresh(&key("a"));
        assert!(c.start_refresh(&key("a")));
        for i in 1..MAX_REFRESHES {
            assert!(c.start_refresh(&key(&i.to_string())));
        }
        assert!(!c.start_refresh(&key("one too many")));
    }
}
