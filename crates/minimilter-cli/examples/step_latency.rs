//! The latency an MTA sees per awaited milter step, straight to a milter
//! and through `minimilter record` in front of the same milter, measured
//! side by side (`scripts/bench/record_overhead.py` runs it).
//!
//!   cargo run --release -p minimilter-cli --example step_latency -- \
//!       unix:/milter.sock unix:/record.sock --messages 5000
//!
//! One connection to each socket, driven like Postfix drives a milter (one
//! step at a time, waiting for each answer). The messages alternate between
//! the two paths, and so does which path goes first, so both see the same
//! machine load at the same moments and neither is favoured by going
//! first. Each awaited step is timed from writing its command (with its
//! macros) to reading its final answer.
//!
//! Printed as JSON: per path the quantiles of all awaited steps; the
//! difference of those quantiles ("added": what recording adds to the
//! step latency the MTA sees at that quantile); and the quantiles of the
//! paired differences (each step through the proxy minus the same step of
//! the direct message sent next to it).

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use milter_proto::{Command, ConnectAddress, Dispatch};
use minimilter::{ClientConfig, MilterClient, SocketSpec};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The milter's socket.
    direct: String,
    /// `minimilter record`'s socket, in front of the same milter.
    proxy: String,
    /// Messages per path.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Message body size in bytes (one body chunk when it fits).
    #[arg(long, default_value_t = 2048)]
    body_bytes: usize,
    /// Messages per path sent first and not counted (connections and
    /// caches warm up).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn m(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Connects and sends the SMTP session's connect and HELO.
async fn open(spec: &str) -> anyhow::Result<MilterClient> {
    let spec: SocketSpec = spec.parse()?;
    let mut c = MilterClient::connect(&spec, ClientConfig::default()).await?;
    let connect = Command::Connect {
        hostname: b("client.example"),
        address: ConnectAddress::Inet {
            port: 25000,
            addr: b("192.0.2.1"),
        },
    };
    c.step(&m(&[("j", "mx.example"), ("_", "client.example")]), connect)
        .await?;
    c.step(&[], Command::Helo(b("client.example"))).await?;
    Ok(c)
}

/// Sends one message (MAIL to end of message, then the abort Postfix sends
/// before the next MAIL) and returns each awaited step's latency in µs.
async fn message(c: &mut MilterClient, n: usize, body: &Bytes) -> anyhow::Result<Vec<f64>> {
    let qid = format!("Q{n:08}");
    let steps = [
        (
            m(&[("i", &qid), ("{mail_addr}", "sender@example.com")]),
            Command::Mail(vec![b("<sender@example.com>")]),
        ),
        (
            m(&[("{rcpt_addr}", "recipient@example.org")]),
            Command::Rcpt(vec![b("<recipient@example.org>")]),
        ),
        (vec![], Command::Data),
        (
            vec![],
            Command::Header {
                name: b("From"),
                value: b(" <sender@example.com>"),
            },
        ),
        (
            vec![],
            Command::Header {
                name: b("To"),
                value: b(" <recipient@example.org>"),
            },
        ),
        (
            vec![],
            Command::Header {
                name: b("Subject"),
                value: b(&format!(" message {n}")),
            },
        ),
        (
            vec![],
            Command::Header {
                name: b("Message-ID"),
                value: b(&format!(" <{n}@minimilter.invalid>")),
            },
        ),
        (vec![], Command::EndOfHeaders),
        (vec![], Command::Body(body.clone())),
        (vec![], Command::EndOfMessage(Bytes::new())),
    ];
    let mut us = Vec::with_capacity(8);
    for (macros, command) in steps {
        let o = c.step(&macros, command).await?;
        if o.dispatch == Dispatch::AwaitAnswer {
            us.push(o.elapsed.as_secs_f64() * 1e6);
        }
    }
    c.abort().await?;
    Ok(us)
}

/// Nearest-rank quantile of sorted values.
fn q(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

const QS: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

fn quantiles(v: &mut [f64]) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let mut o = serde_json::Map::new();
    for (name, p) in QS {
        o.insert(name.into(), json!((q(v, p) * 10.0).round() / 10.0));
    }
    o.into()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One thread, like an MTA process driving its milter.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut direct = open(&args.direct).await?;
        let mut proxy = open(&args.proxy).await?;
        let body = {
            let line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
            let mut v: Vec<u8> = line.iter().copied().cycle().take(args.body_bytes).collect();
            if v.len() >= 2 {
                let n = v.len();
                v[n - 2..].copy_from_slice(b"\r\n");
            }
            Bytes::from(v)
        };
        let (mut d_all, mut p_all, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
        let mut steps_per_message = 0;
        let started = std::time::Instant::now();
        for n in 0..args.warmup + args.messages {
            let (d, p) = if n % 2 == 0 {
                let d = message(&mut direct, n, &body).await?;
                (d, message(&mut proxy, n, &body).await?)
            } else {
                let p = message(&mut proxy, n, &body).await?;
                (message(&mut direct, n, &body).await?, p)
            };
            anyhow::ensure!(
                d.len() == p.len(),
                "the proxy changed which steps are awaited"
            );
            steps_per_message = d.len();
            if n < args.warmup {
                continue;
            }
            diffs.extend(p.iter().zip(&d).map(|(p, d)| p - d));
            d_all.extend(d);
            p_all.extend(p);
        }
        let elapsed = started.elapsed();
        let (dq, pq) = (quantiles(&mut d_all), quantiles(&mut p_all));
        let mut added = serde_json::Map::new();
        for (name, _) in QS {
            let a = pq[name].as_f64().unwrap_or(f64::NAN) - dq[name].as_f64().unwrap_or(f64::NAN);
            added.insert(name.into(), json!((a * 10.0).round() / 10.0));
        }
        let report = json!({
            "messages_per_path": args.messages,
            "awaited_steps_per_message": steps_per_message,
            "steps_per_path": d_all.len(),
            "elapsed_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "direct_us": dq,
            "record_us": pq,
            "added_us": added,
            "paired_difference_us": quantiles(&mut diffs),
        });
        println!("{report}");
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = direct.quit().await;
            let _ = proxy.quit().await;
        })
        .await;
        Ok(())
    })
}
