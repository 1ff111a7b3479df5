//! The whole chain on loopback: a real Postfix (testkit) whose transport for
//! `lists.example.org` is LMTP into a real Mailman 3 core (Debian's
//! `mailman3`), with the `mailman-milter` binary (REST backend) as
//! `smtpd_milters`. Mailman's outgoing mail goes to an SMTP sink, so the
//! test sees what Mailman did with each post: distributed it, answered a
//! command, or never saw it. A post Mailman saw leaves its sender in the
//! list's `nonmember` roster (Mailman registers every unknown sender there
//! as it moderates), so an absent roster entry proves a refused post never
//! reached Mailman.
//!
//! Needs root, Postfix and `mailman3` (scripts/install-test-deps.sh).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Mailman, SmtpSink, create_user, http, rest, set_moderation};
use testkit::{Postfix, Reply, SmtpClient, SmtpService, simple_message, unique_id};

const LIST: &str = "team@lists.example.org";
const LIST_ID: &str = "team.lists.example.org";
const MEMBER: &str = "alice@client.example";
const STRANGER: &str = "stranger@client.example";
const PARTNER: &str = "pat@partner.example";
/// A member whose own moderation action is discard.
const TROLL: &str = "troll@client.example";
/// A non-member whose own moderation action is accept.
const VIP: &str = "vip@outside.example";
/// Another address of the user of a member (DANA).
const DANA_ALT: &str = "dana.alt@other.example";
const DANA: &str = "dana@client.example";
/// A member at Postfix's `$myorigin` (testkit's `myhostname`): Postfix
/// completes a sender written `local` to this before Mailman reads it.
const LOCAL: &str = "local@mx.testkit.invalid";
/// A non-member on the list's hold_these_nonmembers.
const WAITING: &str = "waiting@outside.example";
/// How long Mailman's runners (in → pipeline → out) may take per message.
const MAILMAN_DELIVERY: Duration = Duration::from_secs(60);

/// The daemon as a child process, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, socket: &Path, log: PathBuf) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- mailman-milter ---\n{}", self.log_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message on an open session: MAIL, each RCPT, DATA. Every RCPT reply
/// and the final reply (None if no recipient was accepted).
fn send(c: &mut SmtpClient, from: &str, to: &[&str], subject: &str) -> (Vec<Reply>, Option<Reply>) {
    let msg = simple_message(from, to[0], subject, "Hello list.\n");
    let t = c.transaction(from, to, msg).unwrap();
    assert!(t.mail.is_success(), "{:?}", t.mail);
    (t.rcpts, t.data)
}

/// The emails of the list's roster for `role`.
fn roster(port: u16, role: &str) -> Vec<String> {
    let body = rest(port, "GET", &format!("/lists/{LIST_ID}/roster/{role}"), &[]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.get("entries")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("email")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The number of posts held for moderation on the list.
fn held(port: u16) -> u64 {
    let body = rest(port, "GET", &format!("/lists/{LIST_ID}/held"), &[]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.get("total_size").and_then(|t| t.as_u64()).unwrap()
}

fn wait_delivered(pf: &Postfix, user: &str, subject: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pf.delivered(user).iter().any(|m| m.contains(subject)) {
        assert!(
            Instant::now() < deadline,
            "{subject} not delivered to {user}\n{}",
            pf.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a Postfix command line tool against the instance, bounded.
fn postfix_tool(pf: &Postfix, program: &str, args: &[&str]) {
    let mut child = Command::new(program)
        .arg("-c")
        .arg(pf.config_dir())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{program} {args:?}: {s}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[ignore = "needs postfix and mailman"]
#[test]
fn postfix_to_a_real_mailman_3_refuses_non_members_and_tempfails_without_rest() {
    let started = Instant::now();
    let sink = SmtpSink::start();
    let mut mailman = Mailman::start(Some(sink.port));
    let port = mailman.rest_port;
    eprintln!("Mailman up after {:?}", started.elapsed());

    rest(
        port,
        "POST",
        "/domains",
        &[("mail_host", "lists.example.org")],
    );
    rest(port, "POST", "/lists", &[("fqdn_listname", LIST)]);
    rest(
        port,
        "PATCH",
        &format!("/lists/{LIST_ID}/config"),
        &[
            ("default_nonmember_action", "reject"),
            ("accept_these_nonmembers", "^.*@partner\\.example$"),
            ("hold_these_nonmembers", WAITING),
            ("send_welcome_message", "false"),
        ],
    );
    set_moderation(port, LIST_ID, TROLL, "member", "discard");
    create_user(port, &[DANA, DANA_ALT]);
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", LIST_ID),
            ("subscriber", DANA),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    set_moderation(port, LIST_ID, VIP, "nonmember", "accept");
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", LIST_ID),
            ("subscriber", MEMBER),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", LIST_ID),
            ("subscriber", LOCAL),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );

    // Postfix: the list domain goes to Mailman's LMTP port, example.org to
    // Maildirs; the milter guards the only smtpd.
    let builder = Postfix::prepare().unwrap();
    let dir = builder.path().to_owned();
    let sock = builder.socket_path("mailman.sock");
    let transport = dir.join("transport");
    std::fs::write(
        &transport,
        format!(
            "lists.example.org lmtp:inet:[127.0.0.1]:{}\n",
            mailman.lmtp_port
        ),
    )
    .unwrap();
    let pf = builder
        .main_cf("relay_domains", "lists.example.org")
        .main_cf(
            "transport_maps",
            format!("texthash:{}", transport.display()),
        )
        .main_cf("recipient_delimiter", "+")
        .service(SmtpService::new("mx").with_milters(format!("unix:{}", sock.display())))
        .start()
        .unwrap();
    // testkit's master.cf has no lmtp client service: add it and reload.
    postfix_tool(
        &pf,
        "/usr/sbin/postconf",
        &["-M", "lmtp/unix=lmtp unix - - n - - lmtp"],
    );
    postfix_tool(&pf, "/usr/sbin/postfix", &["reload"]);

    let config = dir.join("mailman-milter.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"unix:{sock}\"\nsocket_mode = \"666\"\nbackend = \"mailman\"\n\n\
             [mailman]\nurl = \"http://127.0.0.1:{port}/3.1\"\ntimeout = 3\ncache_ttl = 60\n",
            sock = sock.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &sock, dir.join("milter.log"));
    let ctx = |what: &str| format!("{what}\n--- milter log ---\n{}", daemon.log_text());

    let mut c = SmtpClient::connect(pf.port("mx")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_success());

    // A member's post: accepted by Postfix, distributed by Mailman.
    let member_post = unique_id("member");
    let (_, r) = send(&mut c, MEMBER, &[LIST], &member_post);
    let r = r.unwrap();
    assert_eq!(r.code, 250, "{}", ctx(&format!("{r:?}")));

    // A non-member's post: refused after DATA with the milter's text.
    let refused = unique_id("nonmember");
    let (rcpts, r) = send(&mut c, STRANGER, &[LIST], &refused);
    assert!(rcpts[0].is_success(), "{rcpts:?}");
    let r = r.unwrap();
    assert_eq!(r.code, 550, "{}", ctx(&format!("{r:?}")));
    assert_eq!(
        r.text(),
        "5.7.1 <team@lists.example.org>: you are not allowed to post to this list"
    );

    // A non-member matched by the accept pattern: accepted and distributed.
    let partner = unique_id("partner");
    let (_, r) = send(&mut c, PARTNER, &[LIST], &partner);
    assert_eq!(r.unwrap().code, 250, "{}", ctx("accept pattern"));

    // Mailman 3's own moderation: the discarded member is refused; the
    // accepted non-member and the held one reach Mailman.
    let troll = unique_id("troll");
    let (_, r) = send(&mut c, TROLL, &[LIST], &troll);
    assert_eq!(r.unwrap().code, 550, "{}", ctx("moderated member"));
    let vip = unique_id("vip");
    let (_, r) = send(&mut c, VIP, &[LIST], &vip);
    assert_eq!(r.unwrap().code, 250, "{}", ctx("accepted non-member"));
    let waiting = unique_id("waiting");
    let (_, r) = send(&mut c, WAITING, &[LIST], &waiting);
    assert_eq!(r.unwrap().code, 250, "{}", ctx("held non-member"));

    // From another address of a member's user: a member for Mailman 3.
    let linked = unique_id("linked");
    let (_, r) = send(&mut c, DANA_ALT, &[LIST], &linked);
    assert_eq!(r.unwrap().code, 250, "{}", ctx("linked address"));

    // Addresses Postfix completes with `@$myorigin` before Mailman reads
    // them (the envelope sender always, headers of local clients such as
    // this one): `local` is the member LOCAL for Mailman, so the milter,
    // which cannot know `$myorigin`, refuses nothing.
    let unqualified_envelope = unique_id("unqualified-envelope");
    // (Another non-member than STRANGER, which must never reach Mailman.)
    let passerby = "passerby@client.example";
    let msg = simple_message(passerby, LIST, &unqualified_envelope, "Hello list.\n");
    let t = c.transaction("local", &[LIST], msg).unwrap();
    assert!(t.mail.is_success(), "{:?}", t.mail);
    let r = t.data.unwrap();
    assert_eq!(r.code, 250, "{}", ctx(&format!("MAIL FROM:<local>: {r:?}")));
    let unqualified_from = unique_id("unqualified-from");
    let msg = format!("From: local\nTo: <{LIST}>\nSubject: {unqualified_from}\n\nHello list.\n");
    let t = c.transaction(passerby, &[LIST], msg).unwrap();
    let r = t.data.unwrap();
    assert_eq!(r.code, 250, "{}", ctx(&format!("From: local: {r:?}")));

    // -request from a non-member: passes; Mailman answers the command.
    let r = c.mail(&format!("<{STRANGER}>")).unwrap();
    assert!(r.is_success());
    assert!(
        c.rcpt("<team-request@lists.example.org>")
            .unwrap()
            .is_success()
    );
    let request = unique_id("request");
    let msg = simple_message(
        STRANGER,
        "team-request@lists.example.org",
        "help",
        &format!("help\n{request}\n"),
    );
    assert_eq!(c.data(msg).unwrap().code, 250, "{}", ctx("-request"));

    // Mixed: the local mailbox is deferred with 452 4.5.3 and the list
    // refused; sent alone, the mailbox gets it.
    let mixed = unique_id("mixed");
    let (rcpts, r) = send(&mut c, STRANGER, &[LIST, "bob@example.org"], &mixed);
    assert!(rcpts[0].is_success(), "{rcpts:?}");
    assert_eq!(rcpts[1].code, 452, "{}", ctx(&format!("{rcpts:?}")));
    assert_eq!(rcpts[1].enhanced_status(), Some("4.5.3"), "{rcpts:?}");
    assert_eq!(r.unwrap().code, 550);
    let (_, r) = send(&mut c, STRANGER, &["bob@example.org"], &mixed);
    assert_eq!(r.unwrap().code, 250);
    c.quit().unwrap();

    // What reached Mailman. The member's and the partner's posts are
    // distributed to the member (Mailman's outgoing SMTP is the sink).
    for subject in [
        &member_post,
        &partner,
        &vip,
        &linked,
        &unqualified_envelope,
        &unqualified_from,
    ] {
        let m = sink.wait_for(subject, MAILMAN_DELIVERY).unwrap_or_else(|| {
            panic!(
                "Mailman did not distribute {subject} within {MAILMAN_DELIVERY:?}; sink got {:?}\n{}",
                sink.received(),
                mailman.log()
            )
        });
        // Both members get it (the moderated one too: moderation is about
        // posting).
        let mut rcpts = m.rcpts.clone();
        rcpts.sort();
        assert_eq!(rcpts, [MEMBER, DANA, LOCAL, TROLL], "{m:?}");
        assert!(
            m.data.contains("List-Id: <team.lists.example.org>"),
            "{m:?}"
        );
    }
    // The command went to Mailman, which answered the (non-member) sender.
    let answer = sink
        .wait_for(&request, MAILMAN_DELIVERY)
        .unwrap_or_else(|| {
            panic!(
                "no answer from Mailman to the -request mail; sink got {:?}\n{}",
                sink.received(),
                mailman.log()
            )
        });
    assert_eq!(answer.rcpts, [STRANGER], "{answer:?}");
    wait_delivered(&pf, "bob", &mixed);

    // The refused posts never reached Mailman: it did not register the
    // stranger as a non-member (it does so for every post it moderates),
    // holds nothing, and sent nothing about them, to anyone.
    let nonmembers = roster(port, "nonmember");
    assert!(
        nonmembers.iter().any(|a| a == PARTNER),
        "the partner's post did reach Mailman: {nonmembers:?}"
    );
    assert!(
        !nonmembers.iter().any(|a| a == STRANGER),
        "a refused post reached Mailman: {nonmembers:?}"
    );
    // The held one is held by Mailman, as the milter expected.
    let deadline = Instant::now() + MAILMAN_DELIVERY;
    while held(port) == 0 {
        assert!(
            Instant::now() < deadline,
            "Mailman did not hold {waiting}:\n{}",
            mailman.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let held_posts = rest(port, "GET", &format!("/lists/{LIST_ID}/held"), &[]);
    assert_eq!(held(port), 1, "{held_posts}");
    assert!(held_posts.contains(&waiting), "{held_posts}");
    for subject in [&refused, &mixed, &troll] {
        assert!(sink.with(subject).is_empty(), "{:?}", sink.with(subject));
    }
    assert!(
        sink.received()
            .iter()
            .all(|m| m.rcpts.iter().all(|r| r != STRANGER) || m.data.contains(&request)),
        "Mailman wrote to the stranger about something else: {:?}",
        sink.received()
    );
    // Postfix queued no bounce for the refused posts either.
    assert!(!pf.queue().unwrap().contains(STRANGER));
    assert!(!pf.log().contains("sender non-delivery notification"));

    // Mailman's REST goes away mid-test: a sender the milter has not looked
    // up yet gets 451 4.3.0 after DATA from Postfix, never a 5xx, and
    // nothing is queued for Mailman. A member whose answer is cached still
    // posts; Postfix keeps that post queued until Mailman's LMTP is back.
    mailman.stop();
    assert!(http(port, "GET", "/system/versions", &[]).is_err());
    let mut c = SmtpClient::connect(pf.port("mx")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_success());
    let cached = unique_id("cached-member");
    let (_, r) = send(&mut c, MEMBER, &[LIST], &cached);
    assert_eq!(r.unwrap().code, 250, "{}", ctx("cached member"));
    let late = unique_id("late");
    let (rcpts, r) = send(&mut c, "late@client.example", &[LIST], &late);
    let r = r.unwrap_or_else(|| rcpts[0].clone());
    assert_eq!(r.code, 451, "{}", ctx(&format!("{rcpts:?} {r:?}")));
    assert_eq!(r.enhanced_status(), Some("4.3.0"), "{r:?}");
    c.quit().unwrap();
    let queue = pf.queue().unwrap();
    assert!(!queue.contains("late@client.example"), "{queue}");
    assert!(queue.contains(MEMBER), "the member's post is kept: {queue}");
    eprintln!("whole chain took {:?}", started.elapsed());
}
