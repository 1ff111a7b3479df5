//! Why the REST API gave no usable answer.

use std::time::Duration;

use crate::backend::BackendError;

/// Why the REST API gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    /// The base URL cannot be used.
    #[error("{0:?} is not an http:// or https:// URL with a host")]
    BadUrl(String),
    /// The TLS set-up cannot be made (no trusted roots, a bad `ca_file`).
    #[error("{0}")]
    Tls(String),
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
    /// Recent requests failed: no request is sent until the back-off
    /// delay has passed, so a struggling API is not hammered.
    #[error("Mailman REST API failing, next try in {retry_in:?} (last error: {last})")]
    BackingOff {
        /// Until the next request may be sent.
        retry_in: Duration,
        /// The failure that started or extended the back-off.
        last: String,
    },
    /// Too many reads are already waiting for the API (a flood of new
    /// addresses in the list domains): this one is not queued.
    #[error("{0} Mailman REST reads already in flight; not queued")]
    Busy(usize),
    /// The call took longer than the timeout.
    #[error("no complete answer from the Mailman REST API within {0:?}")]
    Timeout(Duration),
}

impl From<RestError> for BackendError {
    fn from(e: RestError) -> Self {
        BackendError(format!("Mailman REST: {e}"))
    }
}
