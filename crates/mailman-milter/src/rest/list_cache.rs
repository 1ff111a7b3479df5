//! The cached list data: one snapshot, refreshed in the background once
//! stale, read in the foreground by one reader at a time.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::snapshot::Snapshot;

/// The cached list data, refreshed in the background once stale.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// A background refresh is running.
    pub(super) refreshing: AtomicBool,
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

    pub(super) fn set(&self, s: Arc<Snapshot>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), s));
    }
}
