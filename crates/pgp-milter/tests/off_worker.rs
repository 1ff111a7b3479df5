//! The expensive part of judging a message (MIME, armor, rpgp, the
//! decompression budget) runs on a blocking thread, never on the async
//! worker that serves every other connection — whatever the message size.
//!
//! Proved without timing: a global tracing subscriber records the thread of
//! the parser's "decompression budget exhausted" event while a small
//! (≈40 KB) message of a hundred compressed bombs is judged through the
//! milter protocol on a current-thread runtime. The runtime's only thread is
//! the test's; the event must come from another one.

mod support;

use std::sync::Mutex;
use std::thread::ThreadId;

use bytes::Bytes;
use minimilter::proto::Offer;
use minimilter::run_message;
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown};
use pgp_milter::{PgpMilter, Policy};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Threads on which pgp-milter's OpenPGP module logged.
static THREADS: Mutex<Vec<ThreadId>> = Mutex::new(Vec::new());

/// Records the thread of every event from `pgp_milter::openpgp`.
struct ThreadRecorder;

impl Subscriber for ThreadRecorder {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target().starts_with("pgp_milter::openpgp")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {
        THREADS.lock().unwrap().push(std::thread::current().id());
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn a_small_hostile_message_is_judged_off_the_async_worker() {
    tracing::subscriber::set_global_default(ThreadRecorder).expect("one subscriber per binary");
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
    let threads = THREADS.lock().unwrap().clone();
    assert!(!threads.is_empty(), "the budget event was not logged");
    assert!(
        threads.iter().all(|&t| t != runtime_thread),
        "the parser ran on the async worker thread"
    );
}
