//! Scale of the REST backend against a generated API on 127.0.0.1 (10,000
//! lists, 100,000 members, HTTP/1.1 keep-alive, an optional delay per
//! request). Prints the numbers docs/performance.md quotes; asserts only
//! the verdicts (timings depend on the machine). Bounded: every wait has a
//! deadline.
//!
//! `cargo test --release -p mailman-milter --test rest_scale -- --include-ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailman_milter::{ListBackend, MailmanMilter, RestBackend, RestConfig, SenderMode, Settings};
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, run_message,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// 10,000 lists in a release build (the benchmark); 1,000 in a debug build,
/// so the full test suite's run stays short.
const LISTS: usize = if cfg!(debug_assertions) {
    1_000
} else {
    10_000
};
const MEMBERS_PER_LIST: usize = 10;

fn page(all: Vec<Value>, query: &str) -> Value {
    let get = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(q, _)| *q == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let (count, page) = (get("count").unwrap_or(usize::MAX), get("page").unwrap_or(1));
    let total = all.len();
    let entries: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * count)
        .take(count)
        .collect();
    json!({"start": 0, "total_size": total, "entries": entries})
}

fn route(target: &str) -> Value {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_start_matches("/3.1/").split('/').collect();
    match segs.as_slice() {
        ["domains"] => page(vec![json!({"mail_host": "lists.example.org"})], query),
        ["bans"] => page(vec![], query),
        ["lists"] => page(
            (0..LISTS)
                .map(|i| json!({"list_id": format!("l{i}.lists.example.org"), "fqdn_listname": format!("l{i}@lists.example.org")}))
                .collect(),
            query,
        ),
        ["lists", _, "config"] => json!({"default_nonmember_action": "reject", "default_member_action": "defer"}),
        ["lists", _, _] => page(vec![], query),
        ["members", "find"] => {
            // subscriber=mJ%40example.org is a member of list lJ/10.
            let sub = query.split('&').find_map(|kv| kv.strip_prefix("subscriber="));
            let list = query.split('&').find_map(|kv| kv.strip_prefix("list_id="));
            let hit = match (sub, list) {
                (Some(s), Some(l)) => s
                    .strip_prefix('m')
                    .and_then(|s| s.split_once("%40"))
                    .and_then(|(n, _)| n.parse::<usize>().ok())
                    .is_some_and(|n| format!("l{}.lists.example.org", n / MEMBERS_PER_LIST) == l),
                _ => false,
            };
            let entries = if hit {
                vec![json!({"email": sub.unwrap().replace("%40", "@"), "role": "member", "list_id": list})]
            } else {
                vec![]
            };
            page(entries, query)
        }
        _ => json!({}),
    }
}

/// Serves one keep-alive connection.
async fn serve(mut s: TcpStream, delay: Duration) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1_000_000 {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        tokio::time::sleep(delay).await;
        let body = route(&target).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn fake(delay: Duration) -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/3.1", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        for _ in 0..100_000 {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(serve(s, delay));
        }
    });
    (url, task)
}

async fn client<B: ListBackend>(backend: Arc<B>) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 16);
    let settings = Settings {
        senders: SenderMode::Envelope,
        ..Settings::default()
    };
    let server = Server::new(
        MailmanMilter::new(backend, settings),
        ServerConfig::default(),
    );
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .unwrap()
}

async fn rcpt(c: &mut MilterClient, from: &str, to: &str) -> Outcome {
    let spec = MessageSpec {
        from: from.into(),
        rcpts: vec![to.into()],
        message: bytes::Bytes::from_static(b"Subject: x\r\n\r\nx\r\n"),
        ..MessageSpec::default()
    };
    tokio::time::timeout(Duration::from_secs(120), run_message(c, &spec))
        .await
        .expect("answered")
        .unwrap()
        .outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; see docs/performance.md"]
async fn rest_backend_at_10000_lists_and_100000_members() {
    let (url, _task) = fake(Duration::ZERO).await;
    let config = RestConfig {
        url,
        // The whole load of 10,000 lists is timed here, so no caller may
        // give up on it.
        timeout: Duration::from_secs(600),
        list_domains: Some(vec!["lists.example.org".into()]),
        ..RestConfig::default()
    };
    // Cold start: first answered RCPT outside the list domains, then to a list.
    let t = Instant::now();
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    let mut c = client(backend.clone()).await;
    assert_eq!(
        rcpt(&mut c, "m5@example.org", "bob@example.org").await,
        Outcome::Accepted
    );
    println!(
        "cold start to first answered RCPT, other domain: {:?}",
        t.elapsed()
    );
    // The list data is read whole (not yet per list): time that load, then
    // the first list post.
    let t = Instant::now();
    assert_eq!(backend.lists().await.unwrap().len(), LISTS);
    println!(
        "cold start: list data of {LISTS} lists read in {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_eq!(
        rcpt(&mut c, "m5@example.org", "l0@lists.example.org").await,
        Outcome::Accepted
    );
    println!(
        "then the first list post (one membership lookup): {:?}",
        t.elapsed()
    );
    // Warm: 32 connections, members of their lists, answers cached.
    let members = LISTS * MEMBERS_PER_LIST;
    let mut tasks = Vec::new();
    for k in 0..32usize {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(backend).await;
            let mut times = Vec::new();
            for round in 0..2 {
                for j in 0..50usize {
                    let m = (k * 977 + j * 31) % members;
                    let from = format!("m{m}@example.org");
                    let to = format!("l{}@lists.example.org", m / MEMBERS_PER_LIST);
                    let t = Instant::now();
                    assert_eq!(rcpt(&mut c, &from, &to).await, Outcome::Accepted);
                    if round == 1 {
                        times.push(t.elapsed());
                    }
                }
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "warm transaction (MAIL+RCPT+DATA, decided at RCPT), 32 connections, {} samples: p50 {:?} p99 {:?}",
        all.len(),
        p(0.5),
        p(0.99)
    );
    // The RCPT decision itself (list lookup and the cached membership
    // answer, no milter protocol), 32 tasks at once.
    let mut tasks = Vec::new();
    for k in 0..32usize {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for j in 0..50usize {
                let m = (k * 977 + j * 31) % members;
                let t = Instant::now();
                let index = backend.lists().await.unwrap();
                let list = index[&format!("l{}@lists.example.org", m / MEMBERS_PER_LIST)].clone();
                let status = backend
                    .senders(&list, &[format!("m{m}@example.org")])
                    .await
                    .unwrap();
                times.push(t.elapsed());
                assert!(status[0].member);
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "warm RCPT decision (lists + cached membership), 32 tasks, {} samples: p50 {:?} p99 {:?}",
        all.len(),
        p(0.5),
        p(0.99)
    );
    // Every request 2 s late: mail outside the list domains.
    let (slow_url, _slow) = fake(Duration::from_secs(2)).await;
    let slow = Arc::new(
        RestBackend::new(&RestConfig {
            url: slow_url,
            ..config.clone()
        })
        .unwrap(),
    );
    let mut c = client(slow).await;
    let mut worst = Duration::ZERO;
    for i in 0..100 {
        let t = Instant::now();
        assert_eq!(
            rcpt(&mut c, &format!("x{i}@example.com"), "bob@example.org").await,
            Outcome::Accepted
        );
        worst = worst.max(t.elapsed());
    }
    println!("REST 2 s per request: other-domain transactions, worst of 100: {worst:?}");
}
