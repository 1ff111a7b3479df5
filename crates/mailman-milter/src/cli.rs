//! The `mailman-milter` daemon: the configuration and the list data,
//! served by the shared daemon shell (`minimilter::daemon`: command line,
//! `[server]`, logging, signals, `--check-config`, systemd). SIGHUP and a
//! change of the lists file reload the lists; SIGHUP also puts a changed
//! policy in force for new connections. `mailman-milter export` writes a
//! lists file from a running Mailman's REST API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as _, FromArgMatches as _};
use minimilter::daemon::{
    self, BoxError, Configured, Daemon, FileSection, Reloadable, Report, Serve, ServerSection,
    one_line,
};

use crate::config::{BackendKind, Config, DEFAULT_LISTEN};
use crate::list::unevaluable_line;
use crate::lists_file::Reloaded;
use crate::metered::{BackendCounters, Metered};
use crate::overrides::missing_override;
use crate::rest::RestMetrics;
use crate::{
    FileBackend, ListBackend, ListIndex, ListsData, MailmanMilter, RestBackend, SenderMode,
};

/// mailman-milter's whole command line (the shell's options, its own, and
/// `export`), for manual pages and shell completions.
pub fn command() -> clap::Command {
    daemon::command::<Mailman>()
}

/// Runs the daemon (or `export`) with the process's arguments.
pub fn main() -> std::process::ExitCode {
    daemon::main::<Mailman>()
}

/// mailman-milter's own options (the socket, configuration and logging
/// options are the shell's).
#[derive(Debug, Clone, clap::Args)]
pub struct Cli {
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
    /// The lists file, and where it was given (`--lists FILE`, or the
    /// configuration file's `lists` key), to start an error about it.
    File(PathBuf, String),
    Mailman(crate::RestConfig),
}

/// The mailman-milter daemon: its configuration and where its lists come
/// from, served by the shell.
pub struct Mailman {
    config: Config,
    source: Source,
}

impl Daemon for Mailman {
    const NAME: &'static str = "mailman-milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str =
        "Refuse posts to Mailman lists from senders who may not post, at SMTP time.";
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

    // Where the lists come from is fixed at start-up (the backend and its
    // cache, the lists file watched), and `senders` changes the steps
    // negotiated with the MTA; the rest of the policy applies to new
    // connections.
    fn applies_on_reload(key: &str) -> bool {
        !matches!(
            key,
            "listen"
                | "socket_mode"
                | "socket_group"
                | "backend"
                | "lists"
                | "reload_interval"
                | "mailman"
                | "senders"
        )
    }

    fn subcommands() -> Vec<clap::Command> {
        vec![ExportCli::augment_args(clap::Command::new("export")).about(EXPORT_ABOUT)]
    }

    fn run_subcommand(
        name: &str,
        args: &clap::ArgMatches,
        config: Option<&std::path::Path>,
    ) -> Result<(), BoxError> {
        match name {
            "export" => {
                let mut cli = ExportCli::from_arg_matches(args)?;
                if cli.config.is_none() {
                    cli.config = config.map(ToOwned::to_owned);
                }
                export(&cli)
            }
            other => Err(format!("no command {other}").into()),
        }
    }

    fn settings(&self, report: &mut Report) {
        // The socket keys are the shell's ([server]).
        for line in self.config.summary() {
            if !is_socket_setting(&line) {
                let (key, value) = line.split_once(" = ").unwrap_or((&line, ""));
                report.setting(key, value);
            }
        }
    }

    fn check(&self, report: &mut Report, backend: bool) {
        if backend && !check_backend(report, &self.source) {
            return;
        }
        // The lists are read in any case, from the file or the REST API:
        // they are what the daemon would run on.
        if let Err(e) = check(report, &self.config, &self.source) {
            report.error(one_line(e.as_ref()));
        }
    }

    async fn serve(self, mut serve: Serve) -> Result<(), BoxError> {
        let Mailman { config, source } = self;
        // The sockets are the shell's: it logs what it listens on, and
        // `config.listen` is only the milter's default, which [server] or
        // --listen may have replaced (as in the packaged configuration).
        let settings: Vec<String> = config
            .summary()
            .into_iter()
            .filter(|line| !is_socket_setting(line))
            .collect();
        tracing::info!("settings: {}", settings.join("; "));
        let counters = BackendCounters {
            requests: serve.counter_family(
                "backend_requests",
                "Calls for list data (lists) or sender status (senders), cached answers included",
            ),
            errors: serve.counter_family(
                "backend_errors",
                "Calls that failed; on_backend_error answered",
            ),
        };
        let (lists, origin) = match source {
            Source::File(lists, origin) => (lists, origin),
            Source::Mailman(rest) => {
                let backend = Arc::new(RestBackend::counted(&rest, rest_metrics(&mut serve))?);
                match backend.known_list_domains() {
                    Some(d) => tracing::info!(
                        domains = d.len(),
                        "list domains known; other mail never waits for Mailman"
                    ),
                    None => tracing::warn!(
                        "list domains not known until the Mailman REST API answers (set [mailman] list_domains or state_dir)"
                    ),
                }
                let metered = Arc::new(Metered::new(backend.clone(), counters));
                let milter = MailmanMilter::new(metered.clone(), config.settings());
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
                let (milter, swap) = Reloadable::new(milter);
                serve.on_reconfigure(move |new: Mailman| {
                    swap.replace(MailmanMilter::new(metered.clone(), new.config.settings()))
                });
                serve.on_reload(|| {
                    Ok(
                        "lists: read from the Mailman REST API as needed (answers are \
                        cached for cache_ttl)"
                            .into(),
                    )
                });
                return serve.run(milter).await;
            }
        };
        let (backend, error) = FileBackend::open(&lists);
        match error {
            Some(e) => tracing::error!(
                given = %origin,
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
                Ok(Reloaded::Loaded(n)) => Ok(format!("lists file {file} reloaded: {n} lists")),
                Ok(Reloaded::Unchanged) => Ok(format!("lists file {file} unchanged")),
                Err(e) => Err(format!("lists file reload failed: {e}")),
            }
        });
        let metered = Arc::new(Metered::new(backend, counters));
        let milter = MailmanMilter::new(metered.clone(), config.settings());
        // Logs overrides naming lists the file does not have (no-op without data).
        let _ = milter.prime().await;
        let (milter, swap) = Reloadable::new(milter);
        serve.on_reconfigure(move |new: Mailman| {
            swap.replace(MailmanMilter::new(metered.clone(), new.config.settings()))
        });
        serve.run(milter).await
    }
}

/// The REST backend's own counters, registered with the daemon: what
/// only the backend knows (requests really sent, their failures, the
/// caches' answers). Registered for the REST backend only.
fn rest_metrics(serve: &mut Serve) -> RestMetrics {
    RestMetrics {
        requests: serve.counter_family(
            "rest_requests",
            "HTTP requests sent to the Mailman REST API, by what they ask for \
             (kind); answers from the caches send none",
        ),
        errors: serve.counter_family(
            "rest_errors",
            "HTTP requests to the Mailman REST API that failed, by class: timeout, \
             connect, status, body, json, request",
        ),
        cache_hits: serve.counter_family(
            "cache_hits",
            "Answers from the REST backend's caches younger than cache_ttl, by cache: \
             site, list, member, lists",
        ),
        stale_answers: serve.counter_family(
            "stale_answers",
            "Answers from the REST backend's caches older than cache_ttl (within \
             max_stale) because Mailman had not answered anew, by cache",
        ),
        resolved: Default::default(),
    }
}

/// `mailman-milter export` in `--help`.
const EXPORT_ABOUT: &str = "Write a lists file from a running Mailman's REST API (the \
    configuration's [mailman] table says how to reach it), to snapshot Mailman or to run on \
    the file while the API is off limits; the file gives the same verdicts.";

/// `mailman-milter export`: the arguments.
#[derive(Debug, clap::Args)]
struct ExportCli {
    /// Configuration file (TOML) with the [mailman] table; without it the
    /// defaults apply. May also be given before `export`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the lists file (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
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
        .block_on(crate::export::export(&rest))
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
    let mut origin = None;
    if let Some(l) = &cli.lists {
        if config.backend == BackendKind::Mailman {
            return Err("--lists: not used with backend = \"mailman\" in the configuration".into());
        }
        config.lists = Some(l.clone());
        origin = Some(format!("--lists {}", l.display()));
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
    let origin = origin.unwrap_or_else(|| {
        let file = file.map_or_else(|| "(defaults)".into(), |p| p.display().to_string());
        format!("{file}: key `lists` ({})", lists.display())
    });
    Ok((config, Source::File(lists, origin)))
}

/// `--check-backend`: asks the REST API once; whether the lists should be
/// read next (not when the API did not answer: that is the one error).
fn check_backend(report: &mut Report, source: &Source) -> bool {
    match source {
        Source::File(lists, _) => {
            report.note(format!(
                "backend: the lists file {} (no service to ask)",
                lists.display()
            ));
            true
        }
        Source::Mailman(rest) => {
            let answer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("backend: starting the async runtime: {e}"))
                .and_then(|r| r.block_on(crate::backend_probe::probe(rest)));
            match answer {
                Ok(line) => {
                    report.note(line);
                    true
                }
                Err(line) => {
                    report.error(line);
                    false
                }
            }
        }
    }
}

/// `--check-config`: each list, and warnings.
fn check(report: &mut Report, config: &Config, source: &Source) -> Result<(), BoxError> {
    let overrides = config.settings().overrides;
    let mut out = Vec::new();
    match source {
        Source::File(lists, origin) => {
            // Read here rather than by ListsData::load, so that a file
            // that cannot be read is named by where it was given.
            let text = std::fs::read_to_string(lists)
                .map_err(|e| format!("{origin}: cannot read: {e}"))?;
            let data = ListsData::parse(&text, &lists.display().to_string())?;
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

/// A `key = value` line of [`Config::summary`] for a socket key, which the
/// daemon shell ([server], --listen) owns and reports itself.
fn is_socket_setting(line: &str) -> bool {
    let key = line.split_once(" = ").map_or(line, |(key, _)| key);
    matches!(key, "listen" | "socket_mode" | "socket_group")
}
