//! The `mailman-milter` binary (lists file backend) behind a real Sendmail
//! 8.17 (Debian's, unpacked by scripts/install-test-deps.sh, run by
//! `testkit::Sendmail` with `INPUT_MAIL_FILTER(..., F=T, ...)`). Sendmail
//! relays what it accepts to a milter-less testkit Postfix whose mailboxes
//! stand in for the list (`team@example.org`, as Mailman's LMTP would get it)
//! and for ordinary users.
//!
//! One Sendmail for the whole file, several transactions through it, asserted
//! on Sendmail's replies, its log and queue, and on what was delivered. Then
//! the milter is restarted without its lists file (list data unavailable),
//! and finally stopped.
//!
//! Needs root, Postfix and the unpacked Sendmail; without them this fails
//! with instructions rather than passing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{MilterProcess, Postfix, Reply, Sendmail, SmtpClient, SmtpService, unique_id};

const WAIT: Duration = Duration::from_secs(30);
const MEMBER: &str = "alice@client.example";
const STRANGER: &str = "stranger@client.example";
/// The configured refusal (`reject_text`), as Sendmail relays it.
const REFUSAL: &str = "5.7.1 <team@example.org>: only members may post here";

const LISTS: &str = r#"
[[list]]
address = "team@example.org"
nonmember_action = "reject"
members = ["Alice@Client.Example"]
"#;

/// Starts the daemon with `config` on `socket` (removing a socket file a
/// killed daemon left, so the wait for the new one means something).
fn start_milter(config: &Path, socket: &Path, log: PathBuf) -> MilterProcess {
    let _ = std::fs::remove_file(socket);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailman-milter"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    MilterProcess::start(cmd, socket, log).unwrap()
}

/// The configuration: the given lists file, the custom refusal text, and a
/// one-second check for changes of the lists file.
fn config(socket: &Path, lists: &Path) -> String {
    format!(
        "listen = \"unix:{}\"\nsocket_mode = \"666\"\nlists = \"{}\"\n\
         reject_text = \"<{{list}}>: only members may post here\"\nreload_interval = 1\n",
        socket.display(),
        lists.display()
    )
}

fn message(from: &str, to: &str, subject: &str, extra_headers: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@client.example>\r\n{extra_headers}\r\nHello list.\r\n"
    )
}

/// MAIL, each RCPT, DATA on an open session; the RCPT replies and the reply
/// after DATA (None when no recipient was accepted).
fn send(
    c: &mut SmtpClient,
    from: &str,
    to: &[&str],
    msg: &str,
) -> (Reply, Vec<Reply>, Option<Reply>) {
    let t = c.transaction(from, to, msg).unwrap();
    (t.mail, t.rcpts, t.data)
}

/// The reply after DATA for a one-recipient post.
fn post(c: &mut SmtpClient, from: &str, to: &str, subject: &str, extra_headers: &str) -> Reply {
    let (mail, rcpts, r) = send(c, from, &[to], &message(from, to, subject, extra_headers));
    assert_eq!(mail.code, 250, "{mail:?}");
    assert_eq!(rcpts[0].code, 250, "{rcpts:?}");
    r.unwrap()
}

struct Stack {
    sm: Sendmail,
    pf: Postfix,
}

impl Stack {
    fn connect(&self) -> SmtpClient {
        let mut c = SmtpClient::connect(self.sm.port()).unwrap();
        c.set_timeout(WAIT).unwrap();
        assert_eq!(c.greeting().code, 220, "{:?}", c.greeting());
        assert!(c.ehlo("client.example").unwrap().is_positive());
        c
    }

    fn has(&self, user: &str, subject: &str) -> bool {
        self.pf.delivered(user).iter().any(|m| m.contains(subject))
    }

    fn wait_delivered(&self, user: &str, subject: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.has(user, subject) {
            assert!(
                Instant::now() < deadline,
                "{subject} not delivered to {user}\n--- sendmail ---\n{}\n--- postfix ---\n{}",
                self.sm.log(),
                self.pf.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_queue_empty(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.sm.queue_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "Sendmail's queue is not empty: {:?}\n{}",
                self.sm.queue_files(),
                self.sm.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[ignore = "needs sendmail"]
#[test]
fn sendmail_refuses_non_member_posts_keeps_other_mail_and_tempfails_without_list_data() {
    let pf = Postfix::prepare()
        .unwrap()
        .user("team")
        .user("team-request")
        .main_cf("recipient_delimiter", "+")
        .service(SmtpService::new("relay"))
        .start()
        .unwrap();
    let builder = Sendmail::prepare().unwrap();
    let dir = builder.path().to_owned();
    let socket = dir.join("mailman.sock");
    let lists = dir.join("lists.toml");
    std::fs::write(&lists, LISTS).unwrap();
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config(&socket, &lists)).unwrap();
    let mut milter = start_milter(&config_path, &socket, dir.join("milter.log"));
    let sm = builder
        .milter(format!("unix:{}", socket.display()))
        .smart_host(pf.port("relay"))
        .start()
        .unwrap();
    let s = Stack { sm, pf };
    let ctx = |milter: &MilterProcess| {
        format!(
            "--- milter log ---\n{}\n--- sendmail log ---\n{}",
            milter.log_text(),
            s.sm.log()
        )
    };

    let mut c = s.connect();

    // A member's post (address in another case) reaches the list, also
    // with an extension.
    let member_post = unique_id("sm-member");
    let r = post(&mut c, MEMBER, "team@example.org", &member_post, "");
    assert_eq!(r.code, 250, "{r:?}\n{}", ctx(&milter));
    let member_ext = unique_id("sm-member-ext");
    let r = post(&mut c, MEMBER, "team+digest@example.org", &member_ext, "");
    assert_eq!(r.code, 250, "{r:?}\n{}", ctx(&milter));

    // A non-member's post is refused after DATA with the configured text.
    let refused = unique_id("sm-nonmember");
    let r = post(&mut c, STRANGER, "team@example.org", &refused, "");
    assert_eq!(r.code, 550, "{r:?}\n{}", ctx(&milter));
    assert_eq!(r.lines, [REFUSAL], "{r:?}");

    // list+ext@ is the list too, and guarded.
    let refused_ext = unique_id("sm-nonmember-ext");
    let r = post(&mut c, STRANGER, "team+x@example.org", &refused_ext, "");
    assert_eq!(r.code, 550, "{r:?}\n{}", ctx(&milter));
    assert_eq!(r.lines, [REFUSAL], "{r:?}");

    // list-request@ from a non-member passes.
    let request = unique_id("sm-request");
    let r = post(&mut c, STRANGER, "team-request@example.org", &request, "");
    assert_eq!(r.code, 250, "{r:?}\n{}", ctx(&milter));

    // A post carrying an Approved: header passes (Mailman checks it).
    let approved = unique_id("sm-approved");
    let r = post(
        &mut c,
        STRANGER,
        "team@example.org",
        &approved,
        "Approved: secret\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", ctx(&milter));

    // Mixed recipients: the second is deferred with 452 4.5.3, the list
    // refused; sent again alone, the other recipient gets its copy.
    let mixed = unique_id("sm-mixed");
    let msg = message(STRANGER, "team@example.org, bob@example.org", &mixed, "");
    let (_, rcpts, r) = send(
        &mut c,
        STRANGER,
        &["team@example.org", "bob@example.org"],
        &msg,
    );
    assert_eq!(rcpts[0].code, 250, "{rcpts:?}");
    assert_eq!(rcpts[1].code, 452, "{rcpts:?}\n{}", ctx(&milter));
    assert_eq!(rcpts[1].enhanced_status(), Some("4.5.3"), "{rcpts:?}");
    assert!(rcpts[1].text().contains("<bob@example.org>"), "{rcpts:?}");
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(r.lines, [REFUSAL], "{r:?}");
    let (_, _, r) = send(&mut c, STRANGER, &["bob@example.org"], &msg);
    assert_eq!(r.unwrap().code, 250);
    c.quit().unwrap();

    s.wait_delivered("team", &member_post);
    s.wait_delivered("team", &member_ext);
    s.wait_delivered("team-request", &request);
    s.wait_delivered("team", &approved);
    s.wait_delivered("bob", &mixed);
    for subject in [&refused, &refused_ext, &mixed] {
        assert!(!s.has("team", subject), "{subject} reached the list");
    }
    // Refused at SMTP time: nothing queued, no bounce made.
    s.wait_queue_empty();
    assert!(!s.sm.log().contains("DSN:"), "a bounce:\n{}", s.sm.log());
    s.sm.wait_for_log(&format!("Milter: data, reject=550 {REFUSAL}"), WAIT)
        .unwrap();
    s.sm.wait_for_log("Milter: to=<bob@example.org>, reject=452 4.5.3", WAIT)
        .unwrap();
    // The decision line carries Sendmail's queue id (macro `i`).
    let line = milter.wait_for_log("verdict=reject", WAIT).unwrap();
    assert!(line.contains("reason=team@example.org: "), "{line}");
    assert!(!line.contains("queue_id=-"), "queue id missing: {line}");

    // List data unavailable: the daemon restarted with its lists file
    // missing cannot tell a list from another address, so it answers
    // 451 4.3.0 at RCPT (never 5xx), for members too.
    milter.stop();
    let missing = dir.join("missing-lists.toml");
    std::fs::write(&config_path, config(&socket, &missing)).unwrap();
    let mut milter = start_milter(&config_path, &socket, dir.join("milter2.log"));
    let mut c = s.connect();
    let no_data = unique_id("sm-no-data");
    for from in [STRANGER, MEMBER] {
        let msg = message(from, "team@example.org", &no_data, "");
        let (mail, rcpts, r) = send(&mut c, from, &["team@example.org"], &msg);
        assert_eq!(mail.code, 250, "{mail:?}");
        assert_eq!(rcpts[0].code, 451, "{rcpts:?}\n{}", ctx(&milter));
        assert_eq!(
            rcpts[0].lines,
            ["4.3.0 Mailing list data temporarily unavailable; try again later"],
            "{rcpts:?}"
        );
        assert!(r.is_none());
    }
    s.sm.wait_for_log(
        "Milter: to=<team@example.org>, reject=451 4.3.0 Mailing list data temporarily",
        WAIT,
    )
    .unwrap();
    // Once the file appears it is loaded (reload_interval = 1) and posts
    // are judged again.
    std::fs::write(&missing, LISTS).unwrap();
    milter
        .wait_for_log("lists file changed; reloaded", WAIT)
        .unwrap();
    let back = unique_id("sm-back");
    let r = post(&mut c, MEMBER, "team@example.org", &back, "");
    assert_eq!(r.code, 250, "{r:?}\n{}", ctx(&milter));
    c.quit().unwrap();
    s.wait_delivered("team", &back);
    assert!(!s.has("team", &no_data), "tempfailed post delivered");

    // Milter down: with F=T Sendmail tempfails the transaction itself.
    milter.stop();
    let mut c = s.connect();
    let r = c.mail(&format!("<{STRANGER}>")).unwrap();
    assert_eq!(r.code, 451, "{r:?}\n{}", ctx(&milter));
    assert_eq!(r.lines, ["4.3.2 Please try again later"], "{r:?}");
    let _ = c.quit();
    s.sm.wait_for_log("Milter (milter0): error connecting to filter", WAIT)
        .unwrap();
}

/// The list-address bypass through Sendmail: spellings that reach
/// `team@example.org` (a trailing dot, a quoted local part) are refused for
/// a non-member like the plain address and never delivered; a member's post
/// to `"team"@example.org` is delivered.
#[ignore = "needs sendmail"]
#[test]
fn sendmail_refuses_non_members_whatever_the_list_address_spelling() {
    let pf = Postfix::prepare()
        .unwrap()
        .user("team")
        .main_cf("recipient_delimiter", "+")
        .service(SmtpService::new("relay"))
        .start()
        .unwrap();
    let builder = Sendmail::prepare().unwrap();
    let dir = builder.path().to_owned();
    let socket = dir.join("mailman.sock");
    let lists = dir.join("lists.toml");
    std::fs::write(&lists, LISTS).unwrap();
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config(&socket, &lists)).unwrap();
    let milter = start_milter(&config_path, &socket, dir.join("milter.log"));
    let sm = builder
        .milter(format!("unix:{}", socket.display()))
        .smart_host(pf.port("relay"))
        .start()
        .unwrap();
    let s = Stack { sm, pf };
    let ctx = || {
        format!(
            "--- milter log ---\n{}\n--- sendmail log ---\n{}",
            milter.log_text(),
            s.sm.log()
        )
    };
    let mut c = s.connect();
    let mut refused = Vec::new();
    for (i, to) in [
        "team@example.org.",
        "\"team\"@example.org",
        "\"team\"@Example.ORG.",
    ]
    .iter()
    .enumerate()
    {
        let subject = unique_id(&format!("sm-spelling{i}"));
        let (mail, rcpts, r) = send(
            &mut c,
            STRANGER,
            &[to],
            &message(STRANGER, to, &subject, ""),
        );
        assert_eq!(mail.code, 250, "{mail:?}");
        match r {
            Some(r) => {
                assert_eq!(r.code, 550, "{to}: {rcpts:?} {r:?}\n{}", ctx());
                assert_eq!(r.lines, [REFUSAL], "{to}: {r:?}");
            }
            None => assert!(rcpts[0].is_permanent(), "{to}: {rcpts:?}"),
        }
        refused.push(subject);
    }
    let member_post = unique_id("sm-member-quoted");
    let r = post(&mut c, MEMBER, "\"team\"@example.org", &member_post, "");
    assert_eq!(r.code, 250, "{r:?}\n{}", ctx());
    c.quit().unwrap();
    s.wait_delivered("team", &member_post);
    s.wait_queue_empty();
    for subject in &refused {
        assert!(!s.has("team", subject), "{subject} delivered\n{}", ctx());
    }
}
