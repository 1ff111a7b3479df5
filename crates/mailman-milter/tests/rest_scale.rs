//! Scale of the REST backend against a generated API on 127.0.0.1 (10,000
//! lists, 100,000 members, HTTP/1.1 keep-alive, an optional delay per
//! request). Prints the numbers docs/performance.md quotes; asserts the
//! verdicts and how many requests a decision took (lists are read one by
//! one, never whole), and one wide bound: with every request 2 s late,
//! mail outside the list domains is answered well within those 2 s.
//! Bounded: every wait has a deadline.
//!
//! `cargo test --release -p mailman-milter --test rest_scale -- --nocapture`

mod fake_api;
mod in_process;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mailman_milter::{ListBackend, RestBackend, RestConfig};
use minimilter::transaction::Outcome;
use minimilter::{MessageSpec, MilterClient, run_message};

/// Lists served by the generated API.
const LISTS: usize = 10_000;
const MEMBERS_PER_LIST: usize = 10;
const SHAPE: fake_api::Shape = fake_api::Shape {
    lists: LISTS,
    members_per_list: MEMBERS_PER_LIST,
};

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
    let fake_api::FakeApi { url, requests, .. } = fake_api::start(SHAPE, Duration::ZERO).await;
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
    let (_, mut null_steps) = warm(in_process::null_client).await;
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
        let url = fake_api::start(SHAPE, delay).await.url;
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
