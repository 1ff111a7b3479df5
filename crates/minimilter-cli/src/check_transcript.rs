//! `minimilter check --transcript FILE`: one transaction recorded by
//! `minimilter record`, shown as `check` shows one it runs itself: the
//! negotiation, each step with the milter's answer and modifications (with
//! the time the milter took, as recorded), and the verdict, with the same
//! exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use milter_proto::{Answer, Dispatch, MacroStage, MilterOptions, Response, SmtpReply, Step};
use minimilter::StepOutcome;
use minimilter::transaction::{Outcome, RefusedRcpt, StepRecord, Transcript as Played};
use serde_json::{Value, json};

use crate::check::{self, CheckArgs};
use crate::exit;
use crate::json::flag_names;
use crate::output::{self, outln};
use crate::transcript::codec::response_from_json;
use crate::transcript::file::{Item, RecordedStep, Transcript};

/// `check`'s options plus `--transcript`.
#[derive(Args, Debug)]
pub struct CheckCommand {
    /// Show one transaction recorded by `minimilter record` (a file of the
    /// transcript directory) instead of running a message through a milter.
    #[arg(long, value_name = "FILE", conflicts_with = "socket")]
    pub transcript: Option<PathBuf>,
    #[command(flatten)]
    pub args: CheckArgs,
}

/// Runs `check` or, with `--transcript`, shows the recorded transaction.
pub async fn run(cmd: CheckCommand) -> anyhow::Result<u8> {
    match &cmd.transcript {
        Some(path) => show(path, cmd.args.json),
        None => check::run(cmd.args).await,
    }
}

fn detail(s: &RecordedStep) -> String {
    let text = |k: &str| match s.line.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let first_arg = || {
        s.line
            .get("args")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match s.step {
        Step::Connect => format!("CONNECT {} [{}]", text("hostname"), text("address")),
        Step::Helo => format!("HELO {}", text("name")),
        Step::Mail => format!("MAIL FROM:{}", first_arg()),
        Step::Rcpt => format!("RCPT TO:{}", first_arg()),
        Step::Data => "DATA".into(),
        Step::Header => format!("HEADER {}", text("name")),
        Step::EndOfHeaders => "END OF HEADERS".into(),
        Step::Body => match s.line.get("body") {
            Some(Value::Object(m)) => format!(
                "BODY {} bytes (not kept)",
                m.get("len").and_then(Value::as_u64).unwrap_or(0)
            ),
            Some(Value::String(b)) => format!("BODY {} bytes", b.len()),
            _ => "BODY".into(),
        },
        Step::EndOfMessage => "END OF MESSAGE".into(),
        Step::Unknown => format!("UNKNOWN {}", text("text")),
    }
}

/// What a step not sent to the milter was about, from the macros the MTA
/// sent for it (Postfix's names).
fn not_sent_detail(step: Step, pairs: &[(bytes::Bytes, bytes::Bytes)]) -> String {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let with = |label: &str, v: Option<String>| match v {
        Some(v) => format!("{label} {v}"),
        None => label.to_owned(),
    };
    match step {
        Step::Connect => with("CONNECT", get("_")),
        Step::Helo => with("HELO", get("{client_helo}")),
        Step::Mail => {
            with("MAIL FROM:", get("{mail_addr}").map(|a| format!("<{a}>"))).replace(": <", ":<")
        }
        Step::Rcpt => {
            with("RCPT TO:", get("{rcpt_addr}").map(|a| format!("<{a}>"))).replace(": <", ":<")
        }
        Step::Data => "DATA".into(),
        Step::EndOfHeaders => "END OF HEADERS".into(),
        other => other.to_string().to_uppercase(),
    }
}

fn answer(s: &RecordedStep) -> Option<Answer> {
    let r = response_from_json(s.answer_line.as_ref()?).ok()?;
    Some(match r {
        Response::Continue => Answer::Continue,
        Response::Accept => Answer::Accept,
        Response::Reject => Answer::Reject,
        Response::Tempfail => Answer::Tempfail,
        Response::Discard => Answer::Discard,
        Response::Skip => Answer::Skip,
        Response::Shutdown => Answer::Shutdown,
        Response::ReplyCode(text) => Answer::Reply(SmtpReply::parse_wire(&text).ok()?),
        _ => return None,
    })
}

/// The recorded transaction in the shape `check` prints (if the milter
/// answered the negotiation), and whether it reached a verdict (a
/// transaction the client reset or left has none; its `Played` then holds
/// a stand-in outcome that is not shown).
fn played(t: &Transcript, warnings: &mut Vec<String>) -> Option<(MilterOptions, Played, bool)> {
    let a = t.answer.as_ref()?;
    let options = MilterOptions {
        version: a.version,
        actions: a.actions,
        protocol: a.protocol,
        macros: a
            .macros
            .iter()
            .filter_map(|(stage, names)| {
                Some((
                    MacroStage::from_u32(*stage)?,
                    names.split_whitespace().map(str::to_owned).collect(),
                ))
            })
            .collect(),
    };
    let mut steps = Vec::new();
    let mut refused_rcpts = Vec::new();
    let mut modifications = Vec::new();
    let mut quarantine = None;
    for item in &t.items {
        if let Item::Macros(code, pairs) = item {
            // The milter negotiated the step away; the MTA sent its macros.
            if let Some(step) = Step::from_command_code(*code) {
                steps.push(StepRecord {
                    detail: not_sent_detail(step, pairs),
                    outcome: StepOutcome {
                        step,
                        dispatch: Dispatch::NotSent,
                        answer: None,
                        modifications: Vec::new(),
                        progress: 0,
                        elapsed: Duration::ZERO,
                    },
                });
            }
            continue;
        }
        let Item::Step(s) = item else { continue };
        let ans = answer(s);
        let dispatch = match s.line.get("reply").and_then(Value::as_str) {
            Some("no-reply") => Dispatch::NoReply,
            _ if ans.is_none() => Dispatch::NoReply,
            _ => Dispatch::AwaitAnswer,
        };
        let mut mods = Vec::new();
        for m in &s.modifications {
            match response_from_json(m) {
                Ok(r) => mods.push(r),
                Err(e) => warnings.push(format!("{}: a modification not shown: {e:#}", s.step)),
            }
        }
        for m in &mods {
            if let Response::Quarantine(r) = m {
                quarantine = Some(String::from_utf8_lossy(r).into_owned());
            }
        }
        if s.step == Step::EndOfMessage {
            modifications.extend(mods.iter().cloned());
        }
        if s.step == Step::Rcpt
            && let Some(a) = &ans
            && matches!(a.name(), "reject" | "tempfail")
        {
            refused_rcpts.push(RefusedRcpt {
                rcpt: detail(s).trim_start_matches("RCPT TO:").to_owned(),
                temporary: a.name() == "tempfail",
                reply: match a {
                    Answer::Reply(r) => Some(r.display_text()),
                    _ => None,
                },
            });
        }
        steps.push(StepRecord {
            detail: detail(s),
            outcome: StepOutcome {
                step: s.step,
                dispatch,
                answer: ans,
                modifications: mods,
                progress: s.progress,
                elapsed: Duration::from_micros(s.elapsed_us.unwrap_or(0)),
            },
        });
    }
    let v = &t.verdict;
    let at = v.at.unwrap_or(Step::EndOfMessage);
    let outcome = match v.name.as_str() {
        "accept" => Outcome::Accepted,
        "reject" => Outcome::Rejected {
            at,
            reply: v.reply.clone(),
        },
        "tempfail" => Outcome::Tempfailed {
            at,
            reply: v.reply.clone(),
        },
        "discard" => Outcome::Discarded { at },
        "shutdown" => Outcome::Shutdown { at },
        _ => Outcome::Accepted,
    };
    let decided = matches!(
        v.name.as_str(),
        "accept" | "reject" | "tempfail" | "discard" | "shutdown"
    );
    Some((
        options.clone(),
        Played {
            options,
            steps,
            outcome,
            refused_rcpts,
            modifications,
            quarantine,
            delivered: None,
            warnings: warnings.clone(),
            session_ended: false,
            body_not_sent: None,
        },
        decided,
    ))
}

fn show(path: &Path, as_json: bool) -> anyhow::Result<u8> {
    let t = Transcript::read_with(path, as_json)?;
    if as_json {
        let v = json!({
            "transcript": path.display().to_string(),
            "verdict": {"verdict": t.verdict.name, "at": t.verdict.at.map(Step::name), "reply": t.verdict.reply},
            "end": t.end_reason,
            "lines": t.lines,
        });
        output::emit(&format!("{v}\n")).context("writing the transcript")?;
        return Ok(exit_code(&t.verdict.name));
    }
    let mut out = String::new();
    outln!(
        out,
        "transcript {}: connection {}, transaction {}, recorded at {} ms since 1970",
        path.display(),
        t.connection,
        t.transaction,
        t.started_unix_ms
    );
    if let Some(id) = t.queue_id() {
        outln!(out, "queue id (macro i): {id}");
    }
    let o = &t.offer;
    outln!(
        out,
        "MTA offered protocol version {}; actions {}; protocol {}",
        o.version,
        flag_names(&o.actions),
        flag_names(&o.protocol)
    );
    let mut warnings = Vec::new();
    if t.truncated {
        warnings.push(
            "the recording was truncated at its size limit (64 MiB of events): \
             the steps after that are not shown"
                .to_owned(),
        );
    }
    let notes: String = t
        .recorded_notes
        .iter()
        .map(|n| format!("note (recorded): {n}\n"))
        .collect();
    match played(&t, &mut warnings) {
        Some((options, p, decided)) => {
            outln!(
                out,
                "milter (recorded): protocol version {}",
                options.version
            );
            outln!(out, "  actions:  {}", flag_names(&options.actions));
            outln!(out, "  protocol: {}", flag_names(&options.protocol));
            for (stage, names) in &options.macros {
                outln!(out, "  macros at {stage:?}: {}", names.join(" "));
            }
            check::print_steps(&mut out, &p.steps, Some(&options));
            if decided {
                check::print_verdict(&mut out, &p);
                outln!(out, "(transaction ended: {})", t.end_reason);
                out.push_str(&notes);
                output::emit(&out)?;
                return Ok(check::exit_code(&p.outcome));
            }
            check::print_refusals(&mut out, &p);
            outln!(
                out,
                "verdict: none (the transaction ended before the milter decided: {})",
                t.end_reason
            );
            out.push_str(&notes);
            output::emit(&out)?;
            Ok(exit::NO_VERDICT)
        }
        None => {
            for item in &t.items {
                if let Item::Step(s) = item {
                    outln!(
                        out,
                        "  {:<40} -> {}",
                        detail(s),
                        s.answer
                            .as_ref()
                            .map(|a| a.describe())
                            .unwrap_or("-".into())
                    );
                }
            }
            for w in &warnings {
                outln!(out, "warning: {w}");
            }
            outln!(
                out,
                "verdict: {} (transaction ended: {})",
                t.verdict.describe(),
                t.end_reason
            );
            out.push_str(&notes);
            output::emit(&out)?;
            Ok(exit_code(&t.verdict.name))
        }
    }
}

fn exit_code(verdict: &str) -> u8 {
    match verdict {
        "accept" => exit::ACCEPTED,
        "reject" => exit::REJECTED,
        "tempfail" | "shutdown" => exit::TEMPFAILED,
        "discard" => exit::DISCARDED,
        _ => exit::NO_VERDICT,
    }
}
