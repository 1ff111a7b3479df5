//! Warm list posts over the milter protocol, for counting instructions
//! per transaction with callgrind (independent of machine load), the
//! mailman-milter against a milter that decides nothing:
//!
//! ```sh
//! cargo build --release -p mailman-milter --example warm_rcpt
//! for kind in mailman null; do for n in 0 3200; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$kind.$n \
//!     target/release/examples/warm_rcpt $kind $n
//! done; done
//! ```
//!
//! (instructions of run N minus run 0) / N is the cost of one warm
//! transaction (MAIL, RCPT decided from the caches, DATA, end; client,
//! runtime and milter in one process, one thread). A generated Mailman
//! API on 127.0.0.1 answers the cold reads; every list is read before the
//! counted transactions, which ask the API nothing (checked).

#[path = "../tests/fake_api/mod.rs"]
mod fake_api;
#[path = "../tests/in_process/mod.rs"]
mod in_process;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mailman_milter::{RestBackend, RestConfig};
use minimilter::transaction::Outcome;
use minimilter::{MessageSpec, MilterClient, run_message};

/// Connections, and distinct (member, list) pairs per connection.
const CONNS: usize = 32;
const PAIRS: usize = 10;

/// One list post from the member of list `n`.
async fn post(c: &mut MilterClient, n: usize) {
    let spec = MessageSpec {
        from: format!("m{n}@example.org"),
        rcpts: vec![format!("l{n}@lists.example.org")],
        message: bytes::Bytes::from_static(b"Subject: x\r\n\r\nx\r\n"),
        ..MessageSpec::default()
    };
    let t = tokio::time::timeout(Duration::from_secs(600), run_message(c, &spec))
        .await
        .expect("answered")
        .expect("a transcript");
    assert_eq!(t.outcome, Outcome::Accepted);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("mailman", String::as_str).to_owned();
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        // List `lN@lists.example.org` has one member, `mN@example.org`.
        let shape = fake_api::Shape {
            lists: CONNS * PAIRS,
            members_per_list: 1,
        };
        let fake_api::FakeApi {
            url,
            requests: count,
            ..
        } = fake_api::start(shape, Duration::ZERO).await;
        let backend = Arc::new(
            RestBackend::new(&RestConfig {
                url,
                timeout: Duration::from_secs(600),
                cache_ttl: Duration::from_secs(3600),
                max_stale: Duration::from_secs(3600),
                ..RestConfig::default()
            })
            .expect("a backend"),
        );
        let settings = in_process::envelope_senders();
        let mut clients = Vec::new();
        for _ in 0..CONNS {
            clients.push(match kind.as_str() {
                "null" => in_process::null_client().await,
                _ => in_process::client(backend.clone(), settings.clone()).await,
            });
        }
        // Warm up: every list read, every member answer cached.
        for (k, c) in clients.iter_mut().enumerate() {
            for j in 0..PAIRS {
                post(c, k * PAIRS + j).await;
            }
        }
        let before = count.load(Ordering::Relaxed);
        for i in 0..n {
            let k = i % CONNS;
            post(&mut clients[k], k * PAIRS + (i / CONNS) % PAIRS).await;
        }
        assert_eq!(
            count.load(Ordering::Relaxed),
            before,
            "warm posts asked the API"
        );
        println!("{kind}: {n} warm transactions after {before} API requests");
    });
}
