//! `mailman-milter`: the daemon. The configuration and the list data,
//! served by the shared daemon shell (`minimilter::daemon`: command line,
//! `[server]`, logging, signals, `--check-config`, systemd). SIGHUP and a
//! change of the lists file reload the lists.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mailman_milter::config::{BackendKind, Config, DEFAULT_LISTEN};
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
                let milter = MailmanMilter::new(backend.clone(), config.settings());
                // Through the milter, so overrides naming unknown lists are logged.
                match milter.prime().await {
                    Ok(n) => tracing::info!(api = backend.base(), lists = n, "Mailman lists read"),
                    Err(e) => tracing::error!(
                        "{e}; answering {} (on_backend_error) until the Mailman REST API answers",
                        config.on_backend_error.name()
                    ),
                }
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
                for (list, entry, error) in data.unsupported_patterns() {
                    tracing::warn!(
                        "{list}: accept pattern {entry} cannot be evaluated ({error}); matching posts go to Mailman"
                    );
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
    daemon::main::<Mailman>()
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
            for (list, entry, error) in data.unsupported_patterns() {
                report.warn(format!(
                    "{list}: accept pattern {entry} cannot be evaluated here ({error}); such posts are passed to Mailman"
                ));
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
            let index = runtime
                .block_on(backend.lists())
                .map_err(|e| format!("reading the lists from {}: {e}", backend.base()))?;
            print_lists(&mut out, backend.base(), &overrides.apply(&index))?;
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
    let mut names: Vec<_> = index.values().collect();
    names.sort_by(|a, b| a.address.cmp(&b.address));
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
