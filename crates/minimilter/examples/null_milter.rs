//! The cheapest milter the runtime can serve: it answers continue to
//! everything, asks for nothing and adds nothing.
//!
//!   cargo run --release --example null_milter -- --listen unix:/tmp/null.sock
//!
//! It declines every optional step at negotiation (`NO_CONNECT`, `NO_HELO`,
//! `NO_MAIL`, `NO_RCPT`, `NO_DATA`, `NO_HDRS`, `NO_EOH`, `NO_BODY`,
//! `NO_UNKNOWN`), asks for no actions and no macro lists, so an MTA sends it
//! only macros, end of message, abort and quit, and waits for one reply per
//! message (end of message has no no-reply flag).
//!
//! It exists to measure the MTA side: `minimilter bench` and the load
//! generator in `scripts/bench/` against it measure their own cost plus the
//! runtime's smallest per-message cost, nothing else.

use minimilter::{
    Actions, Milter, Requirements, ServerConfig, SocketSpec, Steps, UnixSocketOptions,
};

/// Continue to everything; every optional step negotiated away.
struct NullMilter;

impl Milter for NullMilter {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::empty(),
            no_reply: Steps::empty(),
            actions: Actions::empty(),
            ..Requirements::default()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut specs = Vec::new();
    let mut unix = UnixSocketOptions::default();
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => specs.push(value()?.parse::<SocketSpec>()?),
            "--socket-mode" => unix.mode = Some(u32::from_str_radix(&value()?, 8)?),
            "--max-connections" => config.max_connections = value()?.parse()?,
            _ => {
                return Err(format!(
                    "usage: null_milter [--listen SOCKET]... [--socket-mode 666] \
                     [--max-connections N] (got {arg:?})"
                )
                .into());
            }
        }
    }
    if specs.is_empty() {
        specs.push("inet:127.0.0.1:8893".parse()?);
    }
    minimilter::run(NullMilter, &specs, &unix, config).await?;
    Ok(())
}
