//! What the REST backend counts, as only it knows: the HTTP requests it
//! really sends (a cached answer sends none), the requests that failed and
//! how, and the answers its caches give without waiting for Mailman,
//! fresh or stale. The daemon registers these counters (see `cli.rs`);
//! left at their default they are counted but never exposed.

use std::sync::{Arc, OnceLock};

use minimilter::daemon::{Counter, CounterFamily};

/// The REST backend's counters; clones count into the same counters, so
/// they outlive the backend (a reload) when kept by the daemon.
#[derive(Clone, Debug, Default)]
pub struct RestMetrics {
    /// HTTP requests sent, labelled `kind` ([`request_kind`]).
    pub requests: CounterFamily,
    /// HTTP requests that failed, labelled `class`: `timeout` (no whole
    /// answer within `timeout`), `connect` (connecting or sending failed),
    /// `status` (an HTTP status other than 200 or 404), `body` (reading the
    /// answer failed or it was too large), `json` (not JSON), `request`
    /// (no request could be built from the URL).
    pub errors: CounterFamily,
    /// Answers taken from a cache while younger than `cache_ttl`, without
    /// waiting for Mailman, labelled `cache`: `site` (domains and site
    /// bans), `list` (one list's settings, or that an address names no
    /// list), `member` (one sender's membership on one list), `lists` (the
    /// whole list data).
    pub cache_hits: CounterFamily,
    /// Answers served older than `cache_ttl` (within `max_stale`) because
    /// Mailman had not answered anew: while a refresh runs in the
    /// background, or after asking again failed. Labelled `cache` as
    /// [`RestMetrics::cache_hits`].
    pub stale_answers: CounterFamily,
    /// The series of `cache_hits` and `stale_answers` once found (see
    /// [`ResolvedCounters`]); shared by clones. Build with `Default::default()`.
    pub resolved: Arc<ResolvedCounters>,
}

/// The cache names counted, in [`ResolvedCounters`]'s order.
const CACHES: [&str; 4] = ["site", "list", "member", "lists"];

/// The `cache_hits` and `stale_answers` series per cache, each looked up
/// in its family at its first use and kept: a warm decision counts two or
/// three hits, and a family look-up costs a label vector, a hash and a
/// lock shared by every connection (about 1,100 instructions each, measured
/// with callgrind). Series still appear only once counted.
#[derive(Debug, Default)]
pub struct ResolvedCounters {
    hits: [OnceLock<Counter>; 4],
    stale: [OnceLock<Counter>; 4],
}

/// Counts one in `family`'s series for `cache`, through `kept`.
fn count(kept: &[OnceLock<Counter>; 4], family: &CounterFamily, cache: &'static str) {
    match CACHES.iter().position(|c| *c == cache) {
        Some(i) => kept[i]
            .get_or_init(|| family.get_or_create(&vec![("cache", cache)]).clone())
            .inc(),
        None => family.get_or_create(&vec![("cache", cache)]).inc(),
    };
}

impl RestMetrics {
    pub(super) fn request(&self, path: &str) {
        self.requests
            .get_or_create(&vec![("kind", request_kind(path))])
            .inc();
    }

    pub(super) fn error(&self, class: &'static str) {
        self.errors.get_or_create(&vec![("class", class)]).inc();
    }

    pub(super) fn hit(&self, cache: &'static str) {
        count(&self.resolved.hits, &self.cache_hits, cache);
    }

    pub(super) fn stale(&self, cache: &'static str) {
        count(&self.resolved.stale, &self.stale_answers, cache);
    }
}

/// What a request to `path` (below the API's base, query included) asks
/// for, as a fixed word: `domains`, `bans` (site or list), `lists` (the
/// collection), `list` (one list resource), `config`, `header_matches`,
/// `roster`, `members` (`/members/find`), `addresses` (an address, a
/// user's addresses, or the user search for an address), `other`.
pub fn request_kind(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["domains", ..] => "domains",
        ["bans", ..] | ["lists", _, "bans", ..] => "bans",
        ["lists"] => "lists",
        ["lists", _] => "list",
        ["lists", _, "config", ..] => "config",
        ["lists", _, "header-matches", ..] => "header_matches",
        ["lists", _, "roster", ..] => "roster",
        ["members", "find", ..] => "members",
        ["addresses", ..] | ["users", _, "addresses", ..] | ["users", "find"] => "addresses",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_the_client_asks_for_has_its_kind() {
        for (path, kind) in [
            ("/domains?count=500&page=1", "domains"),
            ("/bans?count=500&page=2", "bans"),
            (
                "/lists/team.lists.example.org/bans?count=500&page=1",
                "bans",
            ),
            ("/lists?count=500&page=1", "lists"),
            ("/lists/team%40lists.example.org", "list"),
            ("/lists/team.lists.example.org/config", "config"),
            (
                "/users/find?q=a%2Fb%40example.org&count=500&page=1",
                "addresses",
            ),
            (
                "/lists/team.lists.example.org/header-matches?count=500&page=1",
                "header_matches",
            ),
            ("/lists/x/roster/member?count=500&page=1", "roster"),
            (
                "/members/find?list_id=x&subscriber=a%40b&count=500&page=1",
                "members",
            ),
            ("/members/find?moderation_action=hold", "members"),
            ("/addresses/a%40example.org", "addresses"),
            ("/users/0123abc/addresses?count=500&page=1", "addresses"),
            ("/system/versions", "other"),
            ("", "other"),
        ] {
            assert_eq!(request_kind(path), kind, "{path}");
        }
    }

    fn value(family: &CounterFamily, cache: &'static str) -> u64 {
        family.get_or_create(&vec![("cache", cache)]).get()
    }

    #[test]
    fn kept_series_count_into_the_families_for_every_clone() {
        let m = RestMetrics::default();
        let c = m.clone();
        m.hit("member");
        c.hit("member");
        m.hit("site");
        c.stale("list");
        // A name outside the fixed set still counts, through the family.
        m.hit("other");
        assert_eq!(value(&m.cache_hits, "member"), 2);
        assert_eq!(value(&c.cache_hits, "site"), 1);
        assert_eq!(value(&m.stale_answers, "list"), 1);
        assert_eq!(value(&m.stale_answers, "member"), 0);
        assert_eq!(value(&m.cache_hits, "other"), 1);
    }
}
