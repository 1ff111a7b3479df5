//! `minimilter record` between a real Postfix and a milter, for what an
//! SMTP session really holds: several transactions, RSET, a refused
//! recipient then an accepted one, 8BITMIME, BDAT (CHUNKING), a client that
//! disconnects in the middle of DATA, a large message, each at Postfix's
//! milter protocol 2, 3, 4 and 6; and the milter down with
//! `milter_default_action = accept`.
//!
//! The oracle is Postfix itself: each session goes once to a service that
//! talks to the milter directly and once to one that goes through
//! `record`, and Postfix must answer alike. Then: one transcript per
//! transaction, each with the end Postfix gave it; replay against the same
//! milter finds no difference; `check --transcript` shows the refusal
//! Postfix logged.
//!
//! Needs Postfix from Debian and root (scripts/install-test-deps.sh).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::batch::replay;
use support::session::session;
use support::{Proxy, minimilter, serve_policy, transcripts, wait_for_transcripts};
use testkit::{Postfix, SmtpService};

/// `(transaction file name suffix, end reason, verdict)` per transcript.
fn ends(dir: &Path) -> Vec<(String, String, String)> {
    transcripts(dir)
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let end: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert!(end.get("notes").is_none(), "{}: {end}", f.display());
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let tail = name.split_once('-').unwrap().1.to_owned();
            (
                tail,
                end["reason"].as_str().unwrap().to_owned(),
                end["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[ignore = "needs postfix"]
#[test]
fn every_kind_of_session_at_every_protocol_version_records_and_replays_alike() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let builder = Postfix::prepare().unwrap();
    let milter_sock = builder.socket_path("policy.sock");
    let milter = format!("unix:{}", milter_sock.display());
    let versions = ["2", "3", "4", "6"];
    let mut pf = builder.user("ok").user("refused");
    let mut proxies = Vec::new();
    for v in versions {
        let listen = pf.socket_path(&format!("record-{v}.sock"));
        pf = pf
            .service(
                SmtpService::new(format!("direct{v}"))
                    .with_milters(milter.clone())
                    .with_option("milter_protocol", v),
            )
            .service(
                SmtpService::new(format!("proxied{v}"))
                    .with_milters(format!("unix:{}", listen.display()))
                    .with_option("milter_protocol", v),
            );
        proxies.push((v, listen, pf.path().join(format!("transcripts-{v}"))));
    }
    let pf = pf.start().unwrap();
    rt.block_on(serve_policy(&milter_sock, false));
    let proxies: Vec<_> = proxies
        .into_iter()
        .map(|(v, listen, dir)| {
            let p = Proxy::start(&listen, &milter, &dir, &[]);
            (v, p, dir)
        })
        .collect();

    for (v, proxy, dir) in &proxies {
        let ctx = || {
            format!(
                "--- record log ---\n{}\n--- postfix log ---\n{}",
                proxy.log_text(),
                pf.log()
            )
        };
        let direct = session(pf.port(&format!("direct{v}")));
        let proxied = session(pf.port(&format!("proxied{v}")));
        assert_eq!(direct, proxied, "protocol {v}\n{}", ctx());
        let all = direct.join("\n");
        // Delivered: plain, 8-bit, and the BDAT one (so CHUNKING was used).
        assert_eq!(all.matches("queued as QUEUE-ID").count(), 3, "{all}");
        assert!(all.contains("CHUNKING offered: true"), "{all}");
        assert!(all.contains("550 5.7.1 message refused by policy"), "{all}");
        assert!(
            all.contains("550 5.1.1 recipient refused by policy"),
            "{all}"
        );
        // One transcript per transaction: five in the first session, the
        // cut one in the second.
        let files = wait_for_transcripts(dir, 6);
        std::thread::sleep(Duration::from_millis(300));
        let got = ends(dir);
        assert_eq!(files.len(), 6, "protocol {v}: {got:?}\n{}", ctx());
        let summary: Vec<(String, String)> = got
            .iter()
            .map(|(name, reason, verdict)| {
                (
                    name.split_once('-').unwrap().1.to_owned(),
                    format!("{reason} {verdict}"),
                )
            })
            .collect();
        // Postfix aborts the milter's transaction at RSET and when the
        // client goes away (its second session, transaction 1 again).
        let want = [
            ("t1.jsonl", "end-of-message accept"),
            ("t2.jsonl", "abort none"),
            ("t3.jsonl", "end-of-message reject"),
            ("t4.jsonl", "end-of-message accept"),
            ("t5.jsonl", "end-of-message accept"),
            ("t1.jsonl", "abort none"),
        ];
        let got: Vec<(&str, &str)> = summary
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(got, want, "protocol {v}\n{}", ctx());

        // Replay to the same milter: nothing differs.
        let (code, out) = replay(&[dir.to_str().unwrap(), &milter]);
        assert_eq!(code, 0, "protocol {v}: {out}");
        assert!(
            out.contains("6 transcripts replayed, 6 the same, 0 different"),
            "{out}"
        );

        // check --transcript shows the refusal Postfix logged.
        let rejected = transcripts(dir)
            .into_iter()
            .find(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .contains("[reject] spam")
            })
            .unwrap();
        let o = Command::new(minimilter())
            .args(["check", "--transcript"])
            .arg(&rejected)
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(3), "{shown}");
        assert!(
            pf.log().contains("milter-reject: END-OF-MESSAGE"),
            "{}",
            pf.log()
        );
        assert!(
            shown.contains("reject") && shown.contains("550 5.7.1 message refused by policy"),
            "{shown}"
        );
        assert!(shown.contains("RCPT TO:<refused@example.org>"), "{shown}");
        // The queue id it shows is the one in Postfix's log line for it.
        let id = shown
            .lines()
            .find_map(|l| l.strip_prefix("queue id (macro i): "))
            .unwrap_or_else(|| panic!("no queue id: {shown}"));
        assert!(
            pf.log()
                .contains(&format!("{id}: milter-reject: END-OF-MESSAGE")),
            "protocol {v}: {id} not in\n{}",
            pf.log()
        );
    }
}
