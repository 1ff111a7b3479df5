//! The `pgp-milter` daemon: the policy from the configuration file, served
//! by the shared daemon shell (`minimilter::daemon`: command line,
//! `[server]`, logging, signals, `--check-config`, systemd). SIGHUP puts a
//! changed policy in force for new connections and reloads the keyring.

use std::sync::Arc;

use minimilter::daemon::{
    self, BoxError, Configured, Daemon, FileSection, NoArgs, Reloadable, Report, Serve,
    ServerSection, toml_string,
};
use tracing::{info, warn};

use crate::metered::Metered;
use crate::{Config, DEFAULT_LISTEN, Keyring, PgpMilter, Policy, SharedKeyring};

/// pgp-milter's whole command line (the shell's options and its own), for
/// manual pages and shell completions.
pub fn command() -> clap::Command {
    daemon::command::<Pgp>()
}

/// Runs the daemon with the process's arguments.
pub fn main() -> std::process::ExitCode {
    daemon::main::<Pgp>()
}

/// The pgp-milter daemon: its configuration, served by the shell.
pub struct Pgp(Config);

impl Daemon for Pgp {
    const NAME: &'static str = "pgp-milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Accept only OpenPGP mail (PGP/MIME or inline, encrypted; \
        optionally signed) and refuse the rest at SMTP time. A milter for Postfix and Sendmail.";
    const DEFAULT_LISTEN: &'static str = DEFAULT_LISTEN;
    type Args = NoArgs;

    fn configure(file: Option<&FileSection>, _: &NoArgs) -> Result<Configured<Self>, BoxError> {
        let config = match file {
            Some(f) => Config::load(&f.path)?,
            None => Config::default(),
        };
        // The socket keys an older file has at its top level.
        let legacy = ServerSection {
            listen: (!config.listen.is_empty()).then(|| config.listen.clone()),
            socket_mode: config.socket_mode.map(|m| format!("{m:o}")),
            socket_group: config.socket_group.clone(),
            max_connections: config.max_connections,
            ..ServerSection::default()
        };
        let warnings = config.warnings.clone();
        Ok(Configured {
            daemon: Pgp(config),
            legacy,
            warnings,
        })
    }

    // Every key of the file is policy (the keyring too) except the socket
    // keys an older file has at its top level, which are `[server]`'s.
    fn applies_on_reload(key: &str) -> bool {
        !matches!(
            key,
            "listen" | "socket_mode" | "socket_group" | "max_connections"
        )
    }

    fn settings(&self, report: &mut Report) {
        self.0.report_chatmail_settings(report);
        let p = &self.0.policy;
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| toml_string(s)).collect();
            format!("[{}]", items.join(", "))
        };
        report.setting("require", toml_string(&p.require.to_string()));
        report.setting("max_body_bytes", p.max_body_bytes);
        report.setting("skip_authenticated", p.skip_authenticated);
        report.setting("enforce_domains", list(&p.enforce_domains));
        report.note(format!(
            "exempt_senders: {} entries",
            p.exempt_senders.len()
        ));
        report.note(format!(
            "exempt_recipients: {} entries",
            p.exempt_recipients.len()
        ));
        report.setting("require_recipient_key", p.require_recipient_key);
        report.setting(
            "hidden_recipients",
            toml_string(&p.hidden_recipients.to_string()),
        );
        report.setting(
            "unknown_recipient",
            toml_string(&p.unknown_recipient.to_string()),
        );
        report.setting(
            "recipient_key_scope",
            toml_string(&p.recipient_key_scope.to_string()),
        );
        report.setting("bounces", toml_string(&p.bounces.to_string()));
        report.setting("max_bounce_bytes", p.max_bounce_bytes);
        report.setting("recipient_delimiter", toml_string(&p.recipient_delimiter));
    }

    fn check(&self, report: &mut Report, backend: bool) {
        if backend {
            report.note("backend: none (pgp-milter asks no service; the keyring is local)");
        }
        let p = &self.0.policy;
        match p.keyring.as_ref().map(|k| k.get()) {
            Some(k) => {
                report.note(format!("keyring: {}", describe_keyring(&k)));
                for problem in k.problems_at(crate::keyring::now()) {
                    report.note(format!("keyring: unusable: {problem}"));
                }
            }
            None => report.note("keyring: none"),
        }
    }

    async fn serve(self, mut serve: Serve) -> Result<(), BoxError> {
        let policy = self.0.policy;
        log_policy(&policy);
        warn_unusable_keys(&policy);
        let bytes = serve.counter(
            "judged_bytes",
            "Message bytes (header lines and body) handed to the OpenPGP policy",
        );
        let (milter, swap) = Reloadable::new(Metered::new(PgpMilter::new(policy), bytes.clone()));
        let next = swap.clone();
        serve.on_reconfigure(move |new: Pgp| {
            let policy = new.0.policy;
            // The SIGHUP line names what changed; keys it cannot use, too.
            warn_unusable_keys(&policy);
            next.replace(Metered::new(PgpMilter::new(policy), bytes.clone()))
        });
        serve.on_reload(move || {
            let current = swap.current();
            reload_keyring(current.inner().policy().keyring.as_ref())
        });
        serve.run(milter).await
    }
}

/// The policy in force, in the log.
fn log_policy(policy: &Policy) {
    let keyring = policy.keyring.as_ref().map(|k| k.get());
    info!(
        require = %policy.require,
        max_body_bytes = policy.max_body_bytes,
        require_recipient_key = policy.require_recipient_key,
        keyring = %keyring.as_ref().map_or("none".into(), |k| describe_keyring(k)),
        "policy"
    );
}

/// One warning per key of the keyring the policy cannot use.
fn warn_unusable_keys(policy: &Policy) {
    let keyring = policy.keyring.as_ref().map(|k| k.get());
    for problem in keyring
        .as_ref()
        .map(|k| k.problems_at(crate::keyring::now()))
        .unwrap_or_default()
    {
        warn!(%problem, "keyring: unusable key");
    }
}

/// `N keys (M encryption keys) from F files, A addresses`.
fn describe_keyring(k: &Keyring) -> String {
    format!(
        "{} keys ({} encryption keys) from {} files, {} addresses",
        k.len(),
        k.encryption_key_count(),
        k.file_count(),
        k.address_count()
    )
}

/// SIGHUP: re-reads `keyring_dir` of the policy in force; a keyring that
/// fails to load leaves the old one in force.
fn reload_keyring(shared: Option<&Arc<SharedKeyring>>) -> Result<String, String> {
    let Some(shared) = shared else {
        return Ok("no keyring_dir is configured".into());
    };
    let dir = shared
        .dir()
        .map_or_else(String::new, |d| d.display().to_string());
    let before = describe_keyring(&shared.get());
    match shared.reload() {
        Ok(k) => Ok(format!(
            "keyring reloaded from {dir}: {} (was {before})",
            describe_keyring(&k)
        )),
        Err(e) => Err(format!("keyring reload failed: {dir}: {e}")),
    }
}
