//! The daemon's configuration file (TOML). Unknown keys are errors; every
//! error names the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minimilter::SocketSpec;
use serde::Deserialize;

use crate::milter::{DEFAULT_REJECT_TEXT, OnBackendError, Settings, refusal_reply};
use crate::policy::SenderMode;
use crate::recipient::AddressRules;

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
    /// Socket to listen on (`inet:HOST:PORT`, `unix:PATH`).
    pub listen: String,
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
    /// Pass posts claiming pre-approval (`Approved:`) to Mailman.
    pub pass_approved: bool,
    /// Seconds between checks of the lists file for changes; 0: SIGHUP only.
    pub reload_interval: u64,
    /// Octal mode of a unix socket (`"660"`).
    pub socket_mode: Option<String>,
    /// Group of a unix socket.
    pub socket_group: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            lists: None,
            senders: SenderMode::Mailman,
            on_backend_error: OnBackendError::Tempfail,
            recipient_delimiter: "+".into(),
            alias_domains: BTreeMap::new(),
            reject_text: DEFAULT_REJECT_TEXT.into(),
            pass_approved: true,
            reload_interval: 5,
            socket_mode: None,
            socket_group: None,
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
            message: e.to_string().trim_end().to_owned(),
        })?;
        if let Some(lists) = &config.lists
            && lists.is_relative()
            && let Some(dir) = file.parent()
        {
            config.lists = Some(dir.join(lists));
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
        self.listen_spec()?;
        refusal_reply(&self.reject_text, "list@example.org")
            .map_err(|e| format!("reject_text: {e}"))?;
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
        Ok(())
    }

    /// `listen` as a socket spec.
    pub fn listen_spec(&self) -> Result<SocketSpec, String> {
        self.listen
            .parse::<SocketSpec>()
            .map_err(|e| format!("listen: {e}"))
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
        }
    }
}
