//! `minimilter record` between a real Sendmail and a milter, and
//! `minimilter replay` of what it recorded: the Postfix test
//! (record_postfix.rs) again with Sendmail 8.17, which offers other
//! options (packet sizes among them) and sends other macros.
//!
//! Two Sendmail instances, one with the policy milter (tests/support,
//! served in-process) as its milter, one with `minimilter record` in front
//! of the same milter, get the same mixed batch; their SMTP answers must be
//! identical (queue ids aside). The transcripts replay to the same milter
//! with no difference, and to a stricter one with exactly the expected
//! message changing verdict and the expected one its header.
//!
//! Needs Sendmail unpacked by scripts/install-test-deps.sh, and root.

mod support;

use serde_json::Value;
use support::batch::{BATCH, answers, replay};
use support::{Proxy, serve_policy, wait_for_transcripts};
use testkit::Sendmail;

#[ignore = "needs sendmail"]
#[test]
fn sendmail_answers_alike_through_record_and_replay_finds_the_stricter_verdict() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let direct = Sendmail::prepare().unwrap();
    // Sendmail wants milter sockets in a directory only root can write.
    let base = direct.path().to_owned();
    let (normal_sock, strict_sock) = (base.join("policy.sock"), base.join("strict.sock"));
    let proxy_sock = base.join("record.sock");
    let dir = base.join("transcripts");
    rt.block_on(serve_policy(&normal_sock, false));
    rt.block_on(serve_policy(&strict_sock, true));
    let to = format!("unix:{}", normal_sock.display());
    let proxy = Proxy::start(&proxy_sock, &to, &dir, &[]);
    let direct = direct.milter(&to).start().unwrap();
    let proxied = Sendmail::prepare()
        .unwrap()
        .milter(format!("unix:{}", proxy_sock.display()))
        .start()
        .unwrap();

    let a = answers(direct.port());
    let b = answers(proxied.port());
    let ctx = || {
        format!(
            "--- record log ---\n{}\n--- sendmail (proxied) log ---\n{}",
            proxy.log_text(),
            proxied.log()
        )
    };
    assert_eq!(a, b, "{}", ctx());
    let all = a.join("\n");
    for expected in [
        "later: MAIL 451 4.7.1 sender deferred by policy",
        "partly: MAIL 250",
        "RCPT 550 5.1.1 <refused@example.org>... recipient refused by policy",
        "[reject] spam: MAIL 250",
        "DATA 550 5.7.1 message refused by policy",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }

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
    // Sendmail's offer (with its packet-size bits) passed unrefused.
    let first = std::fs::read_to_string(&files[0]).unwrap();
    let negotiate: Value = serde_json::from_str(first.lines().nth(1).unwrap()).unwrap();
    assert!(negotiate.get("refused").is_none(), "{negotiate}");

    let d = dir.to_str().unwrap();
    let (code, out) = replay(&[d, &to]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("7 transcripts replayed, 7 the same, 0 different"),
        "{out}"
    );
    let (code, out) = replay(&[d, &format!("unix:{}", strict_sock.display())]);
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
    drop(proxied);
    drop(direct);
    drop(proxy);
}
