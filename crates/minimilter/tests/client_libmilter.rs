//! Our MTA-side client against Sendmail's libmilter (the reference), and the
//! same scenarios against our own server: both must give the same
//! transcript. This is the proof that the client speaks the protocol as the
//! reference does, and that our server behaves like libmilter.
//!
//! Needs `libmilter-dev` and a C compiler (scripts/install-test-deps.sh).

mod interop;

use bytes::Bytes;
use interop::ChildMilter;
use milter_proto::{Answer, Dispatch, Response, Step};
use minimilter::transaction::{Transcript, run_next_message};
use minimilter::{ClientConfig, MessageSpec, MilterClient, SocketSpec, run_message};

fn message(actions: &[&str], body: &str) -> Bytes {
    let mut m = String::from("From: a@example.com\r\nTo: b@example.org\r\nSubject: interop\r\n");
    for a in actions {
        m.push_str(&format!("X-Action: {a}\r\n"));
    }
    m.push_str("\r\n");
    m.push_str(body);
    Bytes::from(m)
}

/// The scenarios: actions in the message, and a body.
fn scenarios() -> Vec<(&'static str, Vec<&'static str>, String)> {
    let body = "Hello.\r\n".to_owned();
    vec![
        ("nothing", vec![], body.clone()),
        (
            "headers",
            vec![
                "add-header X-Added one",
                "insert-header 0 X-Top first",
                "change-header Subject 1 changed",
                "delete-header To 1",
            ],
            body.clone(),
        ),
        (
            "envelope",
            vec![
                "add-rcpt <d@example.org>",
                "add-rcpt-par <e@example.org> NOTIFY=NEVER",
                "del-rcpt <c@example.org>",
                "chgfrom <bounce@example.com> RET=HDRS",
            ],
            body.clone(),
        ),
        ("big-body", vec!["replace-body 150000"], body.clone()),
        ("skip", vec!["skip-body"], "x".repeat(200_000)),
        ("progress", vec!["slow 400"], body.clone()),
        ("quarantine", vec!["quarantine held"], body.clone()),
        (
            "reject",
            vec!["reject 550 5.7.1 no|really not"],
            body.clone(),
        ),
        ("tempfail", vec!["tempfail 451 4.7.1 later"], body.clone()),
        ("discard", vec!["discard"], body.clone()),
        ("accept", vec!["accept", "add-header X-A yes"], body),
    ]
}

/// What must agree between implementations: the verdict, the modifications
/// in order, the delivered message, and where body chunks stopped.
fn essence(t: &Transcript) -> String {
    let mods: Vec<String> = t
        .modifications
        .iter()
        .map(|m| match m {
            Response::ReplaceBody(b) => format!("ReplaceBody({} bytes)", b.len()),
            other => format!("{other:?}"),
        })
        .collect();
    let body_chunks = t
        .steps
        .iter()
        .filter(|s| s.outcome.step == Step::Body && s.outcome.dispatch != Dispatch::NotSent)
        .count();
    let skipped = t
        .steps
        .iter()
        .any(|s| s.outcome.answer == Some(Answer::Skip));
    let delivered = t
        .delivered
        .as_ref()
        .map(|m| {
            format!(
                "from {} to {:?}\n{}",
                m.sender,
                m.recipients,
                String::from_utf8_lossy(&m.render())
            )
        })
        .unwrap_or_default();
    format!(
        "outcome {:?}\nquarantine {:?}\nmods {mods:#?}\nbody chunks {body_chunks} skipped {skipped}\n{delivered}",
        t.outcome, t.quarantine
    )
}

async fn run_all(milter: &ChildMilter) -> Vec<(String, String, u32)> {
    let spec: SocketSpec = milter.socket_spec().parse().unwrap();
    let mut out = Vec::new();
    // One connection per scenario (one SMTP session each), and then all of
    // them again on a single connection (several messages per session).
    for (name, actions, body) in scenarios() {
        let mut c = MilterClient::connect(&spec, ClientConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", milter.log_text()));
        let s = MessageSpec {
            rcpts: vec!["b@example.org".into(), "c@example.org".into()],
            message: message(&actions, &body),
            ..MessageSpec::default()
        };
        let t = run_message(&mut c, &s)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", milter.log_text()));
        let progress: u32 = t.steps.iter().map(|s| s.outcome.progress).sum();
        out.push((name.to_owned(), essence(&t), progress));
        c.quit().await.unwrap();
    }
    let mut c = MilterClient::connect(&spec, ClientConfig::default())
        .await
        .unwrap();
    for (i, (name, actions, body)) in scenarios().into_iter().enumerate() {
        let s = MessageSpec {
            rcpts: vec!["b@example.org".into(), "c@example.org".into()],
            message: message(&actions, &body),
            ..MessageSpec::default()
        };
        let t = if i == 0 {
            run_message(&mut c, &s).await
        } else {
            run_next_message(&mut c, &s).await
        }
        .unwrap_or_else(|e| panic!("{name} (reused connection): {e}\n{}", milter.log_text()));
        out.push((format!("{name} (reused)"), essence(&t), 0));
    }
    c.quit().await.unwrap();
    out
}

#[ignore = "needs libmilter"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_server_agree_with_libmilter() {
    let reference = ChildMilter::libmilter_action_milter(&["-P", "100"]);
    let reference_nr = ChildMilter::libmilter_action_milter(&["-n", "-P", "100"]);
    let ours = ChildMilter::rust_action_milter(&["--progress-ms", "100"]);

    let want = run_all(&reference).await;
    // The verdicts themselves are what the scenario asked for.
    let outcome = |name: &str| -> String {
        want.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, e, _)| e.lines().next().unwrap().to_owned())
            .unwrap()
    };
    assert!(outcome("nothing").contains("Accepted"));
    assert!(outcome("reject").contains("Rejected"));
    assert!(outcome("reject").contains("550-5.7.1 no\\n550 5.7.1 really not"));
    assert!(outcome("tempfail").contains("Tempfailed"));
    assert!(outcome("discard").contains("Discarded"));
    let progress = want.iter().find(|(n, _, _)| n == "progress").unwrap().2;
    assert!(progress >= 2, "libmilter sent {progress} progress packets");
    let skip = &want.iter().find(|(n, _, _)| n == "skip").unwrap().1;
    assert!(skip.contains("body chunks 1 skipped true"), "{skip}");
    let big = &want.iter().find(|(n, _, _)| n == "big-body").unwrap().1;
    assert!(big.contains("ReplaceBody(65535 bytes)"), "{big}");

    for (label, milter) in [("libmilter -n", &reference_nr), ("ours", &ours)] {
        let got = run_all(milter).await;
        assert_eq!(got.len(), want.len());
        for ((name, w, wp), (_, g, gp)) in want.iter().zip(&got) {
            assert_eq!(g, w, "{label}: scenario {name} differs from libmilter");
            if name == "progress" {
                assert!(*gp >= 2 && *wp >= 2, "{label}: progress {gp} vs {wp}");
            }
        }
    }
}
