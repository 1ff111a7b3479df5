//! The `/metrics` exposition judged by Prometheus's own tools: `promtool
//! check metrics` accepts it, and a real Prometheus server started here
//! scrapes it and sees the counters equal what the client sent. Needs
//! Debian's `prometheus` package (scripts/install-test-deps.sh).

mod daemon_contract;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon_contract::{Binary, Scratch, free_port, scrape};
use minimilter::{ClientConfig, MessageSpec, MilterClient, SocketSpec, run_message};

fn keyword_milter() -> Binary {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/keyword_milter");
    assert!(
        path.exists(),
        "{} missing: `cargo test` builds the examples",
        path.display()
    );
    Binary {
        name: "keyword_milter",
        path,
        base: Vec::new(),
    }
}

/// Sends `subjects.len()` messages on one connection; the keyword milter
/// rejects `[reject]`, defers `[tempfail]`, accepts the rest.
fn send(inet: &str, subjects: &[&str]) {
    let spec: SocketSpec = inet.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = MilterClient::connect(&spec, ClientConfig::default())
            .await
            .unwrap();
        for s in subjects {
            let m = MessageSpec {
                from: "a@client.example".into(),
                rcpts: vec!["b@example.org".into()],
                message: format!("From: a@client.example\r\nSubject: {s}\r\n\r\nhi\r\n").into(),
                ..MessageSpec::default()
            };
            run_message(&mut c, &m).await.unwrap();
        }
        c.quit().await.unwrap();
    });
}

const SUBJECTS: [&str; 6] = ["a", "[reject] b", "c", "[tempfail] d", "e", "[reject] f"];

#[test]
#[ignore = "needs promtool"]
fn promtool_accepts_the_exposition() {
    let s = Scratch::new("promtool");
    let (_daemon, inet, mport) = keyword_milter().spawn_with_metrics(&[], &s.path().join("log"));
    send(&inet, &SUBJECTS);
    let (_, body) = scrape(mport);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{said}\n{body}"
    );
}

/// Asks the Prometheus HTTP API for `query`'s value (one series).
fn query(port: u16, query: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    write!(
        s,
        "GET /api/v1/query?query={q} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    // ..."value":[1733500000.123,"4"]...
    let at = all.find("\"value\":[")?;
    let rest = &all[at..];
    let v = rest.split('"').nth(3)?;
    v.parse().ok()
}

#[test]
#[ignore = "needs prometheus"]
fn a_prometheus_server_scrapes_the_counters() {
    let s = Scratch::new("prometheus");
    let (_daemon, inet, mport) = keyword_milter().spawn_with_metrics(&[], &s.path().join("log"));
    send(&inet, &SUBJECTS);
    let config = s.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: milter\n    \
             static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .unwrap();
    let pport = free_port();
    let log = std::fs::File::create(s.path().join("prometheus.log")).unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            s.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package prometheus) must be installed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = (None, None, None, None);
    let want = (Some(3.0), Some(2.0), Some(1.0), Some(3.0));
    while Instant::now() < deadline {
        seen = (
            query(pport, "sum(milter_messages_total{verdict=\"accept\"})"),
            query(pport, "sum(milter_messages_total{verdict=\"reject\"})"),
            query(pport, "sum(milter_messages_total{verdict=\"tempfail\"})"),
            // The milter's own counter, registered through Serve::registry.
            query(pport, "keyword_milter_tagged_total"),
        );
        if seen == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(
        seen,
        want,
        "{}",
        std::fs::read_to_string(s.path().join("prometheus.log")).unwrap_or_default()
    );
}
