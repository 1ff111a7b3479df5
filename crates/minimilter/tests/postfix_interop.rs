//! The Postfix column of docs/interop.md: every end-of-message action of the
//! interop milter through a real Postfix, asserted on what Postfix answers,
//! delivers, holds and logs.

mod interop;

use std::time::Duration;

use interop::ChildMilter;
use testkit::{Postfix, Reply, SmtpClient, SmtpService};

const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    pf: Postfix,
    milter: ChildMilter,
}

/// A Postfix whose smtpd uses the interop milter on a unix socket.
fn setup(milter_args: &[&str], main_cf: &[(&str, &str)]) -> Setup {
    let milter = ChildMilter::rust_action_milter(milter_args);
    let mut builder = Postfix::prepare()
        .unwrap()
        .service(SmtpService::new("smtp").with_milters(milter.socket_spec()));
    for (k, v) in main_cf {
        builder = builder.main_cf(*k, *v);
    }
    Setup {
        pf: builder.start().unwrap(),
        milter,
    }
}

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{n}", std::process::id())
}

/// Sends a message asking for `actions` to `rcpts`; returns the reply after
/// DATA and the unique subject.
fn send(s: &Setup, rcpts: &[&str], actions: &[&str], body: &str) -> (Reply, String) {
    let subject = unique("interop");
    let mut msg = format!(
        "From: sender@client.example\r\nTo: {}\r\nSubject: {subject}\r\nX-A: one\r\nX-A: two\r\n",
        rcpts.join(", ")
    );
    for a in actions {
        msg.push_str(&format!("X-Action: {a}\r\n"));
    }
    msg.push_str("\r\n");
    msg.push_str(body);
    let mut c = SmtpClient::connect(s.pf.port("smtp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<sender@client.example>").unwrap().is_positive());
    for r in rcpts {
        assert!(c.rcpt(&format!("<{r}>")).unwrap().is_positive());
    }
    let reply = c.data(msg.as_bytes()).unwrap();
    let _ = c.quit();
    (reply, subject)
}

/// The delivered copy (with `subject`) in `user`'s mailbox, CRLF as LF.
fn delivered(s: &Setup, user: &str, subject: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(m) =
            s.pf.delivered(user)
                .into_iter()
                .find(|m| m.contains(subject))
        {
            return m.replace("\r\n", "\n");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{subject} not delivered to {user}\n{}\n{}",
            s.pf.log(),
            s.milter.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn headers(msg: &str) -> Vec<&str> {
    msg.split("\n\n").next().unwrap().lines().collect()
}

#[ignore = "needs postfix"]
#[test]
fn header_actions() {
    let s = setup(&[], &[]);
    // add header
    let (r, subj) = send(
        &s,
        &["bob@example.org"],
        &["add-header X-Added added value"],
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = delivered(&s, "bob", &subj);
    assert!(headers(&m).contains(&"X-Added: added value"), "{m}");
    // change header: the 2nd X-A (per name, 1-based)
    let (_, subj) = send(
        &s,
        &["bob@example.org"],
        &["change-header X-A 2 changed"],
        "b\r\n",
    );
    let m = delivered(&s, "bob", &subj);
    let h = headers(&m);
    assert!(
        h.contains(&"X-A: one") && h.contains(&"X-A: changed") && !h.contains(&"X-A: two"),
        "{m}"
    );
    // index 0 counts as 1
    let (_, subj) = send(
        &s,
        &["bob@example.org"],
        &["change-header X-A 0 zero"],
        "b\r\n",
    );
    let h = delivered(&s, "bob", &subj);
    assert!(
        headers(&h).contains(&"X-A: zero") && headers(&h).contains(&"X-A: two"),
        "{h}"
    );
    // insert header at 0: above Postfix's own Received
    let (_, subj) = send(
        &s,
        &["bob@example.org"],
        &["insert-header 0 X-Top first"],
        "b\r\n",
    );
    let m = delivered(&s, "bob", &subj);
    let h = headers(&m);
    let top = h.iter().position(|l| *l == "X-Top: first").unwrap();
    let received = h
        .iter()
        .position(|l| l.starts_with("Received: from client.example"))
        .unwrap();
    assert!(top < received, "{m}");
    // delete header
    let (_, subj) = send(&s, &["bob@example.org"], &["delete-header X-A 1"], "b\r\n");
    let m = delivered(&s, "bob", &subj);
    assert!(
        !headers(&m).contains(&"X-A: one") && headers(&m).contains(&"X-A: two"),
        "{m}"
    );
}

#[ignore = "needs postfix"]
#[test]
fn envelope_actions() {
    let s = setup(&[], &[]);
    // add recipient: alice gets a copy she was not sent
    let (r, subj) = send(
        &s,
        &["bob@example.org"],
        &["add-rcpt <alice@example.org>"],
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    delivered(&s, "alice", &subj);
    delivered(&s, "bob", &subj);
    // add recipient with ESMTP args (Postfix keeps NOTIFY)
    let (_, subj) = send(
        &s,
        &["bob@example.org"],
        &["add-rcpt-par <carol@example.org> NOTIFY=NEVER"],
        "b\r\n",
    );
    delivered(&s, "carol", &subj);
    // delete recipient: carol is dropped, dave still gets it
    let (_, subj) = send(
        &s,
        &["carol@example.org", "dave@example.org"],
        &["del-rcpt <carol@example.org>"],
        "b\r\n",
    );
    delivered(&s, "dave", &subj);
    s.pf.wait_for_log("to=<dave@example.org>", WAIT).unwrap();
    assert!(
        !s.pf.delivered("carol").iter().any(|m| m.contains(&subj)),
        "deleted recipient got the message"
    );
    // change sender: visible as Return-Path
    let (_, subj) = send(
        &s,
        &["bob@example.org"],
        &["chgfrom <bounce@example.com> RET=HDRS"],
        "b\r\n",
    );
    let m = delivered(&s, "bob", &subj);
    assert!(m.starts_with("Return-Path: <bounce@example.com>\n"), "{m}");
}

#[ignore = "needs postfix"]
#[test]
fn body_actions() {
    let s = setup(&[], &[]);
    // replace body, large: 150 KB in three chunks
    let (r, subj) = send(
        &s,
        &["bob@example.org"],
        &["replace-body 150000"],
        "old\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = delivered(&s, "bob", &subj);
    let body = m.split_once("\n\n").unwrap().1;
    let line = "The quick brown fox jumps over the lazy dog. 0123456789\n";
    assert!(
        body.starts_with(line) && !body.contains("old"),
        "{}",
        &body[..200]
    );
    assert_eq!(body.replace('\n', "\r\n").trim_end().len(), 150_000);
    // skip: the milter stops reading after the first chunk
    let big = "x".repeat(70) + "\r\n";
    let (r, subj) = send(&s, &["bob@example.org"], &["skip-body"], &big.repeat(3000));
    assert_eq!(r.code, 250, "{r:?}");
    let m = delivered(&s, "bob", &subj);
    let seen: usize = headers(&m)
        .iter()
        .find_map(|l| l.strip_prefix("X-Action-Body-Bytes: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        seen < 216_000 && seen > 0,
        "body bytes seen before skip: {seen}"
    );
}

#[ignore = "needs postfix"]
#[test]
fn verdicts_and_quarantine() {
    let s = setup(&[], &[]);
    // reject with a custom multi-line reply
    let (r, _) = send(
        &s,
        &["bob@example.org"],
        &["reject 550 5.7.1 first line|second line"],
        "b\r\n",
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(r.lines, ["5.7.1 first line", "5.7.1 second line"], "{r:?}");
    // tempfail with a custom multi-line reply
    let (r, _) = send(
        &s,
        &["bob@example.org"],
        &["tempfail 451 4.7.1 try|later"],
        "b\r\n",
    );
    assert_eq!(r.code, 451, "{r:?}");
    assert_eq!(r.lines, ["4.7.1 try", "4.7.1 later"], "{r:?}");
    // discard: accepted, never delivered
    let (r, subj) = send(&s, &["bob@example.org"], &["discard"], "b\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    s.pf.wait_for_log("milter-discard", WAIT).unwrap();
    // quarantine: accepted and held
    let (r, held) = send(
        &s,
        &["bob@example.org"],
        &["quarantine needs review"],
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.pf.wait_for_log("milter-hold: END-OF-MESSAGE", WAIT)
        .unwrap();
    let q = s.pf.queue().unwrap();
    assert!(
        q.contains('!'),
        "held messages are marked ! in postqueue -p:\n{q}"
    );
    // Nothing of either arrived; a later normal message does.
    let (_, ok) = send(&s, &["bob@example.org"], &[], "b\r\n");
    delivered(&s, "bob", &ok);
    let all = s.pf.delivered("bob");
    assert!(!all.iter().any(|m| m.contains(&subj) || m.contains(&held)));
}

#[ignore = "needs postfix"]
#[test]
fn progress_keeps_postfix_waiting() {
    // Postfix gives up after 1 s without a reply at end of message; the
    // milter takes 2.5 s but sends progress every 300 ms.
    let s = setup(
        &["--progress-ms", "300"],
        &[("milter_content_timeout", "1s")],
    );
    let (r, subj) = send(
        &s,
        &["bob@example.org"],
        &["slow 2500", "add-header X-Slow yes"],
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", s.pf.log());
    let m = delivered(&s, "bob", &subj);
    assert!(headers(&m).contains(&"X-Slow: yes"), "{m}");
}

#[ignore = "needs postfix"]
#[test]
fn without_progress_postfix_times_out() {
    // The control for the test above: same delay, no progress in time.
    let s = setup(
        &["--progress-ms", "60000"],
        &[("milter_content_timeout", "1s")],
    );
    let (r, _) = send(&s, &["bob@example.org"], &["slow 2500"], "b\r\n");
    assert!((400..500).contains(&r.code), "{r:?}");
    s.pf.wait_for_log("reply packet header: Connection timed out", WAIT)
        .unwrap();
}
