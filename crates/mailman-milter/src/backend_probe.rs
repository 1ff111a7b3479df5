//! `--check-config --check-backend`: one request to Mailman's REST API,
//! with the configured address, credentials and timeout, to tell an
//! administrator before start-up whether the API answers and accepts the
//! credentials. Independent of the REST backend's client (no cache, no
//! back-off, no retries): it asks exactly once.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::RestConfig;

/// The path asked, below the API's base URL: the first page of one domain
/// (small, and it needs the credentials as every list lookup does).
pub const PROBE_PATH: &str = "/domains?count=1&page=1";

/// Asks the API once. `Ok`: one sentence saying it answers; `Err`: one
/// sentence saying why not (no answer, refused credentials, an error
/// status), naming the URL.
pub async fn probe(config: &RestConfig) -> Result<String, String> {
    let url = format!("{}{PROBE_PATH}", config.url.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("backend: {url}: not a URL: {e}"))?;
    let connector = crate::rest::probe_connector(config).map_err(|e| format!("backend: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.user, config.password))
    );
    let request = hyper::Request::get(uri)
        .header(hyper::header::AUTHORIZATION, auth)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| format!("backend: {url}: {e}"))?;
    let started = Instant::now();
    let answer = tokio::time::timeout(config.timeout, async {
        let response = client.request(request).await?;
        let status = response.status();
        // Read the (small) body so the answer is complete.
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    let ms = started.elapsed().as_millis();
    match answer {
        Err(_) => Err(format!(
            "backend: {url}: no answer within {} (timeout)",
            seconds(config.timeout)
        )),
        Ok(Err(e)) => {
            let cause = cause(&e);
            Err(format!(
                "backend: {url}: {cause}{}",
                crate::rest::tls_hint(&cause)
            ))
        }
        Ok(Ok(s)) if s.is_success() => Ok(format!(
            "backend: the Mailman REST API at {} answers (HTTP {}, {ms} ms)",
            config.url,
            s.as_u16()
        )),
        Ok(Ok(s)) if s == hyper::StatusCode::UNAUTHORIZED || s == hyper::StatusCode::FORBIDDEN => {
            Err(format!(
                "backend: {url}: HTTP {}: the API refuses user `{}` (check [mailman] user and password)",
                s.as_u16(),
                config.user
            ))
        }
        Ok(Ok(s)) => Err(format!("backend: {url}: HTTP {s}")),
    }
}

/// The innermost cause of a client error ("Connection refused (os error
/// 111)" rather than "client error (Connect)").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}
