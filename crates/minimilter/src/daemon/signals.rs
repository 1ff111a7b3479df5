//! Signals: SIGTERM/SIGINT begin the graceful drain (systemd is told
//! STOPPING=1); SIGHUP runs the milter's reload hook, which either swaps
//! in the new state and says what changed, or refuses and keeps the old.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::systemd::Notifier;

/// The milter's reload: `Ok(what changed)` or `Err(why it was refused)`,
/// each a sentence that names what was reloaded; the old state must stay
/// in force on `Err`. Runs on a blocking thread.
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// The handlers, installed before serving so that no signal takes its
/// default action (SIGHUP's is to terminate) once the daemon is up.
pub(crate) struct Handlers {
    term: Signal,
    int: Signal,
    hangup: Signal,
}

impl Handlers {
    pub(crate) fn install() -> std::io::Result<Handlers> {
        Ok(Handlers {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Splits into the stop future and the reload loop: SIGHUP re-reads
    /// the configuration file (`config`), then runs the milter's `reload`.
    pub(crate) fn split(
        self,
        notifier: Arc<Notifier>,
        config: Option<ReloadHook>,
        reload: Option<ReloadHook>,
    ) -> impl Future<Output = ()> {
        let Handlers {
            mut term,
            mut int,
            hangup,
        } = self;
        tokio::spawn(reload_loop(hangup, notifier.clone(), config, reload));
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            }
            notifier.notify("STOPPING=1\nSTATUS=draining: finishing messages in progress");
        }
    }
}

async fn reload_loop(
    mut hangup: Signal,
    notifier: Arc<Notifier>,
    config: Option<ReloadHook>,
    hook: Option<ReloadHook>,
) {
    while hangup.recv().await.is_some() {
        notifier.notify("RELOADING=1");
        if let Some(config) = config.clone() {
            run(config).await;
        }
        match hook.clone() {
            Some(hook) => run(hook).await,
            None => tracing::info!("SIGHUP: this milter has no data to reload"),
        }
        notifier.notify("READY=1");
    }
}

/// Runs one hook on a blocking thread and logs its sentence.
async fn run(hook: ReloadHook) {
    match tokio::task::spawn_blocking(move || hook()).await {
        Ok(Ok(changed)) => tracing::info!("SIGHUP: {changed}"),
        Ok(Err(why)) => tracing::error!("SIGHUP: {why}; the previous state stays in force"),
        Err(e) => tracing::error!("SIGHUP: reload failed ({e}); the previous state stays in force"),
    }
}
