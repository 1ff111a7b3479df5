//! The TOML configuration file: every key optional, unknown keys refused,
//! every value checked before the daemon starts.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use std::sync::Arc;

use crate::address::canonical_domain;
use crate::keyring::{Keyring, SharedKeyring};
use crate::policy::{
    AddressPattern, Bounces, DEFAULT_FROM_MISMATCH, DEFAULT_RECIPIENT_DELIMITER,
    DEFAULT_REJECT_ENCRYPTED, DEFAULT_REJECT_SIGNED, DEFAULT_TEMPFAIL, HiddenRecipients, Policy,
    RecipientKeyScope, ReplyTemplate, Require, UnknownRecipient,
};

/// Where the daemon listens when neither `--listen` nor `listen` says.
pub const DEFAULT_LISTEN: &str = "inet:127.0.0.1:8894";

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// Socket specs (`inet:127.0.0.1:8894`, `unix:/path`), one string or
    /// an array of them (as in mailman-milter); absent: the command line's
    /// or the default.
    #[serde(deserialize_with = "sockets")]
    pub listen: Option<Vec<String>>,
    /// Octal mode of unix sockets, e.g. `"660"`.
    pub socket_mode: Option<String>,
    /// Group of unix sockets.
    pub socket_group: Option<String>,
    /// Simultaneous MTA connections at most.
    pub max_connections: Option<usize>,
    /// The daemon shell's `[server]` section (sockets, limits, logging);
    /// read and checked by `minimilter::daemon`, where the keys above
    /// now belong too.
    pub server: Option<serde::de::IgnoredAny>,
    /// `"encrypted"` or `"encrypted-or-signed"`.
    pub require: Option<Require>,
    /// Bytes kept whole at most (HTML twins, signature parts; not
    /// reports, which stream).
    pub max_body_bytes: Option<usize>,
    /// Largest body accepted (`552 5.3.4`, like Postfix); none by default.
    pub message_size_limit: Option<usize>,
    /// Pass mail from SASL-authenticated clients unchecked.
    pub skip_authenticated: Option<bool>,
    /// Recipient domains to enforce on; empty: all.
    pub enforce_domains: Vec<String>,
    /// `user@domain` or `@domain`.
    pub exempt_senders: Vec<String>,
    /// `user@domain` or `@domain`.
    pub exempt_recipients: Vec<String>,
    /// `"550 5.7.1 text with {reason}"`.
    pub reject_reply: Option<String>,
    /// `"451 4.3.0 text with {reason}"`.
    pub tempfail_reply: Option<String>,
    /// Directory of ASCII-armored public keys (`*.asc`); relative paths are
    /// relative to the configuration file's directory.
    pub keyring_dir: Option<PathBuf>,
    /// Encrypted mail must be encrypted to a key of an enforced recipient.
    pub require_recipient_key: Option<bool>,
    /// `"reject"` (default) or `"accept"`: wildcard key IDs.
    pub hidden_recipients: Option<HiddenRecipients>,
    /// `"reject"` (default) or `"accept"`: recipients without a key.
    pub unknown_recipient: Option<UnknownRecipient>,
    /// `"any"` (default) or `"every"`: which enforced recipients need a key.
    pub recipient_key_scope: Option<RecipientKeyScope>,
    /// `"refuse"` (default) or `"accept-reports"`: null-sender mail.
    pub bounces: Option<Bounces>,
    /// Largest delivery status report body that passes.
    pub max_bounce_bytes: Option<usize>,
    /// Characters starting an address extension (`"+"`); `""`: none.
    pub recipient_delimiter: Option<String>,
    /// A named set of defaults for the other keys (`"chatmail"`); keys
    /// given in the file win over it.
    pub profile: Option<Profile>,
    /// Let the unencrypted first SecureJoin step (Delta Chat) pass.
    pub accept_securejoin: Option<bool>,
    /// An authenticated submission's `From:` must be its envelope sender.
    pub from_must_match_sender: Option<bool>,
    /// `"554 5.7.1 {reason}"`: reply when it is not.
    pub from_mismatch_reply: Option<String>,
}

/// A named set of defaults: one line in the file for a known deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A chatmail relay (Delta Chat's servers), as its filtermail filters:
    /// see [`Profile::settings`].
    Chatmail,
}

/// The reply chatmail's filtermail gives unencrypted mail.
pub const CHATMAIL_REJECT: &str = "523 Encryption Needed: Invalid Unencrypted Mail";

impl Profile {
    /// The profile's name as the file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Chatmail => "chatmail",
        }
    }

    /// What the profile sets, as `key = value` lines of the file.
    pub fn settings(self) -> Vec<(&'static str, String)> {
        let p = self.defaults();
        let mut v = Vec::new();
        let q = |s: &str| format!("{s:?}");
        if let Some(r) = &p.reject_reply {
            v.push(("reject_reply", q(r)));
        }
        if let Some(b) = p.skip_authenticated {
            v.push(("skip_authenticated", b.to_string()));
        }
        if let Some(b) = p.bounces {
            v.push(("bounces", q(&b.to_string())));
        }
        if let Some(b) = p.accept_securejoin {
            v.push(("accept_securejoin", b.to_string()));
        }
        if let Some(b) = p.from_must_match_sender {
            v.push(("from_must_match_sender", b.to_string()));
        }
        v
    }

    /// The profile as a file that sets only its keys.
    fn defaults(self) -> ConfigFile {
        match self {
            // A chatmail relay checks its users' outgoing mail too
            // (filtermail's outbound side), lets the SecureJoin first step
            // and its own MTA's bounces through, ties From: to the login,
            // and answers with filtermail's reply, which Delta Chat shows.
            Profile::Chatmail => ConfigFile {
                reject_reply: Some(CHATMAIL_REJECT.to_owned()),
                skip_authenticated: Some(false),
                bounces: Some(Bounces::AcceptReports),
                accept_securejoin: Some(true),
                from_must_match_sender: Some(true),
                ..ConfigFile::default()
            },
        }
    }
}

/// `listen = "inet:…"` or `listen = ["inet:…", "unix:…"]`. (Only called
/// when the key is present; `default` supplies `None` otherwise.)
fn sockets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Sockets;
    impl<'de> serde::de::Visitor<'de> for Sockets {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "a socket such as \"{DEFAULT_LISTEN}\", or an array of sockets"
            )
        }
        fn visit_str<E: serde::de::Error>(self, one: &str) -> Result<Vec<String>, E> {
            Ok(vec![one.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut all = Vec::new();
            while let Some(spec) = a.next_element::<String>()? {
                all.push(spec);
            }
            Ok(all)
        }
    }
    d.deserialize_any(Sockets).map(Some)
}

/// A configuration that does not load, naming the file and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message on one line, with the line, column and
        /// the quoted source line (which names the key).
        message: String,
    },
    /// A value of the right type that makes no sense.
    #[error("{file}: key `{key}`: {message}")]
    Value {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
}

/// The checked configuration: the policy plus the daemon's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The milter policy.
    pub policy: Policy,
    /// The `profile` the file names, if any (already applied to `policy`).
    pub profile: Option<Profile>,
    /// Socket specs from the file (empty: use the command line or default).
    pub listen: Vec<String>,
    /// Unix socket mode.
    pub socket_mode: Option<u32>,
    /// Unix socket group.
    pub socket_group: Option<String>,
    /// Connection limit.
    pub max_connections: Option<usize>,
    /// Settings that load but do nothing or contradict each other, one
    /// sentence each naming the keys (`--check-config` prints them, the
    /// daemon logs them at start).
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        ConfigFile::default()
            .check(Path::new("(defaults)"))
            .expect("the defaults are valid")
    }
}

impl Config {
    /// For `--check-config`: the profile, what it expands to, and the
    /// settings it and the chatmail rules add.
    pub fn report_chatmail_settings(&self, report: &mut minimilter::daemon::Report) {
        use minimilter::daemon::toml_string;
        let p = &self.policy;
        if let Some(profile) = self.profile {
            report.setting("profile", toml_string(profile.name()));
            for (key, value) in profile.settings() {
                report.note(format!(
                    "profile {:?} sets {key} = {value} (unless the file sets it)",
                    profile.name()
                ));
            }
        }
        report.setting("reject_reply", toml_string(&p.reject_reply.to_string()));
        report.setting("accept_securejoin", p.accept_securejoin);
        report.setting("from_must_match_sender", p.from_must_match_sender);
        report.setting(
            "from_mismatch_reply",
            toml_string(&p.from_mismatch_reply.to_string()),
        );
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks `text`; `path` is named in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: path.to_owned(),
            message: minimilter::daemon::toml_error_line(text, e.span(), e.message()),
        })?;
        file.check(path)
    }
}

impl ConfigFile {
    /// Checks every value.
    pub fn check(mut self, path: &Path) -> Result<Config, ConfigError> {
        if let Some(profile) = self.profile {
            let d = profile.defaults();
            self.reject_reply = self.reject_reply.or(d.reject_reply);
            self.skip_authenticated = self.skip_authenticated.or(d.skip_authenticated);
            self.bounces = self.bounces.or(d.bounces);
            self.accept_securejoin = self.accept_securejoin.or(d.accept_securejoin);
            self.from_must_match_sender = self.from_must_match_sender.or(d.from_must_match_sender);
        }
        let err = |key: &str, message: String| ConfigError::Value {
            file: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        // `listen = []` would silently mean the default socket: say so
        // instead (leave the key out for the default).
        if self.listen.as_ref().is_some_and(Vec::is_empty) {
            return Err(err(
                "listen",
                format!("is empty; leave it out for the default {DEFAULT_LISTEN}"),
            ));
        }
        let listen = self.listen.clone().unwrap_or_default();
        for (i, spec) in listen.iter().enumerate() {
            let key = match listen.len() {
                1 => "listen".to_owned(),
                _ => format!("listen[{i}]"),
            };
            spec.parse::<minimilter::SocketSpec>()
                .map_err(|e| err(&key, e.to_string()))?;
        }
        let socket_mode = match &self.socket_mode {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|&v| v <= 0o777)
                    .ok_or_else(|| err("socket_mode", format!("{m:?} is not an octal mode")))?,
            ),
        };
        if self.max_connections == Some(0) {
            return Err(err("max_connections", "must be at least 1".into()));
        }
        let defaults = Policy::default();
        let max_body_bytes = self.max_body_bytes.unwrap_or(defaults.max_body_bytes);
        if max_body_bytes < 1024 {
            return Err(err("max_body_bytes", "must be at least 1024".into()));
        }
        if self.message_size_limit.is_some_and(|n| n < 1024) {
            return Err(err("message_size_limit", "must be at least 1024".into()));
        }
        let max_bounce_bytes = self.max_bounce_bytes.unwrap_or(defaults.max_bounce_bytes);
        if max_bounce_bytes < 1024 {
            return Err(err("max_bounce_bytes", "must be at least 1024".into()));
        }
        let patterns = |key: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, s)| AddressPattern::parse(s).map_err(|m| err(&format!("{key}[{i}]"), m)))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut enforce_domains = Vec::new();
        for (i, d) in self.enforce_domains.iter().enumerate() {
            // Canonical like the recipients' domains (`Example.COM.` is
            // `example.com`), or it would never match.
            let d = canonical_domain(d)
                .ok_or_else(|| err(&format!("enforce_domains[{i}]"), "not a domain name".into()))?;
            enforce_domains.push(d);
        }
        let recipient_delimiter = self
            .recipient_delimiter
            .clone()
            .unwrap_or_else(|| DEFAULT_RECIPIENT_DELIMITER.to_owned());
        if let Some(c) = recipient_delimiter
            .chars()
            .find(|c| matches!(c, '@' | '"' | '\\') || c.is_whitespace() || c.is_control())
        {
            return Err(err(
                "recipient_delimiter",
                format!("{c:?} cannot separate an address extension"),
            ));
        }
        let require = self.require.unwrap_or_default();
        let default_reject = match require {
            Require::Encrypted => DEFAULT_REJECT_ENCRYPTED,
            Require::EncryptedOrSigned => DEFAULT_REJECT_SIGNED,
        };
        let reject_reply =
            ReplyTemplate::parse(self.reject_reply.as_deref().unwrap_or(default_reject), 5)
                .map_err(|m| err("reject_reply", m))?;
        let tempfail_reply = ReplyTemplate::parse(
            self.tempfail_reply.as_deref().unwrap_or(DEFAULT_TEMPFAIL),
            4,
        )
        .map_err(|m| err("tempfail_reply", m))?;
        let from_mismatch_reply = ReplyTemplate::parse(
            self.from_mismatch_reply
                .as_deref()
                .unwrap_or(DEFAULT_FROM_MISMATCH),
            5,
        )
        .map_err(|m| err("from_mismatch_reply", m))?;
        let require_recipient_key = self.require_recipient_key.unwrap_or(false);
        let keyring = match &self.keyring_dir {
            None if require_recipient_key => {
                return Err(err(
                    "require_recipient_key",
                    "needs `keyring_dir` (the directory of .asc public keys)".into(),
                ));
            }
            None => None,
            Some(dir) => {
                let dir = if dir.is_relative() {
                    path.parent().unwrap_or(Path::new("")).join(dir)
                } else {
                    dir.clone()
                };
                let keyring =
                    Keyring::load_dir(&dir).map_err(|e| err("keyring_dir", e.to_string()))?;
                Some(Arc::new(SharedKeyring::from_dir(keyring, dir)))
            }
        };
        let policy = Policy {
            require_recipient_key,
            keyring,
            hidden_recipients: self.hidden_recipients.unwrap_or_default(),
            unknown_recipient: self.unknown_recipient.unwrap_or_default(),
            recipient_key_scope: self.recipient_key_scope.unwrap_or_default(),
            bounces: self.bounces.unwrap_or_default(),
            max_bounce_bytes,
            recipient_delimiter,
            require,
            max_body_bytes,
            message_size_limit: self.message_size_limit,
            skip_authenticated: self
                .skip_authenticated
                .unwrap_or(defaults.skip_authenticated),
            enforce_domains,
            exempt_senders: patterns("exempt_senders", &self.exempt_senders)?,
            exempt_recipients: patterns("exempt_recipients", &self.exempt_recipients)?,
            reject_reply,
            tempfail_reply,
            accept_securejoin: self.accept_securejoin.unwrap_or(false),
            from_must_match_sender: self.from_must_match_sender.unwrap_or(false),
            from_mismatch_reply,
        };
        let warnings = self.warnings(&policy);
        Ok(Config {
            policy,
            profile: self.profile,
            listen,
            warnings,
            socket_mode,
            socket_group: self.socket_group,
            max_connections: self.max_connections,
        })
    }
}

impl ConfigFile {
    /// What in this file has no effect or works against the rest
    /// (`policy` is the checked result).
    fn warnings(&self, policy: &Policy) -> Vec<String> {
        let mut w = Vec::new();
        if !policy.require_recipient_key {
            for (key, set) in [
                ("recipient_key_scope", self.recipient_key_scope.is_some()),
                ("unknown_recipient", self.unknown_recipient.is_some()),
                ("hidden_recipients", self.hidden_recipients.is_some()),
            ] {
                if set {
                    w.push(format!(
                        "`{key}` has no effect without `require_recipient_key = true`"
                    ));
                }
            }
        }
        // `max_bounce_bytes` and `max_body_bytes` are independent: a
        // report is read as it streams (`report::ReportReader`, holding at
        // most its status fields and returned headers), never kept whole,
        // so `max_body_bytes` does not bound it and either may be larger.
        if self.max_bounce_bytes.is_some() && policy.bounces == Bounces::Refuse {
            w.push(
                "`max_bounce_bytes` has no effect with `bounces = \"refuse\"` (the default)".into(),
            );
        }
        if policy.from_must_match_sender && policy.skip_authenticated {
            w.push(
                "`from_must_match_sender = true` with `skip_authenticated = true`: the From \
                 check still applies, but the content of authenticated submissions is not \
                 checked"
                    .into(),
            );
        }
        if self.from_mismatch_reply.is_some() && !policy.from_must_match_sender {
            w.push(
                "`from_mismatch_reply` has no effect without `from_must_match_sender = true`"
                    .into(),
            );
        }
        if policy.require_recipient_key
            && policy
                .keyring
                .as_ref()
                .is_some_and(|k| k.get().address_count() == 0)
        {
            w.push(
                "`require_recipient_key = true` but the keyring (`keyring_dir`) has no \
                 address with an encryption key: EVERY message to an enforced recipient \
                 will be refused"
                    .into(),
            );
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/pgp-milter.toml"))
    }

    /// A typo'd key, a value of the wrong type and an unknown choice each
    /// come back as one line that names the file, the place and the key.
    #[test]
    fn serde_errors_are_one_line_naming_the_file_and_the_key() {
        for (text, place, what) in [
            (
                "require = \"encrypted\"\nrequrie = \"encrypted\"\n",
                "line 2, column 1 (`requrie = \"encrypted\"`)",
                "unknown field `requrie`",
            ),
            (
                "max_body_bytes = \"big\"",
                "line 1, column 18 (`max_body_bytes = \"big\"`)",
                "invalid type: string \"big\"",
            ),
            (
                "\n  skip_authenticated = 1\n",
                "line 2, column 24 (`skip_authenticated = 1`)",
                "invalid type: integer `1`",
            ),
            (
                "require = \"signed\"",
                "line 1, column 11 (`require = \"signed\"`)",
                "unknown variant `signed`",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{text:?}: {e}");
            assert!(
                e.starts_with(&format!("/etc/pgp-milter.toml: {place}: {what}")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.policy.require, Require::Encrypted);
        assert!(c.policy.skip_authenticated);
        assert!(c.listen.is_empty());
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            listen = ["unix:/run/pgp-milter.sock", "inet:127.0.0.1:8894"]
            socket_mode = "660"
            socket_group = "postfix"
            max_connections = 64
            require = "encrypted-or-signed"
            max_body_bytes = 1048576
            message_size_limit = 52428800
            skip_authenticated = false
            enforce_domains = ["Secure.Example"]
            exempt_senders = ["@partner.example"]
            exempt_recipients = ["help@secure.example"]
            reject_reply = "554 5.7.1 Encrypt first ({reason})"
            "#,
        )
        .unwrap();
        assert_eq!(c.socket_mode, Some(0o660));
        assert_eq!(c.policy.require, Require::EncryptedOrSigned);
        assert_eq!(c.policy.enforce_domains, ["secure.example"]);
        assert_eq!(c.policy.max_body_bytes, 1 << 20);
        assert_eq!(c.policy.message_size_limit, Some(50 << 20));
        assert_eq!(parse("").unwrap().policy.message_size_limit, None);
        assert!(!c.policy.skip_authenticated);
        let r = c.policy.reject("x");
        assert_eq!(r.name(), "reject");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse("requir = \"encrypted\"\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/pgp-milter.toml: "), "{e}");
        assert!(e.contains("requir"), "{e}");
        let e = parse("require = \"sometimes\"\n").unwrap_err().to_string();
        assert!(e.contains("require") || e.contains("sometimes"), "{e}");
        for (text, key) in [
            ("reject_reply = \"451 4.7.1 no\"", "reject_reply"),
            (
                "reject_reply = \"550 5.7.1 Encrypt first ({reasn})\"",
                "reject_reply",
            ),
            ("tempfail_reply = \"oops\"", "tempfail_reply"),
            (
                "exempt_senders = [\"ok@x.example\", \"nobody\"]",
                "exempt_senders[1]",
            ),
            ("enforce_domains = [\"a b\"]", "enforce_domains[0]"),
            ("socket_mode = \"999\"", "socket_mode"),
            ("listen = [\"tcp:1\"]", "listen"),
            ("listen = \"tcp:1\"", "listen"),
            ("listen = [\"inet:127.0.0.1:1\", \"tcp:1\"]", "listen[1]"),
            ("max_body_bytes = 10", "max_body_bytes"),
            ("message_size_limit = 10", "message_size_limit"),
            ("require_recipient_key = true", "require_recipient_key"),
            (
                "keyring_dir = \"/nonexistent/pgp-milter-keys\"",
                "keyring_dir",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("/etc/pgp-milter.toml: key `{key}`: ")),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn listen_is_one_socket_or_an_array() {
        let c = parse("listen = \"inet:127.0.0.1:1\"").unwrap();
        assert_eq!(c.listen, ["inet:127.0.0.1:1"]);
        let c = parse("listen = [\"inet:127.0.0.1:1\", \"unix:/run/p.sock\"]").unwrap();
        assert_eq!(c.listen, ["inet:127.0.0.1:1", "unix:/run/p.sock"]);
        let e = parse("listen = 8894").unwrap_err().to_string();
        assert!(
            e.contains("a socket such as \"inet:127.0.0.1:8894\", or an array of sockets"),
            "{e}"
        );
        assert!(parse("listen = [8894]").is_err());
    }

    #[test]
    fn settings_without_effect_or_in_conflict_warn() {
        assert!(parse("").unwrap().warnings.is_empty());
        let warnings = |text: &str| parse(text).unwrap().warnings;
        let w = warnings("recipient_key_scope = \"every\"\nunknown_recipient = \"accept\"");
        assert_eq!(
            w,
            [
                "`recipient_key_scope` has no effect without `require_recipient_key = true`",
                "`unknown_recipient` has no effect without `require_recipient_key = true`",
            ]
        );
        // A bounce limit over max_body_bytes is in force (reports stream,
        // max_body_bytes does not bound them; tests/differential_reports.rs
        // passes such a report through the milter), so it is no conflict.
        let c = parse(
            "bounces = \"accept-reports\"\nmax_body_bytes = 65536\nmax_bounce_bytes = 262144",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            (c.policy.max_body_bytes, c.policy.max_bounce_bytes),
            (65536, 262144)
        );
        assert!(warnings("max_body_bytes = 65536").is_empty());
        assert_eq!(
            warnings("max_bounce_bytes = 65536"),
            ["`max_bounce_bytes` has no effect with `bounces = \"refuse\"` (the default)"]
        );
        assert!(warnings("bounces = \"accept-reports\"\nmax_bounce_bytes = 65536").is_empty());
        // A keyring without any usable address refuses every enforced
        // message; a keyring is required with require_recipient_key.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let c = Config::parse(
            "keyring_dir = \"keys\"\nrequire_recipient_key = true\n\
             recipient_key_scope = \"every\"\n",
            &dir.path().join("pgp-milter.toml"),
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("EVERY message to an enforced recipient will be refused"),
            "{:?}",
            c.warnings
        );
        let c = Config::parse("keyring_dir = \"keys\"\n", &dir.path().join("p.toml")).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn addresses_and_domains_are_canonical_like_the_envelope() {
        let c = parse(
            r#"
            enforce_domains = ["Example.COM.", "@example.org"]
            exempt_recipients = ["\"Help\"@Example.COM."]
            "#,
        )
        .unwrap();
        assert_eq!(c.policy.enforce_domains, ["example.com", "example.org"]);
        assert_eq!(
            c.policy.exempt_recipients,
            [AddressPattern::Address("help@example.com".into())]
        );
        assert_eq!(c.policy.recipient_delimiter, "+");
        let c = parse("recipient_delimiter = \"\"").unwrap();
        assert_eq!(c.policy.recipient_delimiter, "");
        let c = parse("recipient_delimiter = \"+-\"").unwrap();
        assert_eq!(c.policy.recipient_delimiter, "+-");
        for text in [
            "enforce_domains = [\"example..org\"]",
            "enforce_domains = [\".\"]",
            "recipient_delimiter = \" \"",
            "listen = []",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn settings_print_as_the_file_spells_them() {
        // What --check-config prints parses back to the same setting.
        #[derive(Deserialize)]
        struct One<T> {
            v: T,
        }
        fn round_trip<T>(v: T)
        where
            T: std::fmt::Display + PartialEq + std::fmt::Debug + for<'de> Deserialize<'de>,
        {
            let text = format!("v = \"{v}\"");
            let back: One<T> = toml::from_str(&text).unwrap();
            assert_eq!(back.v, v, "{text}");
        }
        round_trip(Require::Encrypted);
        round_trip(Require::EncryptedOrSigned);
        round_trip(HiddenRecipients::Reject);
        round_trip(HiddenRecipients::Accept);
        round_trip(UnknownRecipient::Reject);
        round_trip(UnknownRecipient::Accept);
        round_trip(RecipientKeyScope::Any);
        round_trip(RecipientKeyScope::Every);
        round_trip(Bounces::Refuse);
        round_trip(Bounces::AcceptReports);
    }

    #[test]
    fn keyring_settings() {
        let c = parse(
            r#"
            hidden_recipients = "accept"
            unknown_recipient = "accept"
            "#,
        )
        .unwrap();
        assert_eq!(c.policy.hidden_recipients, HiddenRecipients::Accept);
        assert_eq!(c.policy.unknown_recipient, UnknownRecipient::Accept);
        assert!(!c.policy.require_recipient_key);
        assert_eq!(c.policy.recipient_key_scope, RecipientKeyScope::Any);
        let c = parse("recipient_key_scope = \"every\"").unwrap();
        assert_eq!(c.policy.recipient_key_scope, RecipientKeyScope::Every);
        let e = parse("recipient_key_scope = \"all\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("recipient_key_scope"), "{e}");
        let d = parse("").unwrap();
        assert_eq!(d.policy.hidden_recipients, HiddenRecipients::Reject);
        assert_eq!(d.policy.unknown_recipient, UnknownRecipient::Reject);
        let e = parse("hidden_recipients = \"maybe\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_recipients"), "{e}");
        // A relative keyring_dir is relative to the file's directory; an
        // empty directory is a keyring without keys.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/README"), "not a key").unwrap();
        let c = Config::parse(
            "keyring_dir = \"keys\"\nrequire_recipient_key = true\n",
            &dir.path().join("pgp-milter.toml"),
        )
        .unwrap();
        assert!(c.policy.require_recipient_key);
        assert_eq!(c.policy.keyring.unwrap().get().len(), 0);
        // A garbage .asc: the error names the config file, the key, and the key file.
        std::fs::write(dir.path().join("keys/bad.asc"), "garbage\n").unwrap();
        let e = Config::parse(
            "keyring_dir = \"keys\"",
            &dir.path().join("pgp-milter.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key `keyring_dir`: "), "{e}");
        assert!(
            e.contains("bad.asc: no -----BEGIN PGP PUBLIC KEY BLOCK"),
            "{e}"
        );
    }
}
