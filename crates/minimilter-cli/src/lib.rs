//! `minimilter`: run a message through any milter and see what it decided
//! (`check`), load a milter and measure it (`bench`), record what passes
//! between an MTA and a milter (`record`). The library holds the whole
//! program, so its command line ([`command`]) is there for manual pages
//! and shell completions.

mod bench;
mod check;
mod check_transcript;
mod envelope;
mod exit;
mod json;
mod output;
mod record;
mod replay;
mod timeouts;
mod transcript;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// Talk to any milter (Sendmail/Postfix mail filter) the way Postfix does.
#[derive(Parser)]
#[command(name = "minimilter", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one message through a milter and show every step, what the
    /// milter answered, each modification, and the verdict.
    #[command(after_help = exit::HELP)]
    Check(check_transcript::CheckCommand),
    /// Load a milter with many connections and messages; report throughput,
    /// latency percentiles, verdict counts and errors.
    Bench(bench::BenchArgs),
    /// Sit between the MTA and a milter, relay both ways unchanged, and
    /// write one transcript per SMTP transaction.
    ///
    /// The transcript format is described in
    /// /usr/share/doc/minimilter/transcript.md.gz (docs/transcript.md in the
    /// source).
    Record(record::RecordArgs),
    /// Play recorded transactions to a milter as the MTA did and report
    /// every verdict and modification that differs (exit status 1 if any).
    Replay(replay::ReplayArgs),
}

/// The `minimilter` command line with every command, for generating
/// manual pages and shell completions (clap_mangen, clap_complete).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs `minimilter` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // A log line that cannot be written (a full disk under the log
        // file, a log reader gone) is dropped: by default the subscriber
        // reports it with `eprintln!`, which panics the thread that logged
        // (for `record`, a relay or the transcript writer).
        .log_internal_errors(false)
        .init();
    // The recording proxy's runtime only accepts MTA connections and
    // connects to the milter; packets are relayed on threads of their own
    // (record/relay.rs), so one runtime thread is enough.
    let mut builder = match cli.command {
        Command::Record(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            output::note(&format!(
                "minimilter: cannot start the async runtime: {e}\n"
            ));
            return ExitCode::from(exit::ERROR);
        }
    };
    let json = match &cli.command {
        Command::Check(c) => c.args.json,
        Command::Bench(b) => b.json,
        Command::Replay(r) => r.json,
        Command::Record(_) => false,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => check_transcript::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Record(args) => record::run(args).await,
            Command::Replay(args) => replay::run(args).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let text = format!("{e:#}");
            output::note(&format!("minimilter: {text}\n"));
            // `--json` promises JSON on standard output: the error too.
            if json {
                let _ = output::emit(&format!("{}\n", serde_json::json!({ "error": text })));
            }
            ExitCode::from(exit::ERROR)
        }
    }
}
