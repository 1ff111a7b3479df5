//! The daemon shell every milter binary shares: one command line, one
//! `[server]` configuration section, logging, one-line errors, signals,
//! `--check-config`, and systemd integration. A milter's `main` is its
//! policy plus one call:
//!
//! ```no_run
//! # use minimilter::daemon::{self, BoxError, Configured, Daemon, FileSection, NoArgs, Serve};
//! # struct MyMilter;
//! # impl minimilter::Milter for MyMilter {
//! #     type Connection = ();
//! #     type Message = ();
//! #     fn requirements(&self) -> minimilter::Requirements { Default::default() }
//! # }
//! struct My;
//! impl Daemon for My {
//!     const NAME: &'static str = "my-milter";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const ABOUT: &'static str = "What my milter does.";
//!     const DEFAULT_LISTEN: &'static str = "inet:127.0.0.1:8899";
//!     type Args = NoArgs;
//!     fn configure(file: Option<&FileSection>, _: &NoArgs) -> Result<Configured<Self>, BoxError> {
//!         daemon::only_server_section(file)?;
//!         Ok(Configured::new(My))
//!     }
//!     async fn serve(self, serve: Serve) -> Result<(), BoxError> {
//!         serve.run(MyMilter).await
//!     }
//! }
//! fn main() -> std::process::ExitCode {
//!     daemon::main::<My>()
//! }
//! ```
//!
//! Exit status: 0 after a clean shutdown or a clean `--check-config`; 1
//! for a configuration, socket or start-up error (one line on standard
//! error, `NAME: what`, naming the file and key, the option, or the
//! socket); 2 for a command-line usage error.

mod args;
mod check;
mod config;
mod errors;
mod logging;
mod metrics;
mod reload;
mod signals;
mod socket_owner;
mod swap;
mod systemd;
mod toml_error;

use std::any::Any;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args as _, FromArgMatches as _};

pub use args::{PRECEDENCE, ServerArgs};
pub use check::{Report, toml_string};
pub use config::{FileSection, SERVER_KEYS, ServerSection, Settings, resolve};
pub use errors::{BoxError, DaemonError, one_line};
pub use logging::LogFormat;
pub use signals::ReloadHook;
pub use swap::{Pinned, Reloadable, Swap};
pub use systemd::{Notifier, passed_socket_count};
pub use toml_error::toml_error_line;

use crate::config::ServerConfig;
use crate::filter::Milter;
use crate::listener::Listener;
use crate::server::Server;

/// A milter program: how it reads its configuration, what it checks, and
/// how it builds the filter. The shell does the rest.
pub trait Daemon: Sized + 'static {
    /// Program name, in `--help`, `--version` and every error line.
    const NAME: &'static str;
    /// `env!("CARGO_PKG_VERSION")` of the milter's crate.
    const VERSION: &'static str;
    /// One paragraph for `--help`.
    const ABOUT: &'static str;
    /// Socket when neither the command line, the file nor systemd give one.
    const DEFAULT_LISTEN: &'static str;
    /// The milter's own command-line options ([`NoArgs`] for none).
    type Args: clap::Args + Clone + Send + Sync + 'static;

    /// Reads the milter's part of the configuration (`file` is the
    /// `--config` file, its `[server]` already taken by the shell), with
    /// `args` applied. Every check that can fail at start-up belongs here
    /// or in [`Daemon::check`], so `--check-config` finds it too.
    fn configure(
        file: Option<&FileSection>,
        args: &Self::Args,
    ) -> Result<Configured<Self>, BoxError>;

    /// The milter's settings in force, as `key = value` lines spelt as in
    /// the file ([`Report::setting`]); cheap (no I/O): `--check-config`
    /// prints them and SIGHUP compares them with the file's.
    fn settings(&self, report: &mut Report) {
        let _ = report;
    }

    /// `--check-config` beyond the settings: anything else start-up would
    /// find (patterns, keyring, lists), as notes, warnings and errors; with
    /// `backend`, whether the backend answers.
    fn check(&self, report: &mut Report, backend: bool) {
        let _ = (report, backend);
    }

    /// Whether SIGHUP applies a change of `key` (a key of
    /// [`Daemon::settings`]) while running, through the hook given to
    /// [`Serve::on_reconfigure`]; other changed keys are logged as taking
    /// effect after a restart. Default: none. `[server]` keys always need
    /// a restart (sockets are bound once).
    fn applies_on_reload(key: &str) -> bool {
        let _ = key;
        false
    }

    /// One-shot commands beside the daemon (`mailman-milter export`),
    /// shown in `--help`; default none. Of the daemon's options only
    /// `--config` may come before a command's name.
    fn subcommands() -> Vec<clap::Command> {
        Vec::new()
    }

    /// Runs the command `name` of [`Daemon::subcommands`] with its
    /// arguments, and the `--config` given before its name. An error is
    /// printed as one line, `NAME name: what`, with exit status 1.
    fn run_subcommand(
        name: &str,
        args: &clap::ArgMatches,
        config: Option<&std::path::Path>,
    ) -> Result<(), BoxError> {
        let _ = (args, config);
        Err(format!("no command {name}").into())
    }

    /// Builds the filter (and its reload hook) and serves it with
    /// [`Serve::run`].
    fn serve(self, serve: Serve) -> impl Future<Output = Result<(), BoxError>>;
}

/// The whole command line of milter `D`: its own options, the shell's,
/// and its commands, with `--help` and `--version` text. For generating
/// manual pages and shell completions (clap_mangen, clap_complete).
pub fn command<D: Daemon>() -> clap::Command {
    // About and version after the options: a derived `Args` struct's doc
    // comment would otherwise replace the milter's own text.
    let mut command = ServerArgs::augment_args(D::Args::augment_args(clap::Command::new(D::NAME)))
        .version(D::VERSION)
        .about(D::ABOUT)
        .long_about(None::<&str>)
        .after_help(
            "Settings: a command-line option wins over the same key in the [server] \
                 section of the --config file, which wins over the built-in default. \
                 SIGTERM/SIGINT drain and stop; SIGHUP reloads what the milter can reload.",
        );
    let subcommands = D::subcommands();
    if !subcommands.is_empty() {
        command = command
            .subcommands(subcommands)
            .disable_help_subcommand(true);
    }
    command
}

/// The milter's configuration, and the socket keys an older file of it has
/// at its top level (read as `[server]`'s, which win).
pub struct Configured<D> {
    /// The milter.
    pub daemon: D,
    /// Top-level `listen`, `socket_mode`, ... of an older file.
    pub legacy: ServerSection,
    /// What works but should be changed, one sentence each.
    pub warnings: Vec<String>,
}

impl<D> Configured<D> {
    /// No top-level socket keys, no warnings.
    pub fn new(daemon: D) -> Self {
        Configured {
            daemon,
            legacy: ServerSection::default(),
            warnings: Vec::new(),
        }
    }
}

/// No options of the milter's own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoArgs {}

/// For a milter without settings of its own: the file may hold `[server]`
/// only.
pub fn only_server_section(file: Option<&FileSection>) -> Result<(), BoxError> {
    if let Some(f) = file
        && let Some(k) = f.other_keys.first()
    {
        return Err(format!(
            "{}: key `{k}`: unknown (this milter has only the [server] section)",
            f.path.display()
        )
        .into());
    }
    Ok(())
}

/// What [`Daemon::serve`] gets: bound sockets and the runtime settings.
pub struct Serve {
    name: &'static str,
    listeners: Vec<Listener>,
    config: ServerConfig,
    notifier: Arc<Notifier>,
    handlers: signals::Handlers,
    reload: Option<ReloadHook>,
    config_watch: Option<ReloadHook>,
    reconfigure: ReconfigureSlot,
    registry: prometheus_client::registry::Registry,
    metrics_listener: Option<tokio::net::TcpListener>,
}

/// What [`Serve::on_reconfigure`] was given, type-erased: it takes the
/// milter's `Daemon` value, freshly configured from the re-read file.
type ReconfigureHook = Arc<dyn Fn(Box<dyn Any>) -> Result<(), String> + Send + Sync>;
type ReconfigureSlot = Arc<Mutex<Option<ReconfigureHook>>>;

/// A counter of a milter's own ([`Serve::counter`]).
pub type Counter = prometheus_client::metrics::counter::Counter;
/// Label pairs of a milter's counters: fixed words, so the number of
/// series stays bounded.
pub type Labels = Vec<(&'static str, &'static str)>;
/// Counters by label ([`Serve::counter_family`]).
pub type CounterFamily = prometheus_client::metrics::family::Family<Labels, Counter>;

impl Serve {
    /// Where the milter registers metrics of its own (names are prefixed
    /// with the milter's name, `-` as `_`; call once); exposed with the runtime's at
    /// `/metrics` when `metrics_listen`/`--metrics` is set, unused otherwise.
    /// [`Serve::counter`] and [`Serve::counter_family`] cover the usual case.
    pub fn registry(&mut self) -> &mut prometheus_client::registry::Registry {
        let prefix = self.name.replace('-', "_");
        self.registry.sub_registry_with_prefix(prefix)
    }

    /// A counter of the milter's own, served as `NAME_name_total` (NAME
    /// the milter's, `-` as `_`) beside the runtime's `milter_*` metrics.
    /// Keep it outside the filter so that it outlives a reload.
    pub fn counter(&mut self, name: &str, help: &str) -> Counter {
        let c = Counter::default();
        self.register(name, help, c.clone());
        c
    }

    /// Counters by label values, served as `NAME_name_total{...}`.
    pub fn counter_family(&mut self, name: &str, help: &str) -> CounterFamily {
        let f = CounterFamily::default();
        self.register(name, help, f.clone());
        f
    }

    fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let full = format!("{}_{name}", self.name.replace('-', "_"));
        self.registry.register(full, help, metric);
    }

    /// What SIGHUP does with the re-read configuration file when a setting
    /// [`Daemon::applies_on_reload`] changed: `hook` gets the milter's
    /// value configured from the file (checked as at start-up) and puts
    /// it in force, typically with [`Swap::replace`]; `Err(why)` refuses
    /// and keeps the running state. `D` must be the daemon being served.
    pub fn on_reconfigure<D: Daemon>(
        &mut self,
        hook: impl Fn(D) -> Result<(), String> + Send + Sync + 'static,
    ) {
        let erased: ReconfigureHook = Arc::new(move |any: Box<dyn Any>| {
            let d = any
                .downcast::<D>()
                .map_err(|_| "internal error: reconfigured a different daemon".to_owned())?;
            hook(*d)
        });
        *self.reconfigure.lock().unwrap_or_else(|e| e.into_inner()) = Some(erased);
    }

    /// Whether metrics are served (a milter may skip counting otherwise).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics_listener.is_some()
    }

    /// The runtime settings (limits and timeouts) to adjust before
    /// [`Serve::run`]; `max_connections` comes from the shell.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// What SIGHUP runs (on a blocking thread): reload what can be
    /// reloaded and return what changed, or refuse and keep the old state.
    pub fn on_reload(&mut self, hook: impl Fn() -> Result<String, String> + Send + Sync + 'static) {
        self.reload = Some(Arc::new(hook));
    }

    /// Serves `milter` until SIGTERM/SIGINT, then drains (messages in
    /// progress finish within the grace period) and returns.
    pub async fn run<M: Milter>(self, milter: M) -> Result<(), BoxError> {
        let Serve {
            name,
            listeners,
            config,
            notifier,
            handlers,
            reload,
            config_watch,
            reconfigure: _,
            mut registry,
            metrics_listener,
        } = self;
        let mut server = Server::new(milter, config);
        if let Some(listener) = metrics_listener {
            let runtime = crate::metrics::RuntimeMetrics::register(&mut registry);
            server = server.with_metrics(Arc::new(runtime));
            tracing::info!(
                "metrics at http://{}/metrics",
                listener
                    .local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string())
            );
            tokio::spawn(metrics::serve(listener, Arc::new(registry)));
        }
        let stats = server.stats();
        let stop = handlers.split(notifier.clone(), config_watch, reload);
        notifier.notify(&format!(
            "READY=1\nSTATUS={name} serving: 0 connections open, 0 messages"
        ));
        if notifier.is_active() {
            let notifier = notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let s = stats.snapshot();
                    notifier.notify(&format!(
                        "STATUS={name} serving: {} connections open, {} messages",
                        s.connections_open, s.messages
                    ));
                }
            });
        }
        server.serve(listeners, stop).await;
        Ok(())
    }
}

/// Exit status of a usage error (as clap's).
const USAGE: u8 = 2;

/// Runs the milter program `D` with the process's arguments.
pub fn main<D: Daemon>() -> ExitCode {
    main_from::<D, _, _>(std::env::args_os())
}

/// Runs `D` with `argv` (the program name first).
pub fn main_from<D, I, T>(argv: I) -> ExitCode
where
    D: Daemon,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = match command::<D>().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => return usage_error::<D>(e),
    };
    if let Some((name, args)) = matches.subcommand() {
        // A daemon option in front of a command would do nothing: refused
        // rather than ignored (`--config` is the command's too).
        if let Some(arg) = command::<D>().get_arguments().find(|a| {
            let id = a.get_id().as_str();
            id != "config"
                && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        }) {
            let flag = arg.get_long().unwrap_or(arg.get_id().as_str());
            eprintln!(
                "{}: --{flag} cannot be used with the command `{name}` (see --help)",
                D::NAME
            );
            return ExitCode::from(USAGE);
        }
        let config = matches.get_one::<std::path::PathBuf>("config");
        install_panic_hook();
        return match D::run_subcommand(name, args, config.map(|p| p.as_path())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{} {name}: {}", D::NAME, one_line(e.as_ref()));
                ExitCode::FAILURE
            }
        };
    }
    let (server_args, milter_args) = match (
        ServerArgs::from_arg_matches(&matches),
        D::Args::from_arg_matches(&matches),
    ) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => return usage_error::<D>(e),
    };
    install_panic_hook();
    match start::<D>(server_args, milter_args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e}", D::NAME);
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` as clap prints them; any other usage error as
/// one line.
fn usage_error<D: Daemon>(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("{}: {first} (see --help)", D::NAME);
    ExitCode::from(USAGE)
}

/// A panic in filter code is caught by the runtime (the message gets the
/// fail-safe reply); the default hook would still print several lines,
/// and a backtrace with RUST_BACKTRACE. One log line instead.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = crate::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = msg.replace('\n', " ");
        if tracing::dispatcher::has_been_set() {
            tracing::error!(at = %at, "panic caught: {msg}");
        } else {
            // Before logging is set up (reading the configuration): still
            // one line, on stderr.
            eprintln!("internal error: panic at {at}: {msg}");
        }
    }));
}

fn start<D: Daemon>(args: ServerArgs, milter_args: D::Args) -> Result<ExitCode, DaemonError> {
    let file = args.config.as_deref().map(FileSection::read).transpose()?;
    let configured = D::configure(file.as_ref(), &milter_args)?;
    let passed = passed_socket_count();
    let settings = resolve(
        &args,
        file.as_ref(),
        &configured.legacy,
        passed > 0,
        D::DEFAULT_LISTEN,
    )?;
    let warnings: Vec<String> = configured
        .warnings
        .iter()
        .chain(&settings.warnings)
        .cloned()
        .collect();
    if args.check_config {
        let mut report = Report::default();
        configured.daemon.settings(&mut report);
        configured.daemon.check(&mut report, args.check_backend);
        check::check_sockets(&settings, &mut report);
        for w in warnings {
            report.warn(w);
        }
        let ok = report.print(D::NAME, &settings.lines());
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    // The same checks as --check-config, so start-up fails with the same
    // sentence (a missing directory, a live instance) before anything is made.
    for (spec, origin) in settings.listen.iter().zip(&settings.listen_origins) {
        check::check_socket(spec).map_err(|e| DaemonError::Start(format!("{origin}: {e}")))?;
    }
    logging::init(settings.log_format);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Start(format!("starting the async runtime: {e}")))?;
    let reconfigure = ReconfigureSlot::default();
    let watch = file.map(|f| {
        let running = (setting_lines(&configured.daemon, &settings), f.milter);
        config_watch::<D>(
            f.path,
            args.clone(),
            milter_args.clone(),
            passed > 0,
            running,
            reconfigure.clone(),
        )
    });
    let result = runtime.block_on(serve::<D>(configured.daemon, settings, watch, reconfigure));
    // Everything was drained; a blocking task still running (a filter's
    // computation for a connection that is gone) must not delay the exit.
    runtime.shutdown_background();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The milter's settings and `[server]`'s, as `key = value` lines.
fn setting_lines<D: Daemon>(daemon: &D, settings: &Settings) -> Vec<String> {
    let mut report = Report::default();
    daemon.settings(&mut report);
    let mut lines = report.settings_lines().to_vec();
    lines.extend(settings.lines().into_iter().map(|l| format!("server.{l}")));
    lines
}

/// SIGHUP's first step: the file read again and checked as at start-up,
/// and compared with the settings in force. Changed settings the milter
/// applies while running ([`Daemon::applies_on_reload`], with a hook from
/// [`Serve::on_reconfigure`]) are put in force together, or none is; the
/// others are named as waiting for a restart.
fn config_watch<D: Daemon>(
    path: std::path::PathBuf,
    args: ServerArgs,
    milter_args: D::Args,
    activation: bool,
    running: (Vec<String>, toml::Table),
    reconfigure: ReconfigureSlot,
) -> ReloadHook {
    let running = Mutex::new(running);
    Arc::new(move || {
        let name = path.display().to_string();
        let file = FileSection::read(&path).map_err(|e| e.to_string())?;
        let configured =
            D::configure(Some(&file), &milter_args).map_err(|e| one_line(e.as_ref()))?;
        let settings = resolve(
            &args,
            Some(&file),
            &configured.legacy,
            activation,
            D::DEFAULT_LISTEN,
        )
        .map_err(|e| e.to_string())?;
        let now = setting_lines(&configured.daemon, &settings);
        let hook = reconfigure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, table) = &mut *running;
        let mut all = reload::changes(lines, &now);
        all.extend(reload::table_changes(table, &file.milter, &all));
        let (applied, waiting): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| {
            hook.is_some() && !c.key.starts_with("server.") && D::applies_on_reload(&c.key)
        });
        if let Some(hook) = hook
            && !applied.is_empty()
        {
            hook(Box::new(configured.daemon)).map_err(|why| format!("{name}: {why}"))?;
            *lines = reload::merge(lines, &now, &applied);
            *table = reload::merge_table(table, &file.milter, &applied);
        }
        Ok(reload::sentence(&name, &applied, &waiting))
    })
}

async fn serve<D: Daemon>(
    daemon: D,
    settings: Settings,
    watch: Option<ReloadHook>,
    reconfigure: ReconfigureSlot,
) -> Result<(), DaemonError> {
    let handlers = signals::Handlers::install()
        .map_err(|e| DaemonError::Start(format!("installing signal handlers: {e}")))?;
    let mut listeners = Vec::new();
    if settings.socket_activation {
        listeners = systemd::passed_listeners().map_err(DaemonError::Start)?;
    }
    for (spec, origin) in settings.listen.iter().zip(&settings.listen_origins) {
        let l = Listener::bind(spec, &settings.unix).await.map_err(|e| {
            DaemonError::Start(format!("{origin}: {}", check::listen_reason(spec, &e)))
        })?;
        listeners.push(l);
    }
    let metrics_listener = match &settings.metrics_listen {
        Some(spec) => match Listener::bind(spec, &settings.unix).await {
            Ok(Listener::Tcp(l)) => Some(l),
            Ok(_) => None,
            Err(e) => {
                return Err(DaemonError::Start(format!(
                    "{}: {}",
                    check::metrics_origin(&settings),
                    check::listen_reason(spec, &e)
                )));
            }
        },
        None => None,
    };
    tracing::info!(version = D::VERSION, "{} starting", D::NAME);
    let config = ServerConfig {
        max_connections: settings.max_connections,
        ..ServerConfig::default()
    };
    let serve = Serve {
        name: D::NAME,
        listeners,
        config,
        notifier: Arc::new(Notifier::from_env()),
        handlers,
        reload: None,
        config_watch: watch,
        reconfigure,
        registry: prometheus_client::registry::Registry::default(),
        metrics_listener,
    };
    daemon.serve(serve).await.map_err(DaemonError::Milter)
}
