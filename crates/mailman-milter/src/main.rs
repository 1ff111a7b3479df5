//! `mailman-milter`: the daemon. The configuration and the list data,
//! served by the shared daemon shell (`minimilter::daemon`: command line,
//! `[server]`, logging, signals, `--check-config`, systemd). SIGHUP and a
//! change of the lists file reload the lists. `mailman-milter export`
//! writes a lists file from a running Mailman's REST API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mailman_milter::config::{BackendKind, Config, DEFAULT_LISTEN};
use mailman_milter::list::unevaluable_line;
use mailman_milter::lists_file::Reloaded;
use mailman_milter::overrides::missing_override;
use mailman_milter::{
    FileBackend, ListBackend, ListIndex, ListsData, MailmanMilter, RestBackend, SenderMode,
};
use minimilter::daemon::{
    self, BoxError, Configured, Daemon, FileSection, Report, Serve, ServerSection, one_line,
};

/// mailman-milter's own options (the socket, configuration and logging
/// options are the shell's).
#[derive(Debug, Clone, Parser)]
struct Cli {
    /// Lists file (TOML); overrides `lists` in the configuration.
    #[arg(long, value_name = "FILE")]
    lists: Option<PathBuf>,
    /// Whose addresses count as the sender: mailman (From:, envelope, Reply-To:,
    /// Sender:; decided after the headers) or envelope (decided at RCPT).
    #[arg(long, value_parser = ["mailman", "envelope"])]
    senders: Option<String>,
}

/// Where the list data comes from, as configured.
enum Source {
    File(PathBuf),
    Mailman(mailman_milter::RestConfig),
}

struct Mailman {
    config: Config,
    source: Source,
}

impl Daemon for Mailman {
    const NAME: &'static str = "mailman-milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Refuse posts to Mailman lists from senders who may not post, at SMTP time. \
         `mailman-milter export --help`: write a lists file from Mailman's REST API.";
    const DEFAULT_LISTEN: &'static str = DEFAULT_LISTEN;
    type Args = Cli;

    fn configure(file: Option<&FileSection>, cli: &Cli) -> Result<Configured<Self>, BoxError> {
        let path = file.map(|f| f.path.as_path());
        let (config, source) = configure(path, cli)?;
        // The socket keys an older file has at its top level.
        let legacy = ServerSection {
            listen: (config.listen != [DEFAULT_LISTEN]).then(|| config.listen.clone()),
            socket_mode: config.socket_mode.clone(),
            socket_group: config.socket_group.clone(),
            ..ServerSection::default()
        };
        Ok(Configured {
            daemon: Mailman { config, source },
            legacy,
            warnings: Vec::new(),
        })
    }

    fn settings(&self, report: &mut Report) {
        // The socket keys are the shell's ([server]).
        for line in self.config.summary() {
            let (key, value) = line.split_once(" = ").unwrap_or((&line, ""));
            if !matches!(key, "listen" | "socket_mode" | "socket_group") {
                report.setting(key, value);
            }
        }
    }

    fn check(&self, report: &mut Report, _backend: bool) {
        // The lists are read in any case, from the file or the REST API:
        // they are what the daemon would run on.
        if let Err(e) = check(report, &self.config, &self.source) {
            report.error(one_line(e.as_ref()));
        }
    }

    async fn serve(self, mut serve: Serve) -> Result<(), BoxError> {
        let Mailman { config, source } = self;
        tracing::info!("settings: {}", config.summary().join("; "));
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
                let milter = MailmanMilter::new(backend.clone(), config.settings());
                // Listen at once; the domains and the lists the overrides
                // name are read meanwhile, so overrides naming unknown
                // lists are logged.
                let primer = milter.twin();
                let on_error = config.on_backend_error.name();
                let api = backend.base().to_owned();
                tokio::spawn(async move {
                    match primer.prime().await {
                        Ok(n) => tracing::info!(
                            api,
                            override_lists = n,
                            "Mailman REST API answered; lists are read on their first RCPT"
                        ),
                        Err(e) => tracing::error!(
                            "{e}; list mail gets {on_error} (on_backend_error) until the Mailman REST API answers"
                        ),
                    }
                });
                serve.on_reload(|| {
                    Ok(
                        "nothing: the lists come from the Mailman REST API (answers are \
                        cached for cache_ttl; other settings need a restart)"
                            .into(),
                    )
                });
                return serve.run(milter).await;
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
        let b = backend.clone();
        serve.on_reload(move || {
            let file = b.path().display();
            match b.reload() {
                Ok(Reloaded::Loaded(n)) => {
                    Ok(format!("lists file {file} reloaded on SIGHUP: {n} lists"))
                }
                Ok(Reloaded::Unchanged) => Ok(format!("lists file {file} unchanged")),
                Err(e) => Err(format!("lists file reload failed: {e}")),
            }
        });
        let milter = MailmanMilter::new(backend, config.settings());
        // Logs overrides naming lists the file does not have (no-op without data).
        let _ = milter.prime().await;
        serve.run(milter).await
    }
}

fn main() -> ExitCode {
    // `export` is a one-shot command, not the daemon: its own small parser.
    // It is the word `export` where an option's value cannot be.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let export_at = (1..args.len()).find(|&i| {
        let prev = args[i - 1].to_string_lossy();
        args[i] == "export" && (i == 1 || !prev.starts_with('-') || prev.contains('='))
    });
    if let Some(i) = export_at {
        let mut rest = args;
        rest.remove(i);
        return export_main(rest);
    }
    daemon::main::<Mailman>()
}

/// `mailman-milter export`: the arguments.
#[derive(Debug, Parser)]
#[command(
    name = "mailman-milter export",
    bin_name = "mailman-milter export",
    version,
    about = "Write a lists file from a running Mailman's REST API (the configuration's \
             [mailman] table says how to reach it), to snapshot Mailman or to run on the \
             file while the API is off limits; the file gives the same verdicts."
)]
struct ExportCli {
    /// Configuration file (TOML) with the [mailman] table; without it the defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the lists file (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn export_main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = ExportCli::parse_from(args);
    match export(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailman-milter export: {}", one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn export(cli: &ExportCli) -> Result<(), BoxError> {
    let file = cli
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(defaults)".into());
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let rest = config
        .mailman_section()
        .rest_config()
        .map_err(|m| format!("{file}: {m}"))?;
    let text = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(mailman_milter::export::export(&rest))
        .map_err(|e| format!("exporting from {}: {e}", rest.url))?;
    match &cli.output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}

fn configure(file: Option<&std::path::Path>, cli: &Cli) -> Result<(Config, Source), BoxError> {
    let mut config = match file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(s) = &cli.senders {
        config.senders = if s == "envelope" {
            SenderMode::Envelope
        } else {
            SenderMode::Mailman
        };
    }
    if let Some(l) = &cli.lists {
        if config.backend == BackendKind::Mailman {
            return Err("--lists: not used with backend = \"mailman\" in the configuration".into());
        }
        config.lists = Some(l.clone());
    }
    if config.backend == BackendKind::Mailman {
        let file = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(defaults)".into());
        let rest = config
            .mailman_section()
            .rest_config()
            .map_err(|m| format!("{file}: {m}"))?;
        return Ok((config, Source::Mailman(rest)));
    }
    let Some(lists) = config.lists.clone() else {
        return Err(
            "no lists file: give --lists FILE, or `lists = \"FILE\"` in the configuration".into(),
        );
    };
    Ok((config, Source::File(lists)))
}

/// `--check-config`: each list, and warnings.
fn check(report: &mut Report, config: &Config, source: &Source) -> Result<(), BoxError> {
    let overrides = config.settings().overrides;
    let mut out = Vec::new();
    match source {
        Source::File(lists) => {
            let data = ListsData::load(lists)?;
            let index = overrides.apply(data.index());
            print_lists(&mut out, &lists.display().to_string(), &index)?;
            if let Some(line) = unevaluable_line(&data.unevaluable()) {
                report.warn(line);
            }
            for list in overrides.missing(data.index()) {
                report.warn(missing_override(list));
            }
        }
        Source::Mailman(rest) => {
            let backend = RestBackend::new(rest)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let index = match runtime.block_on(backend.lists()) {
                Ok(index) => index,
                // An API that is down is not a configuration error when the
                // list domains are known: the daemon can start and pass
                // other mail.
                Err(e) if backend.known_list_domains().is_some() => {
                    report.warn(format!(
                        "reading the lists from {}: {e}; list mail gets the fail-safe until it answers",
                        backend.base()
                    ));
                    return Ok(());
                }
                Err(e) => {
                    return Err(format!("reading the lists from {}: {e}", backend.base()).into());
                }
            };
            print_lists(&mut out, backend.base(), &overrides.apply(&index))?;
            if let Some(line) = unevaluable_line(&backend.unevaluable()) {
                report.warn(line);
            }
            for list in overrides.missing(&index) {
                report.warn(missing_override(list));
            }
        }
    }
    report.note(String::from_utf8_lossy(&out).trim_end().to_owned());
    Ok(())
}

fn print_lists(
    out: &mut impl std::io::Write,
    source: &str,
    index: &ListIndex,
) -> std::io::Result<()> {
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

/// Reloads the lists file when it changes (every `interval`; 0: never).
fn watch(backend: Arc<FileBackend>, interval: Duration) {
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
