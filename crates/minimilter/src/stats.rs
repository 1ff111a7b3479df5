//! Counters the runtime keeps for status lines (systemd's STATUS=) and
//! for anyone embedding the server: cheap relaxed atomics, read as a
//! snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one [`Server`](crate::Server).
#[derive(Debug, Default)]
pub struct Stats {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    messages: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections being served now.
    pub connections_open: u64,
    /// Connections served since start.
    pub connections_total: u64,
    /// Connections closed at accept because the limit was reached.
    pub connections_refused: u64,
    /// Messages that got a final answer at end of message.
    pub messages: u64,
}

impl Stats {
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_judged(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
        }
    }
}
