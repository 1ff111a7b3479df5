//! The accept loop: one task per connection, a cap on connections, and the
//! two-phase shutdown of [`crate::shutdown`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::connection::{Connection, ConnectionEnd};
use crate::filter::Milter;
use crate::listener::{Accepted, ListenError, Listener, Stream, UnixSocketOptions};
use crate::metrics::Observer;
use crate::shutdown::{self, Shutdown};
use crate::spec::SocketSpec;
use crate::stats::Stats;

/// Serves one filter on any number of listeners.
pub struct Server<F: Milter> {
    filter: Arc<F>,
    config: Arc<ServerConfig>,
    next_id: Arc<AtomicU64>,
    stats: Arc<Stats>,
    observer: Observer,
}

impl<F: Milter> Clone for Server<F> {
    fn clone(&self) -> Self {
        Server {
            filter: self.filter.clone(),
            config: self.config.clone(),
            next_id: self.next_id.clone(),
            stats: self.stats.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<F: Milter> Server<F> {
    /// A server for `filter` with these settings.
    pub fn new(filter: F, config: ServerConfig) -> Self {
        Server {
            filter: Arc::new(filter),
            config: Arc::new(config),
            next_id: Arc::new(AtomicU64::new(1)),
            stats: Arc::new(Stats::default()),
            observer: Observer::default(),
        }
    }

    /// Measures into `metrics` (see [`crate::metrics`]).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::RuntimeMetrics>) -> Self {
        self.observer = Observer::new(Some(metrics));
        self
    }

    /// Live counters: connections and messages.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves one already-connected stream to its end (for tests and custom
    /// transports). Returns why it ended.
    pub async fn serve_stream<S: Stream>(&self, stream: S, shutdown: Shutdown) -> ConnectionEnd {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Connection::new(
            self.filter.clone(),
            self.config.clone(),
            stream,
            id,
            shutdown.for_connection(),
            self.stats.clone(),
            self.observer.clone(),
        )
        .run()
        .await
    }

    /// Serves connections on `listeners` until `stop` resolves; then stops
    /// accepting, gives in-flight messages `shutdown_grace` to finish, closes
    /// what is left at a packet boundary, and returns.
    pub async fn serve(self, listeners: Vec<Listener>, stop: impl Future<Output = ()>) {
        let shutdown = Shutdown::new();
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        let mut accept_tasks = Vec::new();
        for listener in listeners {
            tracing::info!("listening on {}", listener.local_description());
            let server = self.clone();
            let shutdown = shutdown.clone();
            let tracker2 = tracker.clone();
            let permits = permits.clone();
            accept_tasks.push(tokio::spawn(async move {
                server
                    .accept_loop(listener, shutdown, tracker2, permits)
                    .await;
            }));
        }
        stop.await;
        tracing::info!(
            grace = ?self.config.shutdown_grace,
            "shutting down: no new connections; waiting for messages in progress"
        );
        shutdown.stop();
        for t in accept_tasks {
            // Dropping the listener (inside the task) removes a unix socket file.
            let _ = t.await;
        }
        tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tracker.len(),
                "grace period over; closing the remaining connections"
            );
            shutdown.kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
        }
        tracing::info!("shutdown complete");
    }

    async fn accept_loop(
        &self,
        listener: Listener,
        shutdown: Shutdown,
        tracker: TaskTracker,
        permits: Arc<Semaphore>,
    ) {
        let mut backoff = Duration::from_millis(10);
        let mut last_full_warning: Option<Instant> = None;
        let mut refused_since_warning = 0u64;
        // One waiter for the whole loop: a fresh `cancelled()` per accept
        // registered and removed a waiter (two locks) for every connection.
        let stopped = shutdown.stop.clone().cancelled_owned();
        tokio::pin!(stopped);
        loop {
            let accepted = tokio::select! {
                biased;
                _ = &mut stopped => return,
                a = listener.accept() => a,
            };
            let accepted = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning, keep serving.
                    tracing::warn!("accept on {}: {e}", listener.local_description());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.stats.connection_refused();
                self.observer.connection_refused();
                refused_since_warning += 1;
                if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max = self.config.max_connections,
                        refused = refused_since_warning,
                        "connection limit reached; closing new connections (the MTA applies its default action)"
                    );
                    last_full_warning = Some(Instant::now());
                    refused_since_warning = 0;
                }
                drop(accepted);
                continue;
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            self.stats.connection_opened();
            self.observer.connection_opened();
            tracker.spawn(async move {
                let (end, peer) = match accepted {
                    Accepted::Tcp(s, addr) => {
                        (server.serve_stream(s, shutdown).await, addr.to_string())
                    }
                    Accepted::Unix(s) => (server.serve_stream(s, shutdown).await, "unix".into()),
                };
                match &end {
                    ConnectionEnd::Closed | ConnectionEnd::Shutdown => {
                        tracing::debug!(%peer, "connection ended: {end}")
                    }
                    // The MTA went away (killed, restarted, its own timeout):
                    // routine, and one line per connection would be a storm.
                    ConnectionEnd::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        ) =>
                    {
                        tracing::debug!(%peer, "connection ended: {end}")
                    }
                    ConnectionEnd::Probe(_) => tracing::warn!(%peer, "connection refused: {end}"),
                    _ => tracing::warn!(%peer, "connection ended: {end}"),
                }
                server.stats.connection_closed();
                server.observer.connection_closed();
                drop(permit);
            });
        }
    }
}

/// Binds every spec, then serves `filter` until SIGTERM or SIGINT, with
/// graceful shutdown. The usual `main` of a milter daemon.
pub async fn run<F: Milter>(
    filter: F,
    specs: &[SocketSpec],
    unix: &UnixSocketOptions,
    config: ServerConfig,
) -> Result<(), ListenError> {
    let mut listeners = Vec::new();
    for spec in specs {
        listeners.push(Listener::bind(spec, unix).await?);
    }
    Server::new(filter, config)
        .serve(listeners, shutdown::signal())
        .await;
    Ok(())
}
