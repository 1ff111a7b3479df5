//! The benchmark job of docs/performance.md on indymilter (crates.io), to
//! compare runtimes on the same work: refuse a message unless
//! `-----BEGIN PGP MESSAGE-----` lies within the first 5000 bytes of its
//! body; add one header when accepting; skip the rest of the body once
//! decided. The same rule as `crates/minimilter/examples/pgp_gate_milter.rs`.
//!
//!   cargo build --release --manifest-path scripts/bench/indymilter_gate/Cargo.toml
//!   indymilter_gate unix:/path/to/socket
//!
//! Only body (and end of message) callbacks are registered, so indymilter
//! negotiates the other steps away; SKIP is asked for at negotiation.

use bytes::Bytes;
use indymilter::{
    Actions, Callbacks, Context, ContextActions, EomContext, NegotiateContext, ProtoOpts,
    SetErrorReply, Status,
};
use tokio::net::UnixListener;

const MARKER: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const WINDOW: usize = 5000;

/// Per message (reset at end of message and at abort).
#[derive(Default)]
struct Gate {
    seen: usize,
    tail: Vec<u8>,
    decided: Option<bool>,
}

impl Gate {
    fn look(&mut self, chunk: &[u8]) -> bool {
        let take = chunk.len().min(WINDOW - self.seen);
        let part = &chunk[..take];
        let found = if self.tail.is_empty() {
            contains(part, MARKER)
        } else {
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

async fn negotiate(cx: &mut NegotiateContext<Gate>, _: Actions, offered: ProtoOpts) -> Status {
    cx.requested_actions = Actions::ADD_HEADER;
    if offered.contains(ProtoOpts::SKIP) {
        cx.requested_opts |= ProtoOpts::SKIP;
    }
    Status::Continue
}

async fn body(cx: &mut Context<Gate>, chunk: Bytes) -> Status {
    let gate = cx.data.get_or_insert_with(Gate::default);
    if gate.decided.is_some() || gate.look(&chunk) {
        Status::Skip
    } else {
        Status::Continue
    }
}

async fn eom(cx: &mut EomContext<Gate>) -> Status {
    let gate = cx.data.take().unwrap_or_default();
    if gate.decided == Some(true) {
        if cx.actions.add_header("X-PGP-Gate", "encrypted").await.is_err() {
            return Status::Tempfail;
        }
        return Status::Continue;
    }
    let text = ["Only PGP-encrypted mail is accepted here"];
    if cx.reply.set_error_reply("550", Some("5.7.1"), text).is_err() {
        return Status::Tempfail;
    }
    Status::Reject
}

async fn abort(cx: &mut Context<Gate>) -> Status {
    cx.data = None;
    Status::Continue
}

#[tokio::main]
async fn main() {
    let spec = std::env::args().nth(1).unwrap_or_default();
    let Some(path) = spec.strip_prefix("unix:") else {
        eprintln!("usage: indymilter_gate unix:/path/to/socket");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("cannot open the milter socket");
    let callbacks = Callbacks::new()
        .on_negotiate(|cx, actions, opts| Box::pin(negotiate(cx, actions, opts)))
        .on_body(|cx, chunk| Box::pin(body(cx, chunk)))
        .on_eom(|cx| Box::pin(eom(cx)))
        .on_abort(|cx| Box::pin(abort(cx)));
    let config = indymilter::Config {
        max_connections: 20_000,
        ..Default::default()
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        term.recv().await;
    };
    indymilter::run(listener, callbacks, config, stop)
        .await
        .expect("milter execution failed");
}
