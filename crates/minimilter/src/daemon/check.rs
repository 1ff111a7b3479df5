//! `--check-config`: everything start-up would check, without starting,
//! reported the same way by every milter:
//!
//! - standard output: the milter's settings, then `[server]`, as TOML that
//!   pastes back into the file; notes as `# ` comments; `configuration OK`
//!   last when nothing is wrong;
//! - standard error: `NAME: warning: ...` for what works but should be
//!   changed, `NAME: ...` for each error (the same line start-up prints);
//! - exit status 0 when the daemon would start, 1 otherwise.

use std::fmt::Display;
use std::io::Write;

use super::config::Settings;
use crate::listener::check_unix_path;
use crate::spec::SocketSpec;

/// What a check found; the milter's hook adds its own.
#[derive(Debug, Default)]
pub struct Report {
    settings: Vec<String>,
    notes: Vec<String>,
    warnings: Vec<String>,
    errors: Vec<String>,
}

impl Report {
    /// A setting in effect: `key = value`, `value` already spelt as in
    /// the file (quote strings with [`toml_string`]).
    pub fn setting(&mut self, key: &str, value: impl Display) {
        self.settings.push(format!("{key} = {value}"));
    }

    /// Something worth knowing that is not a setting (counts, what a file
    /// holds); printed as a TOML comment.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Works, but probably not as meant.
    pub fn warn(&mut self, text: impl Into<String>) {
        self.warnings.push(text.into());
    }

    /// Start-up would fail.
    pub fn error(&mut self, text: impl Into<String>) {
        self.errors.push(text.into());
    }

    /// The `key = value` lines given so far.
    pub fn settings_lines(&self) -> &[String] {
        &self.settings
    }

    /// Whether anything would stop start-up.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Prints the report (module docs); returns whether it is clean. A
    /// closed standard output (`--check-config | head`) is not an error.
    pub(crate) fn print(&self, name: &str, server: &[String]) -> bool {
        let mut out = std::io::stdout().lock();
        let mut text = String::new();
        for s in &self.settings {
            text.push_str(s);
            text.push('\n');
        }
        text.push_str("[server]\n");
        for s in server {
            text.push_str(s);
            text.push('\n');
        }
        for n in &self.notes {
            for line in n.lines() {
                text.push_str("# ");
                text.push_str(line);
                text.push('\n');
            }
        }
        if self.errors.is_empty() {
            text.push_str("configuration OK\n");
        }
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        let mut err = std::io::stderr().lock();
        for w in &self.warnings {
            let _ = writeln!(err, "{name}: warning: {w}");
        }
        for e in &self.errors {
            let _ = writeln!(err, "{name}: {e}");
        }
        self.errors.is_empty()
    }
}

/// `s` as a TOML string (quoted, escaped).
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Each socket can be made: a unix socket's directory exists and is
/// writable and no live milter holds it; a TCP address can be bound now
/// (free, and allowed to this user).
pub fn check_sockets(settings: &Settings, report: &mut Report) {
    for spec in &settings.listen {
        if let Err(e) = check_socket(spec) {
            report.error(e);
        }
    }
    if let Some(m) = &settings.metrics_listen
        && let Err(e) = check_socket(m)
    {
        report.error(format!("metrics: {e}"));
    }
}

/// The same sentence start-up prints when this socket fails.
pub(crate) fn check_socket(spec: &SocketSpec) -> Result<(), String> {
    match spec {
        SocketSpec::Unix(path) => check_unix_path(path).map(|_| ()).map_err(|e| e.to_string()),
        SocketSpec::Inet { host, port, v6 } => {
            use std::net::ToSocketAddrs;
            let host = match (host.as_str(), v6) {
                ("" | "*", false) => "0.0.0.0",
                ("" | "*", true) => "::",
                (h, _) => h,
            };
            let addr = (host, *port)
                .to_socket_addrs()
                .map_err(|e| format!("resolving {spec}: {e}"))?
                .find(|a| a.is_ipv6() == *v6)
                .ok_or_else(|| format!("{spec}: host does not resolve to an address"))?;
            std::net::TcpListener::bind(addr)
                .map(drop)
                .map_err(|e| format!("binding {spec}: {e}"))
        }
    }
}
