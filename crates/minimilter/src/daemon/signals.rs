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
        reload_once(config.clone(), hook.clone()).await;
        notifier.notify("READY=1");
    }
}

/// One SIGHUP, one log line: the configuration file first (a file that
/// does not load refuses the whole reload), then the milter's data.
async fn reload_once(config: Option<ReloadHook>, hook: Option<ReloadHook>) {
    let mut done = Vec::new();
    if let Some(config) = config {
        match run(config).await {
            Ok(s) => done.push(s),
            Err(why) => {
                tracing::error!("SIGHUP: {why}; the previous state stays in force");
                return;
            }
        }
    }
    match hook {
        Some(hook) => match run(hook).await {
            Ok(s) => done.push(s),
            Err(why) => {
                done.push(why);
                tracing::error!(
                    "SIGHUP: {}; the previous data stays in force",
                    done.join("; ")
                );
                return;
            }
        },
        None if done.is_empty() => done.push("this milter has no data to reload".into()),
        None => {}
    }
    tracing::info!("SIGHUP: {}", done.join("; "));
}

/// Runs one hook on a blocking thread.
async fn run(hook: ReloadHook) -> Result<String, String> {
    match tokio::task::spawn_blocking(move || hook()).await {
        Ok(r) => r,
        Err(e) => Err(format!("reload failed ({e})")),
    }
}
