//! The command-line options every milter daemon shares.

use std::path::PathBuf;

use super::logging::LogFormat;

/// Heading of the shared options in `--help`, stating where a value comes
/// from when it is given in more than one place.
pub const PRECEDENCE: &str = "Server options (a value given here wins over the same key in the \
     [server] section of the --config file, which wins over the built-in default)";

/// Options of the daemon shell, flattened into each milter's command line.
/// (The field docs are `--help` text, where `[server]` is not a link.)
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = PRECEDENCE)]
pub struct ServerArgs {
    /// Socket to listen on; repeat for several. unix:PATH (or local:PATH),
    /// inet:HOST:PORT, inet:PORT@HOST, inet6:[ADDR]:PORT (e.g.
    /// inet6:[::1]:8894) or inet6:PORT@ADDR. Without it: `listen` in
    /// [server], sockets passed by systemd (LISTEN_FDS), or the milter's
    /// default socket.
    #[arg(long, value_name = "SOCKET")]
    pub listen: Vec<String>,
    /// TOML configuration file: the milter's keys and a [server] section
    /// with listen, socket_mode, socket_group, socket_owner,
    /// max_connections, log_format, metrics_listen.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check everything start-up would (configuration, sockets, socket
    /// owner and group, the milter's own data), print the settings in
    /// effect, and exit: 0 when the daemon would start, 1 otherwise.
    #[arg(long)]
    pub check_config: bool,
    /// With --check-config: also ask the milter's backend (if it has one)
    /// whether it answers.
    #[arg(long, requires = "check_config")]
    pub check_backend: bool,
    /// Octal mode of unix sockets, e.g. 660 (default: what the umask gives).
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<String>,
    /// Group of unix sockets, a name or number (e.g. postfix).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Owner of unix sockets, a name or number.
    #[arg(long, value_name = "USER")]
    pub socket_owner: Option<String>,
    /// Connections served at once; more are closed at accept and the MTA
    /// applies its default action (default 1024).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Serve Prometheus metrics at http://SOCKET/metrics, e.g.
    /// inet:127.0.0.1:9464 (default: no metrics).
    #[arg(long, value_name = "SOCKET")]
    pub metrics: Option<String>,
    /// Log line format on standard error (default text; colour only on a
    /// terminal; RUST_LOG filters as usual).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}
