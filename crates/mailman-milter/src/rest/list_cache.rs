//! The cached list data: one snapshot, refreshed in the background once
//! stale, read in the foreground by one reader at a time.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::snapshot::Snapshot;
use crate::list::{Unevaluable, unevaluable_line};

/// The cached list data, refreshed in the background once stale.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// A background refresh is running.
    pub(super) refreshing: AtomicBool,
    /// The unevaluable patterns already logged.
    pub(super) logged: Mutex<Vec<Unevaluable>>,
    /// One foreground fetch at a time.
    pub(super) fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    pub(super) fn get(&self) -> Option<(Instant, Arc<Snapshot>)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `s` as the current list data; logs its unevaluable patterns
    /// not logged before, on one line.
    pub(super) fn set(&self, s: Arc<Snapshot>) {
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
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), s));
    }
}
