//! Scale of the REST backend against a generated API on 127.0.0.1 (10,000
//! lists, 100,000 members, HTTP/1.1 keep-alive, an optional delay per
//! request). Prints the numbers docs/performance.md quotes; asserts the
//! verdicts and how many requests a decision took (lists are read one by
//! one, never whole), and one wide bound: with every request 2 s late,
//! mail outside the list domains is answered well within those 2 s.
//! Bounded: every wait has a deadline.
//!
//! `cargo test --release -p mailman-milter --test rest_scale -- --nocapture`

mod in_process;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailman_milter::{ListBackend, RestBackend, RestConfig};
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, Milter, MilterClient, Requirements, Server, ServerConfig, Shutdown,
    Steps, run_message,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Lists served by the generated API.
const LISTS: usize = 10_000;
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

/// Mailman's answer to `target`; None: 404.
fn route(target: &str) -> Option<Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_start_matches("/3.1/").split('/').collect();
    Some(match segs.as_slice() {
        ["domains"] => page(vec![json!({"mail_host": "lists.example.org"})], query),
        ["bans"] => page(vec![], query),
        ["lists"] => page(
            (0..LISTS)
                .map(|i| json!({"list_id": format!("l{i}.lists.example.org"), "fqdn_listname": format!("l{i}@lists.example.org")}))
                .collect(),
            query,
        ),
        // By list_id or posting address, as Mailman finds a list.
        ["lists", id] => {
            let n = id
                .strip_prefix('l')
                .and_then(|r| r.split(['.', '%']).next())
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < LISTS);
            match n {
                Some(n) => json!({"list_id": format!("l{n}.lists.example.org"), "fqdn_listname": format!("l{n}@lists.example.org")}),
                None => return None,
            }
        }
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
    })
}

/// Serves one keep-alive connection.
async fn serve(mut s: TcpStream, delay: Duration, count: Arc<AtomicUsize>) {
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
        count.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
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

/// The generated API; its URL, its task and its count of requests.
async fn fake(delay: Duration) -> (String, tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/3.1", l.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        for _ in 0..100_000 {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(serve(s, delay, c.clone()));
        }
    });
    (url, task, count)
}

async fn rcpt(c: &mut MilterClient, from: &str, to: &str) -> Outcome {
    rcpt_timed(c, from, to).await.0
}

/// The outcome, and how long the RCPT step took over the milter protocol
/// (sent to answered).
async fn rcpt_timed(c: &mut MilterClient, from: &str, to: &str) -> (Outcome, Duration) {
    let spec = MessageSpec {
        from: from.into(),
        rcpts: vec![to.into()],
        message: bytes::Bytes::from_static(b"Subject: x\r\n\r\nx\r\n"),
        ..MessageSpec::default()
    };
    let t = tokio::time::timeout(Duration::from_secs(120), run_message(c, &spec))
        .await
        .expect("answered")
        .unwrap();
    let step = t
        .steps
        .iter()
        .find(|s| s.outcome.step == minimilter::proto::Step::Rcpt)
        .map_or(Duration::ZERO, |s| s.outcome.elapsed);
    (t.outcome, step)
}

/// 32 connections made by `connect`, 50 list posts each from members,
/// twice: the first round fills the caches, the second is timed. The
/// whole transactions' times and the RCPT steps' (sent to answered).
async fn warm<F, Fut>(connect: F) -> (Vec<Duration>, Vec<Duration>)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = MilterClient> + Send,
{
    let members = LISTS * MEMBERS_PER_LIST;
    let mut tasks = Vec::new();
    for k in 0..32usize {
        let connect = connect.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = connect().await;
            let (mut times, mut steps) = (Vec::new(), Vec::new());
            for round in 0..2 {
                for j in 0..50usize {
                    let m = (k * 977 + j * 31) % members;
                    let from = format!("m{m}@example.org");
                    let to = format!("l{}@lists.example.org", m / MEMBERS_PER_LIST);
                    let t = Instant::now();
                    let (outcome, step) = rcpt_timed(&mut c, &from, &to).await;
                    assert_eq!(outcome, Outcome::Accepted);
                    if round == 1 {
                        times.push(t.elapsed());
                        steps.push(step);
                    }
                }
            }
            (times, steps)
        }));
    }
    let (mut all, mut steps) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, s) = t.await.unwrap();
        all.extend(a);
        steps.extend(s);
    }
    (all, steps)
}

/// A milter that decides nothing: every step continues.
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

async fn null_client() -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 16);
    let server = Server::new(Null, ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .unwrap()
}

/// Percentiles, the worst, and how many samples took over 1 ms.
fn distribution(all: &mut [Duration]) -> String {
    let over = all
        .iter()
        .filter(|d| **d > Duration::from_millis(1))
        .count();
    let mut text = format!("{} samples:", all.len());
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        text.push_str(&format!(" {name} {:?}", percentile(all, q)));
    }
    text.push_str(&format!(
        " max {:?}; over 1 ms: {over}",
        all.iter().max().copied().unwrap_or_default()
    ));
    text
}

fn percentile(all: &mut [Duration], q: f64) -> Duration {
    all.sort();
    all[((all.len() as f64 * q) as usize).min(all.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_backend_at_10000_lists_and_100000_members() {
    let (url, _task, requests) = fake(Duration::ZERO).await;
    let config = RestConfig {
        url,
        // Generous: a loaded CI machine must not turn into a 451 here.
        timeout: Duration::from_secs(30),
        // Longer than any run (even under valgrind): no background refresh
        // mixes into the warm figures.
        cache_ttl: Duration::from_secs(3600),
        max_stale: Duration::from_secs(3600),
        ..RestConfig::default()
    };
    // Cold start, nothing known (not even the list domains): the first
    // RCPT to a list, from a member, decided at RCPT.
    let t = Instant::now();
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    let mut c = in_process::client(backend.clone(), in_process::envelope_senders()).await;
    assert_eq!(
        rcpt(&mut c, "m73125@example.org", "l7312@lists.example.org").await,
        Outcome::Accepted
    );
    let cold = t.elapsed();
    let cold_requests = requests.load(Ordering::Relaxed);
    println!(
        "cold start to the first answered list RCPT ({LISTS} lists, nothing known): {cold:?}, {cold_requests} requests"
    );
    // Domains, site bans, the list and its settings, one membership lookup
    // and its linked-address probe: a handful, not the 10,000 lists.
    assert!(cold_requests <= 16, "{cold_requests} requests");
    // A non-member is refused; mail outside the list domains now passes
    // without a request.
    assert!(matches!(
        rcpt(&mut c, "stranger@example.com", "l7312@lists.example.org").await,
        Outcome::Rejected { .. }
    ));
    let before = requests.load(Ordering::Relaxed);
    let t = Instant::now();
    assert_eq!(
        rcpt(&mut c, "m5@example.org", "bob@example.org").await,
        Outcome::Accepted
    );
    println!("then mail outside the list domains: {:?}", t.elapsed());
    assert_eq!(requests.load(Ordering::Relaxed), before);
    // An address in the list domain that names no list: asked once, then
    // known.
    for _ in 0..3 {
        assert_eq!(
            rcpt(&mut c, "m5@example.org", "bob@lists.example.org").await,
            Outcome::Accepted
        );
    }
    // Warm: 32 connections, members of their lists (1,600 lists, 1,600
    // members); the first round fills the caches, the second is timed.
    let b = backend.clone();
    let (mut all, mut steps) =
        warm(move || in_process::client(b.clone(), in_process::envelope_senders())).await;
    println!(
        "warm transaction (MAIL+RCPT+DATA, decided at RCPT), 32 connections, {} samples: p50 {:?} p99 {:?}",
        all.len(),
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99)
    );
    println!(
        "warm RCPT step over the milter protocol, 32 connections, {} samples: p50 {:?} p99 {:?}",
        steps.len(),
        percentile(&mut steps, 0.5),
        percentile(&mut steps, 0.99)
    );
    println!("  distribution: {}", distribution(&mut steps));
    // The same harness with a milter that decides nothing (no backend, no
    // policy): what remains is the protocol, the runtime and the machine.
    let (_, mut null_steps) = warm(null_client).await;
    println!(
        "control, a milter that decides nothing, same harness: RCPT step {}",
        distribution(&mut null_steps)
    );
    let members = LISTS * MEMBERS_PER_LIST;
    // The RCPT decision itself (finding the list and the cached membership
    // answer, no milter protocol), 32 tasks at once.
    let before = requests.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for k in 0..32usize {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for j in 0..50usize {
                let m = (k * 977 + j * 31) % members;
                let address = format!("l{}@lists.example.org", m / MEMBERS_PER_LIST);
                let t = Instant::now();
                let index = backend
                    .find_lists(std::slice::from_ref(&address))
                    .await
                    .unwrap();
                let status = backend
                    .senders(&index[&address], &[format!("m{m}@example.org")])
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
    println!(
        "warm RCPT decision (list and cached membership), 32 tasks, {} samples: p50 {:?} p99 {:?}",
        all.len(),
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99)
    );
    // Warm answers ask nothing.
    assert_eq!(requests.load(Ordering::Relaxed), before);
    // Mail outside the list domains, API healthy and API adding 2 s to
    // every request (list domains configured, nothing read yet).
    let mut worst = Vec::new();
    for delay in [Duration::ZERO, Duration::from_secs(2)] {
        let (url, _task, _) = fake(delay).await;
        let backend = Arc::new(
            RestBackend::new(&RestConfig {
                url,
                list_domains: Some(vec!["lists.example.org".into()]),
                ..config.clone()
            })
            .unwrap(),
        );
        let mut c = in_process::client(backend, in_process::envelope_senders()).await;
        let mut times = Vec::new();
        for i in 0..100 {
            let t = Instant::now();
            assert_eq!(
                rcpt(&mut c, &format!("x{i}@example.com"), "bob@example.org").await,
                Outcome::Accepted
            );
            times.push(t.elapsed());
        }
        let w = *times.iter().max().unwrap();
        println!(
            "REST {delay:?} per request: other-domain transactions, 100: p50 {:?}, worst {w:?}",
            percentile(&mut times, 0.5)
        );
        worst.push(w);
    }
    // Never waiting for a request: far below the 2 s one would take.
    assert!(worst[1] < Duration::from_secs(1), "{worst:?}");
}
