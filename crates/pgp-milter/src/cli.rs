//! The daemon's command line, as data: `main` parses it, and the man page
//! and shell completions are generated from it (`crates/packaging`).

use minimilter::daemon::{self, NoArgs};

/// Program name.
pub const NAME: &str = "pgp-milter";

/// The `--help` paragraph.
pub const ABOUT: &str = "Accept only OpenPGP mail (PGP/MIME or inline, encrypted; \
    optionally signed) and refuse the rest at SMTP time. A milter for Postfix and Sendmail.";

/// The whole command line: the shell's options (pgp-milter has none of
/// its own).
pub fn command() -> clap::Command {
    daemon::command::<NoArgs>(NAME, env!("CARGO_PKG_VERSION"), ABOUT)
}
