//! The `--json` shapes. Kept here (not as serde derives on library types) so
//! the libraries stay free of a serialisation dependency and the JSON shape
//! is a deliberate interface.

use bytes::Bytes;
use milter_proto::{Answer, Dispatch, MilterOptions, Response, Steps};
use minimilter::transaction::{Outcome, StepRecord, Transcript};
use minimilter::{ClientError, SocketSpec};
use serde_json::{Value, json};

/// `A | B | C` for a bitflags value.
pub fn flag_names<F: bitflags::Flags + Copy>(f: &F) -> String {
    let names: Vec<&str> = f.iter_names().map(|(n, _)| n).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" | ")
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn options(o: &MilterOptions) -> Value {
    json!({
        "version": o.version,
        "actions": o.actions.iter_names().map(|(n, _)| n).collect::<Vec<_>>(),
        "protocol": o.protocol.iter_names().map(|(n, _)| n).collect::<Vec<_>>(),
        "actions_bits": o.actions.bits(),
        "protocol_bits": o.protocol.bits(),
        "macros": o.macros.iter().map(|(s, n)| json!({"stage": format!("{s:?}"), "names": n})).collect::<Vec<_>>(),
    })
}

/// The name of a modification, as `check --json` and `bench` count it.
pub fn action_name(m: &Response) -> &'static str {
    match m {
        Response::AddHeader { .. } => "add_header",
        Response::InsertHeader { .. } => "insert_header",
        Response::ChangeHeader { value, .. } if value.is_empty() => "delete_header",
        Response::ChangeHeader { .. } => "change_header",
        Response::AddRcpt(_) | Response::AddRcptPar { .. } => "add_rcpt",
        Response::DelRcpt(_) => "delete_rcpt",
        Response::ChangeFrom { .. } => "change_from",
        Response::ReplaceBody(_) => "replace_body",
        Response::Quarantine(_) => "quarantine",
        _ => "other",
    }
}

/// One modification as JSON: its name and its fields.
pub fn modification(m: &Response) -> Value {
    let mut v = match m {
        Response::AddHeader { name, value } => json!({"name": text(name), "value": text(value)}),
        Response::ChangeHeader { index, name, value } if value.is_empty() => {
            json!({"index": index, "name": text(name)})
        }
        Response::InsertHeader { index, name, value }
        | Response::ChangeHeader { index, name, value } => {
            json!({"index": index, "name": text(name), "value": text(value)})
        }
        Response::AddRcpt(r) | Response::DelRcpt(r) => json!({"rcpt": text(r)}),
        Response::AddRcptPar { rcpt, args } => {
            json!({"rcpt": text(rcpt), "args": args.as_ref().map(text)})
        }
        Response::ChangeFrom { sender, args } => {
            json!({"sender": text(sender), "args": args.as_ref().map(text)})
        }
        Response::ReplaceBody(b) => json!({"bytes": b.len()}),
        Response::Quarantine(r) => json!({"reason": text(r)}),
        other => json!({"response": format!("{other:?}")}),
    };
    v["action"] = json!(action_name(m));
    v
}

fn answer(a: &Answer) -> Value {
    match a {
        Answer::Reply(r) => json!({"answer": a.name(), "code": r.code(), "text": r.display_text()}),
        _ => json!({"answer": a.name()}),
    }
}

/// Why each step was not sent (None for steps that were): `"skipped"` after
/// the milter answered skip to an earlier step of the same kind in this
/// message, `"not in protocol version N"` for a step that version lacks,
/// otherwise `"negotiated away"`. None throughout without the options.
pub fn not_sent_reasons(
    steps: &[StepRecord],
    options: Option<&MilterOptions>,
) -> Vec<Option<&'static str>> {
    let mut skipped = Steps::empty();
    steps
        .iter()
        .map(|s| {
            let o = &s.outcome;
            if o.answer == Some(Answer::Skip) {
                skipped |= o.step.as_set();
            }
            if o.dispatch != Dispatch::NotSent {
                return None;
            }
            let opts = options?;
            Some(if skipped.contains(o.step.as_set()) {
                "skipped"
            } else if opts.protocol.contains(o.step.no_send_bit())
                && !o.step.no_send_bit().is_empty()
            {
                "negotiated away"
            } else {
                match opts.version {
                    2 => "not in protocol version 2",
                    3 => "not in protocol version 3",
                    _ => "negotiated away",
                }
            })
        })
        .collect()
}

fn step(s: &StepRecord, not_sent: Option<&str>) -> Value {
    let o = &s.outcome;
    json!({
        "step": o.step.name(),
        "detail": s.detail,
        "sent": o.dispatch != Dispatch::NotSent,
        "not_sent": not_sent,
        "reply_expected": o.dispatch == Dispatch::AwaitAnswer,
        "answer": o.answer.as_ref().map(answer),
        "modifications": o.modifications.iter().map(modification).collect::<Vec<_>>(),
        "progress": o.progress,
        "elapsed_ms": o.elapsed.as_secs_f64() * 1000.0,
    })
}

fn outcome(o: &Outcome) -> Value {
    match o {
        Outcome::Accepted => json!({"verdict": "accept"}),
        Outcome::Rejected { at, reply } => {
            json!({"verdict": "reject", "at": at.name(), "reply": reply})
        }
        Outcome::Tempfailed { at, reply } => {
            json!({"verdict": "tempfail", "at": at.name(), "reply": reply})
        }
        Outcome::Discarded { at } => json!({"verdict": "discard", "at": at.name()}),
        Outcome::Shutdown { at } => json!({"verdict": "shutdown", "at": at.name()}),
    }
}

/// The whole `check` result.
pub fn check(
    spec: &SocketSpec,
    opts: Option<&MilterOptions>,
    t: Option<&Transcript>,
    error: Option<&ClientError>,
    steps_so_far: &[StepRecord],
) -> Value {
    let steps = t.map(|t| t.steps.as_slice()).unwrap_or(steps_so_far);
    let reasons = not_sent_reasons(steps, opts);
    let mut v = json!({
        "milter": spec.to_string(),
        "negotiated": opts.map(options),
        "steps": steps.iter().zip(reasons).map(|(s, r)| step(s, r)).collect::<Vec<_>>(),
    });
    if let Some(t) = t {
        let mut verdict = outcome(&t.outcome);
        verdict["quarantine"] = json!(t.quarantine);
        v["result"] = verdict;
        v["refused_rcpts"] = json!(
            t.refused_rcpts
                .iter()
                .map(|r| json!({"rcpt": r.rcpt, "temporary": r.temporary, "reply": r.reply}))
                .collect::<Vec<_>>()
        );
        v["modifications"] = json!(t.modifications.iter().map(modification).collect::<Vec<_>>());
        v["warnings"] = json!(t.warnings);
        v["body_not_sent"] = match &t.body_not_sent {
            Some(u) => json!({
                "bytes": u.bytes,
                "chunks": u.chunks,
                "reason": if u.skipped { "skipped" } else { "negotiated away" },
            }),
            None => Value::Null,
        };
        v["delivered"] = match &t.delivered {
            Some(m) => json!({
                "sender": crate::check::bare(&m.sender),
                "recipients": m.recipients.iter().map(|r| json!({"address": crate::check::bare(&r.address), "args": r.args})).collect::<Vec<_>>(),
                "message": String::from_utf8_lossy(&m.render()),
            }),
            None => Value::Null,
        };
    }
    if let Some(e) = error {
        let verdict = if e.is_input_error() {
            "input_error"
        } else if e.is_protocol_error() {
            "protocol_error"
        } else {
            "unreachable"
        };
        v["result"] = json!({
            "verdict": verdict,
            "error": crate::output::chain(e),
        });
    }
    v
}
