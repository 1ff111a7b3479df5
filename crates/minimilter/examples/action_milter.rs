//! Serves the interop milter (`minimilter::interop::ActionMilter`): it performs
//! whatever end-of-message actions a message asks for in `X-Action:` headers
//! (see that module for the language).
//!
//!   cargo run --example action_milter -- --listen inet:127.0.0.1:8892

use std::process::ExitCode;
use std::time::Duration;

use minimilter::daemon::{self, BoxError, Configured, Daemon, FileSection, Serve};
use minimilter::interop::ActionMilter;

/// Timing options the interop and fault tests turn down to milliseconds.
#[derive(Debug, Clone, clap::Args)]
struct Timing {
    /// Progress packets every N ms while end of message runs.
    #[arg(long, value_name = "N")]
    progress_ms: Option<u64>,
    /// Time limit of every filter step, in ms.
    #[arg(long, value_name = "N")]
    step_timeout_ms: Option<u64>,
    /// I/O time limit (a packet's first to last byte; a write), in ms.
    #[arg(long, value_name = "N")]
    io_timeout_ms: Option<u64>,
    /// Grace period for messages in progress at shutdown, in ms.
    #[arg(long, value_name = "N")]
    grace_ms: Option<u64>,
}

struct Action(Timing);

impl Daemon for Action {
    const NAME: &'static str = "action_milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Performs the end-of-message actions a message asks for in \
        X-Action: headers (the interop test milter).";
    const DEFAULT_LISTEN: &'static str = "inet:127.0.0.1:8892";
    type Args = Timing;

    fn configure(file: Option<&FileSection>, t: &Timing) -> Result<Configured<Self>, BoxError> {
        daemon::only_server_section(file)?;
        Ok(Configured::new(Action(t.clone())))
    }

    async fn serve(self, mut serve: Serve) -> Result<(), BoxError> {
        let ms = Duration::from_millis;
        let c = serve.config_mut();
        if let Some(n) = self.0.progress_ms {
            c.progress_interval = ms(n);
        }
        if let Some(n) = self.0.step_timeout_ms {
            (c.command_timeout, c.content_timeout) = (ms(n), ms(n));
        }
        if let Some(n) = self.0.io_timeout_ms {
            c.io_timeout = ms(n);
        }
        if let Some(n) = self.0.grace_ms {
            c.shutdown_grace = ms(n);
        }
        serve.run(ActionMilter).await
    }
}

fn main() -> ExitCode {
    daemon::main::<Action>()
}
