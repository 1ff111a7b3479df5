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

use crate::answer_cache::{AnswerCache, Cached, Key};
use crate::backend::{BackendError, ListBackend, ListIndex, SenderStatus};
use crate::list::{ListPolicy, ModerationAction, NonmemberAction, Pattern, PatternMatch};

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
/// Default age up to which a cached answer is still served (stale, while
/// it is refreshed in the background) once `cache_ttl` has passed.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(300);
/// Default maximum number of cached membership answers.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// Largest answer body read.
const MAX_BODY: usize = 16 << 20;
/// Entries asked for per page of a collection.
const PAGE_SIZE: usize = 500;
/// Pages read of one collection at most (so 100 000 entries).
const MAX_PAGES: usize = 200;
/// Other addresses of a sender's user looked up at most.
const MAX_LINKED: usize = 20;

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
    /// Age (since it was read) up to which an answer older than
    /// `cache_ttl` is still served while one background refresh reads it
    /// anew, so a slow or stopped API does not turn known answers into
    /// tempfails. Not above `cache_ttl`: answers are never served stale.
    pub max_stale: Duration,
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
            .field("max_stale", &self.max_stale)
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
            max_stale: DEFAULT_MAX_STALE,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

/// Why the REST API gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The base URL cannot be used.
    #[error("{0:?} is not an http:// URL with a host")]
    BadUrl(String),
    /// An `https://` URL: this client speaks plain HTTP only.
    #[error(
        "{0:?}: https:// is not supported (no TLS in this build); use http:// to Mailman's \
         REST API on localhost (its default), or an http:// endpoint of a local TLS proxy"
    )]
    Https(String),
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

/// What Mailman knows about one address on one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct MemberInfo {
    /// Subscribed with role `member`.
    member: bool,
    /// Its own `moderation_action` (as member, or else as non-member).
    moderation: Option<ModerationAction>,
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

/// Checks a base URL: `http://host[:port][/path]`. Returns it without a
/// trailing `/`.
pub fn check_url(url: &str) -> Result<String, RestError> {
    let bad = || RestError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return Err(RestError::Https(url.to_owned()));
    }
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

    /// Asks Mailman about `sender` on `list_id`: a `member` record (with
    /// its own moderation action) or else a `nonmember` record's moderation
    /// action. Owners and moderators are not members (Mailman 3 moderates
    /// their posts as non-member posts).
    async fn lookup_member(&self, list_id: &str, sender: &str) -> Result<MemberInfo, RestError> {
        let entries = if lookup_safe(sender) {
            let path = format!(
                "/members/find?list_id={}&subscriber={}",
                enc(list_id),
                enc(sender)
            );
            self.collection(&path).await?
        } else {
            // A lookup would be a wildcard search: read the rosters.
            tracing::debug!(sender, list_id, "wildcard in sender; reading the rosters");
            let mut all = self
                .collection(&format!("/lists/{}/roster/member", enc(list_id)))
                .await?;
            if !all.iter().any(|e| record_of(e, sender) == Some("member")) {
                all.extend(
                    self.collection(&format!("/lists/{}/roster/nonmember", enc(list_id)))
                        .await?,
                );
            }
            all
        };
        if let Some(e) = entries
            .iter()
            .find(|e| record_of(e, sender) == Some("member"))
        {
            return Ok(MemberInfo {
                member: true,
                moderation: self.own_action(e, list_id, sender)?,
            });
        }
        // Mailman 3 also finds the member through the other addresses of
        // the user the sender's address belongs to.
        if let Some(info) = self.linked_member(list_id, sender).await? {
            return Ok(info);
        }
        let nonmember = entries
            .iter()
            .find(|e| record_of(e, sender) == Some("nonmember"));
        Ok(MemberInfo {
            member: false,
            moderation: match nonmember {
                Some(e) => self.own_action(e, list_id, sender)?,
                None => None,
            },
        })
    }

    /// A member resource's own `moderation_action`.
    fn own_action(
        &self,
        entry: &Value,
        list_id: &str,
        sender: &str,
    ) -> Result<Option<ModerationAction>, RestError> {
        match entry.get("moderation_action") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(a)) => Ok(moderation_action(a, list_id, sender)),
            Some(_) => Err(RestError::Garbage {
                url: format!("{}/members/find", self.base),
                message: "moderation_action is not a string".into(),
            }),
        }
    }

    /// The membership of another address of the user `sender` belongs to
    /// (`_find_sender_member` in Mailman 3's `rules/moderation.py`), if
    /// any: `GET /addresses/{sender}`, its `user`, that user's addresses,
    /// then a lookup of each (at most [`MAX_LINKED`]). An address that
    /// cannot go into a path as is (`/`, `?`, `#`, `%`) or any with `*` is
    /// not followed.
    async fn linked_member(
        &self,
        list_id: &str,
        sender: &str,
    ) -> Result<Option<MemberInfo>, RestError> {
        if !lookup_safe(sender) || sender.contains(['/', '?', '#', '%']) {
            return Ok(None);
        }
        let address = match self.get(&format!("/addresses/{}", enc(sender))).await {
            Ok(a) => a,
            Err(RestError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(user) = address.get("user").and_then(Value::as_str) else {
            return Ok(None);
        };
        let Some(user_id) = user
            .trim_end_matches('/')
            .rsplit_once("/users/")
            .map(|(_, id)| id)
            .filter(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        else {
            return Err(RestError::Garbage {
                url: format!("{}/addresses/{}", self.base, enc(sender)),
                message: format!("user link {user:?} is not /users/ID"),
            });
        };
        let linked = match self
            .collection(&format!("/users/{user_id}/addresses"))
            .await
        {
            Ok(l) => l,
            // The user was deleted since.
            Err(RestError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let others = linked
            .iter()
            .filter_map(|a| a.get("email").and_then(Value::as_str))
            .map(str::to_lowercase)
            .filter(|e| e != sender && lookup_safe(e))
            .take(MAX_LINKED);
        for other in others {
            let path = format!(
                "/members/find?list_id={}&subscriber={}&role=member",
                enc(list_id),
                enc(&other)
            );
            let found = self.collection(&path).await?;
            if let Some(e) = found
                .iter()
                .find(|e| record_of(e, &other) == Some("member"))
            {
                tracing::debug!(sender, member = %other, list_id, "member through a linked address");
                return Ok(Some(MemberInfo {
                    member: true,
                    moderation: self.own_action(e, list_id, &other)?,
                }));
            }
        }
        Ok(None)
    }

    async fn fetch_snapshot(&self) -> Result<Snapshot, RestError> {
        let site_bans = ban_patterns(&self.collection("/bans").await?, &self.base)?;
        let lists = self.collection("/lists").await?;
        // Which lists have addresses with their own refusing action: three
        // site-wide searches rather than three per list.
        let mut moderated: HashMap<&str, std::collections::HashSet<String>> = HashMap::new();
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
            // `exact`: only entries that can match in Mailman (see
            // matchable_in_mailman).
            let patterns = |name: &str, exact: bool| match config.get(name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => Ok(a
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|e| !exact || matchable_in_mailman(e, &list_id))
                    .map(Pattern::parse)
                    .collect()),
                Some(_) => Err(RestError::Garbage {
                    url: config_url.clone(),
                    message: format!("{name} is not an array"),
                }),
            };
            let accept = patterns("accept_these_nonmembers", false)?;
            let hold = patterns("hold_these_nonmembers", true)?;
            let reject = patterns("reject_these_nonmembers", true)?;
            let discard = patterns("discard_these_nonmembers", true)?;
            // Absent from older cores: Mailman 3's default, defer.
            let default_member_action = config
                .get("default_member_action")
                .and_then(Value::as_str)
                .map_or(NonmemberAction::Accept, |a| {
                    moderation_action(a, &list_id, "(default_member_action)")
                        .unwrap_or(NonmemberAction::Accept)
                });
            let emergency = config
                .get("emergency")
                .and_then(Value::as_bool)
                .unwrap_or(false);
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
            let policy = ListPolicy {
                address: address.clone(),
                nonmember_action: action,
                refuse_hold: None,
                accept_nonmembers: accept,
                hold_nonmembers: hold,
                reject_nonmembers: reject,
                discard_nonmembers: discard,
                default_member_action,
                moderated_refuse,
                moderated_hold,
                emergency,
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

/// The list's `default_nonmember_action`; `defer` reads as accept, and an
/// unknown name as hold (never refused unless holds are).
fn nonmember_action(name: &str, list: &str) -> NonmemberAction {
    NonmemberAction::from_mailman(name).unwrap_or_else(|| {
        tracing::warn!(
            list,
            action = name,
            "unknown default_nonmember_action; treated as hold"
        );
        NonmemberAction::Hold
    })
}

/// Mailman 3 compares a plain `*_these_nonmembers` entry with `==` against
/// the lowercased sender, as stored: `Boss@Example.com` or `<x@y>` never
/// matches there. True for the entries that can match in Mailman; the
/// others are left out of the lists that refuse (a folded match would
/// refuse what Mailman lets through), while the accept list keeps its
/// folded match, which can only pass more.
fn matchable_in_mailman(entry: &str, list_id: &str) -> bool {
    let ok = entry.starts_with('^') || crate::address::normalize(entry).as_deref() == Some(entry);
    if !ok {
        tracing::debug!(list_id, entry, "entry never matches in Mailman 3; ignored");
    }
    ok
}

/// The role of a member resource if it is `sender`'s.
fn record_of<'a>(entry: &'a Value, sender: &str) -> Option<&'a str> {
    let email = entry.get("email").and_then(Value::as_str)?;
    if !email.eq_ignore_ascii_case(sender) {
        return None;
    }
    entry.get("role").and_then(Value::as_str)
}

/// A `moderation_action` value; unknown names are logged and ignored (the
/// list's defaults then apply, as for an address without one).
fn moderation_action(name: &str, list_id: &str, sender: &str) -> Option<ModerationAction> {
    let action = NonmemberAction::from_mailman(name);
    if action.is_none() {
        tracing::warn!(
            list_id,
            sender,
            action = name,
            "unknown moderation_action; ignored"
        );
    }
    action
}

/// Bans as patterns. A plain ban is an SQL equality in Mailman (stored as
/// given), so one that differs from its lowercased form never matches
/// there and is left out here too.
fn ban_patterns(entries: &[Value], base: &str) -> Result<Vec<Pattern>, RestError> {
    let mut out = Vec::new();
    for b in entries {
        let email = b
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| RestError::Garbage {
                url: format!("{base}/bans"),
                message: "a ban without email".into(),
            })?;
        if matchable_in_mailman(email, "(bans)") {
            out.push(Pattern::parse(email));
        }
    }
    Ok(out)
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
