//! The Mailman 3 REST backend: lists, their posting settings and bans from
//! the REST API (HTTP basic auth), and membership lookups per sender, behind
//! small TTL caches.
//!
//! - Every backend call ([`ListBackend::lists`], [`ListBackend::senders`])
//!   is bounded by one `timeout` as a whole: a slow API is an error, never
//!   a hang.
//! - Any answer that is not what Mailman sends (status, JSON shape, size) is
//!   an error; the milter turns errors into its fail-safe (451 by default).
//! - Collections are read page by page, with a bounded number of pages.
//! - An address containing `*` is never sent to a lookup: Mailman turns it
//!   into an SQL `LIKE` search (`*@example.org` would be "a member"). Such a
//!   sender is compared against the list's roster instead.
//!
//! Only `http://` is spoken (the API normally listens on localhost).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::backend::{BackendError, ListBackend, ListIndex, SenderStatus};
use crate::list::{ListPolicy, NonmemberAction, Pattern, PatternMatch};

/// Mailman's default REST base URL (`[webservice]` in its `schema.cfg`).
pub const DEFAULT_URL: &str = "http://localhost:8001/3.1";
/// Mailman's default REST user.
pub const DEFAULT_USER: &str = "restadmin";
/// Mailman's default REST password.
pub const DEFAULT_PASSWORD: &str = "restpass";
/// Default bound on one backend call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default lifetime of cached answers.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default maximum number of cached membership answers.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// Largest answer body read.
const MAX_BODY: usize = 16 << 20;
/// Entries asked for per page of a collection.
const PAGE_SIZE: usize = 500;
/// Pages read of one collection at most (so 100 000 entries).
const MAX_PAGES: usize = 200;

/// Percent-encoding for a path segment or query value: everything but
/// RFC 3986 unreserved characters (so `+`, `/`, `?`, `#`, `%` are encoded).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How to reach Mailman's REST API. (`Debug` hides the password.)
#[derive(Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// Base URL including the API version, e.g. `http://127.0.0.1:8001/3.1`.
    pub url: String,
    /// Basic-auth user (`[webservice] admin_user`).
    pub user: String,
    /// Basic-auth password (`[webservice] admin_pass`).
    pub password: String,
    /// Bound on one backend call (all its requests together).
    pub timeout: Duration,
    /// How long answers are reused; zero: not cached.
    pub cache_ttl: Duration,
    /// Maximum number of cached membership answers.
    pub cache_size: usize,
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_size", &self.cache_size)
            .finish()
    }
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            url: DEFAULT_URL.into(),
            user: DEFAULT_USER.into(),
            password: DEFAULT_PASSWORD.into(),
            timeout: DEFAULT_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

/// Why the REST API gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The base URL cannot be used.
    #[error("{0:?} is not an http:// URL with a host (https is not supported)")]
    BadUrl(String),
    /// Connecting or sending failed.
    #[error("GET {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// An HTTP status other than 200 (and 404 where that means "absent").
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The resource does not exist.
    #[error("GET {url}: not found")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The answer is not what Mailman sends.
    #[error("GET {url}: unexpected answer: {message}")]
    Garbage {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The call took longer than the timeout.
    #[error("no complete answer from the Mailman REST API within {0:?}")]
    Timeout(Duration),
}

impl From<RestError> for BackendError {
    fn from(e: RestError) -> Self {
        BackendError(format!("Mailman REST: {e}"))
    }
}

/// True if `address` can be sent to Mailman's member lookups as is: it
/// holds no `*`, which Mailman turns into a `LIKE` wildcard search.
pub fn lookup_safe(address: &str) -> bool {
    !address.contains('*')
}

/// Everything read from the API about the lists, at one time.
#[derive(Debug, Default)]
struct Snapshot {
    index: Arc<ListIndex>,
    /// Posting address -> `list_id`.
    list_ids: HashMap<String, String>,
    /// Posting address -> the list's bans plus the site-wide bans.
    bans: HashMap<String, Vec<Pattern>>,
}

/// A size-bounded cache whose entries expire.
#[derive(Debug)]
struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    map: Mutex<HashMap<(String, String), (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            ttl,
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &(String, String)) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn insert(&self, key: (String, String), value: V) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }

    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The HTTP side: where, as whom, with which client.
struct Api {
    base: String,
    auth: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// The cached list data, refreshed in the background once stale.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// One foreground fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn get(&self) -> Option<(Instant, Arc<Snapshot>)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, s: Arc<Snapshot>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), s));
    }
}

/// Mailman 3's REST API as a [`ListBackend`].
pub struct RestBackend {
    api: Arc<Api>,
    timeout: Duration,
    ttl: Duration,
    lists: Arc<Slot>,
    members: TtlCache<bool>,
}

impl std::fmt::Debug for RestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestBackend")
            .field("base", &self.api.base)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Checks a base URL: `http://host[:port][/path]`. Returns it without a
/// trailing `/`.
pub fn check_url(url: &str) -> Result<String, RestError> {
    let bad = || RestError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if uri.query().is_some() {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl RestBackend {
    /// A backend for `config`. Nothing is fetched yet.
    pub fn new(config: &RestConfig) -> Result<RestBackend, RestError> {
        let base = check_url(&config.url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(connector);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", config.user, config.password))
        );
        Ok(RestBackend {
            api: Arc::new(Api { base, auth, client }),
            timeout: config.timeout,
            ttl: config.cache_ttl,
            lists: Arc::new(Slot::default()),
            members: TtlCache::new(config.cache_ttl, config.cache_size),
        })
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.api.base
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

impl Api {
    /// `GET base+path`, JSON answer.
    async fn get(&self, path: &str) -> Result<Value, RestError> {
        let url = format!("{}{path}", self.base);
        let http = |message: String| RestError::Http {
            url: url.clone(),
            message,
        };
        let request = Request::get(url.as_str())
            .header(hyper::header::AUTHORIZATION, &self.auth)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| http(e.to_string()))?;
        tracing::debug!(%url, "Mailman REST request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| http(error_chain(&e)))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(RestError::NotFound { url });
        }
        if status != StatusCode::OK {
            return Err(RestError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| http(format!("reading the answer: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| RestError::Garbage {
            url,
            message: format!("not JSON: {e}"),
        })
    }

    /// All entries of a collection, read page by page.
    async fn collection(&self, path: &str) -> Result<Vec<Value>, RestError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let p = format!("{path}{sep}count={PAGE_SIZE}&page={page}");
            let v = self.get(&p).await?;
            let garbage = |message: &str| RestError::Garbage {
                url: format!("{}{p}", self.base),
                message: message.to_owned(),
            };
            let total = v
                .get("total_size")
                .and_then(Value::as_u64)
                .ok_or_else(|| garbage("no total_size"))?;
            // Mailman leaves `entries` out of an empty page.
            let entries = match v.get("entries") {
                None => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => return Err(garbage("entries is not an array")),
            };
            let n = entries.len();
            out.extend(entries);
            if n == 0 || out.len() as u64 >= total {
                return Ok(out);
            }
        }
        Err(RestError::Garbage {
            url: format!("{}{path}", self.base),
            message: format!("more than {MAX_PAGES} pages of {PAGE_SIZE}"),
        })
    }

    async fn fetch_snapshot(&self) -> Result<Snapshot, RestError> {
        let site_bans = ban_patterns(&self.collection("/bans").await?, &self.base)?;
        let lists = self.collection("/lists").await?;
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
            let config_url = format!("{}/lists/{id}/config", self.base);
            let action = match config
                .get("default_nonmember_action")
                .and_then(Value::as_str)
            {
                Some(a) => nonmember_action(a, &address),
                None => {
                    return Err(RestError::Garbage {
                        url: config_url,
                        message: "no default_nonmember_action".into(),
                    });
                }
            };
            let accept = match config.get("accept_these_nonmembers") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(Pattern::parse)
                    .collect(),
                Some(_) => {
                    return Err(RestError::Garbage {
                        url: config_url,
                        message: "accept_these_nonmembers is not an array".into(),
                    });
                }
            };
            let mut list_bans = match self.collection(&format!("/lists/{id}/bans")).await {
                Ok(b) => ban_patterns(&b, &self.base)?,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            list_bans.extend(site_bans.iter().cloned());
            let policy = ListPolicy {
                address: address.clone(),
                nonmember_action: action,
                refuse_hold: false,
                accept_nonmembers: accept,
                has_bans: !list_bans.is_empty(),
                reject_text: None,
            };
            index.insert(address.clone(), Arc::new(policy));
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

impl RestBackend {
    /// The list data. Fresh (younger than `cache_ttl`): from the cache.
    /// Stale (younger than twice `cache_ttl`): from the cache, while one
    /// background refresh (bounded by `timeout`) reads it anew. Older or
    /// absent: read now, one reader at a time.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, RestError> {
        match self.lists.get() {
            Some((at, s)) if at.elapsed() < self.ttl => return Ok(s),
            Some((at, s)) if at.elapsed() < self.ttl.saturating_mul(2) => {
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

    /// Whether `sender` (normalised) is a member of the list `list_id`.
    async fn is_member(&self, list_id: &str, sender: &str) -> Result<bool, RestError> {
        let key = (list_id.to_owned(), sender.to_owned());
        if let Some(hit) = self.members.get(&key) {
            return Ok(hit);
        }
        let is = |e: &Value| {
            e.get("email")
                .and_then(Value::as_str)
                .is_some_and(|m| m.eq_ignore_ascii_case(sender))
        };
        let member = if lookup_safe(sender) {
            let path = format!(
                "/members/find?list_id={}&subscriber={}&role=member",
                enc(list_id),
                enc(sender)
            );
            self.api.collection(&path).await?.iter().any(is)
        } else {
            // A lookup would be a wildcard search: compare with the roster.
            tracing::debug!(sender, list_id, "wildcard in sender; reading the roster");
            self.api
                .collection(&format!("/lists/{}/roster/member", enc(list_id)))
                .await?
                .iter()
                .any(is)
        };
        self.members.insert(key, member);
        Ok(member)
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
        let member = !banned && self.is_member(list_id, sender).await?;
        let mut accepted_via = None;
        if !banned && !member {
            for p in &list.accept_nonmembers {
                if let Pattern::ListMembers(other) = p
                    && other != &list.address
                    && let Some(other_id) = snapshot.list_ids.get(other)
                    && self.is_member(other_id, sender).await?
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
        })
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Error chains are short; the bound keeps the loop finite anyway.
    for _ in 0..8 {
        let Some(s) = source else { break };
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Mailman 3's action names; `defer` (regular processing) and anything
/// unknown are never refused here.
fn nonmember_action(name: &str, list: &str) -> NonmemberAction {
    match name {
        "accept" | "defer" => NonmemberAction::Accept,
        "hold" => NonmemberAction::Hold,
        "reject" => NonmemberAction::Reject,
        "discard" => NonmemberAction::Discard,
        other => {
            tracing::warn!(
                list,
                action = other,
                "unknown default_nonmember_action; treated as hold"
            );
            NonmemberAction::Hold
        }
    }
}

fn ban_patterns(entries: &[Value], base: &str) -> Result<Vec<Pattern>, RestError> {
    entries
        .iter()
        .map(|b| {
            b.get("email")
                .and_then(Value::as_str)
                .map(Pattern::parse)
                .ok_or_else(|| RestError::Garbage {
                    url: format!("{base}/bans"),
                    message: "a ban without email".into(),
                })
        })
        .collect()
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
