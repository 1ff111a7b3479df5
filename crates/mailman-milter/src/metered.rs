//! Backend counters as the policy sees them: every call for list data or
//! sender status, and those that failed. Counted around the backend, so
//! the backends stay free of metrics; the counters outlive a reload.
//! A call answered from the REST backend's cache counts as a call here;
//! the HTTP requests really sent, their failures and the caches' hits and
//! stale answers are known only inside that backend and are counted there
//! ([`crate::rest::RestMetrics`]).

use std::collections::HashSet;
use std::sync::Arc;

use minimilter::daemon::CounterFamily;

use crate::backend::{BackendError, ListBackend, ListIndex, SenderStatus};
use crate::list::ListPolicy;

/// The counters, labelled `call` = `lists` or `senders`.
#[derive(Clone, Default)]
pub struct BackendCounters {
    /// Calls made.
    pub requests: CounterFamily,
    /// Calls that failed (the fail-safe, `on_backend_error`, answered).
    pub errors: CounterFamily,
}

/// `B`, counting its calls.
pub struct Metered<B> {
    inner: Arc<B>,
    counters: BackendCounters,
}

impl<B> Metered<B> {
    /// `inner`, counting into `counters`.
    pub fn new(inner: Arc<B>, counters: BackendCounters) -> Metered<B> {
        Metered { inner, counters }
    }

    fn count<T>(&self, call: &'static str, r: &Result<T, BackendError>) {
        let labels = vec![("call", call)];
        self.counters.requests.get_or_create(&labels).inc();
        if r.is_err() {
            self.counters.errors.get_or_create(&labels).inc();
        }
    }
}

impl<B: ListBackend> ListBackend for Metered<B> {
    fn list_domains(&self) -> Option<Arc<HashSet<String>>> {
        self.inner.list_domains()
    }

    async fn lists(&self) -> Result<Arc<ListIndex>, BackendError> {
        let r = self.inner.lists().await;
        self.count("lists", &r);
        r
    }

    async fn senders(
        &self,
        list: &ListPolicy,
        senders: &[String],
    ) -> Result<Vec<SenderStatus>, BackendError> {
        let r = self.inner.senders(list, senders).await;
        self.count("senders", &r);
        r
    }
}
