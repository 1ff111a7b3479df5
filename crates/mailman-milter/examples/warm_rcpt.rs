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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailman_milter::{MailmanMilter, RestBackend, RestConfig, SenderMode, Settings};
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, Milter, MilterClient, Requirements, Server, ServerConfig, Shutdown,
    Steps, run_message,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connections, and distinct (member, list) pairs per connection.
const CONNS: usize = 32;
const PAIRS: usize = 10;

fn page(entries: Vec<Value>) -> Value {
    json!({"start": 0, "total_size": entries.len(), "entries": entries})
}

/// List `lN@lists.example.org` has one member, `mN@example.org`.
fn route(target: &str) -> Option<Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_start_matches("/3.1/").split('/').collect();
    let n = |s: &str| {
        s.strip_prefix('l')
            .and_then(|r| r.split(['.', '%', '@']).next())
            .and_then(|n| n.parse::<usize>().ok())
    };
    Some(match segs.as_slice() {
        ["domains"] => page(vec![json!({"mail_host": "lists.example.org"})]),
        ["bans"] => page(vec![]),
        ["lists", id] => {
            let n = n(id)?;
            json!({"list_id": format!("l{n}.lists.example.org"), "fqdn_listname": format!("l{n}@lists.example.org")})
        }
        ["lists", _, "config"] => {
            json!({"default_nonmember_action": "reject", "default_member_action": "defer"})
        }
        ["lists", _, _] => page(vec![]),
        ["members", "find"] => {
            let sub = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("subscriber="));
            let list = query.split('&').find_map(|kv| kv.strip_prefix("list_id="));
            let member = match (sub, list) {
                (Some(s), Some(l)) => s
                    .strip_prefix('m')
                    .and_then(|s| s.split_once("%40"))
                    .is_some_and(|(m, _)| n(l).is_some_and(|l| l.to_string() == m)),
                _ => false,
            };
            page(if member {
                vec![json!({"email": sub?.replace("%40", "@"), "role": "member", "list_id": list})]
            } else {
                vec![]
            })
        }
        _ => json!({}),
    })
}

async fn serve(mut s: TcpStream, count: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..100_000 {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        count.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match route(&target) {
            Some(v) => ("200 OK", v.to_string()),
            None => ("404 Not Found", "{}".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A milter that decides nothing.
struct Null;

impl Milter for Null {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::MAIL | Steps::RCPT,
            ..Requirements::default()
        }
    }
}

async fn connect<M: Milter>(milter: M) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 16);
    let server = Server::new(milter, ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .expect("negotiated")
}

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
        let l = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}/3.1", l.local_addr().expect("an address"));
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            for _ in 0..10_000 {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(serve(s, c.clone()));
            }
        });
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
        let settings = Settings {
            senders: SenderMode::Envelope,
            ..Settings::default()
        };
        let mut clients = Vec::new();
        for _ in 0..CONNS {
            clients.push(match kind.as_str() {
                "null" => connect(Null).await,
                _ => connect(MailmanMilter::new(backend.clone(), settings.clone())).await,
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
