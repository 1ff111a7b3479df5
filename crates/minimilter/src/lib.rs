//! Serve milters (mail filters for Postfix and Sendmail) over unix and inet
//! sockets, on tokio, on top of the sans-IO protocol core in `milter-proto`.
//!
//! Write a filter by implementing [`Milter`]; serve it with [`run`] (binds,
//! handles SIGTERM/SIGINT) or [`Server::serve`]. The runtime negotiates with
//! the MTA exactly what the filter declares in [`Milter::requirements`],
//! calls one method per SMTP step, enforces timeouts and a connection limit,
//! and answers with the fail-safe reply (tempfail by default) when a filter
//! errors, panics or hangs.
//!
//! See `examples/keyword_milter.rs` for a complete milter in a screenful.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod connection;
pub mod context;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod envelope_address;
pub mod filter;
mod guard;
pub mod interop;
pub mod listener;
mod message_log;
pub mod metrics;
pub mod script;
pub mod server;
pub mod shutdown;
pub mod spec;
pub mod stats;
pub mod transaction;

pub use client::{ClientConfig, ClientError, MilterClient, StepOutcome};
pub use config::{FailSafe, ServerConfig};
pub use connection::ConnectionEnd;
pub use context::{Context, Modifications};
pub use envelope_address::EnvelopeAddress;
pub use filter::{BoxError, ConnectInfo, Ctx, Envelope, Header, Milter, StepResult};
pub use guard::panic_message;
pub use listener::{ListenError, Listener, UnixSocketOptions};
pub use script::{MessageScript, ScriptResult};
pub use server::{Server, run};
pub use shutdown::Shutdown;
pub use spec::{SocketSpec, SpecError};
pub use stats::{Stats, StatsSnapshot};
pub use transaction::{
    Interrupted, MessageSpec, Outcome, Transcript, UnsentBody, run_message, run_next_message,
};

/// The protocol core, re-exported so a filter needs one dependency.
pub use milter_proto as proto;
pub use milter_proto::{Actions, MacroStage, Requirements, SmtpReply, Step, Steps, Verdict};

/// Compiles the README's code samples as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
