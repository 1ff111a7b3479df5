//! The `pgp-milter` daemon behind a real Sendmail 8.17 (Debian's, unpacked by
//! scripts/install-test-deps.sh, run by `testkit::Sendmail` with
//! `INPUT_MAIL_FILTER(..., F=T, ...)`), relaying what it accepts to a
//! milter-less testkit Postfix so delivered mail can be read back.
//!
//! The milter is configured exactly as the crate README's Sendmail section
//! says (`S=inet:PORT@127.0.0.1, F=T, T=S:30s;R:30s;E:5m`), so this also
//! proves that snippet.
//!
//! One stack for the whole file, several transactions through it; what
//! Sendmail answered, logged, queued and delivered is asserted. The daemon is
//! then restarted on the same port with a keyring (`require_recipient_key`),
//! and finally stopped to see Sendmail's own tempfail.
//!
//! Needs root, Postfix, the unpacked Sendmail and GnuPG; without them this
//! fails with instructions rather than passing.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{MilterProcess, Postfix, Reply, Sendmail, SmtpClient, SmtpService, unique_id};

const WAIT: Duration = Duration::from_secs(30);
const SENDER: &str = "alice@client.example";
const REFUSAL: &str = "5.7.1 Only OpenPGP-encrypted mail is accepted here \
                       (unencrypted content: text/plain part)";

/// `T=` of the crate README's `INPUT_MAIL_FILTER` line.
const README_TIMEOUTS: &str = "S:30s;R:30s;E:5m";

/// The daemon on `inet:127.0.0.1:PORT` with a config file `name` in `dir`
/// holding `extra` besides the listener.
fn start_milter(dir: &Path, port: u16, name: &str, extra: &str) -> MilterProcess {
    let config = dir.join(name);
    std::fs::write(
        &config,
        format!("listen = [\"inet:127.0.0.1:{port}\"]\n{extra}"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgp-milter"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    MilterProcess::start_inet(cmd, port, config.with_extension("log")).unwrap()
}

/// Sendmail in front of pgp-milter, relaying to a plain Postfix. Fields
/// drop in order: Sendmail first, then the milter, then Postfix.
struct Stack {
    sm: Sendmail,
    milter: MilterProcess,
    pf: Postfix,
    /// The milter's port (`inet:PORT@127.0.0.1` in Sendmail's syntax).
    port: u16,
}

impl Stack {
    fn start() -> Stack {
        let pf = Postfix::prepare()
            .unwrap()
            .user("postmaster")
            .service(SmtpService::new("relay"))
            .start()
            .unwrap();
        let builder = Sendmail::prepare().unwrap();
        let dir = builder.path().to_owned();
        let port = testkit::free_port();
        let milter = start_milter(&dir, port, "pgp-milter.toml", "");
        // The crate README's INPUT_MAIL_FILTER, with a free port.
        let sm = builder
            .milter_with(format!("inet:{port}@127.0.0.1"), "T", README_TIMEOUTS)
            .smart_host(pf.port("relay"))
            .start()
            .unwrap();
        Stack {
            sm,
            milter,
            pf,
            port,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- sendmail log ---\n{}\n--- pgp-milter log ---\n{}\n--- postfix log ---\n{}",
            self.sm.log(),
            self.milter.log_text(),
            self.pf.log()
        )
    }

    fn connect(&self) -> SmtpClient {
        let mut c = SmtpClient::connect(self.sm.port()).unwrap();
        c.set_timeout(WAIT).unwrap();
        assert_eq!(c.greeting().code, 220, "{:?}", c.greeting());
        assert!(c.ehlo("client.example").unwrap().is_positive());
        c
    }

    /// The copy of `subject` in `user`'s mailbox, waiting for it.
    fn delivered(&self, user: &str, subject: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(m) = self
                .pf
                .delivered(user)
                .into_iter()
                .find(|m| m.contains(subject))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{subject} not delivered to {user}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_delivered(&self, user: &str, subject: &str) -> bool {
        self.pf.delivered(user).iter().any(|m| m.contains(subject))
    }

    /// Waits until Sendmail's queue is empty (everything accepted was
    /// relayed; nothing refused was queued, e.g. as a bounce).
    fn wait_queue_empty(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.sm.queue_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "Sendmail's queue is not empty: {:?}\n{}",
                self.sm.queue_files(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// MAIL, each RCPT, DATA on an open session; the RCPT replies and the
/// reply after DATA (None when no recipient was accepted).
fn send(c: &mut SmtpClient, to: &[&str], message: &[u8]) -> (Vec<Reply>, Option<Reply>) {
    let t = c.transaction(SENDER, to, message).unwrap();
    assert!(t.mail.is_positive(), "{:?}", t.mail);
    (t.rcpts, t.data)
}

#[ignore = "needs sendmail and gpg"]
#[test]
fn sendmail_delivers_pgp_mail_refuses_plain_mail_checks_keys_and_tempfails_without_the_milter() {
    let corpus = support::gpg();
    let mut s = Stack::start();
    let mut c = s.connect();

    // PGP/MIME encrypted: accepted and relayed.
    let pgp_mime = unique_id("sm-pgp-mime");
    let (_, r) = send(
        &mut c,
        &["bob@example.org"],
        &support::pgp_mime(&pgp_mime, &corpus.encrypted),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 250, "{r:?}\n{}", s.logs());

    // Inline PGP (quoted-printable armor): accepted and relayed.
    let inline = unique_id("sm-inline");
    let (_, r) = send(
        &mut c,
        &["bob@example.org"],
        &support::inline(
            &inline,
            &corpus.encrypted,
            support::Cte::QuotedPrintable,
            false,
        ),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 250, "{r:?}\n{}", s.logs());

    // Plain text: refused after DATA with the milter's own reply, word for
    // word, as Sendmail relays it.
    let plain = unique_id("sm-plain");
    let (_, r) = send(
        &mut c,
        &["bob@example.org"],
        &support::plain(&plain, "Hello, in the clear.\n"),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{r:?}\n{}", s.logs());
    assert_eq!(r.lines, [REFUSAL], "{r:?}");

    // Postmaster is never checked: plain mail to it is accepted.
    let to_postmaster = unique_id("sm-postmaster");
    let (_, r) = send(
        &mut c,
        &["postmaster@example.org"],
        &support::plain(&to_postmaster, "The filter ate my mail.\n"),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 250, "{r:?}\n{}", s.logs());

    // Mixed policies in one transaction: the second recipient (postmaster,
    // unchecked, after an enforced one) is deferred with 452 4.5.3, the
    // plain message refused for the first; sent again on its own, the
    // postmaster copy is delivered.
    let mixed = unique_id("sm-mixed");
    let message = support::plain(&mixed, "Mixed.\n");
    let (rcpts, r) = send(
        &mut c,
        &["bob@example.org", "postmaster@example.org"],
        &message,
    );
    assert_eq!(rcpts[0].code, 250, "{rcpts:?}");
    assert_eq!(rcpts[1].code, 452, "{rcpts:?}\n{}", s.logs());
    assert_eq!(rcpts[1].enhanced_status(), Some("4.5.3"), "{rcpts:?}");
    assert_eq!(
        rcpts[1].lines,
        [
            "4.5.3 <postmaster@example.org>: Recipient under a different OpenPGP policy; \
         send to this recipient separately"
        ],
        "{rcpts:?}"
    );
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(r.lines, [REFUSAL], "{r:?}");
    let (_, r) = send(&mut c, &["postmaster@example.org"], &message);
    assert_eq!(r.unwrap().code, 250);
    c.quit().unwrap();

    s.delivered("bob", &pgp_mime);
    s.delivered("bob", &inline);
    s.delivered("postmaster", &to_postmaster);
    s.delivered("postmaster", &mixed);
    assert!(!s.is_delivered("bob", &plain), "refused mail delivered");
    assert!(
        !s.is_delivered("bob", &mixed),
        "refused part of the mixed transaction delivered"
    );
    // Refused at SMTP time: nothing queued, no bounce (DSN) made.
    s.wait_queue_empty();
    let log = s.sm.log();
    assert!(!log.contains("DSN:"), "a bounce was made:\n{log}");
    // Sendmail's log names the milter's verdicts.
    s.sm.wait_for_log(&format!("Milter: data, reject=550 {REFUSAL}"), WAIT)
        .unwrap();
    s.sm.wait_for_log(
        "Milter: to=<postmaster@example.org>, reject=452 4.5.3",
        WAIT,
    )
    .unwrap();
    // The milter never asks to skip the rest of the body: the epilogue
    // after a closing boundary is read, so its text stays bounded.
    assert!(
        !s.sm.log().contains("action=body, skip"),
        "the milter skipped a body"
    );

    // The milter logged one decision per message with Sendmail's queue id
    // (macro `i`, which Sendmail sends at MAIL FROM).
    let mlog = s.milter.log_text();
    let decisions: Vec<&str> = mlog
        .lines()
        .filter(|l| l.contains("minimilter::message"))
        .collect();
    assert!(decisions.len() >= 5, "{mlog}");
    assert!(
        decisions.iter().all(|d| !d.contains("queue_id=-")),
        "queue id missing:\n{mlog}"
    );
    assert!(
        decisions[0].contains("reason=encrypted (PGP/MIME)"),
        "{mlog}"
    );
    assert!(
        decisions[1].contains("reason=encrypted (inline PGP)"),
        "{mlog}"
    );
    assert!(
        decisions[2].contains("reason=unencrypted content: text/plain part"),
        "{mlog}"
    );

    // Recipient keys: the daemon restarted on the same port with a keyring
    // of GnuPG-made keys and require_recipient_key = true.
    s.milter.stop();
    let k = support::keyed();
    let keyring = support::keyring_dir(&[]);
    let keys = format!(
        "keyring_dir = \"{}\"\nrequire_recipient_key = true\n",
        keyring.path().display()
    );
    s.milter = start_milter(s.sm.path(), s.port, "keys.toml", &keys);
    let mut c = s.connect();
    let keyed = unique_id("sm-key-bob");
    let (_, r) = send(
        &mut c,
        &["bob@example.org"],
        &support::pgp_mime(&keyed, &k.to_bob),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 250, "{r:?}\n{}", s.logs());
    let wrong_key = unique_id("sm-key-mallory");
    let (_, r) = send(
        &mut c,
        &["bob@example.org"],
        &support::pgp_mime(&wrong_key, &k.to_mallory),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{r:?}\n{}", s.logs());
    assert!(
        r.text().starts_with(
            "5.7.1 Only OpenPGP-encrypted mail is accepted here \
             (not encrypted to a key of bob@example.org (encrypted to "
        ),
        "{r:?}"
    );
    let hidden = unique_id("sm-key-hidden");
    let (_, r) = send(
        &mut c,
        &["bob@example.org"],
        &support::pgp_mime(&hidden, &k.throw_keyids_bob),
    );
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{r:?}\n{}", s.logs());
    assert_eq!(
        r.lines,
        [
            "5.7.1 Only OpenPGP-encrypted mail is accepted here (encrypted to hidden \
             recipients only (wildcard key IDs), which do not show a key of bob@example.org)"
        ],
        "{r:?}"
    );
    c.quit().unwrap();
    s.delivered("bob", &keyed);
    assert!(!s.is_delivered("bob", &wrong_key), "wrong key delivered");
    assert!(
        !s.is_delivered("bob", &hidden),
        "hidden recipient delivered"
    );

    // Milter down: with F=T Sendmail tempfails the transaction itself.
    s.milter.stop();
    let mut c = s.connect();
    let r = c.mail(&format!("<{SENDER}>")).unwrap();
    assert_eq!(r.code, 451, "{r:?}\n{}", s.logs());
    assert_eq!(r.lines, ["4.3.2 Please try again later"], "{r:?}");
    let _ = c.quit();
    s.sm.wait_for_log("Milter (milter0): error connecting to filter", WAIT)
        .unwrap();
}
