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
use super::errors::one_line;
use crate::listener::{ListenError, check_unix_path};
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
/// (free, and allowed to this user). Each error starts with where the
/// socket was given ([`Settings::listen_origins`]).
pub fn check_sockets(settings: &Settings, report: &mut Report) {
    for (spec, origin) in settings.listen.iter().zip(&settings.listen_origins) {
        if let Err(e) = check_socket(spec) {
            report.error(format!("{origin}: {e}"));
        }
    }
    if let Some(m) = &settings.metrics_listen
        && let Err(e) = check_socket(m)
    {
        report.error(format!("{}: {e}", metrics_origin(settings)));
    }
}

/// Where the metrics socket was given.
pub(crate) fn metrics_origin(settings: &Settings) -> &str {
    settings.metrics_origin.as_deref().unwrap_or("metrics")
}

/// What is wrong with a socket, after where it was given (which names the
/// socket), so the same sentence as start-up's: `directory /x does not
/// exist`, `cannot bind: Address already in use (os error 98)`.
pub(crate) fn check_socket(spec: &SocketSpec) -> Result<(), String> {
    match spec {
        SocketSpec::Unix(path) => check_unix_path(path)
            .map(|_| ())
            .map_err(|e| listen_reason(spec, &e)),
        SocketSpec::Inet { host, port, v6 } => {
            use std::net::ToSocketAddrs;
            let host = match (host.as_str(), v6) {
                ("" | "*", false) => "0.0.0.0",
                ("" | "*", true) => "::",
                (h, _) => h,
            };
            let addr = (host, *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve the host: {e}"))?
                .find(|a| a.is_ipv6() == *v6)
                .ok_or_else(|| "host does not resolve to an address".to_owned())?;
            std::net::TcpListener::bind(addr)
                .map(drop)
                .map_err(|e| format!("cannot bind: {e}"))
        }
    }
}

/// `e` (about `spec`) without the socket's name it starts with, which the
/// origin in front of it already gives.
pub(crate) fn listen_reason(spec: &SocketSpec, e: &ListenError) -> String {
    let text = one_line(e);
    let path = match spec {
        SocketSpec::Unix(p) => format!("{}: ", p.display()),
        SocketSpec::Inet { .. } => format!("{spec}: "),
    };
    let binding = format!("binding {spec}: ");
    if let Some(rest) = text.strip_prefix(&path) {
        rest.to_owned()
    } else if let Some(rest) = text.strip_prefix(&binding) {
        format!("cannot bind: {rest}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_leaves_out_the_socket_the_origin_names() {
        let spec: SocketSpec = "unix:/run/x/m.sock".parse().unwrap();
        let e = ListenError::NoDirectory {
            path: "/run/x/m.sock".into(),
            dir: "/run/x".into(),
        };
        assert_eq!(listen_reason(&spec, &e), "directory /run/x does not exist");
        let io = ListenError::Io {
            what: "binding unix:/run/x/m.sock".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            listen_reason(&spec, &io),
            "cannot bind: Permission denied (os error 13)"
        );
        let other = ListenError::Io {
            what: "changing owner of /run/x/m.sock".into(),
            source: std::io::Error::from_raw_os_error(1),
        };
        assert_eq!(
            listen_reason(&spec, &other),
            "changing owner of /run/x/m.sock: Operation not permitted (os error 1)"
        );
    }
}
