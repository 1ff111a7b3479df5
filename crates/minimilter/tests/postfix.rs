//! The example milter behind a real Postfix: real SMTP in, real delivery out.
//!
//! Needs Postfix from Debian and root (scripts/install-test-deps.sh); without
//! them these tests fail with instructions rather than pass silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Postfix, Reply, SmtpService};
use testkit::{SmtpClient, simple_message};

/// The example milter as a child process, killed on drop.
struct MilterProcess {
    child: Child,
    log: PathBuf,
}

impl MilterProcess {
    fn start(listen: &str, log: PathBuf) -> MilterProcess {
        MilterProcess::start_example("keyword_milter", listen, log)
    }

    fn start_example(example: &str, listen: &str, log: PathBuf) -> MilterProcess {
        let bin = example_binary(example);
        let child = Command::new(&bin)
            .args(["--listen", listen, "--socket-mode", "666"])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("milter log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut m = MilterProcess { child, log };
        m.wait_listening(listen);
        m
    }

    fn wait_listening(&mut self, listen: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("milter exited early ({status}):\n{}", self.log_text());
            }
            let up = if let Some(path) = listen.strip_prefix("unix:") {
                Path::new(path).exists()
            } else {
                let addr = listen.strip_prefix("inet:").unwrap();
                std::net::TcpStream::connect(addr).is_ok()
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("milter not listening on {listen}:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "milter did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MilterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/examples/NAME`, built by `cargo test`.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} missing: run the tests with `cargo test` (which builds examples)",
        bin.display()
    );
    bin
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
    )
}

/// Sends one message on an open session; returns the reply after DATA (or the
/// first refusal).
fn send(c: &mut SmtpClient, to: &str, subject: &str) -> Reply {
    let from = "sender@client.example";
    let r = c.mail(&format!("<{from}>")).unwrap();
    if !r.is_positive() {
        return r;
    }
    let r = c.rcpt(&format!("<{to}>")).unwrap();
    if !r.is_positive() {
        return r;
    }
    c.data(simple_message(
        from,
        to,
        subject,
        "Hello from the minimilter tests.\r\n",
    ))
    .unwrap()
}

fn session(pf: &Postfix, service: &str) -> SmtpClient {
    let mut c = SmtpClient::connect(pf.port(service)).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    c
}

/// Every verdict of the example milter, through Postfix, for one service.
fn exercise(pf: &Postfix, service: &str, user: &str, milter: &MilterProcess) {
    let to = format!("{user}@example.org");
    let ctx = |what: &str| {
        format!(
            "{service}: {what}\n--- milter log ---\n{}",
            milter.log_text()
        )
    };

    // Accepted mail is delivered with the milter's header.
    let subject = unique("hello");
    let mut c = session(pf, service);
    let r = send(&mut c, &to, &subject);
    assert_eq!(r.code, 250, "{}", ctx(&format!("accept: {r:?}")));
    let mail = pf
        .wait_for_delivery(user, 1, Duration::from_secs(30))
        .unwrap();
    let msg = mail
        .iter()
        .find(|m| m.contains(&subject))
        .unwrap_or_else(|| panic!("{}", ctx("delivered message not found")));
    let tag = msg
        .lines()
        .find(|l| l.starts_with("X-Keyword-Milter: passed (queue id "))
        .unwrap_or_else(|| panic!("{}", ctx(&format!("header missing in:\n{msg}"))));
    assert!(
        !tag.contains("queue id )"),
        "queue id macro was sent: {tag}"
    );

    // Reject carries the milter's own text.
    let r = send(&mut c, &to, &unique("[reject] spam"));
    assert_eq!(r.code, 550, "{}", ctx(&format!("reject: {r:?}")));
    assert!(
        r.text()
            .contains("5.7.1 Message refused: the subject contains [reject]"),
        "{r:?}"
    );

    // Tempfail gives 4xx with the milter's text.
    let r = send(&mut c, &to, &unique("[tempfail] later"));
    assert_eq!(r.code, 451, "{}", ctx(&format!("tempfail: {r:?}")));
    assert!(r.text().contains("4.7.1 Try again later"), "{r:?}");

    // Discard: accepted, never delivered.
    let discarded = unique("[discard] drop");
    let r = send(&mut c, &to, &discarded);
    assert_eq!(r.code, 250, "{}", ctx(&format!("discard: {r:?}")));
    pf.wait_for_log("milter-discard", Duration::from_secs(30))
        .unwrap();
    c.quit().unwrap();

    // Two messages on one SMTP session are judged independently: a rejected
    // one does not taint the next, and the next is tagged afresh.
    let mut c = session(pf, service);
    let r = send(&mut c, &to, &unique("[reject] first"));
    assert_eq!(r.code, 550, "{}", ctx(&format!("first of two: {r:?}")));
    let second = unique("second");
    let r = send(&mut c, &to, &second);
    assert_eq!(r.code, 250, "{}", ctx(&format!("second of two: {r:?}")));
    let third = unique("third");
    let r = send(&mut c, &to, &third);
    assert_eq!(r.code, 250, "{}", ctx(&format!("third of three: {r:?}")));
    c.quit().unwrap();
    let mail = pf
        .wait_for_delivery(user, 3, Duration::from_secs(30))
        .unwrap();
    for s in [&second, &third] {
        let m = mail.iter().find(|m| m.contains(s.as_str())).unwrap();
        assert_eq!(
            m.matches("X-Keyword-Milter: passed").count(),
            1,
            "exactly one tag on {s}:\n{m}"
        );
    }
    assert!(
        !mail.iter().any(|m| m.contains(&discarded)),
        "discarded mail was delivered"
    );
}

#[ignore = "needs postfix"]
#[test]
fn postfix_with_the_milter_on_a_unix_socket_and_on_inet() {
    let builder = Postfix::prepare().unwrap();
    let sock = builder.socket_path("keyword.sock");
    let port = testkit::free_port();
    let logs = builder.path().to_owned();
    let unix_spec = format!("unix:{}", sock.display());
    let inet_spec = format!("inet:127.0.0.1:{port}");
    let pf = builder
        .service(SmtpService::new("unix").with_milters(&unix_spec))
        .service(SmtpService::new("inet").with_milters(&inet_spec))
        .start()
        .unwrap();
    let unix_milter = MilterProcess::start(&unix_spec, logs.join("milter-unix.log"));
    let inet_milter = MilterProcess::start(&inet_spec, logs.join("milter-inet.log"));

    exercise(&pf, "unix", "bob", &unix_milter);
    exercise(&pf, "inet", "alice", &inet_milter);

    // SIGTERM: a clean exit, and the socket file is gone.
    let status = unix_milter.terminate();
    assert!(status.success(), "milter exit status {status}");
    assert!(!sock.exists(), "socket file removed at shutdown");

    // With the milter stopped, Postfix answers 4xx (milter_default_action = tempfail).
    let mut c = session(&pf, "unix");
    let r = send(&mut c, "bob@example.org", &unique("nobody home"));
    assert!(
        (400..500).contains(&r.code),
        "stopped milter must give 4xx, got {r:?}"
    );
    drop(inet_milter);
    let mut c = session(&pf, "inet");
    let r = send(&mut c, "alice@example.org", &unique("nobody home"));
    assert!(
        (400..500).contains(&r.code),
        "stopped milter must give 4xx, got {r:?}"
    );
}

#[ignore = "needs postfix"]
#[test]
fn postfix_negotiating_older_protocol_versions() {
    // Postfix's milter_protocol 2 and 4 downgrade the negotiation; the milter
    // must still tag accepted mail and reject with its own text.
    for version in ["2", "4"] {
        let builder = Postfix::prepare().unwrap();
        let sock = builder.socket_path("keyword.sock");
        let spec = format!("unix:{}", sock.display());
        let logs = builder.path().to_owned();
        let pf = builder
            .service(SmtpService::new("smtp").with_milters(&spec))
            .main_cf("milter_protocol", version)
            .start()
            .unwrap();
        let milter = MilterProcess::start(&spec, logs.join("milter.log"));
        let mut c = session(&pf, "smtp");
        let subject = unique("old-protocol");
        let r = send(&mut c, "carol@example.org", &subject);
        assert_eq!(r.code, 250, "v{version}: {r:?}\n{}", milter.log_text());
        let r = send(&mut c, "carol@example.org", &unique("[reject] old"));
        assert_eq!(r.code, 550, "v{version}: {r:?}\n{}", milter.log_text());
        assert!(r.text().contains("5.7.1 Message refused"), "{r:?}");
        c.quit().unwrap();
        let mail = pf
            .wait_for_delivery("carol", 1, Duration::from_secs(30))
            .unwrap();
        assert!(
            mail[0].contains("X-Keyword-Milter: passed"),
            "v{version}: {}",
            mail[0]
        );
    }
}

/// Headers Postfix adds itself, which the milter never sees: its own
/// Received, the delivery agent's envelope headers, and the Message-Id and
/// Date it adds to a message without them.
const POSTFIX_OWN: [&str; 6] = [
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "message-id",
    "date",
];

fn without_postfix_headers(msg: &str) -> (Vec<String>, String) {
    let (head, body) = msg.split_once("\n\n").unwrap_or((msg, ""));
    let mut fields: Vec<String> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        } else {
            fields.push(line.to_owned());
        }
    }
    fields.retain(|f| {
        let name = f.split(':').next().unwrap_or_default().to_ascii_lowercase();
        !POSTFIX_OWN.contains(&name.as_str())
    });
    (fields, body.to_owned())
}

/// The same message through the action milter twice: once behind a real
/// Postfix, once through our client's model of Postfix. The delivered
/// headers and body must match exactly (Postfix's own headers aside).
/// `extra` is the header lines after Subject; returns the delivered body.
fn postfix_and_check_deliver_alike(tag: &str, extra: &str, body: &str) -> String {
    let builder = Postfix::prepare().unwrap();
    let sock = builder.socket_path("action.sock");
    let spec = format!("unix:{}", sock.display());
    let logs = builder.path().to_owned();
    let pf = builder
        .service(SmtpService::new("smtp").with_milters(&spec))
        .start()
        .unwrap();
    let milter = MilterProcess::start_example("action_milter", &spec, logs.join("milter.log"));
    let subject = unique(tag);
    let raw = format!(
        "From: sender@client.example\r\nTo: dave@example.org\r\nSubject: {subject}\r\n\
         {extra}\r\n{body}"
    );

    let mut c = session(&pf, "smtp");
    assert!(c.mail("<sender@client.example>").unwrap().is_positive());
    assert!(c.rcpt("<dave@example.org>").unwrap().is_positive());
    let r = c.data(raw.as_bytes()).unwrap();
    assert_eq!(r.code, 250, "{r:?}\n{}", milter.log_text());
    c.quit().unwrap();
    let mail = pf
        .wait_for_delivery("dave", 1, Duration::from_secs(30))
        .unwrap();
    let delivered = mail
        .iter()
        .find(|m| m.contains(&subject))
        .unwrap()
        .replace("\r\n", "\n");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let predicted = rt.block_on(async {
        let mut client =
            minimilter::MilterClient::connect(&spec.parse().unwrap(), Default::default())
                .await
                .unwrap();
        let t = minimilter::run_message(
            &mut client,
            &minimilter::MessageSpec {
                from: "sender@client.example".into(),
                rcpts: vec!["dave@example.org".into()],
                message: bytes::Bytes::from(raw.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        String::from_utf8(t.delivered.unwrap().render())
            .unwrap()
            .replace("\r\n", "\n")
    });
    let (got_headers, got_body) = without_postfix_headers(&delivered);
    let (want_headers, want_body) = without_postfix_headers(&predicted);
    assert_eq!(
        got_headers, want_headers,
        "delivered:\n{delivered}\npredicted:\n{predicted}"
    );
    assert_eq!(got_body, want_body);
    got_body
}

#[ignore = "needs postfix"]
#[test]
fn check_predicts_what_postfix_delivers() {
    let body = postfix_and_check_deliver_alike(
        "model",
        "X-A: one\r\nX-A: two\r\n\
         X-Action: add-header X-Added added value\r\n\
         X-Action: insert-header 1 X-Inserted at one\r\n\
         X-Action: change-header X-A 2 changed two\r\n\
         X-Action: change-header X-Missing 1 appended\r\n\
         X-Action: delete-header X-A 1\r\n\
         X-Action: replace-body 300\r\n",
        "Original body.\r\n",
    );
    assert!(body.starts_with("The quick brown fox"), "{body}");
}

#[ignore = "needs postfix"]
#[test]
fn check_predicts_what_postfix_delivers_for_nul_bytes_in_header_lines() {
    // Postfix cuts each header line at a NUL byte, folded lines each on
    // their own, before the milter sees it; the milter acts on the cut
    // value (it adds X-Added: one, not "one two"). Body NULs stay.
    let body = postfix_and_check_deliver_alike(
        "nul",
        "X-Nul: a\0b\r\n\tcont\r\nX-Fold: c\r\n d\0e\r\nX-Empty: \0gone\r\n\
         X-Action: add-header X-Added one\0two\r\n",
        "bo\0dy\r\n",
    );
    assert_eq!(body, "bo\0dy\n");
}
