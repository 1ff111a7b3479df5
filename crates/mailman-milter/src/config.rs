//! The daemon's configuration file (TOML). Unknown keys are errors; every
//! error names the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minimilter::SocketSpec;
use serde::Deserialize;

use crate::milter::{DEFAULT_REJECT_TEXT, OnBackendError, Settings, refusal_reply};
use crate::overrides::{ListOverride, ListOverrides};
use crate::policy::SenderMode;
use crate::recipient::AddressRules;
use crate::rest::{self, RestConfig};

/// Where list data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The lists file (`lists`).
    #[default]
    File,
    /// Mailman 3's REST API (`[mailman]`).
    Mailman,
}

/// The `[mailman]` table: how to reach Mailman 3's REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailmanSection {
    /// Base URL with the API version.
    pub url: String,
    /// Basic-auth user.
    pub user: String,
    /// Basic-auth password (or `password_file`).
    pub password: Option<String>,
    /// File holding the password (first line); relative to the config file.
    pub password_file: Option<PathBuf>,
    /// Seconds one lookup may take in all (decimals allowed).
    pub timeout: f64,
    /// Seconds answers are reused; 0: no cache.
    pub cache_ttl: f64,
    /// Age in seconds up to which an answer older than `cache_ttl` is still
    /// served while it is refreshed in the background (not above
    /// `cache_ttl`: never).
    pub max_stale: f64,
    /// Maximum number of cached membership answers.
    pub cache_size: usize,
    /// Directory where the last good answers are kept across restarts;
    /// relative to the config file. None: nothing is kept.
    pub state_dir: Option<PathBuf>,
    /// The domains of the lists (mail hosts and alias domains), as given
    /// here instead of read from Mailman's `/domains`.
    pub list_domains: Option<Vec<String>>,
    /// For an `https://` URL: a PEM file of the CA certificates trusted
    /// (alone) to vouch for the API; relative to the config file. None:
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for MailmanSection {
    fn default() -> Self {
        MailmanSection {
            url: rest::DEFAULT_URL.into(),
            user: rest::DEFAULT_USER.into(),
            password: None,
            password_file: None,
            timeout: rest::DEFAULT_TIMEOUT.as_secs_f64(),
            cache_ttl: rest::DEFAULT_CACHE_TTL.as_secs_f64(),
            max_stale: rest::DEFAULT_MAX_STALE.as_secs_f64(),
            cache_size: rest::DEFAULT_CACHE_SIZE,
            state_dir: None,
            list_domains: None,
            ca_file: None,
        }
    }
}

impl BackendKind {
    /// The name as written in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::File => "file",
            BackendKind::Mailman => "mailman",
        }
    }
}

/// `state_dir` can be written: the directory, or the nearest of its
/// parents that exists (the daemon creates the rest), is a directory this
/// process may create a file in. Checked at start-up (and so by
/// `--check-config`, which the unit runs as its user and in its sandbox,
/// where only the StateDirectory /var/lib/mailman-milter is writable),
/// since the daemon itself would only log a failed write each time it keeps
/// its state, and a restart while Mailman is down would then find nothing.
fn state_dir_writable(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .filter(|a| !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        return Err(format!(
            "{}: {} is not a directory",
            dir.display(),
            existing.display()
        ));
    }
    let probe = existing.join(format!(".mailman-milter-check.{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| {
        format!(
            "{}: cannot write in {}: {e}",
            dir.display(),
            existing.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl MailmanSection {
    /// Checks the values; the error starts with the key.
    pub fn check(&self) -> Result<(), String> {
        rest::check_url(&self.url).map_err(|e| format!("mailman.url: {e}"))?;
        if let Some(f) = &self.ca_file {
            if !self
                .url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            {
                return Err(format!(
                    "mailman.ca_file: set, but mailman.url {:?} is not https:// (the file would not be used)",
                    self.url
                ));
            }
            rest::roots_from(f).map_err(|e| format!("mailman.ca_file: {e}"))?;
        }
        if self.user.is_empty() || self.user.contains(':') {
            return Err(format!(
                "mailman.user: {:?} cannot be a basic-auth user",
                self.user
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err("mailman.password_file: give password or password_file, not both".into());
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 300.0) {
            return Err(format!(
                "mailman.timeout: {} is not a number of seconds in (0, 300]",
                self.timeout
            ));
        }
        if !(self.cache_ttl.is_finite() && (0.0..=86_400.0).contains(&self.cache_ttl)) {
            return Err(format!(
                "mailman.cache_ttl: {} is not a number of seconds in [0, 86400]",
                self.cache_ttl
            ));
        }
        if !(self.max_stale.is_finite() && (0.0..=604_800.0).contains(&self.max_stale)) {
            return Err(format!(
                "mailman.max_stale: {} is not a number of seconds in [0, 604800]",
                self.max_stale
            ));
        }
        if let Some(d) = &self.list_domains
            && let Some(bad) = d
                .iter()
                .find(|d| d.trim().is_empty() || d.contains(['@', ' ', '/']))
        {
            return Err(format!("mailman.list_domains: {bad:?} is not a domain"));
        }
        if self.cache_size > 10_000_000 {
            return Err(format!(
                "mailman.cache_size: {} is more than 10000000",
                self.cache_size
            ));
        }
        if let Some(dir) = &self.state_dir {
            state_dir_writable(dir).map_err(|e| format!("mailman.state_dir: {e}"))?;
        }
        Ok(())
    }

    /// The REST settings, reading `password_file` if given (the error
    /// starts with the key).
    pub fn rest_config(&self) -> Result<RestConfig, String> {
        self.check()?;
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    format!("mailman.password_file: cannot read {}: {e}", f.display())
                })?;
                let line = text.lines().next().unwrap_or("").trim().to_owned();
                if line.is_empty() {
                    return Err(format!(
                        "mailman.password_file: {} holds no password",
                        f.display()
                    ));
                }
                line
            }
            (None, None) => rest::DEFAULT_PASSWORD.into(),
        };
        Ok(RestConfig {
            url: self.url.clone(),
            user: self.user.clone(),
            password,
            timeout: std::time::Duration::from_secs_f64(self.timeout),
            cache_ttl: std::time::Duration::from_secs_f64(self.cache_ttl),
            max_stale: std::time::Duration::from_secs_f64(self.max_stale),
            cache_size: self.cache_size,
            state_dir: self.state_dir.clone(),
            list_domains: self.list_domains.as_ref().map(|d| {
                d.iter()
                    .map(|d| d.trim().trim_end_matches('.').to_lowercase())
                    .collect()
            }),
            ca_file: self.ca_file.clone(),
        })
    }
}

/// `value` as TOML on one line (tables inline).
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| {
                    let key = toml::Value::String(k.clone()).to_string();
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    format!("{} = {}", if bare { k.clone() } else { key }, inline(v))
                })
                .collect();
            if items.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        }
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `listen` as one string or an array of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a socket like \"inet:127.0.0.1:8893\", or an array of them")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// Where the milter listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "inet:127.0.0.1:8893";

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file (or `(defaults)`).
    pub file: String,
    /// What is wrong, starting with the key.
    pub message: String,
}

/// The configuration file, as written. Every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Sockets to listen on (`inet:HOST:PORT`, `unix:PATH`, ...). Written
    /// as one string or an array of strings (pgp-milter's form).
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    /// `file` (the lists file) or `mailman` (the REST API).
    pub backend: BackendKind,
    /// The REST API, for `backend = "mailman"`.
    pub mailman: Option<MailmanSection>,
    /// The lists file; relative paths are relative to the config file.
    pub lists: Option<PathBuf>,
    /// `mailman` (From:, envelope, Reply-To:, Sender:) or `envelope`.
    pub senders: SenderMode,
    /// `tempfail` or `accept` when the list data is unavailable.
    pub on_backend_error: OnBackendError,
    /// Postfix's `recipient_delimiter` (one or more characters; empty: none).
    pub recipient_delimiter: String,
    /// Alias domain -> list domain.
    pub alias_domains: BTreeMap<String, String>,
    /// Refusal text; `{list}` is the posting address.
    pub reject_text: String,
    /// Refuse what Mailman would hold, on lists that do not say otherwise.
    pub refuse_hold: bool,
    /// Per-list `refuse_hold` and `reject_text`, by posting address. A
    /// value in the lists file's own entry for the list wins.
    pub list_overrides: BTreeMap<String, ListOverride>,
    /// Pass posts claiming pre-approval (`Approved:`) to Mailman.
    pub pass_approved: bool,
    /// Seconds between checks of the lists file for changes; 0: SIGHUP only.
    pub reload_interval: u64,
    /// Octal mode of a unix socket (`"660"`).
    pub socket_mode: Option<String>,
    /// Group of a unix socket.
    pub socket_group: Option<String>,
    /// The daemon shell's `[server]` section (sockets, limits, logging);
    /// read and checked by `minimilter::daemon`, where `listen`,
    /// `socket_mode` and `socket_group` now belong too.
    pub server: Option<serde::de::IgnoredAny>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![DEFAULT_LISTEN.into()],
            backend: BackendKind::File,
            mailman: None,
            lists: None,
            senders: SenderMode::Mailman,
            on_backend_error: OnBackendError::Tempfail,
            recipient_delimiter: "+".into(),
            alias_domains: BTreeMap::new(),
            reject_text: DEFAULT_REJECT_TEXT.into(),
            refuse_hold: false,
            list_overrides: BTreeMap::new(),
            pass_approved: true,
            reload_interval: 5,
            socket_mode: None,
            socket_group: None,
            server: None,
        }
    }
}

impl Config {
    /// Parses and checks a configuration text; `file` names it in errors and
    /// anchors a relative `lists` path.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let name = file.display().to_string();
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: name.clone(),
            message: minimilter::daemon::toml_error_line(text, e.span(), e.message()),
        })?;
        if let Some(lists) = &config.lists
            && lists.is_relative()
            && let Some(dir) = file.parent()
        {
            config.lists = Some(dir.join(lists));
        }
        if let Some(m) = &mut config.mailman
            && let Some(pf) = &m.password_file
            && pf.is_relative()
            && let Some(dir) = file.parent()
        {
            m.password_file = Some(dir.join(pf));
        }
        if let Some(m) = &mut config.mailman
            && let Some(sd) = &m.state_dir
            && sd.is_relative()
            && let Some(dir) = file.parent()
        {
            m.state_dir = Some(dir.join(sd));
        }
        if let Some(m) = &mut config.mailman
            && let Some(ca) = &m.ca_file
            && ca.is_relative()
            && let Some(dir) = file.parent()
        {
            m.ca_file = Some(dir.join(ca));
        }
        config.check().map_err(|message| ConfigError {
            file: name,
            message,
        })?;
        Ok(config)
    }

    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Checks values serde cannot; the error starts with the key.
    pub fn check(&self) -> Result<(), String> {
        self.listen_specs()?;
        refusal_reply(&self.reject_text, "list@example.org")
            .map_err(|e| format!("reject_text: {e}"))?;
        for (list, o) in &self.list_overrides {
            let key = format!("list_overrides.\"{list}\"");
            let address = crate::address::normalize(list)
                .filter(|a| matches!(crate::address::split(a), (l, d) if !l.is_empty() && !d.is_empty()))
                .ok_or_else(|| format!("{key}: {list:?} is not a list address"))?;
            if let Some(t) = &o.reject_text {
                refusal_reply(t, &address).map_err(|e| format!("{key}.reject_text: {e}"))?;
            }
        }
        for (alias, target) in &self.alias_domains {
            for d in [alias, target] {
                if d.is_empty() || d.contains(['@', ' ']) {
                    return Err(format!("alias_domains: {d:?} is not a domain"));
                }
            }
        }
        if self.recipient_delimiter.contains(['@', ' ']) {
            return Err(format!(
                "recipient_delimiter: {:?} cannot delimit an extension",
                self.recipient_delimiter
            ));
        }
        self.socket_mode_bits()?;
        match self.backend {
            BackendKind::File => {
                if self.mailman.is_some() {
                    return Err(
                        "mailman: only used with backend = \"mailman\" (backend is \"file\")"
                            .into(),
                    );
                }
            }
            BackendKind::Mailman => {
                if self.lists.is_some() {
                    return Err(
                        "lists: not used with backend = \"mailman\" (the lists come from Mailman)"
                            .into(),
                    );
                }
                self.mailman_section().check()?;
            }
        }
        Ok(())
    }

    /// The `[mailman]` table, or its defaults.
    pub fn mailman_section(&self) -> MailmanSection {
        self.mailman.clone().unwrap_or_default()
    }

    /// `listen` as socket specs (at least one); the error names the entry.
    pub fn listen_specs(&self) -> Result<Vec<SocketSpec>, String> {
        if self.listen.is_empty() {
            return Err("listen: no socket given".into());
        }
        let one = self.listen.len() == 1;
        self.listen
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.parse::<SocketSpec>().map_err(|e| match one {
                    true => format!("listen: {e}"),
                    false => format!("listen[{i}]: {e}"),
                })
            })
            .collect()
    }

    /// The settings in effect, one `key = value` per entry, spelt as in the
    /// configuration file (so what `--check-config` and the start-up log
    /// show can be pasted back). The REST password is never shown.
    pub fn summary(&self) -> Vec<String> {
        use toml::Value;
        let s = |v: &str| Value::String(v.to_owned());
        let strings = |v: &[String]| Value::Array(v.iter().map(|x| s(x)).collect());
        let mut out: Vec<(&str, Value)> = vec![
            ("listen", strings(&self.listen)),
            ("backend", s(self.backend.name())),
        ];
        match self.backend {
            BackendKind::File => {
                if let Some(l) = &self.lists {
                    out.push(("lists", s(&l.display().to_string())));
                }
                out.push((
                    "reload_interval",
                    Value::Integer(self.reload_interval as i64),
                ));
            }
            BackendKind::Mailman => {
                let m = self.mailman_section();
                let mut t = toml::Table::new();
                t.insert("url".into(), s(&m.url));
                t.insert("user".into(), s(&m.user));
                if let Some(f) = &m.password_file {
                    t.insert("password_file".into(), s(&f.display().to_string()));
                }
                t.insert("timeout".into(), Value::Float(m.timeout));
                t.insert("cache_ttl".into(), Value::Float(m.cache_ttl));
                t.insert("max_stale".into(), Value::Float(m.max_stale));
                t.insert("cache_size".into(), Value::Integer(m.cache_size as i64));
                if let Some(d) = &m.state_dir {
                    t.insert("state_dir".into(), s(&d.display().to_string()));
                }
                if let Some(d) = &m.list_domains {
                    t.insert("list_domains".into(), strings(d));
                }
                if let Some(f) = &m.ca_file {
                    t.insert("ca_file".into(), s(&f.display().to_string()));
                }
                out.push(("mailman", Value::Table(t)));
            }
        }
        out.extend([
            ("senders", s(self.senders.name())),
            ("on_backend_error", s(self.on_backend_error.name())),
            ("recipient_delimiter", s(&self.recipient_delimiter)),
            (
                "alias_domains",
                Value::Table(
                    self.alias_domains
                        .iter()
                        .map(|(a, d)| (a.clone(), s(d)))
                        .collect(),
                ),
            ),
            ("reject_text", s(&self.reject_text)),
            ("refuse_hold", Value::Boolean(self.refuse_hold)),
            ("pass_approved", Value::Boolean(self.pass_approved)),
        ]);
        if !self.list_overrides.is_empty() {
            let lists = self
                .list_overrides
                .iter()
                .map(|(list, o)| {
                    let mut t = toml::Table::new();
                    if let Some(r) = o.refuse_hold {
                        t.insert("refuse_hold".into(), Value::Boolean(r));
                    }
                    if let Some(r) = &o.reject_text {
                        t.insert("reject_text".into(), s(r));
                    }
                    (list.clone(), Value::Table(t))
                })
                .collect();
            out.push(("list_overrides", Value::Table(lists)));
        }
        if let Some(m) = &self.socket_mode {
            out.push(("socket_mode", s(m)));
        }
        if let Some(g) = &self.socket_group {
            out.push(("socket_group", s(g)));
        }
        out.into_iter()
            .map(|(k, v)| format!("{k} = {}", inline(&v)))
            .collect()
    }

    /// `socket_mode` as bits.
    pub fn socket_mode_bits(&self) -> Result<Option<u32>, String> {
        self.socket_mode
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|b| *b <= 0o777)
                    .ok_or_else(|| format!("socket_mode: {m:?} is not an octal mode like \"660\""))
            })
            .transpose()
    }

    /// The milter settings this configuration gives.
    pub fn settings(&self) -> Settings {
        Settings {
            senders: self.senders,
            rules: AddressRules {
                recipient_delimiters: self.recipient_delimiter.clone(),
                alias_domains: self
                    .alias_domains
                    .iter()
                    .map(|(a, t)| (a.to_lowercase(), t.to_lowercase()))
                    .collect(),
            },
            on_backend_error: self.on_backend_error,
            reject_text: self.reject_text.clone(),
            pass_approved: self.pass_approved,
            overrides: ListOverrides {
                refuse_hold: self.refuse_hold,
                lists: self
                    .list_overrides
                    .iter()
                    .filter_map(|(a, o)| Some((crate::address::normalize(a)?, o.clone())))
                    .collect(),
            },
        }
    }
}
