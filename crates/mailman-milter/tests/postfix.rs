//! The `mailman-milter` binary behind a real Postfix (testkit: private,
//! loopback only, `milter_default_action = tempfail`), real SMTP in, real
//! delivery out. The "list" here is a Postfix mailbox (`team@example.org`)
//! standing in for Mailman's LMTP: what reaches it is what Mailman would get.
//!
//! Needs Postfix from Debian and root (scripts/install-test-deps.sh); without
//! them this test fails with instructions rather than passing silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Postfix, Reply, SmtpClient, SmtpService, simple_message, unique_id};

/// The daemon as a child process, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(listen: &str, lists: &Path, log: PathBuf) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
            .args(["--listen", listen, "--socket-mode", "666", "--lists"])
            .arg(lists)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, log };
        let path = listen.strip_prefix("unix:").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Path::new(path).exists() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("mailman-milter exited ({status}):\n{}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "not listening:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.log_text().lines().find(|l| l.contains(needle)) {
                return l.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn hangup(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STRANGER: &str = "stranger@client.example";

fn lists(extra_members: &str) -> String {
    format!(
        r#"
[[list]]
address = "team@example.org"
nonmember_action = "reject"
members = ["alice@client.example"{extra_members}]
accept_nonmembers = ["^.*@partner\\.example$"]
"#
    )
}

/// One message on an open session: MAIL, each RCPT, DATA. Returns every
/// RCPT reply and the final reply (None if no recipient was accepted).
fn send(c: &mut SmtpClient, from: &str, to: &[&str], subject: &str) -> (Vec<Reply>, Option<Reply>) {
    let r = c.mail(&format!("<{from}>")).unwrap();
    assert!(r.is_success(), "{r:?}");
    let rcpts: Vec<Reply> = to
        .iter()
        .map(|t| c.rcpt(&format!("<{t}>")).unwrap())
        .collect();
    if !rcpts.iter().any(Reply::is_success) {
        c.rset().unwrap();
        return (rcpts, None);
    }
    let msg = simple_message(from, to[0], subject, "Hello list.\n");
    (rcpts, Some(c.data(msg).unwrap()))
}

fn has(pf: &Postfix, user: &str, subject: &str) -> bool {
    pf.delivered(user).iter().any(|m| m.contains(subject))
}

fn wait_delivered(pf: &Postfix, user: &str, subject: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has(pf, user, subject) {
        assert!(
            Instant::now() < deadline,
            "{subject} not delivered to {user}\n{}",
            pf.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postfix_refuses_non_member_posts_at_smtp_time_and_keeps_other_mail() {
    let builder = Postfix::prepare()
        .unwrap()
        .user("team")
        .user("team-request")
        .main_cf("recipient_delimiter", "+");
    let sock = builder.socket_path("mailman.sock");
    let dir = builder.path().to_owned();
    let listen = format!("unix:{}", sock.display());
    let pf = builder
        .service(SmtpService::new("mx").with_milters(&listen))
        .start()
        .unwrap();
    let lists_path = dir.join("lists.toml");
    std::fs::write(&lists_path, lists("")).unwrap();
    let daemon = Daemon::start(&listen, &lists_path, dir.join("milter.log"));
    let ctx = |what: &str| format!("{what}\n--- milter log ---\n{}", daemon.log_text());

    let mut c = SmtpClient::connect(pf.port("mx")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_success());

    // A member's post reaches the list.
    let member_post = unique_id("member");
    let (_, r) = send(
        &mut c,
        "alice@client.example",
        &["team@example.org"],
        &member_post,
    );
    let r = r.unwrap();
    assert_eq!(r.code, 250, "{}", ctx(&format!("{r:?}")));

    // A non-member's post is refused after DATA with the milter's text:
    // Postfix never queues it, so nothing bounces to the (forged) sender.
    let refused_post = unique_id("nonmember");
    let (rcpts, r) = send(&mut c, STRANGER, &["team+x@example.org"], &refused_post);
    assert!(rcpts[0].is_success(), "{rcpts:?}");
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{}", ctx(&format!("{r:?}")));
    assert_eq!(
        r.text(),
        "5.7.1 <team@example.org>: you are not allowed to post to this list",
        "{r:?}"
    );

    // A non-member matched by an accept pattern, and a pre-approved post,
    // reach the list.
    let partner = unique_id("partner");
    let (_, r) = send(
        &mut c,
        "Pat@Partner.Example",
        &["team@example.org"],
        &partner,
    );
    assert_eq!(r.unwrap().code, 250, "{}", ctx("accept pattern"));
    let approved = unique_id("approved");
    let r = c.mail(&format!("<{STRANGER}>")).unwrap();
    assert!(r.is_success());
    assert!(c.rcpt("<team@example.org>").unwrap().is_success());
    let msg = simple_message(
        STRANGER,
        "team@example.org",
        &approved,
        "Approved: secret\n\nHi.\n",
    );
    assert_eq!(c.data(msg).unwrap().code, 250, "{}", ctx("approved"));

    // -request from a non-member passes.
    let request = unique_id("request");
    let (_, r) = send(&mut c, STRANGER, &["team-request@example.org"], &request);
    assert_eq!(r.unwrap().code, 250);

    // Mixed: the other recipient is deferred with 452, the list refused; the
    // client then sends to the deferred recipient alone and it is delivered.
    let mixed = unique_id("mixed");
    let (rcpts, r) = send(
        &mut c,
        STRANGER,
        &["team@example.org", "bob@example.org"],
        &mixed,
    );
    assert!(rcpts[0].is_success(), "{rcpts:?}");
    assert_eq!(rcpts[1].code, 452, "{}", ctx(&format!("{rcpts:?}")));
    assert_eq!(rcpts[1].enhanced_status(), Some("4.5.3"), "{rcpts:?}");
    assert_eq!(r.unwrap().code, 550);
    let (_, r) = send(&mut c, STRANGER, &["bob@example.org"], &mixed);
    assert_eq!(r.unwrap().code, 250);
    // The other way round: the list comes second and is deferred.
    let mixed2 = unique_id("mixed2");
    let (rcpts, r) = send(
        &mut c,
        STRANGER,
        &["carol@example.org", "team@example.org"],
        &mixed2,
    );
    assert_eq!(rcpts[1].code, 452, "{rcpts:?}");
    assert_eq!(r.unwrap().code, 250);
    c.quit().unwrap();

    wait_delivered(&pf, "team", &member_post);
    wait_delivered(&pf, "team", &partner);
    wait_delivered(&pf, "team", &approved);
    wait_delivered(&pf, "team-request", &request);
    wait_delivered(&pf, "bob", &mixed);
    wait_delivered(&pf, "carol", &mixed2);
    assert!(!has(&pf, "team", &refused_post), "refused post delivered");
    assert!(
        !has(&pf, "team", &mixed),
        "refused part of the mixed post delivered"
    );
    assert!(
        !has(&pf, "team", &mixed2),
        "deferred list recipient got the mail"
    );

    // One log line per decision, with Postfix's queue id.
    let line = daemon.wait_for_log("verdict=reject");
    assert!(line.contains("sender=stranger@client.example"), "{line}");
    assert!(line.contains("list=team@example.org"), "{line}");
    assert!(
        !line.contains("queue_id=-"),
        "queue id macro missing: {line}"
    );

    // No bounce was generated for the refused posts.
    let queue = pf.queue().unwrap();
    assert!(!queue.contains(STRANGER), "a bounce is queued:\n{queue}");
    assert!(
        !pf.log().contains("sender non-delivery notification"),
        "{}",
        pf.log()
    );

    // SIGHUP reloads the lists file: the stranger becomes a member.
    std::fs::write(&lists_path, lists(", \"Stranger@Client.Example\"")).unwrap();
    daemon.hangup();
    daemon.wait_for_log("reloaded on SIGHUP");
    let mut c = SmtpClient::connect(pf.port("mx")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_success());
    let now_member = unique_id("now-member");
    let (_, r) = send(&mut c, STRANGER, &["team@example.org"], &now_member);
    assert_eq!(r.unwrap().code, 250, "{}", ctx("after reload"));
    c.quit().unwrap();
    wait_delivered(&pf, "team", &now_member);
}
