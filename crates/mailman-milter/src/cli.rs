//! The daemon's command line, as data: `main` parses it, and the man page
//! and shell completions are generated from it (`crates/packaging`).

use std::path::PathBuf;

use minimilter::daemon;

/// Program name.
pub const NAME: &str = "mailman-milter";

/// The `--help` paragraph.
pub const ABOUT: &str = "Refuse posts to Mailman lists from senders who may not post, at SMTP time. \
     `mailman-milter export --help`: write a lists file from Mailman's REST API.";

/// mailman-milter's own options (the socket, configuration and logging
/// options are the shell's).
#[derive(Debug, Clone, clap::Parser)]
pub struct Args {
    /// Lists file (TOML); overrides `lists` in the configuration.
    #[arg(long, value_name = "FILE")]
    pub lists: Option<PathBuf>,
    /// Whose addresses count as the sender: mailman (From:, envelope, Reply-To:,
    /// Sender:; decided after the headers) or envelope (decided at RCPT).
    #[arg(long, value_parser = ["mailman", "envelope"])]
    pub senders: Option<String>,
}

/// The daemon's whole command line: [`Args`] and the shell's options.
/// (`mailman-milter export` has a parser of its own.)
pub fn command() -> clap::Command {
    daemon::command::<Args>(NAME, env!("CARGO_PKG_VERSION"), ABOUT)
}
