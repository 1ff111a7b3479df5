//! What Sendmail 8.17 (Debian's, unpacked by scripts/install-test-deps.sh)
//! answers for `profile = "chatmail"`'s refusal, a `523` without an
//! enhanced status code: the code and the text, with an enhanced code of
//! its own (`5.0.0`) put in front. (Postfix passes a milter's reply
//! unchanged: tests/deltachat.rs.)
//!
//! Sendmail relays what it accepts to a milter-less testkit Postfix.

use std::process::Command;
use std::time::Duration;

use testkit::{MilterProcess, Postfix, Sendmail, SmtpClient, SmtpService};

#[ignore = "needs sendmail"]
#[test]
fn sendmail_gives_the_client_the_chatmail_replies() {
    let pf = Postfix::prepare()
        .unwrap()
        .service(SmtpService::new("relay"))
        .start()
        .unwrap();
    let builder = Sendmail::prepare().unwrap();
    let dir = builder.path().to_owned();
    let port = testkit::free_port();
    let config = dir.join("pgp-milter.toml");
    std::fs::write(
        &config,
        format!("profile = \"chatmail\"\nlisten = [\"inet:127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgp-milter"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    let milter = MilterProcess::start_inet(cmd, port, dir.join("pgp-milter.log")).unwrap();
    let sm = builder
        .milter_with(format!("inet:{port}@127.0.0.1"), "T", "S:30s;R:30s;E:5m")
        .smart_host(pf.port("relay"))
        .start()
        .unwrap();

    let mut c = SmtpClient::connect(sm.port()).unwrap();
    c.set_timeout(Duration::from_secs(30)).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<someone@elsewhere.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let r = c
        .data(b"From: someone@elsewhere.example\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello in the clear\r\n")
        .unwrap();
    assert_eq!(r.code, 523, "{r:?}\n{}", milter.log_text());
    assert_eq!(
        r.text(),
        "5.0.0 Encryption Needed: Invalid Unencrypted Mail",
        "{r:?}\n{}\n{}",
        sm.log(),
        milter.log_text()
    );
    let _ = c.quit();
}
