//! `mailman-milter`: the daemon. Reads the configuration and the lists file,
//! serves the milter, reloads the lists file on SIGHUP and when it changes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use mailman_milter::config::{BackendKind, Config};
use mailman_milter::list::unevaluable_line;
use mailman_milter::lists_file::Reloaded;
use mailman_milter::overrides::missing_override;
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write a lists file from a running Mailman's REST API (the
    /// configuration's [mailman] table says how to reach it).
    Export {
        /// Where to write it (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `export`: the lists file from the API, to `output` or stdout.
fn export(cli: &Cli, output: Option<&PathBuf>) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let rest = config
        .mailman_section()
        .rest_config()
        .map_err(anyhow::Error::msg)?;
    let text = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(mailman_milter::export::export(&rest))
        .with_context(|| format!("exporting from {}", rest.url))?;
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
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
        config.listen = vec![l.clone()];
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

/// `--check-config`: the settings, each list, and warnings, on stdout. A
/// closed pipe (`--check-config | head`) ends it quietly.
fn check(config: &Config, source: &Source) -> anyhow::Result<()> {
    match write_check(&mut std::io::stdout().lock(), config, source) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn write_check(out: &mut impl Write, config: &Config, source: &Source) -> anyhow::Result<()> {
    let overrides = config.settings().overrides;
    writeln!(out, "settings:")?;
    for line in config.summary() {
        writeln!(out, "  {line}")?;
    }
    match source {
        Source::File(lists) => {
            let data = ListsData::load(lists)?;
            let index = overrides.apply(data.index());
            print_lists(out, &lists.display().to_string(), &index)?;
            if let Some(line) = unevaluable_line(&data.unevaluable()) {
                writeln!(out, "  warning: {line}")?;
            }
            for list in overrides.missing(data.index()) {
                writeln!(out, "  warning: {}", missing_override(list))?;
            }
            Ok(())
        }
        Source::Mailman(rest) => {
            let backend = RestBackend::new(rest)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let index = match runtime.block_on(backend.lists()) {
                Ok(index) => index,
                // An API that is down is not a configuration error when
                // the list domains are known: the daemon can start and
                // pass other mail.
                Err(e) if backend.known_list_domains().is_some() => {
                    writeln!(
                        out,
                        "  warning: reading the lists from {}: {e}; list mail gets the fail-safe until it answers",
                        backend.base()
                    )?;
                    return Ok(());
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading the lists from {}", backend.base())));
                }
            };
            print_lists(out, backend.base(), &overrides.apply(&index))?;
            if let Some(line) = unevaluable_line(&backend.unevaluable()) {
                writeln!(out, "  warning: {line}")?;
            }
            for list in overrides.missing(&index) {
                writeln!(out, "  warning: {}", missing_override(list))?;
            }
            Ok(())
        }
    }
}

fn print_lists(out: &mut impl Write, source: &str, index: &ListIndex) -> std::io::Result<()> {
    // Once per list (alias-domain keys name a list again).
    let mut names: Vec<_> = index.values().collect();
    names.sort_by(|a, b| a.address.cmp(&b.address));
    names.dedup_by(|a, b| a.address == b.address);
    writeln!(out, "{source}: {} lists", names.len())?;
    for l in names {
        writeln!(
            out,
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
        )?;
    }
    Ok(())
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
    if let Some(Command::Export { output }) = &cli.command {
        return export(&cli, output.as_ref());
    }
    let (config, source) = configure(&cli)?;
    if cli.check_config {
        return check(&config, &source);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config, source))
}

async fn serve(config: Config, source: Source) -> anyhow::Result<()> {
    let specs = config.listen_specs().map_err(anyhow::Error::msg)?;
    tracing::info!("settings: {}", config.summary().join("; "));
    let unix = UnixSocketOptions {
        mode: config.socket_mode_bits().map_err(anyhow::Error::msg)?,
        group: config.socket_group.clone(),
        ..UnixSocketOptions::default()
    };
    let lists = match source {
        Source::File(lists) => lists,
        Source::Mailman(rest) => {
            let backend = Arc::new(RestBackend::new(&rest)?);
            match backend.known_list_domains() {
                Some(d) => tracing::info!(
                    domains = d.len(),
                    "list domains known; other mail never waits for Mailman"
                ),
                None => tracing::warn!(
                    "list domains not known until the Mailman REST API answers (set [mailman] list_domains or state_dir)"
                ),
            }
            // Listen at once; the lists are read meanwhile, through a
            // milter so overrides naming unknown lists are logged.
            let milter = MailmanMilter::new(backend, config.settings());
            let primer = milter.twin();
            let on_error = config.on_backend_error.name();
            tokio::spawn(async move {
                match primer.prime().await {
                    Ok(n) => tracing::info!(lists = n, "Mailman lists read"),
                    Err(e) => tracing::error!(
                        "{e}; list mail gets {on_error} (on_backend_error) until the Mailman REST API answers"
                    ),
                }
            });
            return listen(milter, &config, &specs, &unix).await;
        }
    };
    let (backend, error) = FileBackend::open(&lists);
    match error {
        Some(e) => tracing::error!(
            "{e}; answering {} (on_backend_error) until it loads (SIGHUP or a change reloads it)",
            config.on_backend_error.name()
        ),
        None => {
            let data = backend.data().expect("just loaded");
            tracing::info!(file = %lists.display(), lists = data.index().len(), "lists loaded");
            if let Some(line) = unevaluable_line(&data.unevaluable()) {
                tracing::warn!("{line}");
            }
        }
    }
    let backend = Arc::new(backend);
    watch(backend.clone(), Duration::from_secs(config.reload_interval));
    let milter = MailmanMilter::new(backend, config.settings());
    // Logs overrides naming lists the file does not have (no-op without data).
    let _ = milter.prime().await;
    listen(milter, &config, &specs, &unix).await
}

async fn listen<B: ListBackend>(
    milter: MailmanMilter<B>,
    config: &Config,
    specs: &[minimilter::SocketSpec],
    unix: &UnixSocketOptions,
) -> anyhow::Result<()> {
    minimilter::run(milter, specs, unix, ServerConfig::default())
        .await
        .with_context(|| format!("listening on {}", config.listen.join(", ")))?;
    Ok(())
}
