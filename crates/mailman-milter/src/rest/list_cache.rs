//! The cached list data: one snapshot, loaded by one task at a time in the
//! background. Callers wait for a load at most their own `timeout`; the
//! load itself goes on (each request bounded by `timeout`), so a slow API
//! is read in the end instead of being asked again and again.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::RestError;
use super::snapshot::Snapshot;
use crate::list::{Unevaluable, unevaluable_line};

/// The cached list data.
#[derive(Default)]
pub(super) struct Slot {
    current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// The list domains last known, whatever their age (from the API or
    /// the state file): mail to other domains never needs the API.
    domains: Mutex<Option<Arc<HashSet<String>>>>,
    /// A load is running.
    pub(super) loading: AtomicBool,
    /// Told when a load ends, well or not.
    pub(super) done: Notify,
    /// Why the last load failed (cleared by a good one).
    last_error: Mutex<Option<RestError>>,
    /// The unevaluable patterns already logged.
    logged: Mutex<Vec<Unevaluable>>,
}

impl Slot {
    pub(super) fn get(&self) -> Option<(Instant, Arc<Snapshot>)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The list domains last known.
    pub(super) fn domains(&self) -> Option<Arc<HashSet<String>>> {
        self.domains
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

    /// Keeps `s`, read at `at` (None: too long ago to serve, but its
    /// domains still count), as the current list data; logs its
    /// unevaluable patterns not logged before, on one line.
    pub(super) fn set(&self, at: Option<Instant>, s: Arc<Snapshot>) {
        let now = s.unevaluable();
        {
            let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
            let new: Vec<Unevaluable> = now
                .iter()
                .filter(|u| !logged.contains(u))
                .cloned()
                .collect();
            if let Some(line) = unevaluable_line(&new) {
                tracing::warn!("{line}");
            }
            *logged = now;
        }
        *self.domains.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(s.domains.clone()));
        if let Some(at) = at {
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, s));
            *self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}
