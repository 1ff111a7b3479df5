//! The `pgp-milter` daemon behind a real Postfix on 127.0.0.1: encrypted
//! mail is delivered, plain mail refused during the SMTP session.
//!
//! Needs Postfix from Debian and root (scripts/install-test-deps.sh) and
//! GnuPG (package `gnupg`); without them this fails with instructions.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Postfix, SmtpClient, SmtpService};

/// The daemon as a child process, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, socket: &Path, log: PathBuf) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_pgp-milter"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log file"))
            .spawn()
            .expect("starting pgp-milter");
        let mut d = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("pgp-milter exited early ({status}):\n{}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "pgp-milter not listening:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(c: &mut SmtpClient, message: &[u8]) -> testkit::Reply {
    let r = c.mail("<alice@client.example>").unwrap();
    assert!(r.is_positive(), "{r:?}");
    let r = c.rcpt("<bob@example.org>").unwrap();
    assert!(r.is_positive(), "{r:?}");
    c.data(message).unwrap()
}

#[test]
fn postfix_delivers_encrypted_mail_and_refuses_plain_mail() {
    let corpus = support::gpg();
    let builder = Postfix::prepare().unwrap();
    let socket = builder.socket_path("pgp.sock");
    let dir = builder.path().to_owned();
    let milter = format!("unix:{}", socket.display());
    let pf = builder
        .service(SmtpService::new("pgp").with_milters(&milter))
        .start()
        .unwrap();
    let config = dir.join("pgp-milter.toml");
    std::fs::write(
        &config,
        format!("listen = [\"{milter}\"]\nsocket_mode = \"666\"\n"),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &socket, dir.join("pgp-milter.log"));
    let ctx = |what: &str| format!("{what}\n--- pgp-milter log ---\n{}", daemon.log_text());

    let mut c = SmtpClient::connect(pf.port("pgp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());

    // Encrypted PGP/MIME: queued and delivered.
    let subject = testkit::unique_id("encrypted");
    let r = send(&mut c, &support::pgp_mime(&subject, &corpus.encrypted));
    assert_eq!(r.code, 250, "{}", ctx(&format!("encrypted: {r:?}")));

    // Plain text on the same session: refused with the reason.
    let plain_subject = testkit::unique_id("plain");
    let r = send(
        &mut c,
        &support::plain(&plain_subject, "Hello, in the clear.\n"),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("plain: {r:?}")));
    assert!(
        r.text().contains(
            "5.7.1 Only OpenPGP-encrypted mail is accepted here \
             (unencrypted content: text/plain part)"
        ),
        "{r:?}"
    );

    // Inline, base64-encoded armor (the seed refused this): delivered.
    let inline_subject = testkit::unique_id("inline");
    let r = send(
        &mut c,
        &support::inline(
            &inline_subject,
            &corpus.encrypted,
            support::Cte::Base64,
            false,
        ),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("inline base64: {r:?}")));
    c.quit().unwrap();

    let mail = pf
        .wait_for_delivery("bob", 2, Duration::from_secs(30))
        .unwrap();
    assert!(
        mail.iter().any(|m| m.contains(&subject)),
        "PGP/MIME delivered"
    );
    assert!(
        mail.iter().any(|m| m.contains(&inline_subject)),
        "inline delivered"
    );
    assert!(
        !mail.iter().any(|m| m.contains(&plain_subject)),
        "plain not delivered"
    );

    // One log line per decision, with the queue id, envelope and reason.
    let log = daemon.log_text();
    let decisions: Vec<&str> = log.lines().filter(|l| l.contains("decision")).collect();
    assert_eq!(decisions.len(), 3, "{log}");
    assert!(decisions[0].contains("verdict=accept"), "{log}");
    assert!(
        decisions[0].contains("from=<alice@client.example>"),
        "{log}"
    );
    assert!(decisions[0].contains("to=<bob@example.org>"), "{log}");
    assert!(
        !decisions[0].contains("queue_id=-"),
        "queue id logged: {log}"
    );
    assert!(decisions[1].contains("verdict=reject"), "{log}");
    assert!(
        decisions[1].contains("reason=unencrypted content: text/plain part"),
        "{log}"
    );
    assert!(
        decisions[2].contains("reason=encrypted (inline PGP)"),
        "{log}"
    );
}
