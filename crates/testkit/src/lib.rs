//! Test support for the minimilter workspace: prove milters through a **real** MTA.
//!
//! * [`Postfix`] starts a private, loopback-only Postfix instance in a fresh temporary
//!   directory (its own config, queue, data and mail directories, its own log file) with
//!   one `smtpd` listener per [`SmtpService`], each with its own `smtpd_milters`.
//!   Mail for `@example.org` is delivered to Maildirs that tests can read back; nothing
//!   ever leaves the machine.
//! * [`SmtpClient`] / [`send_message`] speak SMTP to it over plain blocking TCP.
//! * [`Sendmail`] runs a private Sendmail 8.17 the same way, and [`MilterProcess`]
//!   runs a milter binary on a unix socket for either of them.
//!
//! Requirements: Debian's `postfix` package and `ss` (iproute2) installed, and the tests
//! running as root (Postfix's master must start as root). `scripts/install-test-deps.sh`
//! installs everything; [`Postfix::start`] fails with that hint rather than skipping.
//!
//! * [`random`] gives fixed-seed pseudo-random bytes and choices, the same on every run.
//!
//! Debugging: when a test panics while a [`Postfix`] is alive, the tail of its log is
//! printed (the harness shows it for failed tests); `TESTKIT_KEEP=1` keeps each
//! instance's directory (config, queue, Maildirs, `postfix.log`) after the test.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::{Postfix, SmtpService, send_message, simple_message};
//!
//! let builder = Postfix::prepare().unwrap();
//! let socket = builder.socket_path("milter.sock"); // bind your milter here, chmod 0666
//! let postfix = builder
//!     .service(SmtpService::new("filtered").with_milters(format!("unix:{}", socket.display())))
//!     .service(SmtpService::new("plain"))
//!     .start()
//!     .unwrap();
//! let msg = simple_message("alice@example.org", "bob@example.org", "hello", "body\n");
//! let reply = send_message(postfix.port("plain"), "alice@example.org", &["bob@example.org"], &msg)
//!     .unwrap();
//! assert_eq!(reply.code, 250, "{reply}");
//! let mails = postfix.wait_for_delivery("bob", 1, Duration::from_secs(20)).unwrap();
//! assert!(mails[0].contains("Subject: hello"));
//! ```

mod daemon;
mod error;
mod host;
mod postfix;
pub mod random;
mod sendmail;
mod smtp;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use daemon::{DEFAULT_MILTER_START_TIMEOUT, MilterProcess};
pub use error::Error;
pub use postfix::{DEFAULT_USERS, MAIL_DOMAIN, Postfix, PostfixBuilder, SmtpService};
pub use sendmail::{
    DEFAULT_MILTER_TIMEOUTS, SENDMAIL_DOMAIN, SENDMAIL_ROOT, Sendmail, SendmailBuilder,
};
pub use smtp::{
    DEFAULT_TIMEOUT, Reply, SmtpClient, Stage, Transaction, send_message, simple_message,
};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and dropping the listener, so a program
/// that is not a test could in theory grab it before the caller binds it. Tests cannot
/// collide with each other: within this process the same port is never handed out
/// twice, and across processes (cargo-nextest runs each test in its own, several at
/// once) a port handed out is claimed for [`PORT_CLAIM`] by a file named for it in
/// `$TMPDIR/testkit-ports/`, which other tests' `free_port` skip.
///
/// # Panics
/// If binding to loopback fails (no loopback interface) or no new port is found.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("testkit::free_port: cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("testkit::free_port: local_addr: {e}"))
            .port();
        if handed_out.insert(port) && claim(port) {
            return port;
        }
    }
    panic!("testkit::free_port: no unused loopback port found after 1000 attempts");
}

/// How long a port [`free_port`] handed out stays claimed against other processes:
/// far longer than any test takes to bind the port it was given.
pub const PORT_CLAIM: Duration = Duration::from_secs(120);

/// Claims `port` against other processes' [`free_port`]: true unless another process
/// claimed it within [`PORT_CLAIM`]. Where the claims directory cannot be written,
/// every port counts as unclaimed (only this process's own record protects).
fn claim(port: u16) -> bool {
    let dir = std::env::temp_dir().join("testkit-ports");
    let path = dir.join(port.to_string());
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
    };
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    match create() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            // A stale claim is taken over. Renaming it away is atomic: of two
            // processes taking over the same claim, one renames and claims,
            // the other finds it gone and tries another port.
            let aside = dir.join(format!("{port}.stale.{}", std::process::id()));
            age.is_some_and(|a| a > PORT_CLAIM)
                && std::fs::rename(&path, &aside).is_ok()
                && std::fs::remove_file(&aside).is_ok()
                && create().is_ok()
        }
        Err(_) => true,
    }
}

/// Returns a string that is unique within this machine for practical purposes:
/// `PREFIX-<pid>-<nanos>-<counter>`. Handy for Subject lines and Message-IDs so a test
/// can find exactly its own message in a Maildir or log.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        TcpListener::bind((Ipv4Addr::LOCALHOST, a)).unwrap();
    }

    #[test]
    fn a_claimed_port_is_skipped_until_its_claim_is_stale() {
        let port = free_port();
        // Handed out here, so claimed for every other process.
        assert!(!claim(port));
        let path = std::env::temp_dir()
            .join("testkit-ports")
            .join(port.to_string());
        let old = SystemTime::now() - PORT_CLAIM - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(claim(port), "a stale claim is taken over");
        assert!(!claim(port), "and then fresh again");
    }

    #[test]
    fn unique_ids_differ() {
        assert_ne!(unique_id("x"), unique_id("x"));
        assert!(unique_id("subj").starts_with("subj-"));
    }
}
