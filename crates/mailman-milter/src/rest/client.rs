//! The HTTP side: one authenticated `GET` returning JSON, bounded in size,
//! with errors that name the URL.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::tls::{self, Connector};
use super::{RestConfig, RestError, RestMetrics};

/// Largest answer body read.
const MAX_BODY: usize = 16 << 20;

/// Percent-encoding for a path segment or query value: everything but
/// RFC 3986 unreserved characters (so `+`, `/`, `?`, `#`, `%` are encoded).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The HTTP side: where, as whom, with which client.
pub(super) struct Api {
    pub(super) base: String,
    pub(super) auth: String,
    pub(super) client: Client<Connector, Empty<Bytes>>,
    /// Bound on one request, connecting included.
    timeout: Duration,
    /// Requests in flight at most ([`MAX_IN_FLIGHT`]).
    permits: Semaphore,
    backoff: Mutex<Backoff>,
    /// Requests sent, failures, and (counted by the backend) cache use.
    pub(super) metrics: RestMetrics,
}

/// Requests sent to the API at once at most; the rest wait their turn
/// (within their caller's `timeout`). Also the number of idle keep-alive
/// connections kept.
pub(super) const MAX_IN_FLIGHT: usize = 8;
/// The first back-off delay after a failure; doubled with each further
/// failure up to [`MAX_BACKOFF`]; a good answer ends it.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Exponential back-off after failed requests.
#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: String,
}

impl Api {
    /// A client for the API at `base` (checked), as `config` says: HTTP/1.1
    /// with idle connections kept for reuse, over TLS for an `https://`
    /// base; counting into `metrics`. An error: the TLS roots cannot be
    /// read.
    pub(super) fn new(
        base: String,
        config: &RestConfig,
        metrics: RestMetrics,
    ) -> Result<Api, RestError> {
        let connector = tls::connector(&base, config.ca_file.as_deref(), config.timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build(connector);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", config.user, config.password))
        );
        Ok(Api {
            base,
            auth,
            client,
            timeout: config.timeout,
            permits: Semaphore::new(MAX_IN_FLIGHT),
            backoff: Mutex::new(Backoff::default()),
            metrics,
        })
    }

    /// `GET base+path`, JSON answer; each request bounded by `timeout`, at
    /// most [`MAX_IN_FLIGHT`] at once, none while backing off after
    /// failures. A 404 is an answer, not a failure.
    pub(super) async fn get(&self, path: &str) -> Result<Value, RestError> {
        self.backing_off()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RestError::Timeout(self.timeout))?;
        // Checked again: failures may have come in while waiting.
        self.backing_off()?;
        self.metrics.request(path);
        let result = tokio::time::timeout(self.timeout, self.send(path))
            .await
            .unwrap_or_else(|_| {
                self.metrics.error("timeout");
                Err(RestError::Timeout(self.timeout))
            });
        let mut b = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(_) | Err(RestError::NotFound { .. }) => *b = Backoff::default(),
            // Requests that were in flight together fail together: one
            // step of the back-off, not one per request.
            Err(_) if b.until.is_some_and(|u| u > Instant::now()) => {}
            Err(e) => {
                b.failures = b.failures.saturating_add(1);
                let delay = FIRST_BACKOFF
                    .saturating_mul(1 << (b.failures - 1).min(16))
                    .min(MAX_BACKOFF);
                b.until = Some(Instant::now() + delay);
                b.last = e.to_string();
                tracing::debug!(?delay, "Mailman REST request failed; backing off: {e}");
            }
        }
        result
    }

    /// The back-off error while backing off.
    fn backing_off(&self) -> Result<(), RestError> {
        let b = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        match b.until {
            Some(until) if until > Instant::now() => Err(RestError::BackingOff {
                retry_in: until - Instant::now(),
                last: b.last.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// One request; a failure is counted by its class.
    async fn send(&self, path: &str) -> Result<Value, RestError> {
        let url = format!("{}{path}", self.base);
        let http = |class: &'static str, message: String| {
            self.metrics.error(class);
            RestError::Http {
                url: url.clone(),
                message,
            }
        };
        let request = Request::get(url.as_str())
            .header(hyper::header::AUTHORIZATION, &self.auth)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| http("request", e.to_string()))?;
        tracing::debug!(%url, "Mailman REST request");
        let response = self.client.request(request).await.map_err(|e| {
            let chain = error_chain(&e);
            let hint = tls::hint(&chain);
            http("connect", format!("{chain}{hint}"))
        })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(RestError::NotFound { url });
        }
        if status != StatusCode::OK {
            self.metrics.error("status");
            return Err(RestError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| http("body", format!("reading the answer: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| {
            self.metrics.error("json");
            RestError::Garbage {
                url,
                message: format!("not JSON: {e}"),
            }
        })
    }
}

pub(super) fn enc(s: &str) -> String {
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
