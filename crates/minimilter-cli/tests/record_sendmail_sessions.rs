//! `minimilter record` between a real Sendmail and a milter, for the
//! sessions of record_postfix_sessions.rs: several transactions, RSET, a
//! refused then an accepted recipient, 8BITMIME, BDAT, a client gone in the
//! middle of DATA. Sendmail negotiates differently from Postfix (its own
//! offer, macros and abort points), so the same questions get asked of
//! it: does it answer alike with `record` in front of the milter, is there
//! one transcript per transaction with Sendmail's end, and does replay find
//! no difference.
//!
//! Needs Sendmail unpacked by scripts/install-test-deps.sh, and root.

mod support;

use serde_json::Value;
use support::batch::replay;
use support::session::session;
use support::{Proxy, serve_policy, transcripts, wait_for_transcripts};
use testkit::Sendmail;

#[ignore = "needs sendmail"]
#[test]
fn sendmail_sessions_record_one_transcript_per_transaction_and_replay_alike() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let direct = Sendmail::prepare().unwrap();
    let base = direct.path().to_owned();
    let milter_sock = base.join("policy.sock");
    let proxy_sock = base.join("record.sock");
    let dir = base.join("transcripts");
    rt.block_on(serve_policy(&milter_sock, false));
    let to = format!("unix:{}", milter_sock.display());
    let proxy = Proxy::start(&proxy_sock, &to, &dir, &[]);
    let direct = direct.milter(&to).start().unwrap();
    let proxied = Sendmail::prepare()
        .unwrap()
        .milter(format!("unix:{}", proxy_sock.display()))
        .start()
        .unwrap();
    let ctx = || {
        format!(
            "--- record log ---\n{}\n--- sendmail (proxied) log ---\n{}",
            proxy.log_text(),
            proxied.log()
        )
    };

    let a = session(direct.port());
    let b = session(proxied.port());
    assert_eq!(a, b, "{}", ctx());
    let all = a.join("\n");
    assert!(all.contains("550 5.7.1 message refused by policy"), "{all}");

    // Transactions that reached the milter: plain, RSET, refused+accepted
    // recipients, 8-bit, and the cut one; BDAT too if Sendmail took it.
    let bdat_taken = all.contains("CHUNKING offered: true");
    let want = if bdat_taken { 6 } else { 5 };
    let files = wait_for_transcripts(&dir, want);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let files_now = transcripts(&dir);
    let ends: Vec<String> = files_now
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let end: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            format!(
                "{} {} {}",
                f.file_name().unwrap().to_string_lossy(),
                end["reason"].as_str().unwrap(),
                end["verdict"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(files.len(), want, "{ends:#?}\n{}", ctx());
    assert_eq!(files_now.len(), want, "{ends:#?}\n{}", ctx());
    let verdicts: Vec<&str> = ends.iter().map(|e| e.rsplit(' ').next().unwrap()).collect();
    assert_eq!(
        verdicts.iter().filter(|v| **v == "reject").count(),
        1,
        "{ends:#?}"
    );
    assert_eq!(
        verdicts.iter().filter(|v| **v == "none").count(),
        2,
        "RSET and the cut one: {ends:#?}"
    );

    let (code, out) = replay(&[dir.to_str().unwrap(), &to]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{want} transcripts replayed, {want} the same, 0 different"
        )),
        "{out}"
    );
    drop(proxied);
    drop(direct);
    drop(proxy);
}
