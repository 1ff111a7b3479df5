//! The list data read whole (for `lists`: `--check-config`, the daemon's
//! start-up read, which also warms the per-list cache): one snapshot, loaded by one task at a time in the
//! background. Callers wait for a load at most their own `timeout`; the
//! load itself goes on (each request bounded by `timeout`), so a slow API
//! is read in the end instead of being asked again and again.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::RestError;
use super::snapshot::Snapshot;

/// The cached list data.
#[derive(Default)]
pub(super) struct Slot {
    current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// A load is running.
    pub(super) loading: AtomicBool,
    /// Told when a load ends, well or not.
    pub(super) done: Notify,
    /// Why the last load failed (cleared by a good one).
    last_error: Mutex<Option<RestError>>,
}

impl Slot {
    pub(super) fn get(&self) -> Option<(Instant, Arc<Snapshot>)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn last_error(&self) -> Option<RestError> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn failed(&self, e: RestError) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
    }

    /// Keeps `s`, read at `at` (None: too long ago to serve), as the
    /// current list data.
    pub(super) fn set(&self, at: Option<Instant>, s: Arc<Snapshot>) {
        if let Some(at) = at {
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, s));
            *self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}
