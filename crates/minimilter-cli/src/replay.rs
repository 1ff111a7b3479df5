//! `minimilter replay`: play recorded transactions to a milter as the MTA
//! played them (the same offer, macros, steps and body chunks) and report
//! where its answers and modifications differ from the recorded ones.
//!
//! The replay acts as the MTA would have acted on the new answers: a
//! decisive answer (anything but continue or skip, except at a recipient)
//! ends the replay of that transaction, as it would have ended the SMTP
//! transaction. A step the new milter negotiates away counts as continue.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use milter_proto::{Command, Offer, Step};
use minimilter::{ClientConfig, MilterClient, SocketSpec};
use serde_json::{Map, Value, json};

use crate::output::{self, outln};
use crate::record::store::list_transcripts;
use crate::timeouts::Timeouts;
use crate::transcript::codec::response_to_json;
use crate::transcript::file::{Item, RecordedStep, Transcript};
use crate::transcript::{Answered, Verdict};

/// Options of `minimilter replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A directory of transcripts as `record` writes it (its period
    /// subdirectories are read too; none at all is an error), or one
    /// transcript file.
    pub dir: PathBuf,
    /// The milter to replay to: unix:/path, inet:host:port, ...
    pub socket: String,
    /// Print the whole report as one JSON object; an error that stops the
    /// replay as `{"error": "..."}`.
    #[arg(long)]
    pub json: bool,
    /// Transcripts replayed at once, each on its own milter connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub conns: u32,
    /// Compare the headers named NAME that the milter adds, inserts or
    /// changes by name and position only, not by value: for values that
    /// differ on every run by design, such as a DKIM signer's
    /// `DKIM-Signature` (its `t=` time and signature) or a date. Repeat for
    /// several; case does not matter.
    #[arg(long, value_name = "NAME")]
    pub ignore_value: Vec<String>,
    #[command(flatten)]
    pub timeouts: Timeouts,
}

/// What one transcript gave.
#[derive(Debug, Clone)]
pub struct MessageReport {
    /// The file.
    pub path: PathBuf,
    /// The recorded connection and transaction numbers, and when the
    /// connection started (ms since the Unix epoch).
    pub origin: (u64, u32, u64),
    /// As recorded.
    pub recorded: Verdict,
    /// As replayed (absent if the replay failed before a verdict).
    pub replayed: Option<Verdict>,
    /// Step-by-step differences, in words.
    pub differences: Vec<String>,
    /// What could not be replayed exactly, and negotiation changes.
    pub notes: Vec<String>,
    /// Why the replay failed, if it did.
    pub error: Option<String>,
    /// The MTA's queue id (macro `i`), if it sent one.
    pub queue_id: Option<String>,
}

impl MessageReport {
    fn differs(&self) -> bool {
        self.error.is_some() || !self.differences.is_empty()
    }

    fn replayed_name(&self) -> &str {
        match (&self.replayed, &self.error) {
            (_, Some(_)) => "error",
            (Some(v), None) => &v.name,
            (None, None) => "none",
        }
    }
}

fn label(s: &RecordedStep) -> String {
    let text = |k: &str| {
        s.line
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match s.step {
        Step::Mail | Step::Rcpt => {
            let first = s
                .line
                .get("args")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("{} {first}", s.step)
        }
        Step::Header => format!("header {}", text("name")),
        Step::Helo => format!("helo {}", text("name")),
        Step::Connect => format!("connect {}", text("hostname")),
        other => other.to_string(),
    }
}

fn decisive(a: &Answered) -> bool {
    a.answer != "continue" && a.answer != "skip"
}

fn describe_answer(a: Option<&Answered>) -> String {
    a.map(Answered::describe)
        .unwrap_or_else(|| "continue (no answer awaited)".into())
}

/// Longest string value shown whole in a difference; a longer one (a
/// replaced body, a long signature) shows a part and its size: from where
/// it first differs from its counterpart, else its start.
const SHOWN_CHARS: usize = 120;

fn cut(t: &str, from: usize) -> String {
    let n = t.chars().count();
    if n <= SHOWN_CHARS {
        return t.to_owned();
    }
    let start = from.saturating_sub(SHOWN_CHARS / 3).min(n - SHOWN_CHARS);
    let part: String = t.chars().skip(start).take(SHOWN_CHARS).collect();
    let before = if start > 0 { "…" } else { "" };
    let after = if start + SHOWN_CHARS < n { "…" } else { "" };
    format!("{before}{part}{after} ({} bytes)", t.len())
}

/// `v` with long strings cut, around where they differ from `other` (the
/// same place in the other list of modifications).
fn cut_long(v: &Value, other: Option<&Value>) -> Value {
    match v {
        Value::String(t) => {
            let from = match other {
                Some(Value::String(o)) => {
                    t.chars().zip(o.chars()).take_while(|(a, b)| a == b).count()
                }
                _ => 0,
            };
            Value::String(cut(t, from))
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), cut_long(x, other.and_then(|o| o.get(k)))))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| cut_long(x, other.and_then(|o| o.get(i))))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn mods_text(m: &[Map<String, Value>], other: &[Map<String, Value>]) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .enumerate()
        .map(|(i, x)| {
            let o = other.get(i).map(|o| Value::Object(o.clone()));
            cut_long(&Value::Object(x.clone()), o.as_ref()).to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn lossy(pairs: &[(Bytes, Bytes)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// A stand-in for a step the recorded MTA did not send, so that only its
/// macros go out (the client sends a step's macros even when the step is
/// negotiated away, as Postfix does).
fn stand_in(step: Step) -> Option<Command> {
    Some(match step {
        Step::Connect => Command::Connect {
            hostname: Bytes::new(),
            address: milter_proto::ConnectAddress::Unknown,
        },
        Step::Helo => Command::Helo(Bytes::new()),
        Step::Data => Command::Data,
        Step::EndOfHeaders => Command::EndOfHeaders,
        _ => return None,
    })
}

/// Macros recorded without their step: sent as the MTA sent them if the
/// replayed milter also negotiated the step away; otherwise the step cannot
/// be rebuilt, and the report says so.
async fn orphan_macros(
    client: &mut MilterClient,
    stage: u8,
    pairs: &[(Bytes, Bytes)],
    report: &mut MessageReport,
) -> Result<(), minimilter::ClientError> {
    let Some(step) = Step::from_command_code(stage) else {
        return Ok(());
    };
    match stand_in(step) {
        Some(command) if !client.would_send(step) => {
            client.step(&lossy(pairs), command).await?;
        }
        _ => report.notes.push(format!(
            "{step} was not recorded (the recorded milter did not ask for it); not replayed"
        )),
    }
    Ok(())
}

/// The modifications as compared: the value of a header named in
/// `ignore` (added, inserted or changed) left out.
fn comparable(mods: &[Map<String, Value>], ignore: &[String]) -> Vec<Map<String, Value>> {
    mods.iter()
        .map(|m| {
            let named = m
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| ignore.iter().any(|i| i.eq_ignore_ascii_case(n)));
            let header = matches!(m.get("code").and_then(Value::as_str), Some("h" | "i" | "m"));
            let mut m = m.clone();
            if named && header {
                m.insert("value".into(), Value::String("(value not compared)".into()));
            }
            m
        })
        .collect()
}

/// Replays one transcript; header values named in `ignore` are not
/// compared.
pub async fn replay_one(
    t: &Transcript,
    spec: &SocketSpec,
    cfg: ClientConfig,
    ignore: &[String],
) -> MessageReport {
    let mut report = MessageReport {
        path: t.path.clone(),
        origin: (t.connection, t.transaction, t.started_unix_ms),
        recorded: t.verdict.clone(),
        replayed: None,
        differences: Vec::new(),
        notes: Vec::new(),
        error: None,
        queue_id: t.queue_id(),
    };
    if t.truncated {
        report.notes.push(
            "the recording was truncated at its size limit: only the steps before that were replayed"
                .into(),
        );
    }
    for n in &t.recorded_notes {
        report.notes.push(format!("recorded: {n}"));
    }
    let cfg = ClientConfig {
        offer: Offer {
            version: t.offer.version,
            actions: t.offer.actions,
            protocol: t.offer.protocol,
        },
        ..cfg
    };
    let mut client = match MilterClient::connect(spec, cfg).await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("negotiation: {}", output::chain(&e)));
            return report;
        }
    };
    if let Some(a) = &t.answer {
        let o = client.options();
        if (o.version, o.actions, o.protocol) != (a.version, a.actions, a.protocol) {
            report.notes.push(format!(
                "the milter negotiated differently: recorded version {} actions {:#x} protocol {:#x}, now version {} actions {:#x} protocol {:#x}",
                a.version,
                a.actions.bits(),
                a.protocol.bits(),
                o.version,
                o.actions.bits(),
                o.protocol.bits()
            ));
        }
    }
    let mut answers = Vec::new();
    let mut stopped = false;
    for item in &t.items {
        let rs = match item {
            Item::Quit => break,
            Item::Macros(stage, pairs) => {
                if stopped {
                    continue;
                }
                if let Err(e) = orphan_macros(&mut client, *stage, pairs, &mut report).await {
                    report.error = Some(format!("macros: {}", output::chain(&e)));
                    break;
                }
                continue;
            }
            Item::Abort => {
                if stopped {
                    continue;
                }
                if let Err(e) = client.abort().await {
                    report.error = Some(format!("abort: {}", output::chain(&e)));
                    break;
                }
                continue;
            }
            Item::Step(rs) => rs,
        };
        if stopped {
            break;
        }
        let command: Command = match &rs.command {
            Ok(c) => c.clone(),
            Err(why) => {
                if report.notes.len() < 8 {
                    report
                        .notes
                        .push(format!("{} not replayed: {why}", label(rs)));
                }
                continue;
            }
        };
        let outcome = match client.step(&lossy(&rs.macros), command).await {
            Ok(o) => o,
            Err(e) => {
                report.error = Some(format!("{}: {}", label(rs), output::chain(&e)));
                break;
            }
        };
        let replayed = outcome.answer.as_ref().map(|a| Answered::new(rs.step, a));
        let same_answer = match (&rs.answer, &replayed) {
            (Some(r), Some(p)) => r == p,
            (None, None) => true,
            (Some(a), None) | (None, Some(a)) => a.answer == "continue",
        };
        if !same_answer {
            report.differences.push(format!(
                "{}: recorded {}, replayed {}",
                label(rs),
                describe_answer(rs.answer.as_ref()),
                describe_answer(replayed.as_ref())
            ));
        }
        let mods: Vec<Map<String, Value>> = outcome
            .modifications
            .iter()
            .map(|m| response_to_json(m, t.bodies))
            .collect();
        if comparable(&mods, ignore) != comparable(&rs.modifications, ignore) {
            report.differences.push(format!(
                "{}: modifications differ: recorded {}; replayed {}",
                label(rs),
                mods_text(&rs.modifications, &mods),
                mods_text(&mods, &rs.modifications)
            ));
        }
        if let Some(a) = replayed {
            if decisive(&a) && a.step != Step::Rcpt {
                stopped = true;
            }
            answers.push(a);
        }
    }
    client.close().await;
    if report.error.is_none() {
        let v = Verdict::of(&answers);
        if v.name != t.verdict.name || v.at != t.verdict.at {
            report.differences.insert(
                0,
                format!(
                    "verdict: recorded {}, replayed {}",
                    t.verdict.describe(),
                    v.describe()
                ),
            );
        }
        report.replayed = Some(v);
    }
    report
}

fn message_json(r: &MessageReport) -> Value {
    let verdict =
        |v: &Verdict| json!({"verdict": v.name, "at": v.at.map(|s| s.name()), "reply": v.reply});
    json!({
        "path": r.path.display().to_string(),
        "queue_id": r.queue_id,
        "connection": r.origin.0,
        "transaction": r.origin.1,
        "started_unix_ms": r.origin.2,
        "recorded": verdict(&r.recorded),
        "replayed": r.replayed.as_ref().map(verdict),
        "same": !r.differs(),
        "differences": r.differences,
        "notes": r.notes,
        "error": r.error,
    })
}

/// `reject → accept` counts, for the summary.
fn changes(reports: &[MessageReport]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for r in reports.iter().filter(|r| r.differs()) {
        *m.entry((r.recorded.name.clone(), r.replayed_name().to_owned()))
            .or_default() += 1;
    }
    m
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The text report.
pub fn render(reports: &[MessageReport], unreadable: &[(PathBuf, String)]) -> String {
    let mut out = String::new();
    for r in reports.iter().filter(|r| r.differs()) {
        outln!(
            out,
            "{}: {} → {}",
            r.path.display(),
            r.recorded.name,
            r.replayed_name()
        );
        if let Some(id) = &r.queue_id {
            outln!(out, "  queue id (macro i): {id}");
        }
        for d in &r.differences {
            outln!(out, "  {d}");
        }
        if let Some(e) = &r.error {
            outln!(out, "  error: {e}");
        }
        for n in &r.notes {
            outln!(out, "  note: {n}");
        }
    }
    for (p, e) in unreadable {
        outln!(out, "{}: unreadable: {e}", p.display());
    }
    let different = reports.iter().filter(|r| r.differs()).count();
    outln!(
        out,
        "{} replayed, {} the same, {} different{}",
        plural(reports.len(), "transcript"),
        reports.len() - different,
        different,
        if unreadable.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable", unreadable.len())
        }
    );
    for ((from, to), n) in changes(reports) {
        let what = if from == to {
            format!("{from} (same verdict, other answers or modifications)")
        } else {
            format!("{from} → {to}")
        };
        outln!(out, "  {what}: {}", plural(n, "message"));
    }
    out
}

/// Runs `replay`: 0 if every transcript replayed the same, 1 otherwise.
pub async fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    let spec: SocketSpec = args.socket.parse().context("milter socket")?;
    let cfg = args.timeouts.apply(ClientConfig::default())?;
    let paths = if args.dir.is_dir() {
        list_transcripts(&args.dir)?
    } else {
        vec![args.dir.clone()]
    };
    // A replay that compared nothing cannot say "no difference".
    anyhow::ensure!(
        !paths.is_empty(),
        "no transcripts (*.jsonl) in {} or its period subdirectories",
        args.dir.display()
    );
    let listed = args.dir.is_dir();
    let Replayed {
        reports,
        unreadable,
        gone,
    } = replay_all(
        &paths,
        &spec,
        cfg,
        args.conns as usize,
        Arc::new(args.ignore_value.clone()),
        listed,
    )
    .await;
    if args.json {
        let ch: Vec<Value> = changes(&reports)
            .into_iter()
            .map(|((from, to), n)| json!({"from": from, "to": to, "messages": n}))
            .collect();
        let v = json!({
            "milter": spec.to_string(),
            "transcripts": reports.len(),
            "different": reports.iter().filter(|r| r.differs()).count(),
            "gone": gone,
            "unreadable": unreadable.iter().map(|(p, e)| json!({"path": p.display().to_string(), "error": e})).collect::<Vec<_>>(),
            "changes": ch,
            "messages": reports.iter().map(message_json).collect::<Vec<_>>(),
        });
        output::emit(&format!("{v:#}\n"))?;
    } else {
        let mut text = render(&reports, &unreadable);
        if gone > 0 {
            outln!(
                text,
                "{} deleted since the directory was listed (record's --max-bytes), not replayed",
                plural(gone, "transcript")
            );
        }
        output::emit(&text)?;
    }
    let same = unreadable.is_empty() && reports.iter().all(|r| !r.differs());
    Ok(if same { 0 } else { 1 })
}

/// What `replay_all` gives: the reports, the files that could not be read,
/// and how many listed files were gone when their turn came.
pub struct Replayed {
    /// One per transcript replayed, in file order.
    pub reports: Vec<MessageReport>,
    /// Files that could not be read, with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Files of the directory listing deleted before their turn (by
    /// `record --max-bytes`, replaying a directory it is writing).
    pub gone: usize,
}

/// Replays every file, `conns` at a time; reports in file order. Each file
/// is read only when its turn comes, so memory follows `conns`, not the
/// size of the directory. `listed`: the paths come from listing a
/// directory, so one deleted since is counted as gone, not unreadable.
pub async fn replay_all(
    paths: &[PathBuf],
    spec: &SocketSpec,
    cfg: ClientConfig,
    conns: usize,
    ignore: Arc<Vec<String>>,
    listed: bool,
) -> Replayed {
    let sem = Arc::new(tokio::sync::Semaphore::new(conns.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in paths.iter().enumerate() {
        let (sem, spec, cfg, p) = (sem.clone(), spec.clone(), cfg.clone(), p.clone());
        let ignore = ignore.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            if listed
                && std::fs::symlink_metadata(&p)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                return (i, None);
            }
            let read = tokio::task::spawn_blocking({
                let p = p.clone();
                move || Transcript::read(&p)
            })
            .await;
            match read {
                Ok(Ok(t)) => (i, Some(Ok(replay_one(&t, &spec, cfg, &ignore).await))),
                Ok(Err(e)) => (i, Some(Err((p, format!("{e:#}"))))),
                Err(e) => (i, Some(Err((p, format!("reading failed: {e}"))))),
            }
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(x) => done.push(x),
            Err(e) => done.push((
                usize::MAX,
                Some(Err((
                    PathBuf::from("?"),
                    format!("replay task failed: {e}"),
                ))),
            )),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    let mut out = Replayed {
        reports: Vec::new(),
        unreadable: Vec::new(),
        gone: 0,
    };
    for (_, r) in done {
        match r {
            Some(Ok(report)) => out.reports.push(report),
            Some(Err(bad)) => out.unreadable.push(bad),
            None => out.gone += 1,
        }
    }
    out
}
