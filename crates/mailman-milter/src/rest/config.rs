//! How to reach Mailman's REST API and how long its answers are kept.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;

use super::RestError;

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
    /// Where the last good list data is kept across restarts (None: not
    /// kept).
    pub state_dir: Option<PathBuf>,
    /// The list domains (lowercased), if configured: then `/domains` is
    /// not needed to tell list mail from other mail.
    pub list_domains: Option<Vec<String>>,
    /// For an `https://` URL: the PEM file of the CA certificates that
    /// alone are trusted to vouch for the API (None: the system's roots).
    pub ca_file: Option<PathBuf>,
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
            .field("state_dir", &self.state_dir)
            .field("list_domains", &self.list_domains)
            .field("ca_file", &self.ca_file)
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
            state_dir: None,
            list_domains: None,
            ca_file: None,
        }
    }
}

/// Checks a base URL: `http://host[:port][/path]` or
/// `https://host[:port][/path]`. Returns it without a trailing `/`.
pub fn check_url(url: &str) -> Result<String, RestError> {
    let bad = || RestError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if uri.query().is_some() {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}
