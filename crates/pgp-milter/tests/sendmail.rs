//! The `pgp-milter` daemon behind a real Sendmail 8.17 (Debian's, unpacked by
//! scripts/install-test-deps.sh, run by `testkit::Sendmail` with
//! `INPUT_MAIL_FILTER(..., F=T, ...)`), relaying what it accepts to a
//! milter-less testkit Postfix so delivered mail can be read back.
//!
//! One stack for the whole file, several transactions through it; what
//! Sendmail answered, logged, queued and delivered is asserted. The case of
//! the milter being down comes last, because it stops the daemon.
//!
//! Needs root, Postfix, the unpacked Sendmail and GnuPG; without them this
//! fails with instructions rather than passing.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{MilterProcess, Postfix, Reply, Sendmail, SmtpClient, SmtpService, unique_id};

const WAIT: Duration = Duration::from_secs(30);
const SENDER: &str = "alice@client.example";
const REFUSAL: &str = "5.7.1 Only OpenPGP-encrypted mail is accepted here \
                       (unencrypted content: text/plain part)";

/// Sendmail in front of pgp-milter, relaying to a plain Postfix. Fields
/// drop in order: Sendmail first, then the milter, then Postfix.
struct Stack {
    sm: Sendmail,
    milter: MilterProcess,
    pf: Postfix,
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
        let socket = dir.join("pgp.sock");
        let config = dir.join("pgp-milter.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"unix:{}\"]\nsocket_mode = \"666\"\n",
                socket.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgp-milter"));
        cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
        let milter = MilterProcess::start(cmd, &socket, dir.join("pgp-milter.log")).unwrap();
        let sm = builder
            .milter(format!("unix:{}", socket.display()))
            .smart_host(pf.port("relay"))
            .start()
            .unwrap();
        Stack { sm, milter, pf }
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
    let r = c.mail(&format!("<{SENDER}>")).unwrap();
    assert!(r.is_positive(), "{r:?}");
    let rcpts: Vec<Reply> = to
        .iter()
        .map(|t| c.rcpt(&format!("<{t}>")).unwrap())
        .collect();
    if !rcpts.iter().any(Reply::is_positive) {
        c.rset().unwrap();
        return (rcpts, None);
    }
    (rcpts, Some(c.data(message).unwrap()))
}

#[test]
fn sendmail_delivers_pgp_mail_refuses_plain_mail_and_tempfails_without_the_milter() {
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
        ["4.5.3 Recipients under a different OpenPGP policy must be sent separately"],
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

    // The milter logged one decision per message with Sendmail's queue id
    // (macro `i`, which Sendmail sends at MAIL FROM).
    let mlog = s.milter.log_text();
    let decisions: Vec<&str> = mlog.lines().filter(|l| l.contains("decision")).collect();
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
