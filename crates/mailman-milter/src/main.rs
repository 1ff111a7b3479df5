//! `mailman-milter`: the daemon. Reads the configuration and the lists file,
//! serves the milter, reloads the lists file on SIGHUP and when it changes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use mailman_milter::config::{BackendKind, Config};
use mailman_milter::lists_file::Reloaded;
use mailman_milter::overrides::ListOverrides;
use mailman_milter::{
    FileBackend, ListBackend, ListIndex, ListsData, MailmanMilter, RestBackend, SenderMode,
};
use minimilter::{ServerConfig, UnixSocketOptions};

/// Refuse posts to Mailman lists from senders who may not post, at SMTP time.
#[derive(Debug, Parser)]
#[command(name = "mailman-milter", version)]
struct Cli {
    /// Configuration file (TOML); without it the built-in defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Lists file (TOML); overrides `lists` in the configuration.
    #[arg(long, value_name = "FILE")]
    lists: Option<PathBuf>,
    /// Socket to listen on, e.g. inet:127.0.0.1:8893 or unix:/run/mailman-milter.sock
    /// [default: inet:127.0.0.1:8893]
    #[arg(long, value_name = "SOCKET")]
    listen: Option<String>,
    /// Whose addresses count as the sender: mailman (From:, envelope, Reply-To:,
    /// Sender:; decided after the headers) or envelope (decided at RCPT).
    #[arg(long, value_parser = ["mailman", "envelope"])]
    senders: Option<String>,
    /// Mode of a unix socket, octal (e.g. 660).
    #[arg(long, value_name = "MODE")]
    socket_mode: Option<String>,
    /// Group of a unix socket (e.g. postfix).
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Check the configuration and the lists file, print a summary, and exit.
    #[arg(long)]
    check_config: bool,
}

/// Where the list data comes from, as configured.
enum Source {
    File(PathBuf),
    Mailman(mailman_milter::RestConfig),
}

fn configure(cli: &Cli) -> anyhow::Result<(Config, Source)> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(l) = &cli.listen {
        config.listen = l.clone();
    }
    if let Some(s) = &cli.senders {
        config.senders = if s == "envelope" {
            SenderMode::Envelope
        } else {
            SenderMode::Mailman
        };
    }
    if cli.socket_mode.is_some() {
        config.socket_mode = cli.socket_mode.clone();
    }
    if cli.socket_group.is_some() {
        config.socket_group = cli.socket_group.clone();
    }
    if let Some(l) = &cli.lists {
        if config.backend == BackendKind::Mailman {
            bail!("option --lists: not used with backend = \"mailman\" in the configuration");
        }
        config.lists = Some(l.clone());
    }
    // The file's own values were checked when it was loaded: an error here
    // comes from an option.
    config.check().map_err(|m| match m.split_once(": ") {
        Some((key, why)) => anyhow::anyhow!("option --{}: {why}", key.replace('_', "-")),
        None => anyhow::anyhow!("options: {m}"),
    })?;
    if config.backend == BackendKind::Mailman {
        let file = cli
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(defaults)".into());
        let rest = config
            .mailman_section()
            .rest_config()
            .map_err(|m| anyhow::anyhow!("{file}: {m}"))?;
        return Ok((config, Source::Mailman(rest)));
    }
    let Some(lists) = config.lists.clone() else {
        bail!("no lists file: give --lists FILE, or `lists = \"FILE\"` in the configuration");
    };
    Ok((config, Source::File(lists)))
}

fn check(source: &Source, overrides: &ListOverrides) -> anyhow::Result<()> {
    match source {
        Source::File(lists) => {
            let data = ListsData::load(lists)?;
            print_lists(&lists.display().to_string(), &overrides.apply(data.index()));
            for (list, entry, error) in data.unsupported_patterns() {
                println!(
                    "  warning: {list}: accept pattern {entry} cannot be evaluated here ({error}); such posts are passed to Mailman"
                );
            }
            Ok(())
        }
        Source::Mailman(rest) => {
            let backend = RestBackend::new(rest)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let index = runtime
                .block_on(backend.lists())
                .with_context(|| format!("reading the lists from {}", backend.base()))?;
            print_lists(backend.base(), &overrides.apply(&index));
            Ok(())
        }
    }
}

fn print_lists(source: &str, index: &ListIndex) {
    let mut names: Vec<_> = index.values().collect();
    names.sort_by(|a, b| a.address.cmp(&b.address));
    println!("{source}: {} lists", names.len());
    for l in names {
        println!(
            "  {}: non-members {}{}; {}",
            l.address,
            l.nonmember_action.name(),
            if l.refuses_hold() {
                " (holds refused)"
            } else {
                ""
            },
            if l.is_guarded() {
                "guarded"
            } else {
                "left to Mailman"
            }
        );
    }
}

fn watch(backend: Arc<FileBackend>, interval: Duration) {
    let b = backend.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot install the SIGHUP handler; reload by restarting");
            return;
        };
        while hup.recv().await.is_some() {
            match b.reload() {
                Ok(Reloaded::Loaded(n)) => {
                    tracing::info!(file = %b.path().display(), lists = n, "reloaded on SIGHUP")
                }
                Ok(Reloaded::Unchanged) => {}
                Err(e) => tracing::error!("reload on SIGHUP failed, keeping the old data: {e}"),
            }
        }
    });
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            match backend.reload_if_changed() {
                Ok(Reloaded::Loaded(n)) => tracing::info!(
                    file = %backend.path().display(),
                    lists = n,
                    "lists file changed; reloaded"
                ),
                Ok(Reloaded::Unchanged) => {}
                Err(e) => {
                    tracing::error!("lists file changed but is invalid, keeping the old data: {e}")
                }
            }
        }
    });
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let (config, source) = configure(&cli)?;
    if cli.check_config {
        return check(&source, &config.settings().overrides);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config, source))
}

async fn serve(config: Config, source: Source) -> anyhow::Result<()> {
    let spec = config.listen_spec().map_err(anyhow::Error::msg)?;
    let unix = UnixSocketOptions {
        mode: config.socket_mode_bits().map_err(anyhow::Error::msg)?,
        group: config.socket_group.clone(),
        ..UnixSocketOptions::default()
    };
    let lists = match source {
        Source::File(lists) => lists,
        Source::Mailman(rest) => {
            let backend = RestBackend::new(&rest)?;
            match backend.lists().await {
                Ok(index) => {
                    tracing::info!(
                        api = backend.base(),
                        lists = index.len(),
                        "Mailman lists read"
                    )
                }
                Err(e) => tracing::error!(
                    "{e}; answering tempfail (on_backend_error) until the Mailman REST API answers"
                ),
            }
            let milter = MailmanMilter::new(Arc::new(backend), config.settings());
            return listen(milter, &config, spec, &unix).await;
        }
    };
    let (backend, error) = FileBackend::open(&lists);
    match error {
        Some(e) => tracing::error!(
            "{e}; answering tempfail (on_backend_error) until it loads (SIGHUP or a change reloads it)"
        ),
        None => {
            let data = backend.data().expect("just loaded");
            tracing::info!(file = %lists.display(), lists = data.index().len(), "lists loaded");
            for (list, entry, error) in data.unsupported_patterns() {
                tracing::warn!(
                    "{list}: accept pattern {entry} cannot be evaluated ({error}); matching posts go to Mailman"
                );
            }
        }
    }
    let backend = Arc::new(backend);
    watch(backend.clone(), Duration::from_secs(config.reload_interval));
    let milter = MailmanMilter::new(backend, config.settings());
    listen(milter, &config, spec, &unix).await
}

async fn listen<B: ListBackend>(
    milter: MailmanMilter<B>,
    config: &Config,
    spec: minimilter::SocketSpec,
    unix: &UnixSocketOptions,
) -> anyhow::Result<()> {
    minimilter::run(milter, &[spec], unix, ServerConfig::default())
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    Ok(())
}
