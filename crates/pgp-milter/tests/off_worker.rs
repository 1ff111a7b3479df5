//! The expensive part of judging a message (MIME, armor, rpgp, the
//! decompression budget) runs on a blocking thread, never on the async
//! worker that serves every other connection — whatever the message size.
//!
//! Proved without timing: a global tracing subscriber records the thread of
//! the parser's "decompression budget exhausted" event while a small
//! (≈40 KB) message of a hundred compressed bombs is judged through the
//! milter protocol on a current-thread runtime. The runtime's only thread is
//! the test's; the event must come from another one. The same subscriber
//! shows rpgp's own log records do not get through.

mod support;

use bytes::Bytes;
use minimilter::proto::Offer;
use minimilter::run_message;
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown};
use pgp_milter::{PgpMilter, Policy};
use support::threads::{self, ThreadRecorder};
use tracing_subscriber::util::SubscriberInitExt;

#[ignore = "needs gpg"]
#[tokio::test(flavor = "current_thread")]
async fn a_small_hostile_message_is_judged_off_the_async_worker() {
    // As the daemon does (tracing-subscriber's init): the global
    // subscriber, and rpgp's `log` records forwarded into it.
    ThreadRecorder
        .try_init()
        .expect("one subscriber per binary");
    let bomb = &support::gpg().signed_small_bomb;
    let parts: Vec<String> = (0..100)
        .map(|_| format!("Content-Type: text/plain\r\n\r\n{bomb}"))
        .collect();
    let message = support::mixed("bombs", &parts);
    // Far below the old 256 KiB threshold under which the detector ran
    // inline on the async worker.
    assert!(message.len() < 64 * 1024, "{}", message.len());

    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(PgpMilter::new(Policy::default()), ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    let mut c = MilterClient::negotiate(Box::new(a), cfg).await.unwrap();
    let spec = MessageSpec {
        from: "alice@client.example".into(),
        rcpts: vec!["bob@example.org".into()],
        message: Bytes::from(message),
        ..MessageSpec::default()
    };
    let t = run_message(&mut c, &spec).await.unwrap();
    let Outcome::Rejected { reply, .. } = &t.outcome else {
        panic!("expected a rejection, got {:?}", t.outcome)
    };
    let reply = reply.clone().unwrap_or_default();
    assert!(reply.contains("per-message limit"), "{reply}");

    let runtime_thread = std::thread::current().id();
    let threads: Vec<std::thread::ThreadId> = threads::events()
        .into_iter()
        .filter(|(target, _)| {
            target.starts_with("pgp_milter::openpgp") || target.starts_with("pgp_milter::detect")
        })
        .map(|(_, t)| t)
        .collect();
    assert!(!threads.is_empty(), "the budget event was not logged");
    assert!(
        threads.iter().all(|&t| t != runtime_thread),
        "the parser ran on the async worker thread"
    );

    // rpgp's own (multi-line) records about bad input never reach the
    // log: one line per decision. A malformed PKESK and a malformed
    // signature make rpgp log when it is not silenced.
    threads::clear();
    for data in [
        &[
            0xc1, 13, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 64, 1, 0xd2, 2, 1, 0,
        ][..],
        &[0xc2, 5, 4, 0, 1, 8, 0],
        &[0xc1, 3, 3, 1, 2, 0xd2, 2, 1, 0],
    ] {
        assert!(pgp_milter::packets::shape(data).is_err());
    }
    let events = threads::events();
    let from_rpgp: Vec<&String> = events
        .iter()
        .map(|(target, _)| target)
        // rpgp logs through the `log` crate; forwarded records carry the
        // target "log" in their metadata (nothing else in these calls
        // uses `log`).
        .filter(|t| t.starts_with("pgp") || t.as_str() == "log")
        .collect();
    assert!(from_rpgp.is_empty(), "rpgp logged: {from_rpgp:?}");
}
