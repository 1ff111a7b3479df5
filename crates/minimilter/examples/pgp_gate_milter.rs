//! The benchmark job (docs/performance.md, "Same job for every milter"),
//! on this runtime: refuse a message unless `-----BEGIN PGP MESSAGE-----`
//! lies within the first 5000 bytes of its body; add one header when
//! accepting; skip the rest of the body once decided.
//!
//!   cargo run --release --example pgp_gate_milter -- --listen unix:/tmp/gate.sock
//!
//! The same rule is written for indymilter (`scripts/bench/indymilter_gate`),
//! libmilter (`scripts/bench/pgp_gate_libmilter.c`) and pymilter
//! (`scripts/bench/pgp_gate.py`), so the benchmark compares runtimes, not
//! jobs. Only the body step is negotiated; the decision is made at the first
//! body chunk that settles it (usually the first: chunks are up to 64 KiB),
//! answered with skip, and given at end of message.

use bytes::Bytes;
use minimilter::{
    Actions, Ctx, Milter, Modifications, Requirements, ServerConfig, SmtpReply, SocketSpec,
    StepResult, Steps, UnixSocketOptions, Verdict,
};

const MARKER: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const WINDOW: usize = 5000;

struct PgpGate;

/// Per message: how much body was looked at, the bytes that could still
/// begin the marker across a chunk boundary, and the decision once made.
#[derive(Default)]
struct Message {
    seen: usize,
    tail: Vec<u8>,
    decided: Option<bool>,
}

impl Message {
    /// Looks at the part of `chunk` inside the window; true once decided.
    fn look(&mut self, chunk: &[u8]) -> bool {
        let take = chunk.len().min(WINDOW - self.seen);
        let part = &chunk[..take];
        let found = if self.tail.is_empty() {
            contains(part, MARKER)
        } else {
            // The marker may straddle the previous chunk and this one.
            let mut joined = std::mem::take(&mut self.tail);
            joined.extend_from_slice(&part[..part.len().min(MARKER.len() - 1)]);
            contains(&joined, MARKER) || contains(part, MARKER)
        };
        self.seen += take;
        if found {
            self.decided = Some(true);
        } else if self.seen >= WINDOW {
            self.decided = Some(false);
        } else {
            let keep = part.len().min(MARKER.len() - 1);
            self.tail = part[part.len() - keep..].to_vec();
        }
        self.decided.is_some()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Milter for PgpGate {
    type Connection = ();
    type Message = Message;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::BODY,
            actions: Actions::ADD_HEADERS,
            ..Requirements::default()
        }
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        Ok(if cx.msg.decided.is_some() || cx.msg.look(&chunk) {
            Verdict::Skip
        } else {
            Verdict::Continue
        })
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        if cx.msg.decided == Some(true) {
            mods.add_header("X-PGP-Gate", "encrypted")?;
            return Ok(Verdict::Continue);
        }
        Ok(Verdict::reject_with(SmtpReply::new(
            550,
            Some("5.7.1"),
            "Only PGP-encrypted mail is accepted here",
        )?))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut specs = Vec::new();
    let mut unix = UnixSocketOptions::default();
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => specs.push(value()?.parse::<SocketSpec>()?),
            "--socket-mode" => unix.mode = Some(u32::from_str_radix(&value()?, 8)?),
            "--max-connections" => config.max_connections = value()?.parse()?,
            _ => {
                return Err(format!(
                    "usage: pgp_gate_milter [--listen SOCKET]... [--socket-mode 666] \
                     [--max-connections N] (got {arg:?})"
                )
                .into());
            }
        }
    }
    if specs.is_empty() {
        specs.push("inet:127.0.0.1:8894".parse()?);
    }
    minimilter::run(PgpGate, &specs, &unix, config).await?;
    Ok(())
}
