//! Serves the interop milter (`minimilter::interop::ActionMilter`): it performs
//! whatever end-of-message actions a message asks for in `X-Action:` headers
//! (see that module for the language).
//!
//!   cargo run --example action_milter -- --listen inet:127.0.0.1:8892

use std::time::Duration;

use minimilter::interop::ActionMilter;
use minimilter::{ServerConfig, SocketSpec, UnixSocketOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
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
            "--progress-ms" => config.progress_interval = Duration::from_millis(value()?.parse()?),
            "--step-timeout-ms" => {
                let d = Duration::from_millis(value()?.parse()?);
                (config.command_timeout, config.content_timeout) = (d, d);
            }
            "--io-timeout-ms" => config.io_timeout = Duration::from_millis(value()?.parse()?),
            "--grace-ms" => config.shutdown_grace = Duration::from_millis(value()?.parse()?),
            _ => return Err(format!("usage: action_milter [--listen SOCKET]... [--socket-mode 666] [--progress-ms N] [--max-connections N] [--step-timeout-ms N] [--io-timeout-ms N] [--grace-ms N] (got {arg:?})").into()),
        }
    }
    if specs.is_empty() {
        specs.push("inet:127.0.0.1:8892".parse()?);
    }
    minimilter::run(ActionMilter, &specs, &unix, config).await?;
    Ok(())
}
