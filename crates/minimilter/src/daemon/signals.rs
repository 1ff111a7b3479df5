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

    /// Splits into the stop future and the reload loop.
    pub(crate) fn split(
        self,
        notifier: Arc<Notifier>,
        reload: Option<ReloadHook>,
    ) -> impl Future<Output = ()> {
        let Handlers {
            mut term,
            mut int,
            hangup,
        } = self;
        tokio::spawn(reload_loop(hangup, notifier.clone(), reload));
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            }
            notifier.notify("STOPPING=1\nSTATUS=draining: finishing messages in progress");
        }
    }
}

async fn reload_loop(mut hangup: Signal, notifier: Arc<Notifier>, hook: Option<ReloadHook>) {
    while hangup.recv().await.is_some() {
        let Some(hook) = hook.clone() else {
            tracing::info!(
                "SIGHUP: this milter has nothing to reload; restart it to apply changes"
            );
            continue;
        };
        notifier.notify("RELOADING=1");
        match tokio::task::spawn_blocking(move || hook()).await {
            Ok(Ok(changed)) => tracing::info!("SIGHUP: {changed}"),
            Ok(Err(why)) => {
                tracing::error!("SIGHUP: {why}; the previous state stays in force")
            }
            Err(e) => {
                tracing::error!("SIGHUP: reload failed ({e}), the previous state stays in force")
            }
        }
        notifier.notify("READY=1");
    }
}
