//! The HTTP side: one authenticated `GET` returning JSON, bounded in size,
//! with errors that name the URL.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::{RestConfig, RestError};

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
    pub(super) client: Client<HttpConnector, Empty<Bytes>>,
}

impl Api {
    /// A client for the API at `base` (checked), as `config` says: HTTP/1.1
    /// with idle connections kept for reuse.
    pub(super) fn new(base: String, config: &RestConfig) -> Api {
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
        Api { base, auth, client }
    }

    /// `GET base+path`, JSON answer.
    pub(super) async fn get(&self, path: &str) -> Result<Value, RestError> {
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
