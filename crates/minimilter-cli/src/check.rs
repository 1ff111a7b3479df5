//! `minimilter check`: one message through one milter, with a transcript.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use milter_proto::{Answer, Dispatch, MilterOptions, Offer, Protocol, Response, Step};
use minimilter::transaction::{Outcome, StepRecord, Transcript};
use minimilter::{ClientConfig, ClientError, MessageSpec, MilterClient, SocketSpec};

use crate::envelope::EnvelopeArgs;
use crate::exit;
use crate::json;
use crate::output::{self, outln};
use crate::timeouts::Timeouts;

/// Options of `minimilter check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The milter's socket: unix:/path, local:/path, inet:host:port,
    /// inet:port@host or inet6:port@host.
    #[arg(required_unless_present = "transcript")]
    pub socket: Option<String>,
    /// The message (headers, blank line, body). Read from standard input if
    /// omitted or `-`; a small built-in test message if standard input is a
    /// terminal.
    pub message: Option<PathBuf>,
    #[command(flatten)]
    pub envelope: EnvelopeArgs,
    /// Protocol version to offer, with Postfix's flags for it (2, 3, 4 or 6).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=6))]
    pub protocol_version: u32,
    /// Print the message as Postfix would deliver it.
    #[arg(long)]
    pub show_message: bool,
    /// Print the whole result as JSON (one object) instead of a transcript;
    /// an error of ours (exit status 1) as `{"error": "..."}`.
    #[arg(long)]
    pub json: bool,
    /// Write the body the milter replaced the message's body with (its
    /// replace-body chunks joined, bytes exactly as sent) to FILE. FILE is
    /// removed first, so afterwards it exists only if the milter replaced
    /// the body.
    #[arg(long, value_name = "FILE")]
    pub body_out: Option<PathBuf>,
    #[command(flatten)]
    pub timeouts: Timeouts,
}

const SAMPLE: &str = "From: Sender <sender@example.com>\r\n\
To: Recipient <recipient@example.org>\r\n\
Subject: minimilter check\r\n\
Message-ID: <check@minimilter.invalid>\r\n\
\r\n\
This is a test message from minimilter check.\r\n";

fn read_message(path: &Option<PathBuf>) -> anyhow::Result<Bytes> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let data = std::fs::read(p)
                .with_context(|| format!("reading message file {}", p.display()))?;
            Ok(Bytes::from(data))
        }
        _ if std::io::stdin().is_terminal() => Ok(Bytes::from_static(SAMPLE.as_bytes())),
        _ => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .context("reading the message from standard input")?;
            Ok(Bytes::from(data))
        }
    }
}

/// Builds the session description from the options.
pub fn message_spec(args: &CheckArgs, message: Bytes) -> anyhow::Result<MessageSpec> {
    args.envelope.message_spec(message)
}

/// Runs `check`; returns the exit code.
pub async fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let spec: SocketSpec = args.socket.as_deref().unwrap_or_default().parse()?;
    let message = read_message(&args.message)?;
    let msg_spec = message_spec(&args, message)?;
    let cfg = args.timeouts.apply(ClientConfig {
        offer: Offer::postfix_version(args.protocol_version).with_context(|| {
            format!(
                "--protocol-version {} (use 2, 3, 4 or 6)",
                args.protocol_version
            )
        })?,
        ..ClientConfig::default()
    })?;
    if let Some(path) = &args.body_out {
        remove_stale(path)?;
    }
    // The result is built whole, then written once through a handle.
    let mut out = String::new();
    let code = match MilterClient::connect(&spec, cfg).await {
        Err(e) => report_error(&mut out, &args, &spec, None, &[], &e),
        Ok(mut client) => match minimilter::run_message(&mut client, &msg_spec).await {
            Ok(t) => {
                if t.session_ended {
                    client.close().await;
                } else {
                    let _ = client.quit().await;
                }
                let body_out = match &args.body_out {
                    Some(path) => write_body(path, &t)?,
                    None => None,
                };
                if args.json {
                    let mut v = json::check(&spec, Some(&t.options), Some(&t), None, &[]);
                    if let Some(path) = &args.body_out {
                        v["body_out"] = serde_json::json!({
                            "path": path.display().to_string(),
                            "bytes": body_out,
                        });
                    }
                    outln!(out, "{v}");
                } else {
                    print_negotiation(&mut out, &spec, &t);
                    print_steps(&mut out, &t.steps, Some(&t.options));
                    print_verdict(&mut out, &t);
                    if let Some(path) = &args.body_out {
                        match body_out {
                            Some(n) => outln!(
                                out,
                                "--- replaced body ({n} bytes) written to {}",
                                path.display()
                            ),
                            None => outln!(
                                out,
                                "--- the milter did not replace the body; {} not written",
                                path.display()
                            ),
                        }
                    }
                    if args.show_message {
                        print_message(&mut out, &t);
                    }
                }
                exit_code(&t.outcome)
            }
            Err(interrupted) => report_error(
                &mut out,
                &args,
                &spec,
                Some(client.options()),
                &interrupted.steps,
                &interrupted.error,
            ),
        },
    };
    output::emit(&out)?;
    Ok(code)
}

/// Removes what an earlier run left at the `--body-out` path, so the file
/// exists afterwards only if this milter replaced the body.
fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the old --body-out file {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Writes the replacement body, if the milter sent one; its size.
fn write_body(path: &Path, t: &Transcript) -> anyhow::Result<Option<usize>> {
    let mut body = Vec::new();
    let mut replaced = false;
    for m in &t.modifications {
        if let Response::ReplaceBody(chunk) = m {
            replaced = true;
            body.extend_from_slice(chunk);
        }
    }
    if !replaced {
        return Ok(None);
    }
    std::fs::write(path, &body)
        .with_context(|| format!("writing the replaced body to {}", path.display()))?;
    Ok(Some(body.len()))
}

pub(crate) fn exit_code(o: &Outcome) -> u8 {
    match o {
        Outcome::Accepted => exit::ACCEPTED,
        Outcome::Rejected { .. } => exit::REJECTED,
        Outcome::Tempfailed { .. } | Outcome::Shutdown { .. } => exit::TEMPFAILED,
        Outcome::Discarded { .. } => exit::DISCARDED,
    }
}

fn report_error(
    out: &mut String,
    args: &CheckArgs,
    spec: &SocketSpec,
    options: Option<&milter_proto::MilterOptions>,
    steps: &[StepRecord],
    e: &ClientError,
) -> u8 {
    let code = if e.is_input_error() {
        exit::ERROR
    } else if e.is_protocol_error() {
        exit::PROTOCOL
    } else {
        exit::UNREACHABLE
    };
    if args.json {
        outln!(out, "{}", json::check(spec, options, None, Some(e), steps));
    } else {
        outln!(out, "milter {spec}");
        print_steps(out, steps, options);
        outln!(out, "error: {}", output::chain(e));
        let verdict = match code {
            exit::ERROR => "verdict: none (the message or session cannot be sent to a milter)",
            exit::PROTOCOL => {
                "verdict: none (protocol violation); an MTA would apply its milter_default_action"
            }
            _ => {
                "verdict: none (milter unreachable or silent); an MTA would apply its milter_default_action"
            }
        };
        outln!(out, "{verdict}");
    }
    code
}

fn print_negotiation(out: &mut String, spec: &SocketSpec, t: &Transcript) {
    let o = &t.options;
    outln!(out, "milter {spec}: protocol version {}", o.version);
    outln!(out, "  actions:  {}", json::flag_names(&o.actions));
    outln!(out, "  protocol: {}", json::flag_names(&o.protocol));
    for (stage, names) in &o.macros {
        outln!(out, "  macros at {stage:?}: {}", names.join(" "));
    }
}

/// One line per step: what was sent, what came back. Modifications follow
/// their step, each header as Postfix would write it.
pub(crate) fn print_steps(out: &mut String, steps: &[StepRecord], options: Option<&MilterOptions>) {
    let reasons = json::not_sent_reasons(steps, options);
    let leading_space =
        options.is_some_and(|o| o.protocol.contains(Protocol::HEADER_LEADING_SPACE));
    for (s, reason) in steps.iter().zip(reasons) {
        let o = &s.outcome;
        let answer = match (&o.dispatch, &o.answer) {
            (Dispatch::NotSent, _) => format!(
                "not sent ({})",
                reason.unwrap_or("negotiated away or skipped")
            ),
            (Dispatch::NoReply, _) => "sent, no reply (negotiated)".to_owned(),
            (_, Some(Answer::Reply(r))) => format!(
                "{} \"{}\"",
                o.answer.as_ref().map(Answer::name).unwrap_or("?"),
                r.display_text().replace('\n', " / ")
            ),
            (_, Some(a)) => a.name().to_owned(),
            (_, None) => "?".to_owned(),
        };
        let ms = o.elapsed.as_secs_f64() * 1000.0;
        let progress = if o.progress > 0 {
            format!(", {} progress", o.progress)
        } else {
            String::new()
        };
        // A body record counts bytes and chunks: never cut short.
        let detail = if o.step == Step::Body {
            s.detail.clone()
        } else {
            truncate(&s.detail, 40)
        };
        outln!(out, "  {detail:<40} -> {answer} ({ms:.2} ms{progress})");
        for m in &o.modifications {
            // Continuation lines of a header start under the text of the
            // first, with their own folding whitespace, as delivered.
            let text = describe(m, leading_space);
            let mut lines = text.split('\n');
            outln!(
                out,
                "  {:<40}    + {}",
                "",
                lines.next().unwrap_or_default()
            );
            for line in lines {
                outln!(out, "  {:<40}      {line}", "");
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// A header field as Postfix writes it when a milter adds or changes it:
/// `Name:`, a space unless the milter negotiated leading-space handling
/// (then the value is byte-exact and brings its own), and each LF in the
/// value starts a continuation line, which gets a tab unless it starts with
/// a space or tab. Lines are joined with LF; a CR before an LF is left out
/// here (Postfix keeps it as data).
pub fn header_field(name: &[u8], value: &[u8], leading_space: bool) -> String {
    let value = String::from_utf8_lossy(value);
    let mut field = String::from_utf8_lossy(name).into_owned();
    field.push(':');
    if !leading_space {
        field.push(' ');
    }
    for (i, line) in value.split('\n').enumerate() {
        if i > 0 {
            field.push('\n');
            if !line.starts_with([' ', '\t']) {
                field.push('\t');
            }
        }
        field.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    field
}

/// A modification in words (headers may take several lines, LF-separated).
pub fn describe(m: &Response, leading_space: bool) -> String {
    let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let field = |name: &Bytes, value: &Bytes| header_field(name, value, leading_space);
    match m {
        Response::AddHeader { name, value } => format!("add header {}", field(name, value)),
        Response::InsertHeader { index, name, value } => {
            format!("insert header at {index}: {}", field(name, value))
        }
        Response::ChangeHeader { index, name, value } if value.is_empty() => {
            format!("delete header {} #{index}", s(name))
        }
        Response::ChangeHeader { index, name, value } => {
            format!(
                "change header {} #{index} to: {}",
                s(name),
                field(name, value)
            )
        }
        Response::AddRcpt(r) => format!("add recipient {}", s(r)),
        Response::AddRcptPar { rcpt, args } => format!(
            "add recipient {} {}",
            s(rcpt),
            args.as_ref().map(s).unwrap_or_default()
        ),
        Response::DelRcpt(r) => format!("delete recipient {}", s(r)),
        Response::ChangeFrom { sender, args } => format!(
            "change sender to {} {}",
            s(sender),
            args.as_ref().map(s).unwrap_or_default()
        ),
        Response::ReplaceBody(b) => format!("replace body (chunk of {} bytes)", b.len()),
        Response::Quarantine(r) => format!("quarantine: {}", s(r)),
        other => format!("{other:?}"),
    }
}

pub(crate) fn print_verdict(out: &mut String, t: &Transcript) {
    print_refusals(out, t);
    let line = match &t.outcome {
        Outcome::Accepted if t.quarantine.is_some() => format!(
            "accept, but quarantined (held): {}",
            t.quarantine.as_deref().unwrap_or_default()
        ),
        Outcome::Accepted => "accept (delivered)".to_owned(),
        Outcome::Rejected { at, reply } => format!(
            "reject at {at}: {}",
            reply.as_deref().unwrap_or("(MTA default 5xx text)")
        ),
        Outcome::Tempfailed { at, reply } => format!(
            "tempfail at {at}: {}",
            reply.as_deref().unwrap_or("(MTA default 4xx text)")
        ),
        Outcome::Discarded { at } => format!("discard at {at} (accepted, not delivered)"),
        Outcome::Shutdown { at } => format!("shutdown at {at} (the MTA answers 421 and closes)"),
    };
    outln!(out, "verdict: {line}");
}

/// The recipients refused one by one, and the warnings.
pub(crate) fn print_refusals(out: &mut String, t: &Transcript) {
    for r in &t.refused_rcpts {
        let kind = if r.temporary {
            "tempfailed"
        } else {
            "rejected"
        };
        match &r.reply {
            Some(text) => outln!(out, "recipient {} {kind}: {text}", r.rcpt),
            None => outln!(out, "recipient {} {kind}", r.rcpt),
        }
    }
    for w in &t.warnings {
        outln!(out, "warning: {w}");
    }
}

/// An envelope address without the angle brackets a milter may have put
/// around it: Postfix stores `<a@b>` and `a@b` alike as `a@b`.
pub(crate) fn bare(address: &str) -> &str {
    let t = address.trim();
    t.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t)
}

fn print_message(out: &mut String, t: &Transcript) {
    match &t.delivered {
        Some(m) => {
            outln!(
                out,
                "--- envelope: from <{}> to {}",
                bare(&m.sender),
                m.recipients
                    .iter()
                    .map(|r| format!("<{}>", bare(&r.address)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            outln!(out, "--- message as delivered");
            out.push_str(&String::from_utf8_lossy(&m.render()));
        }
        None => outln!(out, "--- no message is delivered"),
    }
}
