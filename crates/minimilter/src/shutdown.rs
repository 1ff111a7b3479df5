//! Graceful shutdown in two phases.
//!
//! `stop`: no new connections; a connection idle between messages closes at
//! once, one with a message in progress carries on until that message ends.
//! `kill`: the grace period is over; every connection closes at the next
//! packet boundary (never in the middle of a reply), and the MTA applies its
//! default action to whatever was still open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// The two shutdown signals a connection listens to.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub(crate) stop: CancellationToken,
    pub(crate) kill: CancellationToken,
    /// Set by [`Shutdown::kill`] before `kill` is cancelled, and shared with
    /// the connections' copies: a connection checks it after every packet,
    /// and a token's `is_cancelled` takes a lock each time.
    killed: Arc<AtomicBool>,
    /// Set by [`Shutdown::stop`] (and `kill`) before `stop` is cancelled,
    /// shared the same way: a connection checks it around every read.
    stopped: Arc<AtomicBool>,
}

impl Shutdown {
    /// Signals that are never fired, unless [`Shutdown::stop`] / [`Shutdown::kill`] are called.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Begins a graceful shutdown.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.cancel();
    }

    /// Ends the grace period.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.stopped.store(true, Ordering::Release);
        self.stop.cancel();
        self.kill.cancel();
    }

    /// True once [`Shutdown::kill`] was called (on this value or the one it
    /// was made from).
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// True once [`Shutdown::stop`] or [`Shutdown::kill`] was called (on
    /// this value or the one it was made from), without a lock.
    pub(crate) fn is_stop_requested(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Signals for one connection: child tokens, so that waiting on them
    /// touches only this connection's state, never a lock shared by all
    /// connections (cancelling the parent still reaches every child).
    pub(crate) fn for_connection(&self) -> Shutdown {
        Shutdown {
            stop: self.stop.child_token(),
            kill: self.kill.child_token(),
            killed: self.killed.clone(),
            stopped: self.stopped.clone(),
        }
    }

    /// True once a graceful shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install a SIGTERM handler: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install a SIGINT handler: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
