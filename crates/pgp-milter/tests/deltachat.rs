//! pgp-milter with `profile = "chatmail"` on a private chatmail-like relay,
//! driven by the **real Delta Chat core** (PyPI `deltachat-rpc-server` and
//! `deltachat-rpc-client`, pinned in scripts/install-test-deps.sh):
//!
//! * Postfix (testkit) with two smtpd services on 127.0.0.1, both with
//!   pgp-milter: `mx` (port 25's role, unauthenticated) and `submission`
//!   (SASL through Dovecot, so `{auth_authen}` reaches the milter);
//!   delivery over LMTP to Dovecot, `always_bcc` to a capture mailbox;
//! * Dovecot (Debian's `dovecot-imapd`, `dovecot-lmtpd`): LMTP delivery
//!   into Maildirs, IMAP for the clients, and SMTP AUTH for Postfix;
//! * `tests/deltachat/driver.py`: three accounts, SecureJoin by invite link
//!   as issued (`v=3`) and without `v=3` (unencrypted first step), 1:1 text,
//!   a group of three, an image, a 20 MB file, a reaction, an edit, read
//!   receipts and a deletion, each waited for at the receiving side.
//!
//! Then: every message Postfix received from Delta Chat has one pgp-milter
//! decision line, and it is `accept` (a refusal fails the run; the core's
//! record of the failed message is saved by the driver); every captured
//! message, sent again through the `mx` service as incoming mail, is
//! accepted too; plaintext from swaks gets `523`, a submission with a
//! forged `From:` `554`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{MilterProcess, Postfix, SmtpClient, SmtpService};

const PASSWORD: &str = "chatmail-test-password";
const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
/// The whole Delta Chat run, at most.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(200);

fn venv() -> PathBuf {
    std::env::var_os("DELTACHAT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/minimilter-test/deltachat-venv"))
}

fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh (as root)",
        path.display()
    );
}

fn dovecot_conf(dir: &Path, mail: &Path, imap: u16, lmtp: u16, auth: u16) -> String {
    let d = dir.display();
    let m = mail.display();
    format!(
        "\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{m}/%d/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={m}/%d/%n allow_all_users=yes
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
"
    )
}

/// The queue id of a Postfix log line (`… postfix/x[1]: 4ABC: …`).
fn queue_id(line: &str) -> Option<&str> {
    let id = line.split("]: ").nth(1)?.split(':').next()?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())).then_some(id)
}

/// `queue_id=X` of a decision line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    Some(rest.split(' ').next().unwrap_or(rest))
}

fn swaks(args: &[&str]) -> String {
    let out = Command::new("swaks")
        .args(args)
        .arg("--timeout")
        .arg("30")
        .output()
        .expect("swaks (Debian package swaks) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[ignore = "needs deltachat-rpc-server, dovecot, postfix and swaks"]
#[test]
fn delta_chat_through_pgp_milter_on_a_chatmail_relay() {
    let venv = venv();
    let python = venv.join("bin/python");
    let rpc_server = venv.join("bin/deltachat-rpc-server");
    require(&python);
    require(&rpc_server);
    require(Path::new("/usr/sbin/dovecot"));
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deltachat/driver.py");

    let builder = Postfix::prepare().unwrap().user("capture");
    let root = builder.path().to_owned();
    let socket = builder.socket_path("pgp.sock");
    let milter = format!("unix:{}", socket.display());
    let imap = testkit::free_port();
    let auth = testkit::free_port();
    let lmtp = testkit::free_port();

    let submission = SmtpService::new("submission")
        .with_milters(&milter)
        .with_option("smtpd_sasl_auth_enable", "yes")
        .with_option("smtpd_sasl_type", "dovecot")
        .with_option("smtpd_sasl_path", format!("inet:127.0.0.1:{auth}"))
        .with_option(
            "smtpd_relay_restrictions",
            "permit_sasl_authenticated, reject",
        );
    let pf = builder
        .service(SmtpService::new("mx").with_milters(&milter))
        .service(submission)
        .main_cf("virtual_transport", format!("lmtp:inet:127.0.0.1:{lmtp}"))
        .main_cf("always_bcc", format!("capture@{}", testkit::MAIL_DOMAIN))
        .main_cf("message_size_limit", "104857600")
        .main_cf("mailbox_size_limit", "0")
        .main_cf("virtual_mailbox_limit", "0")
        .start()
        .unwrap();

    // Dovecot after Postfix (Postfix asks it only when a client logs in),
    // so it is stopped first: its processes write into Postfix's directory.
    let dove = root.join("dovecot");
    std::fs::create_dir_all(&dove).unwrap();
    let users: String = ACCOUNTS
        .iter()
        .map(|u| format!("{u}@{}:{{PLAIN}}{PASSWORD}\n", testkit::MAIL_DOMAIN))
        .collect();
    std::fs::write(dove.join("users"), users).unwrap();
    std::fs::write(
        dove.join("dovecot.conf"),
        dovecot_conf(&dove, &root.join("mail"), imap, lmtp, auth),
    )
    .unwrap();
    let mut cmd = Command::new("/usr/sbin/dovecot");
    cmd.arg("-F").arg("-c").arg(dove.join("dovecot.conf"));
    let dovecot = Dovecot(Some(
        MilterProcess::start_inet(cmd, imap, dove.join("dovecot.stderr")).unwrap(),
    ));

    let config = root.join("pgp-milter.toml");
    std::fs::write(
        &config,
        format!("profile = \"chatmail\"\nlisten = [\"{milter}\"]\nsocket_mode = \"666\"\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgp-milter"));
    // The decision lines, whether the crate logs them at info or debug.
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,pgp_milter::milter=debug");
    let daemon = MilterProcess::start(cmd, &socket, root.join("pgp-milter.log")).unwrap();

    // Delta Chat.
    let work = root.join("deltachat");
    std::fs::create_dir_all(&work).unwrap();
    let driver_config = work.join("config.json");
    std::fs::write(
        &driver_config,
        format!(
            "{{\"workdir\": {:?}, \"rpc_server\": {:?}, \"imap_port\": {imap}, \
             \"smtp_port\": {}, \"password\": {PASSWORD:?}, \"accounts\": {:?}, \
             \"domain\": {:?}, \"timeout\": {}}}",
            work.display().to_string(),
            rpc_server.display().to_string(),
            pf.port("submission"),
            ACCOUNTS,
            testkit::MAIL_DOMAIN,
            DRIVER_TIMEOUT.as_secs()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(&python)
        .arg(&driver)
        .arg(&driver_config)
        // Files, not pipes: a full pipe would stall the core's logging.
        .stdout(std::fs::File::create(work.join("driver.out")).unwrap())
        .stderr(std::fs::File::create(work.join("driver.err")).unwrap())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = started + DRIVER_TIMEOUT + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(work.join("driver.out")).unwrap_or_default();
    let err = std::fs::read_to_string(work.join("driver.err")).unwrap_or_default();
    let elapsed = started.elapsed();
    let log = daemon.log_text();
    let report = || {
        format!(
            "--- driver stdout ---\n{out}\n--- driver stderr (tail) ---\n{}\n\
             --- pgp-milter log (decisions) ---\n{}\n--- dovecot log (tail) ---\n{}",
            tail(&err, 40),
            log.lines()
                .filter(|l| l.contains("decision"))
                .collect::<Vec<_>>()
                .join("\n"),
            tail(
                &std::fs::read_to_string(dove.join("dovecot.log")).unwrap_or_default(),
                20
            ),
        )
    };
    assert!(
        status.is_some_and(|s| s.success()) && out.contains("DONE"),
        "Delta Chat run failed ({status:?} after {elapsed:?})\n{}",
        report()
    );
    eprintln!("Delta Chat run: {elapsed:?}\n{out}");

    // Every message Postfix received over submission got an accept decision.
    let postfix_log = pf.log();
    // A queue id from a submission session whose message Postfix queued
    // (qmgr's `from=`) or refused (`milter-reject`); a transaction the
    // client broke off (the core stopping at the end) has neither.
    let sessions: BTreeSet<&str> = postfix_log
        .lines()
        .filter(|l| l.contains("postfix/submission/smtpd[") && l.contains(": client="))
        .filter_map(queue_id)
        .collect();
    let ended: BTreeSet<&str> = postfix_log
        .lines()
        .filter(|l| {
            (l.contains("postfix/qmgr[") && l.contains(": from=<"))
                || l.contains(": milter-reject: ")
        })
        .filter_map(queue_id)
        .collect();
    let received: BTreeSet<String> = sessions
        .intersection(&ended)
        .map(|s| (*s).to_owned())
        .collect();
    assert!(
        postfix_log.contains("postfix/lmtp[") && !postfix_log.contains("status=deferred"),
        "delivery is over LMTP to Dovecot, none deferred:\n{postfix_log}"
    );
    let decisions: Vec<&str> = log.lines().filter(|l| l.contains(" decision")).collect();
    let rejected: Vec<&&str> = decisions
        .iter()
        .filter(|l| !l.contains("verdict=accept"))
        .collect();
    assert!(
        rejected.is_empty(),
        "pgp-milter refused Delta Chat mail:\n{}",
        report()
    );
    let decided: BTreeSet<String> = decisions
        .iter()
        .filter_map(|l| field(l, "queue_id").map(str::to_owned))
        .collect();
    assert!(
        received.len() >= 15,
        "too few messages from Delta Chat ({}):\n{postfix_log}",
        received.len()
    );
    let missing: Vec<&String> = received.difference(&decided).collect();
    assert!(
        missing.is_empty(),
        "messages without a pgp-milter decision: {missing:?}\n{}",
        report()
    );
    let handshakes = decisions
        .iter()
        .filter(|l| l.contains("SecureJoin handshake (vc-request)"))
        .inspect(|l| {
            // Only Carol's, who joined by the link without v=3.
            assert!(l.contains("from=<carol@example.org>"), "{l}\n{}", report());
        })
        .count();
    // The link without v=3 makes one (the core may send it again); the
    // link as issued none.
    assert!(
        (1..=2).contains(&handshakes),
        "{handshakes} unencrypted first steps\n{}",
        report()
    );
    eprintln!(
        "{} messages from Delta Chat, {} pgp-milter decisions, all accept; \
         {} transactions broken off by the client",
        received.len(),
        decisions.len(),
        sessions.len() - received.len()
    );

    // Every captured message, sent again as incoming mail on the mx service.
    let capture = pf.maildir_new("capture");
    let mut captured: Vec<PathBuf> = std::fs::read_dir(&capture)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    captured.sort();
    assert_eq!(
        captured.len(),
        received.len(),
        "one capture copy per message"
    );
    let mut c = SmtpClient::connect(pf.port("mx")).unwrap();
    assert!(c.ehlo("relay2.example").unwrap().is_positive());
    for path in &captured {
        let message = std::fs::read(path).unwrap();
        // Dovecot's LMTP adds Return-Path first: the original envelope sender.
        let text = String::from_utf8_lossy(&message[..message.len().min(512)]).into_owned();
        let sender = text
            .strip_prefix("Return-Path: ")
            .and_then(|r| r.split("\n").next())
            .unwrap_or_else(|| panic!("no Return-Path in {}", path.display()))
            .trim()
            .to_owned();
        assert!(c.mail(&sender).unwrap().is_positive());
        assert!(c.rcpt("<dave@example.org>").unwrap().is_positive());
        let r = c.data(&message).unwrap();
        assert_eq!(
            r.code,
            250,
            "{} refused as incoming mail: {r:?}\n{}",
            path.display(),
            tail(&daemon.log_text(), 5)
        );
    }

    // The real unencrypted first step, changed a little: refused.
    let first_step = captured
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).replace("\r\n", "\n"))
        .find(|m| m.contains("\nSecure-Join: vc-request\n") && !m.contains("BEGIN PGP MESSAGE"))
        .expect("the unencrypted vc-request was captured");
    let boundary = first_step
        .split("boundary=\"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .unwrap()
        .to_owned();
    let body = "\n\nSecure-Join: vc-request\n--";
    assert!(first_step.contains(body), "{first_step}");
    let look_alikes = [
        first_step.replace(body, "\n\nSecure-Join: vc-request\nmeet me at noon\n--"),
        first_step.replace(body, "\n\nSecure-Join: vc-request, and hi\n--"),
        first_step.replace(
            &format!("--{boundary}--"),
            &format!("--{boundary}\nContent-Type: text/plain\n\nsecret\n--{boundary}--"),
        ),
    ];
    for m in look_alikes {
        assert!(c.mail("<carol@example.org>").unwrap().is_positive());
        assert!(c.rcpt("<dave@example.org>").unwrap().is_positive());
        let r = c.data(m.replace('\n', "\r\n")).unwrap();
        assert_eq!(
            (r.code, r.text().as_str()),
            (523, "Encryption Needed: Invalid Unencrypted Mail"),
            "a look-alike of the first step:\n{m}"
        );
    }
    let _ = c.quit();

    // Refused: plaintext from a classic client, a forged From on submission.
    let out = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &pf.port("mx").to_string(),
        "--from",
        "someone@elsewhere.example",
        "--to",
        "bob@example.org",
        "--body",
        "Hello in the clear",
    ]);
    assert!(
        out.contains("<** 523 Encryption Needed: Invalid Unencrypted Mail"),
        "{out}"
    );
    let out = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &pf.port("submission").to_string(),
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.org",
        "--auth-password",
        PASSWORD,
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        "From: Bob <bob@example.org>",
        "--body",
        "Trust me, I am Bob",
    ]);
    assert!(
        out.contains(
            "<** 554 5.7.1 From <bob@example.org> does not match envelope sender <alice@example.org>"
        ),
        "{out}"
    );
    drop(dovecot);
    drop(daemon);
}

/// The private Dovecot; stopped with SIGTERM (its master then ends its
/// children) and waited for, so nothing writes into the directory Postfix
/// removes next.
struct Dovecot(Option<MilterProcess>);

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(process) = self.0.take() else { return };
        if let Some(pid) = process.pid() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            // Ended (a zombie until MilterProcess reaps it) or gone.
            let ended = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
            };
            while !ended() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        drop(process);
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
