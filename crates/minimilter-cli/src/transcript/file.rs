//! Reading a transcript file back into the steps a replay plays and the
//! answers it compares with.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use milter_proto::{Actions, Command, Protocol, Step};
use serde_json::{Map, Value};

use std::io::{BufRead, Read};

use super::codec::{body_elided, command_from_json, pairs_from_json};
use super::recorder::MAX_TRANSCRIPT_BYTES;
use super::{Answered, Bodies, SCHEMA, VERSION, Verdict, step_from_name};

/// The MTA's offer or the milter's answer at negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    /// Protocol version.
    pub version: u32,
    /// Action bits.
    pub actions: Actions,
    /// Protocol bits.
    pub protocol: Protocol,
    /// Macro lists (answer only): `(stage, names)`.
    pub macros: Vec<(u32, String)>,
}

/// One step as recorded: what the MTA sent and what the milter answered.
#[derive(Debug, Clone)]
pub struct RecordedStep {
    /// The step.
    pub step: Step,
    /// The command, or why it cannot be sent again (a hashed body).
    pub command: Result<Command, String>,
    /// The macros sent just before it.
    pub macros: Vec<(Bytes, Bytes)>,
    /// The command's JSON line.
    pub line: Map<String, Value>,
    /// The final answer, if the milter was to give one.
    pub answer: Option<Answered>,
    /// The final answer's JSON object (code and fields).
    pub answer_line: Option<Map<String, Value>>,
    /// Microseconds from the command to its final answer, as recorded.
    pub elapsed_us: Option<u64>,
    /// Progress packets received while the answer was awaited.
    pub progress: u32,
    /// Modifications (and quarantine) sent with the answer, as JSON objects
    /// (code and fields, in the transcript's bodies mode).
    pub modifications: Vec<Map<String, Value>>,
}

/// An entry of a transcript, in order.
#[derive(Debug, Clone)]
pub enum Item {
    /// A step.
    Step(Box<RecordedStep>),
    /// Macros the MTA sent for a step it then did not send (the milter
    /// had negotiated the step away): `(stage code, pairs)`.
    Macros(u8, Vec<(Bytes, Bytes)>),
    /// `A`: the MTA ended the message.
    Abort,
    /// `Q` or `K`: the MTA ended the session.
    Quit,
}

/// A transcript file, read.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it kept of bodies.
    pub bodies: Bodies,
    /// Connection and transaction numbers.
    pub connection: u64,
    /// Transaction within the connection (0: none).
    pub transaction: u32,
    /// When the connection started.
    pub started_unix_ms: u64,
    /// The MTA's offer.
    pub offer: Negotiation,
    /// The milter's answer (absent if it never answered).
    pub answer: Option<Negotiation>,
    /// Steps in order.
    pub items: Vec<Item>,
    /// How the transaction ended (`end-of-message`, `abort`, ...).
    pub end_reason: String,
    /// The recorded verdict.
    pub verdict: Verdict,
    /// Every line, for display.
    pub lines: Vec<Map<String, Value>>,
    /// The recorder left events out (the transaction passed its size
    /// limit): the steps end early.
    pub truncated: bool,
    /// Protocol trouble the recorder noted (the end line's `notes`).
    pub recorded_notes: Vec<String>,
}

/// What the lines read so far held.
#[derive(Default)]
struct Seen {
    negotiation: bool,
    end: bool,
}

/// The largest transcript file read: what `record` can write (the
/// events it keeps of a transaction, plus its header, negotiation and end
/// lines, which a packet's limit bounds).
pub const MAX_FILE_BYTES: u64 = MAX_TRANSCRIPT_BYTES as u64 + 16 * 1024 * 1024;

/// One line: `None` if blank.
fn parse_line(bytes: &[u8], n: usize) -> anyhow::Result<Option<Map<String, Value>>> {
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(bytes).with_context(|| format!("line {n}: not JSON"))?;
    let Value::Object(m) = v else {
        bail!("line {n}: not a JSON object");
    };
    Ok(Some(m))
}

/// The most payload a milter packet carries (what `record` relays, and
/// the largest an MTA negotiates).
const MAX_PAYLOAD: usize = milter_proto::DataSize::M1.max_payload();

/// Refuses a command whose packet would be larger than any milter packet:
/// `record` never writes one, and a milter would drop the connection.
fn fits_a_packet(c: &Command) -> anyhow::Result<()> {
    if !c.is_encodable() {
        // Replay reports it when it would send it.
        return Ok(());
    }
    let mut b = bytes::BytesMut::new();
    c.encode(&mut b);
    let payload = b.len().saturating_sub(5);
    if payload > MAX_PAYLOAD {
        bail!(
            "a '{}' packet of {payload} bytes, more than a milter packet holds ({MAX_PAYLOAD})",
            char::from(c.code())
        );
    }
    Ok(())
}

fn u32_of(v: &Value, what: &str) -> anyhow::Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .with_context(|| format!("{what} is not a 32-bit number"))
}

/// A field of a line, `null` if missing (indexing a map would panic).
fn get<'a>(m: &'a Map<String, Value>, key: &str) -> &'a Value {
    m.get(key).unwrap_or(&Value::Null)
}

fn negotiation(v: &Value) -> anyhow::Result<Negotiation> {
    let mut macros = Vec::new();
    if let Some(list) = v.get("macros").and_then(Value::as_array) {
        for m in list {
            let names = super::codec::bytes_from_json(&m["names"])?;
            macros.push((
                u32_of(&m["stage"], "macro stage")?,
                String::from_utf8_lossy(&names).into_owned(),
            ));
        }
    }
    Ok(Negotiation {
        version: u32_of(&v["version"], "version")?,
        actions: Actions::from_bits_retain(u32_of(&v["actions"], "actions")?),
        protocol: Protocol::from_bits_retain(u32_of(&v["protocol"], "protocol")?),
        macros,
    })
}

impl Transcript {
    /// Reads and checks one transcript file, a line at a time: memory
    /// follows what the file holds, and a file larger than `record` ever
    /// writes is refused before it is read.
    pub fn read(path: &Path) -> anyhow::Result<Transcript> {
        Transcript::read_with(path, false)
    }

    /// The queue id the MTA sent (macro `i`), if it sent one: what its
    /// log lines carry.
    pub fn queue_id(&self) -> Option<String> {
        self.items.iter().find_map(|item| {
            let pairs = match item {
                Item::Step(s) => &s.macros,
                Item::Macros(_, pairs) => pairs,
                _ => return None,
            };
            pairs
                .iter()
                .find(|(n, v)| n.as_ref() == b"i" && !v.is_empty())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
    }

    /// `read`, keeping every line's JSON in `lines` if `keep_lines`.
    pub fn read_with(path: &Path, keep_lines: bool) -> anyhow::Result<Transcript> {
        let whose = || format!("transcript {}", path.display());
        // Before opening: opening a FIFO waits for a writer.
        let meta = std::fs::metadata(path).with_context(|| format!("reading {}", whose()))?;
        if !meta.is_file() {
            bail!("{}: not a regular file", whose());
        }
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", whose()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_FILE_BYTES {
            bail!(
                "{}: {len} bytes, larger than any transcript `record` writes ({MAX_FILE_BYTES}); not read",
                whose()
            );
        }
        // A file that grows while it is read stops at the limit too.
        let mut reader = std::io::BufReader::new(file.take(MAX_FILE_BYTES + 1));
        let (mut buf, mut n, mut total) = (Vec::new(), 0usize, 0u64);
        let lines = std::iter::from_fn(|| {
            loop {
                buf.clear();
                let got = match reader.read_until(b'\n', &mut buf) {
                    Ok(got) => got,
                    Err(e) => {
                        return Some(Err(
                            anyhow::Error::from(e).context(format!("line {}", n + 1))
                        ));
                    }
                };
                if got == 0 {
                    return None;
                }
                n += 1;
                total += got as u64;
                if total > MAX_FILE_BYTES {
                    return Some(Err(anyhow::anyhow!(
                        "line {n}: larger than any transcript `record` writes"
                    )));
                }
                match parse_line(&buf, n) {
                    Ok(Some(m)) => return Some(Ok((n, m))),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
        });
        let (t, _) = Transcript::from_lines(lines, path, keep_lines).with_context(whose)?;
        Ok(t)
    }

    /// Parses the text of a transcript file (as `read` does, from memory).
    #[cfg(test)]
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Transcript> {
        let lines = text.lines().enumerate().filter_map(|(i, l)| {
            parse_line(l.as_bytes(), i + 1)
                .transpose()
                .map(|r| r.map(|m| (i + 1, m)))
        });
        Ok(Transcript::from_lines(lines, path, true)?.0)
    }

    /// The transcript's first line, checked: the reader refuses another
    /// schema or version rather than misread it.
    fn from_head(head: &Map<String, Value>, path: &Path) -> anyhow::Result<Transcript> {
        if head.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
            bail!("first line is not a {SCHEMA} header");
        }
        let version = head.get("version").and_then(Value::as_u64).unwrap_or(0);
        if version != VERSION {
            bail!("transcript format version {version}; this minimilter reads version {VERSION}");
        }
        let bodies = head
            .get("bodies")
            .and_then(Value::as_str)
            .and_then(Bodies::from_name)
            .context("header: bad \"bodies\"")?;
        let t = Transcript {
            path: path.to_owned(),
            bodies,
            connection: head.get("connection").and_then(Value::as_u64).unwrap_or(0),
            transaction: head.get("transaction").and_then(Value::as_u64).unwrap_or(0) as u32,
            started_unix_ms: head
                .get("started_unix_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            offer: Negotiation {
                version: 0,
                actions: Actions::empty(),
                protocol: Protocol::empty(),
                macros: Vec::new(),
            },
            answer: None,
            items: Vec::new(),
            end_reason: String::new(),
            verdict: Verdict {
                name: "none".into(),
                at: None,
                reply: None,
            },
            lines: Vec::new(),
            truncated: false,
            recorded_notes: Vec::new(),
        };
        Ok(t)
    }

    /// Interprets one line after the first (line `n` of the file).
    fn line(
        t: &mut Transcript,
        seen: &mut Seen,
        n: usize,
        m: &Map<String, Value>,
    ) -> anyhow::Result<()> {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
        let at = || format!("line {n}");
        match kind {
            "negotiate" => {
                t.offer =
                    negotiation(get(m, "offer")).with_context(|| format!("{}: offer", at()))?;
                if m.contains_key("answer") {
                    t.answer = Some(
                        negotiation(get(m, "answer"))
                            .with_context(|| format!("{}: answer", at()))?,
                    );
                }
                seen.negotiation = true;
            }
            "command" => {
                let code = m.get("code").and_then(Value::as_str).unwrap_or_default();
                match code {
                    "A" => t.items.push(Item::Abort),
                    "Q" | "K" => t.items.push(Item::Quit),
                    _ => {
                        let step = m
                            .get("step")
                            .and_then(Value::as_str)
                            .and_then(step_from_name)
                            .with_context(|| format!("{}: no step", at()))?;
                        let elided = m.get("body").is_some_and(body_elided);
                        let command = if elided {
                            Err(format!(
                                "the body was not kept (--bodies {})",
                                t.bodies.name()
                            ))
                        } else {
                            let c = command_from_json(m).with_context(at)?;
                            fits_a_packet(&c).with_context(at)?;
                            Ok(c)
                        };
                        let macros = match m.get("macros") {
                            Some(v) => pairs_from_json(v).with_context(at)?,
                            None => Vec::new(),
                        };
                        if let Ok(c) = &command {
                            fits_a_packet(&Command::Macro {
                                stage: c.code(),
                                pairs: macros.clone(),
                            })
                            .with_context(|| format!("{}: macros", at()))?;
                        }
                        t.items.push(Item::Step(Box::new(RecordedStep {
                            step,
                            command,
                            macros,
                            line: m.clone(),
                            answer: None,
                            answer_line: None,
                            elapsed_us: None,
                            progress: 0,
                            modifications: Vec::new(),
                        })));
                    }
                }
            }
            "macros" => {
                let stage = m.get("stage").and_then(Value::as_str).unwrap_or_default();
                if let [code] = stage.as_bytes() {
                    let pairs = pairs_from_json(get(m, "pairs")).with_context(at)?;
                    fits_a_packet(&Command::Macro {
                        stage: *code,
                        pairs: pairs.clone(),
                    })
                    .with_context(at)?;
                    t.items.push(Item::Macros(*code, pairs));
                }
            }
            "response" => {
                let Some(Item::Step(last)) = t.items.last_mut() else {
                    return Ok(());
                };
                let named = m
                    .get("step")
                    .and_then(Value::as_str)
                    .and_then(step_from_name);
                if named != Some(last.step) {
                    return Ok(());
                }
                if let Some(answer) = m.get("answer").and_then(Value::as_str) {
                    let reply = (m.get("code").and_then(Value::as_str) == Some("y"))
                        .then(|| m.get("text").and_then(Value::as_str).map(str::to_owned))
                        .flatten();
                    last.answer = Some(Answered {
                        step: last.step,
                        answer: answer.to_owned(),
                        reply,
                    });
                    last.elapsed_us = m.get("after_us").and_then(Value::as_u64);
                    last.answer_line = Some(m.clone());
                } else if m.get("code").and_then(Value::as_str) == Some("p") {
                    last.progress += 1;
                } else {
                    let mut r = m.clone();
                    for k in ["type", "at_us", "after_us", "step"] {
                        r.remove(k);
                    }
                    last.modifications.push(r);
                }
            }
            "end" => {
                seen.end = true;
                t.truncated = m.get("truncated").and_then(Value::as_bool) == Some(true);
                t.recorded_notes = m
                    .get("notes")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                t.end_reason = m
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                t.verdict = Verdict {
                    name: m
                        .get("verdict")
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                        .to_owned(),
                    at: m.get("at").and_then(Value::as_str).and_then(step_from_name),
                    reply: m.get("reply").and_then(Value::as_str).map(str::to_owned),
                };
            }
            _ => {}
        }
        Ok(())
    }

    /// The checks once every line is read (`count` lines in the file).
    fn finish(t: Option<Transcript>, seen: &Seen, count: usize) -> anyhow::Result<Transcript> {
        let Some(t) = t else {
            bail!("empty file");
        };
        if !seen.negotiation {
            bail!("no negotiate line");
        }
        // `record` writes the end line last, and a file whole or not at
        // all: without it the file was cut short (copied while written
        // elsewhere, a full disk, an editor), and its verdict is unknown.
        if !seen.end {
            bail!("line {count}: the file ends before its \"end\" line (cut short?)");
        }
        Ok(t)
    }

    /// Reads the lines one by one into a transcript; `keep_lines` keeps
    /// every line's JSON too (for `check --json`), else a line is dropped
    /// once interpreted, so memory follows the steps, not the lines.
    fn from_lines(
        lines: impl Iterator<Item = anyhow::Result<(usize, Map<String, Value>)>>,
        path: &Path,
        keep_lines: bool,
    ) -> anyhow::Result<(Transcript, usize)> {
        let mut t: Option<Transcript> = None;
        let mut seen = Seen::default();
        let mut count = 0;
        for l in lines {
            let (n, m) = l?;
            count = n;
            match &mut t {
                None => t = Some(Transcript::from_head(&m, path)?),
                Some(t) => Transcript::line(t, &mut seen, n, &m)?,
            }
            if keep_lines && let Some(t) = &mut t {
                t.lines.push(m);
            }
        }
        Ok((Transcript::finish(t, &seen, count)?, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let p = Path::new("t.jsonl");
        let head =
            r#"{"type":"transcript","schema":"minimilter-transcript","version":1,"bodies":"keep"}"#;
        for body in [
            "",
            "not json",
            "[1,2]",
            r#"{"type":"transcript","schema":"other","version":1}"#,
            &format!("{}\n", head.replace("\"version\":1", "\"version\":2")),
            &format!("{head}\n"),
            &format!("{head}\n{{\"type\":\"negotiate\"}}"),
            &format!("{head}\n{{\"type\":\"negotiate\",\"offer\":{{\"version\":-1}}}}"),
            &format!("{head}\n{{\"type\":\"macros\",\"stage\":\"C\"}}"),
            &format!("{head}\n{{\"type\":\"command\",\"code\":\"M\",\"step\":\"mail\"}}"),
            &format!(
                "{head}\n{{\"type\":\"command\",\"code\":\"C\",\"step\":\"connect\",\"family\":\"9\"}}"
            ),
        ] {
            assert!(Transcript::parse(body, p).is_err(), "{body:?}");
        }
        let ok = format!(
            "{head}\n{}\n{}\n",
            r#"{"type":"negotiate","offer":{"version":6,"actions":511,"protocol":2097151}}"#,
            r#"{"type":"end","verdict":"accept","at":"eom"}"#
        );
        let t = Transcript::parse(&ok, p).unwrap();
        assert_eq!(t.offer.version, 6);
        assert!(t.answer.is_none());
        assert_eq!(t.verdict.name, "accept");
    }
}
