//! `minimilter record` between a real Postfix and a milter, and
//! `minimilter replay` of what it recorded.
//!
//! One Postfix instance has two smtpd services: `direct` talks to the
//! policy milter (tests/support, served in-process) itself, `proxied`
//! talks to it through `minimilter record`. The same mixed batch (accepted,
//! refused at RCPT, rejected, tempfailed, modified, discarded) goes through
//! both; Postfix must answer alike. The transcripts then replay to the same
//! milter with no difference, and to a stricter one with exactly the
//! expected message changing verdict and the expected one its header.
//!
//! Needs Postfix from Debian and root (scripts/install-test-deps.sh).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::batch::{BATCH, answers, replay};
use support::{Proxy, serve_policy, wait_for_transcripts};
use testkit::{Postfix, SmtpService};

#[ignore = "needs postfix"]
#[test]
fn postfix_answers_alike_through_record_and_replay_finds_the_stricter_verdict() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let builder = Postfix::prepare().unwrap();
    let normal_sock = builder.socket_path("policy.sock");
    let strict_sock = builder.socket_path("strict.sock");
    let proxy_sock = builder.socket_path("record.sock");
    let dir = builder.path().join("transcripts");
    let nobody_sock = builder.socket_path("nobody.sock");
    let down_proxy_sock = builder.socket_path("record-down.sock");
    let pf = builder
        .user("ok")
        .user("refused")
        .service(SmtpService::new("direct").with_milters(format!("unix:{}", normal_sock.display())))
        .service(SmtpService::new("proxied").with_milters(format!("unix:{}", proxy_sock.display())))
        .service(SmtpService::new("down").with_milters(format!("unix:{}", nobody_sock.display())))
        .service(
            SmtpService::new("down-proxied")
                .with_milters(format!("unix:{}", down_proxy_sock.display())),
        )
        .start()
        .unwrap();
    rt.block_on(serve_policy(&normal_sock, false));
    rt.block_on(serve_policy(&strict_sock, true));
    let to = format!("unix:{}", normal_sock.display());
    let proxy = Proxy::start(&proxy_sock, &to, &dir, &[]);

    let direct = answers(pf.port("direct"));
    let proxied = answers(pf.port("proxied"));
    let ctx = || {
        format!(
            "--- record log ---\n{}\n--- postfix log ---\n{}",
            proxy.log_text(),
            pf.log()
        )
    };
    assert_eq!(direct, proxied, "{}", ctx());
    // The batch really is mixed (so the comparison above means something).
    let all = direct.join("\n");
    for expected in [
        "hello: MAIL 250 2.1.0 Ok | RCPT 250 2.1.5 Ok | DATA 250 2.0.0 Ok: queued as QUEUE-ID",
        "later: MAIL 451 4.7.1 sender deferred by policy",
        "partly: MAIL 250 2.1.0 Ok | RCPT 550 5.1.1 recipient refused by policy | RCPT 250 2.1.5 Ok | DATA 250",
        "[reject] spam: MAIL 250 2.1.0 Ok | RCPT 250 2.1.5 Ok | DATA 550 5.7.1 message refused by policy",
        "[strict] borderline: MAIL 250 2.1.0 Ok | RCPT 250 2.1.5 Ok | DATA 250",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
    let delivered = pf
        .wait_for_delivery("ok", 8, Duration::from_secs(30))
        .unwrap();
    let modified: Vec<&String> = delivered
        .iter()
        .filter(|m| m.contains("[modify] me"))
        .collect();
    assert_eq!(modified.len(), 2, "direct and proxied");
    assert!(modified.iter().all(|m| m.contains("X-Policy: modified")));

    // One transcript per transaction, with the verdict Postfix acted on.
    let files = wait_for_transcripts(&dir, BATCH.len());
    let mut verdicts: Vec<String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let end: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert!(end.get("notes").is_none(), "{}: {end}", f.display());
            end["verdict"].as_str().unwrap().to_owned()
        })
        .collect();
    verdicts.sort();
    assert_eq!(
        verdicts,
        [
            "accept", "accept", "accept", "accept", "discard", "reject", "tempfail"
        ],
        "{}",
        ctx()
    );

    // With the milter down, Postfix answers the same with the proxy in front
    // of it as without (milter_default_action, tempfail here).
    let down_proxy = Proxy::start(
        &down_proxy_sock,
        &format!("unix:{}", nobody_sock.display()),
        &dir.with_file_name("transcripts-down"),
        &[],
    );
    let down = answers(pf.port("down"));
    let down_proxied = answers(pf.port("down-proxied"));
    assert_eq!(down, down_proxied, "{}", down_proxy.log_text());
    assert!(
        down[0].contains(" 4"),
        "milter_default_action = tempfail: {down:?}"
    );

    // Replay against the same milter: no difference.
    let d = dir.to_str().unwrap();
    let (code, out) = replay(&[d, &to]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("7 transcripts replayed, 7 the same, 0 different"),
        "{out}"
    );

    // Against the strict one: exactly the [strict] message turns to reject,
    // and the [modify] one gets another header.
    let (code, out) = replay(&[
        d,
        &format!("unix:{}", strict_sock.display()),
        "--conns",
        "4",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("7 transcripts replayed, 5 the same, 2 different"),
        "{out}"
    );
    assert!(out.contains("accept → reject: 1 message"), "{out}");
    assert!(
        out.contains("accept (same verdict, other answers or modifications): 1 message"),
        "the [modify] message's header changed: {out}"
    );
    let strict_file = files
        .iter()
        .find(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("[strict] borderline")
        })
        .unwrap();
    assert!(
        out.contains(&format!("{}: accept → reject", strict_file.display())),
        "{out}"
    );
    drop(proxy);
    drop(pf);
}
