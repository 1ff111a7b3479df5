//! `pgp-milter`: the daemon. Reads the configuration, then serves the milter
//! until SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use minimilter::{ServerConfig, SocketSpec, UnixSocketOptions};
use pgp_milter::{Config, DEFAULT_LISTEN, PgpMilter};
use pgp_milter::{Keyring, SharedKeyring};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

/// Accept only OpenPGP mail (PGP/MIME or inline, encrypted; optionally
/// signed) and refuse the rest at SMTP time. A milter for Postfix and
/// Sendmail.
#[derive(Parser, Debug)]
#[command(name = "pgp-milter", version, about)]
struct Args {
    /// Socket to listen on (repeatable): inet:HOST:PORT, inet6:[ADDR]:PORT
    /// (e.g. inet6:[::1]:8894), unix:PATH. Overrides `listen` in the file;
    /// default inet:127.0.0.1:8894.
    #[arg(long, value_name = "SOCKET")]
    listen: Vec<String>,
    /// TOML configuration file (all keys optional; see the README).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration, print a summary and exit.
    #[arg(long)]
    check_config: bool,
    /// Octal mode of unix sockets (e.g. 660). Overrides `socket_mode`.
    #[arg(long, value_name = "MODE")]
    socket_mode: Option<String>,
    /// Group of unix sockets (e.g. postfix). Overrides `socket_group`.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Panics in the parsers and in filter code are caught (the message gets
    // the fail-safe reply); the default hook would still print several lines
    // (a backtrace with RUST_BACKTRACE) for each. One log line instead.
    std::panic::set_hook(Box::new(|info| {
        let msg = minimilter::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(at = %at, "panic caught: {}", msg.replace('\n', " "));
    }));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgp-milter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path).context("invalid configuration")?,
        None => Config::default(),
    };
    let listen: Vec<String> = if !args.listen.is_empty() {
        args.listen.clone()
    } else if !config.listen.is_empty() {
        config.listen.clone()
    } else {
        vec![DEFAULT_LISTEN.to_owned()]
    };
    let specs = listen
        .iter()
        .map(|s| {
            s.parse::<SocketSpec>()
                .with_context(|| format!("--listen {s}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mode = match &args.socket_mode {
        Some(m) => Some(
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|&v| v <= 0o777)
                .with_context(|| format!("--socket-mode {m}: not an octal mode"))?,
        ),
        None => config.socket_mode,
    };
    let unix = UnixSocketOptions {
        mode,
        group: args.socket_group.clone().or(config.socket_group.clone()),
        ..UnixSocketOptions::default()
    };
    let mut server = ServerConfig::default();
    if let Some(n) = config.max_connections {
        server.max_connections = n;
    }
    // A group that does not exist would only fail when the socket is
    // made: check it now, so `--check-config` catches it too.
    if let Some(group) = &unix.group {
        minimilter::listener::lookup_group(group).with_context(|| {
            if args.socket_group.is_some() {
                format!("--socket-group {group}")
            } else {
                let file = args.config.as_deref().unwrap_or("(defaults)".as_ref());
                format!(
                    "invalid configuration: {}: key `socket_group`",
                    file.display()
                )
            }
        })?;
    }
    let policy = &config.policy;
    if args.check_config {
        println!("configuration OK");
        println!("listen: {}", listen.join(" "));
        println!("require: {}", policy.require);
        println!("max_body_bytes: {}", policy.max_body_bytes);
        println!("skip_authenticated: {}", policy.skip_authenticated);
        println!("enforce_domains: {:?}", policy.enforce_domains);
        println!("exempt_senders: {}", policy.exempt_senders.len());
        println!("exempt_recipients: {}", policy.exempt_recipients.len());
        println!("require_recipient_key: {}", policy.require_recipient_key);
        println!("hidden_recipients: {}", policy.hidden_recipients);
        println!("unknown_recipient: {}", policy.unknown_recipient);
        println!("recipient_key_scope: {}", policy.recipient_key_scope);
        println!("bounces: {}", policy.bounces);
        println!("max_bounce_bytes: {}", policy.max_bounce_bytes);
        println!("recipient_delimiter: {:?}", policy.recipient_delimiter);
        match policy.keyring.as_ref().map(|k| k.get()) {
            Some(k) => {
                println!("keyring: {}", describe_keyring(&k));
                for problem in k.problems_at(pgp_milter::keyring::now()) {
                    println!("keyring: unusable: {problem}");
                }
            }
            None => println!("keyring: none"),
        }
        // Loads, but does nothing or works against the rest: on stderr,
        // and still exit 0 (the configuration is usable).
        for w in &config.warnings {
            eprintln!("pgp-milter: warning: {w}");
        }
        return Ok(());
    }
    let keyring = policy.keyring.as_ref().map(|k| k.get());
    info!(
        listen = %listen.join(" "),
        require = %policy.require,
        max_body_bytes = policy.max_body_bytes,
        require_recipient_key = policy.require_recipient_key,
        keyring = %keyring.as_ref().map_or("none".into(), |k| describe_keyring(k)),
        "pgp-milter starting"
    );
    for problem in keyring
        .as_ref()
        .map(|k| k.problems_at(pgp_milter::keyring::now()))
        .unwrap_or_default()
    {
        warn!(%problem, "keyring: unusable key");
    }
    for w in &config.warnings {
        warn!(warning = %w, "configuration");
    }
    let shared = policy.keyring.clone();
    let milter = PgpMilter::new(config.policy);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // SIGHUP reloads the keyring. Registered before serving, so a SIGHUP
    // never takes the default action (terminating the daemon).
    let hangup = {
        let _guard = runtime.enter();
        signal(SignalKind::hangup()).context("installing the SIGHUP handler")?
    };
    runtime.spawn(reload_on_hangup(hangup, shared));
    runtime
        .block_on(minimilter::run(milter, &specs, &unix, server))
        .context("serving the milter")?;
    Ok(())
}

/// `N keys (M encryption keys) from F files, A addresses`.
fn describe_keyring(k: &Keyring) -> String {
    format!(
        "{} keys ({} encryption keys) from {} files, {} addresses",
        k.len(),
        k.encryption_key_count(),
        k.file_count(),
        k.address_count()
    )
}

/// Reloads the keyring on every SIGHUP; a keyring that fails to load is
/// logged and the old one stays in force.
async fn reload_on_hangup(mut hangup: Signal, keyring: Option<Arc<SharedKeyring>>) {
    while hangup.recv().await.is_some() {
        let Some(shared) = keyring.clone() else {
            info!("SIGHUP: no keyring_dir configured, nothing to reload");
            continue;
        };
        let dir = shared
            .dir()
            .map_or_else(String::new, |d| d.display().to_string());
        match tokio::task::spawn_blocking(move || shared.reload()).await {
            Ok(Ok(k)) => info!(dir, keyring = %describe_keyring(&k), "keyring reloaded"),
            Ok(Err(e)) => {
                error!(dir, error = %e, "keyring reload failed; the previous keys stay in force")
            }
            Err(e) => error!(dir, error = %e, "keyring reload task failed"),
        }
    }
}
