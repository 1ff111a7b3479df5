//! The `[server]` section of a milter's configuration file and how it
//! combines with the command line: command line > `[server]` > the keys an
//! older file had at its top level > systemd's sockets (for `listen` only)
//! > built-in default.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::args::ServerArgs;
use super::errors::{DaemonError, fold};
use super::logging::LogFormat;
use super::socket_owner::Credentials;
use super::toml_error::toml_error_line;
use crate::listener::{UnixSocketOptions, lookup_group, lookup_user};
use crate::spec::SocketSpec;

/// The keys of `[server]`, in the order `--check-config` prints them.
pub const SERVER_KEYS: [&str; 7] = [
    "listen",
    "socket_mode",
    "socket_group",
    "socket_owner",
    "max_connections",
    "log_format",
    "metrics_listen",
];

/// `[server]` as written; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// One socket or an array of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen: Option<Vec<String>>,
    /// Octal mode of unix sockets, as a string (`"660"`).
    pub socket_mode: Option<String>,
    /// Group of unix sockets.
    pub socket_group: Option<String>,
    /// Owner of unix sockets.
    pub socket_owner: Option<String>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Where Prometheus scrapes `/metrics` (`inet:127.0.0.1:PORT`).
    pub metrics_listen: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(Some(vec![s])),
        Ok(OneOrMany::Many(v)) => Ok(Some(v)),
        Err(_) => Err(serde::de::Error::custom(
            "listen: expected a socket such as \"inet:127.0.0.1:8891\", or an array of them",
        )),
    }
}

/// The file read once for the shell: its `[server]` section and the names
/// of its other top-level keys (the milter's own).
#[derive(Debug, Clone, Default)]
pub struct FileSection {
    /// The file.
    pub path: PathBuf,
    /// `[server]`, or empty.
    pub server: ServerSection,
    /// The other top-level keys.
    pub other_keys: Vec<String>,
    /// The other top-level keys with their values: the milter's part.
    pub milter: toml::Table,
}

impl FileSection {
    /// Reads `path` and takes its `[server]` table. Errors name the file
    /// and the key, on one line.
    pub fn read(path: &Path) -> Result<FileSection, DaemonError> {
        let file = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| DaemonError::Config(format!("{file}: cannot read: {e}")))?;
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| DaemonError::Config(format!("{file}: {}", toml_line(&text, &e))))?;
        let server = match table.remove("server") {
            None => ServerSection::default(),
            Some(toml::Value::Table(t)) => {
                // Each key on its own first, in the file's order, so an
                // error names its place (the table has lost the file's
                // positions; a second reading keeps them).
                let spans = toml::from_str::<ServerSpans>(&text).map_err(|e| {
                    DaemonError::Config(format!("{file}: {}", toml_line(&text, &e)))
                })?;
                let mut keys: Vec<_> = spans.server.into_iter().collect();
                keys.sort_by_key(|(k, _)| k.span().start);
                for (k, v) in keys {
                    let (key, at) = (k.get_ref(), k.span());
                    if !SERVER_KEYS.contains(&key.as_str()) {
                        let why = format!(
                            "unknown key `{key}` (the keys of [server] are {}; every key \
                             below a [server] line belongs to [server], so the milter's own \
                             keys go above it)",
                            SERVER_KEYS.join(", ")
                        );
                        return Err(DaemonError::Config(format!(
                            "{file}: {}",
                            toml_error_line(&text, Some(at), &why)
                        )));
                    }
                    let one = toml::Table::from_iter([(key.clone(), v.get_ref().clone())]);
                    ServerSection::deserialize(toml::Value::Table(one)).map_err(|e| {
                        DaemonError::Config(format!(
                            "{file}: {}",
                            toml_error_line(&text, Some(v.span()), e.message())
                        ))
                    })?;
                }
                ServerSection::deserialize(toml::Value::Table(t)).map_err(|e| {
                    DaemonError::Config(format!("{file}: [server]: {}", fold(e.message())))
                })?
            }
            Some(_) => {
                return Err(DaemonError::Config(format!(
                    "{file}: key `server`: must be a table ([server])"
                )));
            }
        };
        Ok(FileSection {
            path: path.to_owned(),
            server,
            other_keys: table.keys().cloned().collect(),
            milter: table,
        })
    }
}

/// `[server]` once more, with the place of each key and value.
#[derive(Deserialize)]
struct ServerSpans {
    #[serde(default)]
    server: std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
}

/// `e` (from parsing `text`) on one line, with its place.
fn toml_line(text: &str, e: &toml::de::Error) -> String {
    toml_error_line(text, e.span(), e.message())
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Flag(&'static str),
    Server(&'a Path),
    TopLevel(&'a Path),
}

impl Source<'_> {
    fn error(&self, key: &str, value: &str, why: &str) -> DaemonError {
        DaemonError::Config(match self {
            Source::Flag(flag) => format!("--{flag} {value}: {why}"),
            Source::Server(file) => format!("{}: key `server.{key}`: {why}", file.display()),
            Source::TopLevel(file) => format!("{}: key `{key}`: {why}", file.display()),
        })
    }

    /// Where `key = value` was given, for an error found after reading
    /// (the socket's directory is missing, the address is taken):
    /// `--listen unix:/x`, `FILE: [server] listen = "unix:/x"`.
    fn origin(&self, key: &str, value: &str) -> String {
        let value_toml = toml::Value::String(value.to_owned()).to_string();
        match self {
            Source::Flag(flag) => format!("--{flag} {value}"),
            Source::Server(file) => format!("{}: [server] {key} = {value_toml}", file.display()),
            Source::TopLevel(file) => format!("{}: {key} = {value_toml}", file.display()),
        }
    }
}

/// The shell's settings in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Sockets to bind; empty when systemd passes them.
    pub listen: Vec<SocketSpec>,
    /// Where each of `listen` was given, in the same order, to start an
    /// error about that socket: `--listen unix:/x`,
    /// `FILE: [server] listen = "unix:/x"`, or the built-in default.
    pub listen_origins: Vec<String>,
    /// Sockets come from systemd (`LISTEN_FDS`).
    pub socket_activation: bool,
    /// Unix socket mode, owner, group (both checked to exist).
    pub unix: UnixSocketOptions,
    /// Connection limit.
    pub max_connections: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Prometheus endpoint.
    pub metrics_listen: Option<SocketSpec>,
    /// Where `metrics_listen` was given (as `listen_origins`).
    pub metrics_origin: Option<String>,
    /// Things that work but should be changed, one sentence each.
    pub warnings: Vec<String>,
}

/// Default connection limit (as [`crate::ServerConfig`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Combines the command line, `[server]`, the top-level keys an older file
/// of the milter has (`legacy`, already read by the milter), whether
/// systemd passed sockets, and the default socket.
pub fn resolve(
    args: &ServerArgs,
    file: Option<&FileSection>,
    legacy: &ServerSection,
    socket_activation: bool,
    default_listen: &str,
) -> Result<Settings, DaemonError> {
    let who = Credentials::current();
    resolve_as(&who, args, file, legacy, socket_activation, default_listen)
}

/// [`resolve`] for a process of credentials `who`.
fn resolve_as(
    who: &Credentials,
    args: &ServerArgs,
    file: Option<&FileSection>,
    legacy: &ServerSection,
    socket_activation: bool,
    default_listen: &str,
) -> Result<Settings, DaemonError> {
    let mut warnings = Vec::new();
    let empty = ServerSection::default();
    let (server, path) = match file {
        Some(f) => (&f.server, Some(f.path.as_path())),
        None => (&empty, None),
    };
    let path_or_default = path.unwrap_or(Path::new("(defaults)"));
    // An older file's top-level keys still count, under [server]'s.
    macro_rules! pick {
        ($field:ident, $flag:literal, $cli:expr) => {{
            let key = stringify!($field);
            if legacy.$field.is_some() {
                if server.$field.is_some() {
                    return Err(Source::TopLevel(path_or_default).error(
                        key,
                        "",
                        &format!("also given as `server.{key}`; keep only `server.{key}`"),
                    ));
                }
                warnings.push(format!(
                    "{}: key `{key}` is read as `server.{key}`; move it into [server]",
                    path_or_default.display()
                ));
            }
            match ($cli, &server.$field, &legacy.$field) {
                (Some(v), _, _) => Some((Source::Flag($flag), v)),
                (None, Some(v), _) => Some((Source::Server(path_or_default), v.clone())),
                (None, None, Some(v)) => Some((Source::TopLevel(path_or_default), v.clone())),
                (None, None, None) => None,
            }
        }};
    }
    let cli_listen = (!args.listen.is_empty()).then(|| args.listen.clone());
    let listen = pick!(listen, "listen", cli_listen);
    let mut specs = Vec::new();
    let mut listen_origins = Vec::new();
    let activation = socket_activation
        && matches!(
            listen,
            None | Some((Source::Server(_) | Source::TopLevel(_), _))
        );
    if socket_activation && activation && listen.is_some() {
        warnings.push(format!(
            "{}: `listen` is not used: systemd passes the sockets (LISTEN_FDS)",
            path_or_default.display()
        ));
    }
    if !activation {
        let default = listen.is_none();
        let (source, list) =
            listen.unwrap_or((Source::Flag("listen"), vec![default_listen.to_owned()]));
        if list.is_empty() {
            return Err(source.error("listen", "", "is empty; leave it out for the default"));
        }
        let mut seen = HashSet::new();
        for (i, text) in list.iter().enumerate() {
            let key = match (source, list.len()) {
                (Source::Flag(_), _) | (_, 1) => "listen".to_owned(),
                _ => format!("listen[{i}]"),
            };
            let spec = text
                .parse::<SocketSpec>()
                .map_err(|e| source.error(&key, text, &e.to_string()))?;
            if !seen.insert(spec.clone()) {
                return Err(source.error(&key, text, "the same socket is given twice"));
            }
            specs.push(spec);
            listen_origins.push(if default {
                format!("the default socket {text} (no --listen, no `listen` in [server])")
            } else {
                source.origin(&key, text)
            });
        }
    }
    let mut unix = UnixSocketOptions::default();
    if let Some((source, m)) = pick!(socket_mode, "socket-mode", args.socket_mode.clone()) {
        let bits = u32::from_str_radix(&m, 8)
            .ok()
            .filter(|&v| v <= 0o777)
            .ok_or_else(|| source.error("socket_mode", &m, "not an octal mode such as 660"))?;
        unix.mode = Some(bits);
    }
    // Checked only where a unix socket is made: chown fails for a
    // process that may not give it away.
    let unix_made = specs.iter().any(|s| matches!(s, SocketSpec::Unix(_)));
    if let Some((source, g)) = pick!(socket_group, "socket-group", args.socket_group.clone()) {
        let gid =
            lookup_group(&g).map_err(|_| source.error("socket_group", &g, "no such group"))?;
        if unix_made {
            who.may_group(gid, &g)
                .map_err(|why| source.error("socket_group", &g, &why))?;
        }
        unix.group = Some(g);
    }
    if let Some((source, u)) = pick!(socket_owner, "socket-owner", args.socket_owner.clone()) {
        let uid = lookup_user(&u).map_err(|_| source.error("socket_owner", &u, "no such user"))?;
        if unix_made {
            who.may_own(uid, &u)
                .map_err(|why| source.error("socket_owner", &u, &why))?;
        }
        unix.owner = Some(u);
    }
    let max_connections = match pick!(max_connections, "max-connections", args.max_connections) {
        Some((source, 0)) => {
            return Err(source.error("max_connections", "0", "must be at least 1"));
        }
        Some((_, n)) => n,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let log_format = pick!(log_format, "log-format", args.log_format)
        .map(|(_, f)| f)
        .unwrap_or_default();
    let mut metrics_origin = None;
    let metrics_listen = match pick!(metrics_listen, "metrics", args.metrics.clone()) {
        Some((source, m)) => match m.parse::<SocketSpec>() {
            Ok(spec @ SocketSpec::Inet { .. }) => {
                metrics_origin = Some(source.origin("metrics_listen", &m));
                Some(spec)
            }
            Ok(SocketSpec::Unix(_)) => {
                return Err(source.error(
                    "metrics_listen",
                    &m,
                    "Prometheus scrapes over TCP: give inet:HOST:PORT",
                ));
            }
            Err(e) => return Err(source.error("metrics_listen", &m, &e.to_string())),
        },
        None => None,
    };
    Ok(Settings {
        listen: specs,
        listen_origins,
        socket_activation: activation,
        unix,
        max_connections,
        log_format,
        metrics_listen,
        metrics_origin,
        warnings,
    })
}

impl Settings {
    /// `key = value` lines of `[server]` as in effect, TOML that pastes
    /// back into the file.
    pub fn lines(&self) -> Vec<String> {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = Vec::new();
        if self.socket_activation {
            out.push("# listen: the sockets systemd passes (LISTEN_FDS)".to_owned());
        } else {
            let list: Vec<String> = self.listen.iter().map(|s| q(&s.to_string())).collect();
            out.push(format!("listen = [{}]", list.join(", ")));
        }
        if let Some(m) = self.unix.mode {
            out.push(format!("socket_mode = \"{m:o}\""));
        }
        if let Some(g) = &self.unix.group {
            out.push(format!("socket_group = {}", q(g)));
        }
        if let Some(o) = &self.unix.owner {
            out.push(format!("socket_owner = {}", q(o)));
        }
        out.push(format!("max_connections = {}", self.max_connections));
        out.push(format!("log_format = \"{}\"", self.log_format.name()));
        if let Some(m) = &self.metrics_listen {
            out.push(format!("metrics_listen = {}", q(&m.to_string())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileSection, DaemonError> {
        let dir = std::env::temp_dir().join(format!("mm-daemon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!(
            "{:x}.toml",
            text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&p, text).unwrap();
        FileSection::read(&p).map(|mut f| {
            f.path = PathBuf::from("/etc/m.toml");
            f
        })
    }

    fn args(list: &[&str]) -> ServerArgs {
        use clap::{Args, FromArgMatches};
        let cmd = ServerArgs::augment_args(clap::Command::new("m"));
        let m = cmd
            .try_get_matches_from(std::iter::once("m").chain(list.iter().copied()))
            .unwrap();
        ServerArgs::from_arg_matches(&m).unwrap()
    }

    fn resolve_with(cli: &[&str], text: &str, legacy: &ServerSection) -> Result<Settings, String> {
        let f = file(text).map_err(|e| e.to_string())?;
        resolve(&args(cli), Some(&f), legacy, false, "inet:127.0.0.1:8891")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn command_line_wins_over_server_wins_over_top_level_wins_over_default() {
        let none = ServerSection::default();
        let s = resolve_with(&[], "", &none).unwrap();
        assert_eq!(s.listen, ["inet:127.0.0.1:8891".parse().unwrap()]);
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
        let legacy = ServerSection {
            listen: Some(vec!["inet:127.0.0.1:3".into()]),
            ..ServerSection::default()
        };
        let s = resolve_with(&[], "", &legacy).unwrap();
        assert_eq!(s.listen[0].to_string(), "inet:127.0.0.1:3");
        assert_eq!(
            s.warnings,
            ["/etc/m.toml: key `listen` is read as `server.listen`; move it into [server]"]
        );
        let s = resolve_with(
            &[],
            "[server]\nlisten = \"inet:127.0.0.1:2\"\nmax_connections = 5\n",
            &none,
        )
        .unwrap();
        assert_eq!(s.listen[0].to_string(), "inet:127.0.0.1:2");
        assert_eq!(s.max_connections, 5);
        let s = resolve_with(
            &[
                "--listen",
                "inet:127.0.0.1:1",
                "--listen",
                "unix:/tmp/x.sock",
                "--max-connections",
                "7",
            ],
            "[server]\nlisten = \"inet:127.0.0.1:2\"\nmax_connections = 5\n",
            &none,
        )
        .unwrap();
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.max_connections, 7);
        let e =
            resolve_with(&[], "[server]\nlisten = \"inet:127.0.0.1:2\"\n", &legacy).unwrap_err();
        assert_eq!(
            e,
            "/etc/m.toml: key `listen`: also given as `server.listen`; keep only `server.listen`"
        );
    }

    #[test]
    fn errors_name_the_flag_or_the_file_and_key() {
        let none = ServerSection::default();
        for (cli, text, want) in [
            (
                &["--socket-mode", "999"][..],
                "",
                "--socket-mode 999: not an octal mode such as 660",
            ),
            (
                &[],
                "[server]\nsocket_mode = \"8\"\n",
                "/etc/m.toml: key `server.socket_mode`: not an octal mode such as 660",
            ),
            (
                &["--socket-group", "no-such-group-x"],
                "",
                "--socket-group no-such-group-x: no such group",
            ),
            (
                &[],
                "[server]\nsocket_group = \"no-such-group-x\"\n",
                "/etc/m.toml: key `server.socket_group`: no such group",
            ),
            (
                &[
                    "--listen",
                    "inet:127.0.0.1:1",
                    "--listen",
                    "inet:127.0.0.1:1",
                ],
                "",
                "--listen inet:127.0.0.1:1: the same socket is given twice",
            ),
            (
                &["--max-connections", "0"],
                "",
                "--max-connections 0: must be at least 1",
            ),
        ] {
            assert_eq!(
                resolve_with(cli, text, &none).unwrap_err(),
                want,
                "{cli:?} {text:?}"
            );
        }
        // Each error is one line after the file's name: the place, the
        // table, the line as written, what is wrong.
        let after_file = |text: &str| {
            let e = file(text).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            let (_, rest) = e.split_once(".toml: ").unwrap();
            rest.to_owned()
        };
        assert_eq!(
            after_file("[server]\nlisten_on = 1\n"),
            "line 2, column 1 in [server] (`listen_on = 1`): unknown key `listen_on` (the keys \
             of [server] are listen, socket_mode, socket_group, socket_owner, max_connections, \
             log_format, metrics_listen; every key below a [server] line belongs to [server], \
             so the milter's own keys go above it)"
        );
        assert_eq!(
            after_file("[server]\nmax_connections = \"x\"\n"),
            "line 2, column 19 in [server] (`max_connections = \"x\"`): invalid type: string \
             \"x\", expected usize"
        );
        // The likeliest slip: the mode as a number; the column counts
        // characters.
        assert_eq!(
            after_file(
                "# m\u{e4}\nsocket_group = \"postfix\"\n\n[server]\nlisten = \"inet:1@127.0.0.1\"\n\
                 socket_mode = 660\n"
            ),
            "line 6, column 15 in [server] (`socket_mode = 660`): invalid type: integer `660`, \
             expected a string"
        );
        // A milter key written below [server] is told where it belongs;
        // the first wrong key in the file is the one named.
        let e =
            after_file("[server]\nlisten = \"inet:1@127.0.0.1\"\nreject_reply = \"no\"\nabc = 1\n");
        assert!(
            e.starts_with(
                "line 3, column 1 in [server] (`reject_reply = \"no\"`): unknown key `reject_reply`"
            ),
            "{e}"
        );
        assert!(e.contains("the milter's own keys go above it"), "{e}");
        // Dotted keys and inline tables are quoted as written.
        assert_eq!(
            after_file("server.listen = 5\n"),
            "line 1, column 17 (`server.listen = 5`): listen: expected a socket such as \
             \"inet:127.0.0.1:8891\", or an array of them"
        );
        assert_eq!(
            after_file("server = { max_connections = -1 }\n"),
            "line 1, column 30 (`server = { max_connections = -1 }`): invalid value: integer \
             `-1`, expected usize"
        );
        assert_eq!(
            after_file("a = 1\n[server]\nlisten = \"x\"\nlisten = \"y\"\n"),
            "line 4, column 1 in [server] (`listen = \"y\"`): duplicate key"
        );
        let e = file("[server\n").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn each_socket_knows_where_it_was_given() {
        let none = ServerSection::default();
        let s = resolve_with(&[], "", &none).unwrap();
        assert_eq!(
            s.listen_origins,
            ["the default socket inet:127.0.0.1:8891 (no --listen, no `listen` in [server])"]
        );
        let s = resolve_with(
            &[
                "--listen",
                "unix:/a/m.sock",
                "--metrics",
                "inet:127.0.0.1:9",
            ],
            "",
            &none,
        )
        .unwrap();
        assert_eq!(s.listen_origins, ["--listen unix:/a/m.sock"]);
        assert_eq!(
            s.metrics_origin.as_deref(),
            Some("--metrics inet:127.0.0.1:9")
        );
        let s = resolve_with(
            &[],
            "[server]\nlisten = [\"inet:127.0.0.1:1\", \"unix:/a/m.sock\"]\n\
             metrics_listen = \"inet:127.0.0.1:9\"\n",
            &none,
        )
        .unwrap();
        assert_eq!(
            s.listen_origins,
            [
                "/etc/m.toml: [server] listen[0] = \"inet:127.0.0.1:1\"",
                "/etc/m.toml: [server] listen[1] = \"unix:/a/m.sock\"",
            ]
        );
        assert_eq!(
            s.metrics_origin.as_deref(),
            Some("/etc/m.toml: [server] metrics_listen = \"inet:127.0.0.1:9\"")
        );
        let legacy = ServerSection {
            listen: Some(vec!["unix:/a/\"q\".sock".into()]),
            ..ServerSection::default()
        };
        let s = resolve_with(&[], "", &legacy).unwrap();
        assert_eq!(
            s.listen_origins,
            ["/etc/m.toml: listen = 'unix:/a/\"q\".sock'"]
        );
    }

    #[test]
    fn an_owner_or_group_this_process_cannot_give_is_refused_naming_the_key() {
        let nobody = Credentials {
            euid: 65534,
            groups: vec![65534],
            cap_chown: false,
        };
        let f = file("[server]\nlisten = \"unix:/run/m/m.sock\"\nsocket_owner = \"0\"\n").unwrap();
        let none = ServerSection::default();
        let e = resolve_as(
            &nobody,
            &args(&[]),
            Some(&f),
            &none,
            false,
            "inet:127.0.0.1:1",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/etc/m.toml: key `server.socket_owner`: only root (or CAP_CHOWN)"),
            "{e}"
        );
        let e = resolve_as(
            &nobody,
            &args(&["--socket-group", "0"]),
            Some(&f),
            &none,
            false,
            "inet:127.0.0.1:1",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "--socket-group 0: this process (uid 65534) is not in group \"0\" (gid 0)"
            ),
            "{e}"
        );
        // Without a unix socket there is nothing to give away.
        let tcp = args(&["--listen", "inet:127.0.0.1:1", "--socket-group", "0"]);
        assert!(resolve_as(&nobody, &tcp, Some(&f), &none, false, "inet:127.0.0.1:1").is_ok());
        // Its own user and group are fine.
        let own = args(&["--socket-owner", "65534", "--socket-group", "65534"]);
        assert!(resolve_as(&nobody, &own, Some(&f), &none, false, "inet:127.0.0.1:1").is_ok());
    }

    #[test]
    fn settings_print_as_toml_that_reads_back() {
        let none = ServerSection::default();
        let s = resolve_with(
            &["--listen", "unix:/run/m.sock", "--socket-mode", "660"],
            "",
            &none,
        )
        .unwrap();
        let text = format!("[server]\n{}\n", s.lines().join("\n"));
        let back = file(&text).unwrap();
        assert_eq!(back.server.listen, Some(vec!["unix:/run/m.sock".into()]));
        assert_eq!(back.server.socket_mode.as_deref(), Some("660"));
    }
}
