//! The Sendmail column of the interop matrix: every end-of-message action of
//! the interop milter (`examples/action_milter`) through a real Sendmail
//! 8.17 (Debian's, unpacked by scripts/install-test-deps.sh and run by
//! `testkit::Sendmail`), asserted on what Sendmail answers, logs and queues,
//! and on what arrives in the Maildir of a milter-less testkit Postfix that
//! Sendmail relays to as its smart host.
//!
//! Where Sendmail behaves differently from Postfix (see
//! crates/minimilter/tests/postfix_interop.rs), the test asserts Sendmail's
//! actual behaviour, with its log line as evidence.
//!
//! Most tests share one Sendmail + milter + Postfix stack (kept alive while
//! any test uses it); the progress tests need different timeouts and get
//! their own.

mod interop;

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use interop::ChildMilter;
use testkit::{Postfix, Reply, Sendmail, SmtpClient, SmtpService};

const WAIT: Duration = Duration::from_secs(20);

/// Sendmail in front of the interop milter, relaying to a plain Postfix.
/// Fields drop in order: Sendmail first, then the milter, then Postfix.
struct Stack {
    sm: Sendmail,
    milter: ChildMilter,
    pf: Postfix,
}

impl Stack {
    fn start(milter_args: &[&str], timeouts: &str) -> Stack {
        let milter = ChildMilter::rust_action_milter(milter_args);
        let pf = Postfix::prepare()
            .unwrap()
            .service(SmtpService::new("relay"))
            .start()
            .unwrap();
        let sm = Sendmail::prepare()
            .unwrap()
            .milter_with(milter.socket_spec(), "T", timeouts)
            .smart_host(pf.port("relay"))
            .start()
            .unwrap();
        Stack { sm, milter, pf }
    }

    /// Both logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- sendmail log ---\n{}\n--- milter log ---\n{}\n--- postfix log ---\n{}",
            self.sm.log(),
            self.milter.log_text(),
            self.pf.log()
        )
    }

    /// Sends a message asking for `actions` to `rcpts` through Sendmail;
    /// returns the reply after DATA and the unique subject (also the local
    /// part of the Message-ID).
    fn send(
        &self,
        rcpts: &[&str],
        actions: &[&str],
        extra_headers: &str,
        body: &str,
    ) -> (Reply, String) {
        let subject = unique("sm");
        let mut msg = format!(
            "From: sender@client.example\r\nTo: {}\r\nSubject: {subject}\r\n\
             Message-ID: <{subject}@client.example>\r\nX-A: one\r\nX-A: two\r\n{extra_headers}",
            rcpts.join(", ")
        );
        for a in actions {
            msg.push_str(&format!("X-Action: {a}\r\n"));
        }
        msg.push_str("\r\n");
        msg.push_str(body);
        let mut c = SmtpClient::connect(self.sm.port()).unwrap();
        c.set_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            c.greeting().code,
            220,
            "{:?}\n{}",
            c.greeting(),
            self.logs()
        );
        assert!(c.ehlo("client.example").unwrap().is_positive());
        let r = c.mail("<sender@client.example>").unwrap();
        assert!(r.is_positive(), "{r:?}\n{}", self.logs());
        for rcpt in rcpts {
            let r = c.rcpt(&format!("<{rcpt}>")).unwrap();
            assert!(r.is_positive(), "{r:?}\n{}", self.logs());
        }
        let reply = c.data(msg.as_bytes()).unwrap();
        let _ = c.quit();
        (reply, subject)
    }

    /// The delivered copy (with `subject`) in `user`'s mailbox, CRLF as LF.
    fn delivered(&self, user: &str, subject: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(m) = self
                .pf
                .delivered(user)
                .into_iter()
                .find(|m| m.contains(subject))
            {
                return m.replace("\r\n", "\n");
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

    /// Sendmail's queue id of the message whose Message-ID is `<subject@...>`.
    fn queue_id(&self, subject: &str) -> String {
        let line = self
            .sm
            .wait_for_log(&format!("msgid=<{subject}@"), WAIT)
            .unwrap();
        qid(&line).to_owned()
    }

    /// Waits for a log line of queue id `qid` containing `needle`.
    fn wait_for_log(&self, qid: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self
                .sm
                .log()
                .lines()
                .find(|l| l.contains(&format!(" {qid}: ")) && l.contains(needle))
            {
                return l.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no Sendmail log line for {qid} contains {needle:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// All Sendmail log lines of queue id `qid`.
    fn log_of(&self, qid: &str) -> Vec<String> {
        let key = format!(" {qid}: ");
        self.sm
            .log()
            .lines()
            .filter(|l| l.contains(&key))
            .map(str::to_owned)
            .collect()
    }
}

/// The stack shared by most tests: started by the first test that needs it,
/// stopped when the last one still holding it finishes.
fn shared() -> Arc<Stack> {
    static SHARED: Mutex<Weak<Stack>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(stack) = slot.upgrade() {
        return stack;
    }
    let stack = Arc::new(Stack::start(&[], testkit::DEFAULT_MILTER_TIMEOUTS));
    *slot = Arc::downgrade(&stack);
    stack
}

fn unique(tag: &str) -> String {
    testkit::unique_id(tag)
}

/// The queue id in a Sendmail log line `... sendmail[PID]: QID: ...`.
fn qid(line: &str) -> &str {
    line.split("]: ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no queue id in {line:?}"))
}

fn headers(msg: &str) -> Vec<&str> {
    msg.split("\n\n").next().unwrap().lines().collect()
}

fn body(msg: &str) -> &str {
    msg.split_once("\n\n").map_or("", |(_, b)| b)
}

fn body_bytes_seen(msg: &str) -> usize {
    headers(msg)
        .iter()
        .find_map(|l| l.strip_prefix("X-Action-Body-Bytes: "))
        .unwrap_or_else(|| panic!("no X-Action-Body-Bytes in\n{msg}"))
        .parse()
        .unwrap()
}

#[ignore = "needs sendmail"]
#[test]
fn add_header() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["add-header X-Added added value"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    let h = headers(&m);
    assert!(h.contains(&"X-Added: added value"), "{m}");
    // Appended after the client's headers.
    let added = h.iter().position(|l| *l == "X-Added: added value").unwrap();
    let subject = h.iter().position(|l| l.starts_with("Subject: ")).unwrap();
    assert!(added > subject, "{m}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) add: header: X-Added: added value");
}

#[ignore = "needs sendmail"]
#[test]
fn change_header() {
    let s = shared();
    // The 2nd X-A (per name, 1-based, counting the client's headers only).
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["change-header X-A 2 changed"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    let h = headers(&m);
    assert!(
        h.contains(&"X-A: one") && h.contains(&"X-A: changed") && !h.contains(&"X-A: two"),
        "{m}"
    );
    let qid = s.queue_id(&subj);
    let line = s.wait_for_log(&qid, "Milter (milter0) change: header X-A: from");
    assert!(line.ends_with("two to changed"), "{line}");

    // Index 0 counts as 1; a header that is not there is added.
    let (_, subj) = s.send(
        &["bob@example.org"],
        &[
            "change-header X-A 0 zero",
            "change-header X-Missing 1 now here",
        ],
        "",
        "b\r\n",
    );
    let m = s.delivered("bob", &subj);
    let h = headers(&m);
    assert!(
        h.contains(&"X-A: zero") && h.contains(&"X-A: two") && h.contains(&"X-Missing: now here"),
        "{m}"
    );

    // Sendmail counts only user headers: its own Received: (which the
    // milter never sees) is not header 1; the client's Received: is.
    let (_, subj) = s.send(
        &["bob@example.org"],
        &["change-header Received 1 from changed.example"],
        "Received: from upstream.example by client.example; Thu, 1 Jan 2026 00:00:00 +0000\r\n",
        "b\r\n",
    );
    let m = s.delivered("bob", &subj);
    let h = headers(&m);
    assert!(h.contains(&"Received: from changed.example"), "{m}");
    assert!(
        h.iter()
            .any(|l| l.starts_with("Received: from client.example (")),
        "Sendmail's own Received: is untouched:\n{m}"
    );
}

#[ignore = "needs sendmail"]
#[test]
fn insert_header() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &[
            "insert-header 0 X-Top first",
            "insert-header 2 X-Third third",
        ],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    let h = headers(&m);
    let pos = |p: &str| {
        h.iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} in\n{m}"))
    };
    let top = pos("X-Top: first");
    let third = pos("X-Third: third");
    let own_received = pos("Received: from client.example (");
    // Index 0 is the head of Sendmail's internal list, where its own
    // Received: lives: the new header goes above it, as with Postfix.
    assert!(top < own_received, "{m}");
    // Differs from Postfix: index 2 counts Sendmail's internal list,
    // including headers the milter never saw (its own Received:, and X-Top
    // just inserted), so X-Third lands right below Sendmail's Received: and
    // above every header of the client (the milter saw From: as header 1).
    let from = pos("From: ");
    let after_received = own_received
        + 1
        + h[own_received + 1..]
            .iter()
            .take_while(|l| l.starts_with([' ', '\t']))
            .count();
    assert_eq!(third, after_received, "{m}");
    assert!(third < from, "{m}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) insert (0): header: X-Top: first");
}

#[ignore = "needs sendmail"]
#[test]
fn delete_header() {
    let s = shared();
    let (r, subj) = s.send(&["bob@example.org"], &["delete-header X-A 1"], "", "b\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    assert!(
        !headers(&m).contains(&"X-A: one") && headers(&m).contains(&"X-A: two"),
        "{m}"
    );
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) delete: header X-A: one");

    // Differs from Postfix: Sendmail only marks a header deleted, so indexes
    // do not shift. Deleting X-D 1 then X-D 2 removes a and b (Postfix: a and c).
    let (_, subj) = s.send(
        &["bob@example.org"],
        &["delete-header X-D 1", "delete-header X-D 2"],
        "X-D: a\r\nX-D: b\r\nX-D: c\r\n",
        "b\r\n",
    );
    let m = s.delivered("bob", &subj);
    let h = headers(&m);
    assert!(
        !h.contains(&"X-D: a") && !h.contains(&"X-D: b") && h.contains(&"X-D: c"),
        "{m}"
    );
}

#[ignore = "needs sendmail"]
#[test]
fn add_recipient() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["add-rcpt <alice@example.org>"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.delivered("alice", &subj);
    s.delivered("bob", &subj);
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) add: rcpt: <alice@example.org>");
}

#[ignore = "needs sendmail"]
#[test]
fn add_recipient_with_esmtp_args() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["add-rcpt-par <carol@example.org> NOTIFY=NEVER"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.delivered("carol", &subj);
    s.delivered("bob", &subj);
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) add: rcpt: <carol@example.org>");
}

#[ignore = "needs sendmail"]
#[test]
fn delete_recipient() {
    let s = shared();
    let (r, subj) = s.send(
        &["carol@example.org", "dave@example.org"],
        &["del-rcpt <carol@example.org>"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.delivered("dave", &subj);
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) delete: rcpt <carol@example.org>");
    // Sendmail relays all recipients of a message in one SMTP transaction:
    // the delivery line lists who went out.
    let sent = s.wait_for_log(&qid, "stat=Sent");
    assert!(
        sent.contains("to=<dave@example.org>") && !sent.contains("carol"),
        "{sent}"
    );
    assert!(
        !s.is_delivered("carol", &subj),
        "deleted recipient got the message"
    );
}

#[ignore = "needs sendmail"]
#[test]
fn change_sender() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["chgfrom <bounce@example.com> RET=HDRS"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    assert!(m.starts_with("Return-Path: <bounce@example.com>\n"), "{m}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) chgfrom: <bounce@example.com>");
}

#[ignore = "needs sendmail"]
#[test]
fn replace_body_large() {
    let s = shared();
    // 150 KB: the milter sends it in three chunks (64 KiB each at most).
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["replace-body 150000"],
        "",
        "old\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    let b = body(&m);
    let line = "The quick brown fox jumps over the lazy dog. 0123456789\n";
    assert!(
        b.starts_with(line) && !b.contains("old"),
        "{}",
        &b[..200.min(b.len())]
    );
    assert_eq!(b.replace('\n', "\r\n").trim_end().len(), 150_000);
    assert_eq!(body_bytes_seen(&m), 5, "{m}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter (milter0) message: body replaced");
}

#[ignore = "needs sendmail"]
#[test]
fn quarantine() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["quarantine needs review"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "quarantine=needs review");
    // The control file is renamed qf -> hf and carries the reason in a q line.
    let held =
        s.sm.queue_files()
            .into_iter()
            .find(|(name, _)| name == &format!("hf{qid}"))
            .unwrap_or_else(|| panic!("no hf{qid} in {:?}\n{}", s.sm.queue_files(), s.logs()));
    assert!(held.1.lines().any(|l| l == "qneeds review"), "{}", held.1);
    // Not delivered: a later message is, this one is not.
    let (_, later) = s.send(&["bob@example.org"], &[], "", "b\r\n");
    s.delivered("bob", &later);
    assert!(
        !s.is_delivered("bob", &subj),
        "quarantined message delivered"
    );
    assert!(
        !s.log_of(&qid).iter().any(|l| l.contains("stat=Sent")),
        "{:?}",
        s.log_of(&qid)
    );
}

#[ignore = "needs sendmail"]
#[test]
fn reject_with_multiline_reply() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["reject 550 5.7.1 first line|second line"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(r.lines, ["5.7.1 first line", "5.7.1 second line"], "{r:?}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter: data, reject=550-5.7.1 first line");
    assert!(s.sm.queue_files().iter().all(|(n, _)| !n.ends_with(&qid)));
}

#[ignore = "needs sendmail"]
#[test]
fn tempfail_with_custom_reply() {
    let s = shared();
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["tempfail 451 4.7.1 try|later"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 451, "{r:?}");
    assert_eq!(r.lines, ["4.7.1 try", "4.7.1 later"], "{r:?}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter: data, reject=451-4.7.1 try");
}

#[ignore = "needs sendmail"]
#[test]
fn discard() {
    let s = shared();
    let (r, subj) = s.send(&["bob@example.org"], &["discard"], "", "b\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(&qid, "Milter: data, discard");
    let (_, later) = s.send(&["bob@example.org"], &[], "", "b\r\n");
    s.delivered("bob", &later);
    assert!(!s.is_delivered("bob", &subj), "discarded message delivered");
    assert!(s.sm.queue_files().iter().all(|(n, _)| !n.ends_with(&qid)));
}

#[ignore = "needs sendmail"]
#[test]
fn skip_body() {
    let s = shared();
    let line = "x".repeat(70) + "\r\n";
    let total = line.len() * 3000;
    let (r, subj) = s.send(&["bob@example.org"], &["skip-body"], "", &line.repeat(3000));
    assert_eq!(r.code, 250, "{r:?}");
    let m = s.delivered("bob", &subj);
    // The whole body is delivered; the milter saw only the first chunk.
    assert_eq!(body(&m).len(), total - 3000, "LF line ends in the Maildir");
    let seen = body_bytes_seen(&m);
    assert_eq!(seen, 65535, "Sendmail's chunk size is 64 KiB - 1");
}

/// Milter timeouts for the progress tests: R (each read of a reply) is 2 s.
///
/// Not 1 s: Sendmail measures R in whole seconds of wall-clock time
/// (`milter_read` compares `curtime()` before and after reading a packet),
/// so with R:1s any read that spans a second boundary times out, even when
/// a progress packet arrives after 250 ms; see
/// `one_second_read_timeout_defeats_progress`.
const PROGRESS_TIMEOUTS: &str = "C:5s;S:10s;R:2s;E:30s";

#[ignore = "needs sendmail"]
#[test]
fn progress_keeps_sendmail_waiting() {
    // The milter takes 2 s at end of message but sends progress every
    // 250 ms; Sendmail waits (R:2s per read, E:30s in total).
    let s = Stack::start(&["--progress-ms", "250"], PROGRESS_TIMEOUTS);
    let (r, subj) = s.send(
        &["bob@example.org"],
        &["slow 2000", "add-header X-Slow yes"],
        "",
        "b\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}\n{}", s.logs());
    let m = s.delivered("bob", &subj);
    assert!(headers(&m).contains(&"X-Slow: yes"), "{m}");
}

#[ignore = "needs sendmail"]
#[test]
fn without_progress_sendmail_times_out() {
    // The control for the test above: no progress within R. With F=T
    // Sendmail tempfails the message with its own reply.
    let s = Stack::start(&["--progress-ms", "60000"], PROGRESS_TIMEOUTS);
    let (r, subj) = s.send(&["bob@example.org"], &["slow 3000"], "", "b\r\n");
    assert_eq!(r.code, 451, "{r:?}\n{}", s.logs());
    assert_eq!(r.lines, ["4.3.2 Please try again later"], "{r:?}");
    let qid = s.queue_id(&subj);
    s.wait_for_log(
        &qid,
        "Milter (milter0): timeout before data read, where=eom",
    );
    s.wait_for_log(
        &qid,
        "Milter: data, reject=451 4.3.2 Please try again later",
    );
}

#[ignore = "needs sendmail"]
#[test]
fn one_second_read_timeout_defeats_progress() {
    // Differs from Postfix (whose milter_content_timeout of 1 s is kept
    // alive by progress every 300 ms): Sendmail's R:1s gives up at the first
    // second boundary although progress arrives every 250 ms.
    let s = Stack::start(&["--progress-ms", "250"], "C:5s;S:10s;R:1s;E:30s");
    let (r, subj) = s.send(&["bob@example.org"], &["slow 2000"], "", "b\r\n");
    assert_eq!(r.code, 451, "{r:?}\n{}", s.logs());
    let qid = s.queue_id(&subj);
    // Sendmail counts the timeout in whole seconds, so under load a second
    // boundary may already pass while it waits for a header's answer (a few
    // milliseconds): then it gives up at `where=header`, before the slow end
    // of message. Either way the 1 s limit is what ends the conversation.
    let line = s.wait_for_log(&qid, "Milter read(milter0): timeout before data read");
    assert!(
        line.ends_with("where=eom") || line.ends_with("where=header"),
        "{line}\n{}",
        s.logs()
    );
}
