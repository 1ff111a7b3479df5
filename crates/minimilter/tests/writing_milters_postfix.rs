//! The example milters of "Writing a milter" behind a real Postfix: the
//! macros they ask for arrive ({client_addr} and {auth_authen}, set here
//! with XCLIENT), their RCPT replies reach the SMTP client as written, and
//! their end-of-message rewrites are what Postfix delivers.
//!
//! The milter runs in this process (`Server::serve` on a loopback port):
//! how a developer tests a milter of their own behind Postfix.

// The examples are daemons (the `daemon` feature, on by default).
#![cfg(feature = "daemon")]

#[path = "../examples/body_digest_milter.rs"]
#[allow(dead_code)]
mod body_digest_milter;
#[path = "../examples/header_rewrite_milter.rs"]
#[allow(dead_code)]
mod header_rewrite_milter;
#[path = "../examples/rcpt_limit_milter.rs"]
#[allow(dead_code)]
mod rcpt_limit_milter;

use std::time::{Duration, Instant};

use minimilter::{Listener, Milter, Server, ServerConfig, SocketSpec, UnixSocketOptions};
use testkit::{Postfix, SmtpClient, SmtpService};

const WAIT: Duration = Duration::from_secs(30);

/// `milter` served on a loopback port for as long as the value lives.
struct InProcess {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    spec: String,
}

impl InProcess {
    fn start<M: Milter>(milter: M) -> InProcess {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Port 0: the system picks a free one. (Built, not parsed: the
        // parser refuses port 0, which is never right in a configuration.)
        let spec = SocketSpec::Inet {
            host: "127.0.0.1".into(),
            port: 0,
            v6: false,
        };
        let listener = rt
            .block_on(Listener::bind(&spec, &UnixSocketOptions::default()))
            .expect("bind");
        let spec = listener.local_spec().expect("bound").to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(
            Server::new(milter, ServerConfig::default()).serve(vec![listener], async move {
                let _ = rx.await;
            }),
        );
        InProcess {
            rt,
            stop: Some(tx),
            spec,
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        // Bounded: the runtime's tasks are dropped after this.
        let rt = std::mem::replace(
            &mut self.rt,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        rt.shutdown_timeout(Duration::from_secs(5));
    }
}

fn postfix_with(milter: &InProcess) -> Postfix {
    Postfix::prepare()
        .expect("postfix (run scripts/install-test-deps.sh)")
        .service(SmtpService::new("smtp").with_milters(milter.spec.clone()))
        .start()
        .expect("postfix starts")
}

fn delivered(pf: &Postfix, user: &str, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = pf.delivered(user).into_iter().find(|m| m.contains(needle)) {
            return m.replace("\r\n", "\n");
        }
        assert!(
            Instant::now() < deadline,
            "{needle} not delivered to {user}\n{}",
            pf.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[ignore = "needs postfix"]
#[test]
fn rcpt_limit_milter_behind_postfix() {
    // Postfix's test instance delivers only to example.org: to the milter
    // that domain is foreign here, so its relay rule shows.
    let mut policy = rcpt_limit_milter::example_policy();
    policy.local_domains = vec!["lists.example.org".into()];
    let milter = InProcess::start(policy);
    let pf = postfix_with(&milter);
    let port = pf.port("smtp");

    // Unauthenticated, from an address Postfix lets relay (mynetworks):
    // the milter refuses the recipient, naming {client_addr}.
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(
        c.xclient(&[("ADDR", "127.0.0.5"), ("NAME", "[UNAVAILABLE]")])
            .unwrap()
            .is_positive()
    );
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<x@client.example>").unwrap().is_positive());
    let r = c.rcpt("<dave@example.org>").unwrap();
    assert_eq!(r.code, 550, "{r:?}\n{}", pf.log());
    assert_eq!(
        r.text(),
        "5.7.1 Relaying from 127.0.0.5 needs authentication"
    );
    let _ = c.quit();

    // Authenticated as alice (XCLIENT LOGIN sets {auth_authen}): two
    // recipients per message, the third deferred.
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(
        c.xclient(&[("ADDR", "127.0.0.6"), ("LOGIN", "alice")])
            .unwrap()
            .is_positive()
    );
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<alice@example.org>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    assert!(c.rcpt("<carol@example.org>").unwrap().is_positive());
    let r = c.rcpt("<dave@example.org>").unwrap();
    assert_eq!(r.code, 452, "{r:?}\n{}", pf.log());
    assert_eq!(r.text(), "4.5.3 Too many recipients");
    let r = c
        .data("Subject: limit-ok\r\n\r\nbody\r\n".as_bytes())
        .unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    let _ = c.quit();
    delivered(&pf, "carol", "limit-ok");
}

#[ignore = "needs postfix"]
#[test]
fn header_rewrite_milter_behind_postfix() {
    let milter = InProcess::start(header_rewrite_milter::example_policy());
    let pf = postfix_with(&milter);
    let mut c = SmtpClient::connect(pf.port("smtp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(
        c.mail("<alice@host.corp.example.org>")
            .unwrap()
            .is_positive()
    );
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let msg = "From: alice@example.org\r\n\
        X-Internal-Route: a\r\n\
        Subject: rewrite-internal\r\n\
        X-Internal-Route: b\r\n\
        x-internal-ticket: 42\r\n\
        X-Other: kept\r\n\
        \r\n\
        body\r\n";
    assert_eq!(c.data(msg.as_bytes()).unwrap().code, 250);
    assert!(c.mail("<x@far.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let msg = "From: x@far.example\r\nSubject: rewrite-external\r\n\r\nbody\r\n";
    assert_eq!(c.data(msg.as_bytes()).unwrap().code, 250);
    let _ = c.quit();

    let m = delivered(&pf, "bob", "rewrite-internal");
    let headers = m.split("\n\n").next().unwrap();
    assert!(!headers.to_ascii_lowercase().contains("x-internal"), "{m}");
    assert!(headers.contains("\nSubject: rewrite-internal\n"), "{m}");
    assert!(headers.contains("\nX-Other: kept\n"), "{m}");
    assert!(
        headers.contains("\nX-Rewritten: by header_rewrite_milter (queue id "),
        "{m}"
    );
    // The envelope sender, as virtual(8) writes it.
    assert!(m.starts_with("Return-Path: <alice@example.org>\n"), "{m}");

    let m = delivered(&pf, "bob", "rewrite-external");
    assert!(
        m.contains("\nSubject: [external] rewrite-external\n"),
        "{m}"
    );
    assert!(m.starts_with("Return-Path: <x@far.example>\n"), "{m}");
}

#[ignore = "needs postfix"]
#[test]
fn body_digest_milter_behind_postfix() {
    let held_body = "please hold me\r\n";
    let blocked_body = "buy now\r\n";
    let mut policy = body_digest_milter::example_policy();
    policy.scan_limit = 1000;
    policy.held = std::sync::Arc::new([body_digest_milter::digest(held_body.as_bytes())].into());
    let blocked = body_digest_milter::digest(blocked_body.as_bytes());
    policy.blocked = std::sync::Arc::new([blocked.clone()].into());
    let milter = InProcess::start(policy);
    let pf = postfix_with(&milter);
    let mut c = SmtpClient::connect(pf.port("smtp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let mut send = |subject: &str, body: &str| {
        assert!(c.mail("<x@far.example>").unwrap().is_positive());
        assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
        c.data(format!("Subject: {subject}\r\n\r\n{body}").as_bytes())
            .unwrap()
    };
    let r = send("digest-blocked", blocked_body);
    assert_eq!(r.code, 554, "{r:?}");
    assert_eq!(
        r.text(),
        format!("5.7.1 Message content blocked ({blocked})")
    );
    assert_eq!(send("digest-held", held_body).code, 250);
    // Longer than the limit: the milter skips the rest, Postfix delivers all.
    let long = "0123456789abcdefghijklmnopqrstuvwxyz\r\n".repeat(5000);
    assert_eq!(send("digest-long", &long).code, 250);
    let _ = c.quit();

    pf.wait_for_log("milter-hold: END-OF-MESSAGE", WAIT)
        .unwrap();
    let q = pf.queue().unwrap();
    assert!(
        q.contains('!'),
        "held messages are marked ! in postqueue -p:\n{q}"
    );
    let m = delivered(&pf, "bob", "digest-long");
    let digest = body_digest_milter::digest(&long.as_bytes()[..1000]);
    assert!(
        m.contains(&format!(
            "\nX-Body-Digest: {digest} (partial, first 1000 bytes)\n"
        )),
        "{m}"
    );
    assert!(
        m.ends_with(&long.replace("\r\n", "\n")),
        "the whole body is delivered"
    );
    assert!(
        !pf.delivered("bob")
            .iter()
            .any(|m| m.contains("digest-held"))
    );
}
