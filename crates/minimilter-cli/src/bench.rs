//! `minimilter bench`: load any milter the way Postfix would (one milter
//! connection per SMTP session, several messages per session, or a new
//! connection per message) and report throughput and latency.
//!
//! Bounded by design: a message count per connection, and `--duration` as a
//! hard cap on the whole run: whatever is in flight when it passes is cut
//! off, counted as unfinished, and the report is printed all the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use milter_proto::{MilterOptions, Offer};
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, ClientError, MessageScript, MessageSpec, MilterClient, SocketSpec};
use serde_json::json;

use crate::envelope::{EnvelopeArgs, given_queue_id};
use crate::exit;
use crate::json;
use crate::output::{self, outln};
use crate::timeouts::{Timeouts, seconds};

/// Which verdict every message should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Expect {
    /// Delivered.
    Accept,
    /// 5xx.
    Reject,
    /// 4xx.
    Tempfail,
    /// Dropped.
    Discard,
    /// Any verdict is fine.
    Any,
}

/// Options of `minimilter bench`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 if at least one message completed, every completed message got \
the expected verdict and no error occurred; 1 otherwise (2 for usage errors). Messages still in \
flight when --duration ends the run are reported as unfinished; they are not errors. If standard \
output is closed early (e.g. piped into head), the rest of the report is dropped silently and \
the exit status is unchanged."
)]
pub struct BenchArgs {
    /// The milter's socket (unix:/path, inet:host:port, inet:port@host, ...).
    pub socket: String,
    /// Concurrent connections (SMTP sessions).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conns: u32,
    /// Messages per connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Hard cap on the whole run, in seconds: when it passes, messages not yet
    /// sent are not started and those in flight are cut off (reported as
    /// unfinished).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS",
          value_parser = crate::timeouts::positive_seconds)]
    pub duration: f64,
    /// Size of the generated message body in bytes (at most 256 MiB: the
    /// message is built in memory once and shared by every connection).
    #[arg(long, default_value_t = 2048, conflicts_with = "message",
          value_parser = clap::value_parser!(u64).range(0..=MAX_BODY_BYTES))]
    pub body_bytes: u64,
    /// Send this message file instead of a generated one.
    #[arg(long)]
    pub message: Option<PathBuf>,
    #[command(flatten)]
    pub envelope: EnvelopeArgs,
    /// The verdict every message must get; others count as errors.
    #[arg(long, value_enum, default_value_t = Expect::Any)]
    pub expect: Expect,
    /// Open a new connection (and negotiate) for every message.
    #[arg(long)]
    pub new_connection_per_message: bool,
    /// Protocol version to offer (2, 3, 4 or 6).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=6))]
    pub protocol_version: u32,
    /// Print the result as JSON (one object); an error (exit status 1)
    /// as `{"error": "..."}`.
    #[arg(long)]
    pub json: bool,
    /// No progress line on standard error.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub timeouts: Timeouts,
}

/// Largest `--body-bytes`: bigger than any MTA's message size limit, small
/// enough to build in memory.
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// What one connection task measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    negotiations_us: Vec<u64>,
    completed: u64,
    verdicts: BTreeMap<&'static str, u64>,
    actions: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
    unexpected: u64,
    /// Messages in flight (connecting or being played) when `--duration`
    /// ended the run.
    unfinished: u64,
}

fn matches_expect(o: &Outcome, e: Expect) -> bool {
    match e {
        Expect::Any => true,
        Expect::Accept => matches!(o, Outcome::Accepted),
        Expect::Reject => matches!(o, Outcome::Rejected { .. }),
        Expect::Tempfail => matches!(o, Outcome::Tempfailed { .. } | Outcome::Shutdown { .. }),
        Expect::Discard => matches!(o, Outcome::Discarded { .. }),
    }
}

fn generated_message(body_bytes: usize, from: &str, to: &str) -> Bytes {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: minimilter bench\r\nMessage-ID: <bench@minimilter.invalid>\r\n\r\n"
    )
    .into_bytes();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    let mut body = 0;
    while body < body_bytes {
        let take = line.len().min(body_bytes - body);
        if take < 2 {
            m.extend_from_slice(&b"\r\n"[..take]);
        } else {
            m.extend_from_slice(&line[..take - 2]);
            m.extend_from_slice(b"\r\n");
        }
        body += take;
    }
    Bytes::from(m)
}

struct Shared {
    spec: SocketSpec,
    cfg: ClientConfig,
    msg: MessageSpec,
    /// A new queue id per message, unless the user gave one (`--macro i=`).
    vary_queue_id: bool,
    messages: u64,
    new_conn: bool,
    expect: Expect,
    deadline: Instant,
    stop: AtomicBool,
    done: AtomicU64,
    /// The last script encoded, for connections that negotiate the same.
    template: tokio::sync::Mutex<Option<MessageScript>>,
}

/// One SMTP session after another on one milter connection (or a new
/// connection per message), until the message count or the deadline. Every
/// await is bounded by the deadline, so the task ends when the run must.
///
/// Each message is replayed from a [`MessageScript`] encoded once per set of
/// negotiated options (see `minimilter::script` for why that is still
/// checked as `check` checks): the client's cost per message is a few
/// writes, reads and protocol checks, so the milter is what is measured.
async fn connection(shared: Arc<Shared>, n: u32) -> Tally {
    let deadline = tokio::time::Instant::from_std(shared.deadline);
    let mut tally = Tally::default();
    tally
        .latencies_us
        .reserve(shared.messages.min(1 << 16) as usize);
    let mut actions: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut client: Option<MilterClient> = None;
    let mut script: Option<MessageScript> = None;
    let mut qid = String::with_capacity(16);
    for i in 0..shared.messages {
        if shared.stop.load(Ordering::Relaxed) || tokio::time::Instant::now() >= deadline {
            break;
        }
        let fresh = client.is_none();
        if fresh {
            let started = Instant::now();
            let connect = MilterClient::connect(&shared.spec, shared.cfg.clone());
            match tokio::time::timeout_at(deadline, connect).await {
                Err(_) => {
                    tally.unfinished += 1;
                    break;
                }
                Ok(Ok(c)) => {
                    tally
                        .negotiations_us
                        .push(started.elapsed().as_micros() as u64);
                    client = Some(c);
                }
                Ok(Err(e)) => {
                    *tally.errors.entry(short_error(&e)).or_default() += 1;
                    // Do not spin on a dead milter.
                    let pause = tokio::time::sleep(Duration::from_millis(50));
                    let _ = tokio::time::timeout_at(deadline, pause).await;
                    continue;
                }
            }
        }
        let c = client.as_mut().expect("connected above");
        if shared.vary_queue_id {
            qid.clear();
            let _ = write!(qid, "{n:05X}{i:07X}");
        }
        let s = match prepared_script(&mut script, &shared, c.options(), &qid).await {
            Ok(s) => s,
            Err(e) => {
                // What run_message would report at the step (data the
                // protocol cannot carry); nothing was sent for it.
                *tally.errors.entry(short_error(&e)).or_default() += 1;
                if let Some(c) = client.take() {
                    let _ = tokio::time::timeout_at(deadline, c.close()).await;
                }
                continue;
            }
        };
        let started = Instant::now();
        let mut count = |m: &milter_proto::Response| {
            *actions.entry(json::action_name(m)).or_default() += 1;
        };
        let play = c.play_script(s, fresh, &mut count);
        let Ok(result) = tokio::time::timeout_at(deadline, play).await else {
            // Cut off mid-message: the connection is in an unknown state and
            // is dropped (closed) below without waiting for the milter.
            tally.unfinished += 1;
            client = None;
            break;
        };
        match result {
            // Completed, but after --duration (the timer above fires up to a
            // tick late): not part of the run.
            Ok(_) if Instant::now() > shared.deadline => {
                tally.unfinished += 1;
                client = None;
                break;
            }
            Ok(r) => {
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                tally.completed += 1;
                shared.done.fetch_add(1, Ordering::Relaxed);
                *tally.verdicts.entry(r.outcome.name()).or_default() += 1;
                if !matches_expect(&r.outcome, shared.expect) {
                    tally.unexpected += 1;
                }
                if r.session_ended || shared.new_conn {
                    let c = client.take().expect("connected");
                    if r.session_ended {
                        let _ = tokio::time::timeout_at(deadline, c.close()).await;
                    } else {
                        let _ = tokio::time::timeout_at(deadline, c.quit()).await;
                    }
                }
            }
            Err(e) => {
                *tally.errors.entry(short_error(&e)).or_default() += 1;
                if let Some(c) = client.take() {
                    let _ = tokio::time::timeout_at(deadline, c.close()).await;
                }
            }
        }
    }
    if let Some(c) = client.take() {
        let _ = tokio::time::timeout_at(deadline, c.quit()).await;
    }
    tally.actions = actions;
    tally
}

/// The script for a milter that negotiated `options`, with queue id `qid`
/// (empty: the one in the message spec). Encoded once per run for each set of
/// options and copied to the connections that negotiate the same (encoding
/// means parsing the message: for a large one, milliseconds that would
/// otherwise delay the other connections' negotiations); encoded again only
/// when the options differ or the id does not fit.
async fn prepared_script<'a>(
    script: &'a mut Option<MessageScript>,
    shared: &Shared,
    options: &MilterOptions,
    qid: &str,
) -> Result<&'a mut MessageScript, ClientError> {
    let reusable = match script.as_mut() {
        Some(s) => s.options() == options && (qid.is_empty() || s.set_queue_id(qid)),
        None => false,
    };
    if !reusable {
        // An async lock: connections waiting for the first encoding yield
        // their worker to the others instead of blocking it.
        let mut template = shared.template.lock().await;
        let mut fresh = match template.as_ref() {
            Some(t) if t.options() == options => t.clone(),
            _ => {
                let built = MessageScript::new(options, &shared.msg)?;
                *template = Some(built.clone());
                built
            }
        };
        drop(template);
        if !qid.is_empty() && !fresh.set_queue_id(qid) {
            let mut msg = shared.msg.clone();
            msg.queue_id = qid.to_owned();
            fresh = MessageScript::new(options, &msg)?;
        }
        *script = Some(fresh);
    }
    Ok(script.as_mut().expect("set above"))
}

/// An error's text with its cause, cut short, for counting alike errors.
fn short_error(e: &dyn std::error::Error) -> String {
    output::chain(e).chars().take(160).collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `bench`; returns the exit code.
pub async fn run(args: BenchArgs) -> anyhow::Result<u8> {
    let spec: SocketSpec = args.socket.parse()?;
    let duration = seconds("duration", args.duration)?;
    let to = args.envelope.rcpts.first().cloned().unwrap_or_default();
    let message = match &args.message {
        Some(p) => {
            Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => generated_message(args.body_bytes as usize, &args.envelope.from, &to),
    };
    let cfg = args.timeouts.apply(ClientConfig {
        offer: Offer::postfix_version(args.protocol_version).context("--protocol-version")?,
        ..ClientConfig::default()
    })?;
    let mut msg = args.envelope.message_spec(message)?;
    let vary_queue_id = given_queue_id(&msg.macros).is_none();
    if vary_queue_id {
        // As wide as the per-message ids ("{conn:05X}{message:07X}"), so
        // they are written into a copy of the encoded message in place.
        msg.queue_id = "0".repeat(12);
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        cfg,
        vary_queue_id,
        msg,
        messages: args.messages,
        new_conn: args.new_connection_per_message,
        expect: args.expect,
        deadline: started + duration,
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        template: tokio::sync::Mutex::new(None),
    });
    let tasks: Vec<_> = (0..args.conns)
        .map(|n| tokio::spawn(connection(shared.clone(), n)))
        .collect();
    let progress = (!args.quiet).then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let done = shared.done.load(Ordering::Relaxed);
                output::note(&format!(
                    "\r[{:>4.0}s] {done} messages, {} msg/s   ",
                    started.elapsed().as_secs_f64(),
                    done - last
                ));
                last = done;
            }
        })
    });
    let mut total = Tally::default();
    let mut per_conn = Vec::new();
    for t in tasks {
        let t = t.await.context("a connection task failed")?;
        per_conn.push(t.completed);
        total.latencies_us.extend(t.latencies_us);
        total.negotiations_us.extend(t.negotiations_us);
        total.completed += t.completed;
        total.unexpected += t.unexpected;
        total.unfinished += t.unfinished;
        for (k, v) in t.verdicts {
            *total.verdicts.entry(k).or_default() += v;
        }
        for (k, v) in t.actions {
            *total.actions.entry(k).or_default() += v;
        }
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
        output::note("\n");
    }
    total.latencies_us.sort_unstable();
    let lat = &total.latencies_us;
    let rate = total.completed as f64 / elapsed.as_secs_f64();
    let slowest_negotiation = total.negotiations_us.iter().max().copied().unwrap_or(0);
    let fewest = per_conn.iter().min().copied().unwrap_or(0);
    let errors: u64 = total.errors.values().sum();
    let ms = |us: u64| us as f64 / 1000.0;
    // The report is built whole, then written once through a handle.
    let mut out = String::new();
    if args.json {
        outln!(
            out,
            "{}",
            json!({
                "milter": spec.to_string(),
                "conns": args.conns,
                "messages_per_conn": args.messages,
                "new_connection_per_message": args.new_connection_per_message,
                "elapsed_s": elapsed.as_secs_f64(),
                "messages": total.completed,
                "msgs_per_s": rate,
                "latency_ms": {
                    "p50": ms(percentile(lat, 50.0)),
                    "p90": ms(percentile(lat, 90.0)),
                    "p99": ms(percentile(lat, 99.0)),
                    "max": ms(lat.last().copied().unwrap_or(0)),
                },
                "negotiations": total.negotiations_us.len(),
                "slowest_negotiation_ms": ms(slowest_negotiation),
                "fewest_messages_on_a_connection": fewest,
                "verdicts": total.verdicts,
                "actions": total.actions,
                "unexpected_verdicts": total.unexpected,
                "unfinished": total.unfinished,
                "errors": total.errors,
            })
        );
    } else {
        outln!(
            out,
            "milter {spec}: {} connections x {} messages{}",
            args.conns,
            args.messages,
            if args.new_connection_per_message {
                " (new connection per message)"
            } else {
                ""
            }
        );
        outln!(
            out,
            "{} messages in {:.2} s: {rate:.0} msg/s",
            total.completed,
            elapsed.as_secs_f64()
        );
        if total.unfinished > 0 {
            outln!(
                out,
                "unfinished (in flight when --duration ended the run): {}",
                total.unfinished
            );
        }
        outln!(
            out,
            "latency per message: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            ms(percentile(lat, 50.0)),
            ms(percentile(lat, 90.0)),
            ms(percentile(lat, 99.0)),
            ms(lat.last().copied().unwrap_or(0))
        );
        outln!(
            out,
            "negotiations: {}, slowest {:.3} ms; fewest messages on one connection: {fewest}",
            total.negotiations_us.len(),
            ms(slowest_negotiation)
        );
        let list = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!(
            out,
            "verdicts: {}",
            if total.verdicts.is_empty() {
                "none".into()
            } else {
                list(&total.verdicts)
            }
        );
        outln!(
            out,
            "actions: {}",
            if total.actions.is_empty() {
                "none".into()
            } else {
                list(&total.actions)
            }
        );
        if total.unexpected > 0 {
            outln!(
                out,
                "unexpected verdicts (expected {:?}): {}",
                args.expect,
                total.unexpected
            );
        }
        outln!(out, "errors: {errors}");
        for (e, n) in &total.errors {
            outln!(out, "  {n} x {e}");
        }
    }
    output::emit(&out)?;
    Ok(
        if errors == 0 && total.unexpected == 0 && total.completed > 0 {
            exit::ACCEPTED
        } else {
            exit::ERROR
        },
    )
}
