//! The Mailman 3 REST backend: lists, their posting settings and bans from
//! the REST API (HTTP basic auth), read list by list on the first RCPT to
//! each, and membership lookups per sender, behind TTL caches.
//!
//! - Every backend call ([`crate::ListBackend::lists`], [`crate::ListBackend::senders`])
//!   is bounded by one `timeout` as a whole: a slow API is an error, never
//!   a hang.
//! - Any answer that is not what Mailman sends (status, JSON shape, size) is
//!   an error; the milter turns errors into its fail-safe (451 by default).
//! - Collections are read page by page, with a bounded number of pages.
//! - An address containing `*` is never sent to a lookup: Mailman turns it
//!   into an SQL `LIKE` search (`*@example.org` would be "a member"). Such a
//!   sender is compared against the list's roster instead.
//!
//! `http://` (the API's default, on localhost) and `https://` (an API on
//! another host behind TLS; `tls`) are spoken.
//!
//! Files: `config` (where and how long), `client` (one HTTP `GET`, the
//! request bound and back-off), `paging` (collections), `model` (Mailman's
//! JSON to the milter's types), `members` (membership lookups),
//! `list_fetch` (one list, or the site data, read on demand), `find` (the
//! list a recipient names, through the per-list cache), `per_list`
//! (the cache of lists read one by one, with shared fetches in flight),
//! `snapshot` (Mailman's answers as kept and as used), `list_cache` (the
//! whole read behind `lists`), `answer_cache` (membership answers),
//! `state` (the state directory), `tls` (the TLS connector and its
//! roots), `metrics` (what is counted), `backend` (all of it as a
//! [`crate::backend::ListBackend`]).

mod answer_cache;
mod backend;
mod client;
mod config;
mod error;
mod find;
mod list_cache;
mod list_fetch;
mod members;
mod metrics;
mod model;
mod paging;
mod per_list;
mod snapshot;
pub mod state;
mod tls;

pub use backend::{LOAD_BOUND, RestBackend};
pub use config::{
    DEFAULT_CACHE_SIZE, DEFAULT_CACHE_TTL, DEFAULT_MAX_STALE, DEFAULT_PASSWORD, DEFAULT_TIMEOUT,
    DEFAULT_URL, DEFAULT_USER, RestConfig, check_url,
};
pub use error::RestError;
pub use members::lookup_safe;
pub use metrics::{ResolvedCounters, RestMetrics, request_kind};
pub use tls::roots_from;

/// Plain reads of the API, with the backend's authentication, bounds,
/// back-off and paging (for `mailman-milter export`).
pub struct Reader(client::Api);

impl Reader {
    /// A reader of the API at `base` (checked with [`check_url`]); an
    /// error if its TLS roots cannot be read.
    pub fn new(base: String, config: &RestConfig) -> Result<Reader, RestError> {
        Ok(Reader(client::Api::new(
            base,
            config,
            RestMetrics::default(),
        )?))
    }

    /// `GET base+path`, JSON answer.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, RestError> {
        self.0.get(path).await
    }

    /// Every entry of a collection, page by page.
    pub async fn collection(&self, path: &str) -> Result<Vec<serde_json::Value>, RestError> {
        self.0.collection(path).await
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.0.base
    }
}

/// The connector `--check-backend` asks through: the REST client's, TLS
/// roots included.
pub(crate) fn probe_connector(config: &RestConfig) -> Result<tls::Connector, RestError> {
    tls::connector(&config.url, config.ca_file.as_deref(), config.timeout)
}

/// A hint for a TLS failure's text, or "".
pub(crate) fn tls_hint(message: &str) -> &'static str {
    tls::hint(message)
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    client::enc(s)
}
