//! Serve milters (mail filters for Postfix and Sendmail) over unix and inet
//! sockets, on tokio, on top of the sans-IO protocol core in `milter-proto`
//! (re-exported as [`proto`]), and drive any milter from the MTA side
//! ([`MilterClient`], [`run_message`]) to test it.
//!
//! # Writing a milter
//!
//! A filter is a type implementing [`Milter`]: policy only, no sockets or
//! packets. The runtime negotiates with the MTA, calls one async method per
//! SMTP step, turns the [`Verdict`]s into the replies the MTA expects, and
//! keeps the MTA's limits. Every method has a default that continues, so a
//! filter implements only the steps it declares.
//!
//! ## Steps and requirements
//!
//! [`Milter::requirements`] says, once per connection, what the filter
//! needs; the runtime asks the MTA for exactly that and never for more
//! than the MTA offers:
//! - [`Requirements::steps`]: the steps the filter is called for
//!   ([`Steps::CONNECT`], `HELO`, `MAIL`, `RCPT`, `DATA`, `HEADER`,
//!   `END_OF_HEADERS`, `BODY`, `UNKNOWN`); end of message always comes. The
//!   default is every step: list only what you use, so the MTA does not
//!   send (and wait for) the rest.
//! - [`Requirements::no_reply`]: steps where the filter only reads (always
//!   continues), so the MTA need not wait for an answer. A decision made at
//!   such a step anyway is held and sent at the next step the MTA waits for.
//! - [`Requirements::actions`]: the modifications the filter may request at
//!   end of message ([`Actions::ADD_HEADERS`], `CHANGE_HEADERS`,
//!   `CHANGE_FROM`, `ADD_RCPT`, `DELETE_RCPT`, `CHANGE_BODY`, `QUARANTINE`,
//!   ...). A request for an action not granted fails with
//!   [`ModifyError::NotNegotiated`].
//! - [`Requirements::macros`]: the macros to ask for, per [`MacroStage`],
//!   names separated by spaces; multi-letter names in braces as the MTAs
//!   spell them (`"{auth_authen} {client_addr}"`). Asking replaces the MTA's
//!   default list for that stage (protocol 6; Postfix and Sendmail 8.14+).
//!   Postfix sends by default only `j {daemon_name} {daemon_addr} v _` at
//!   connect, `{tls_version} {cipher} ...` at HELO, `i {auth_type}
//!   {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}` at
//!   MAIL, `{rcpt_addr} {rcpt_host} {rcpt_mailer}` at RCPT and `i` at DATA,
//!   end of headers and end of message; anything else, `{client_addr}`
//!   included, must be asked for.
//!
//! What the MTA did not offer is left out and logged once per connection
//! (`negotiation: ...`); [`Context::actions`] tells a step what was granted.
//!
//! ## State
//!
//! The filter value itself is shared by every connection (`&self`: put
//! configuration and shared resources there, behind `Arc`/locks if they
//! change). [`Milter::Connection`] is state for one SMTP connection (from
//! connect to close); [`Milter::Message`] is state for one message, reset
//! to its `Default` when a message starts or is aborted, so nothing leaks
//! from one message to the next. Both arrive in the step's [`Context`]
//! (`cx.conn`, `cx.msg`), with the macros in scope ([`Context::macro_str`],
//! by name with or without braces).
//!
//! ## Verdicts
//!
//! Each step answers with a [`Verdict`]:
//! - [`Verdict::Continue`]: go on (at end of message: deliver);
//! - [`Verdict::Accept`]: deliver without consulting the filter further
//!   for this message (at connect or HELO: for this connection);
//! - [`Verdict::Reject`] / [`Verdict::Tempfail`]: refuse with 5xx / 4xx. At
//!   RCPT this refuses that recipient only; elsewhere the message (at
//!   connect or HELO, the connection's mail). Give a reply text built with
//!   [`SmtpReply::new`] (code, enhanced status code, text; checked against
//!   what Postfix and Sendmail accept, with a typed
//!   [`ReplyError`]) through [`Verdict::reject_with`] /
//!   [`Verdict::tempfail_with`]. The reply's class must match: a 4xx text
//!   in a `Reject` is not sent (the MTA's default 5xx text is), and the
//!   runtime logs a warning;
//! - [`Verdict::Discard`]: accept and drop the message (at RCPT: the whole
//!   message);
//! - [`Verdict::Skip`]: at a body chunk, no more chunks (elsewhere it is
//!   continue).
//!
//! Modifications are requested only at end of message, through the
//! [`Modifications`] passed to [`Milter::end_of_message`]; each request is
//! checked when made and sent before the verdict, if the verdict delivers.
//!
//! ## Errors, timeouts, disconnects
//!
//! A step that returns an error (any [`BoxError`], so `?` works on
//! [`ReplyError`], [`ModifyError`]
//! and your own errors), panics, or runs longer than
//! [`ServerConfig::command_timeout`] (connect to RCPT, DATA, unknown; 25 s)
//! or [`ServerConfig::content_timeout`] (headers, body, end of message;
//! 280 s) is answered with the fail-safe reply, [`ServerConfig::fail_safe`]
//! (tempfail `451 4.3.0` by default, like Postfix's
//! `milter_default_action`), and none of its modifications are sent. The
//! connection goes on. While end of message runs long, the runtime sends
//! progress packets so the MTA keeps waiting. Put your own, shorter
//! timeouts around lookups (`tokio::time::timeout`) to choose the answer
//! yourself.
//!
//! When a message ends without end of message (RSET, a new MAIL, the MTA's
//! abort, a lost client) [`Milter::abort`] is called and message state is
//! reset; when the connection ends (QUIT, disconnect, shutdown)
//! [`Milter::close`]. On SIGTERM, [`run`] and the daemon shell stop
//! accepting, give messages in flight [`ServerConfig::shutdown_grace`], and
//! close the rest.
//!
//! ## Serving it
//!
//! `daemon::main` (feature `daemon`, on by default) is a whole program:
//! command line, TOML configuration, logging, signals, systemd, metrics; see
//! `examples/keyword_milter.rs`. [`run`] binds [`SocketSpec`]s
//! (`unix:/path`, `inet:127.0.0.1:8891`, `inet6:...`) and serves until
//! SIGTERM; [`Server::serve`] takes listeners and a stop future.
//!
//! ## Testing it without a socket
//!
//! [`Server::serve_stream`] serves any byte stream, and [`MilterClient`]
//! plays the MTA over any stream, with Postfix's offer and Postfix's way of
//! playing a message ([`run_message`]: the macros Postfix sends, each step,
//! and the message as Postfix would deliver it after the modifications). An
//! in-memory pipe joins them:
//!
//! ```
//! use minimilter::{
//!     Actions, ClientConfig, Ctx, Header, MessageSpec, Milter, MilterClient, Modifications,
//!     Outcome, Requirements, Server, ServerConfig, Shutdown, SmtpReply, StepResult, Steps,
//!     Verdict, run_message,
//! };
//!
//! struct NoSpamSubject;
//!
//! impl Milter for NoSpamSubject {
//!     type Connection = ();
//!     type Message = ();
//!
//!     fn requirements(&self) -> Requirements {
//!         Requirements {
//!             steps: Steps::HEADER,
//!             actions: Actions::ADD_HEADERS,
//!             ..Requirements::default()
//!         }
//!     }
//!
//!     async fn header(&self, _cx: Ctx<'_, Self>, h: &Header) -> StepResult {
//!         if h.is("Subject") && h.value_str().contains("SPAM") {
//!             let reply = SmtpReply::new(550, Some("5.7.1"), "No spam, thanks")?;
//!             return Ok(Verdict::reject_with(reply));
//!         }
//!         Ok(Verdict::Continue)
//!     }
//!
//!     async fn end_of_message(&self, _cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
//!         mods.add_header("X-Checked", "yes")?;
//!         Ok(Verdict::Continue)
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let server = Server::new(NoSpamSubject, ServerConfig::default());
//! let (mta_end, milter_end) = tokio::io::duplex(64 * 1024);
//! tokio::spawn(async move { server.serve_stream(milter_end, Shutdown::new()).await });
//! let mut mta = MilterClient::negotiate(Box::new(mta_end), ClientConfig::default()).await?;
//!
//! let spam = MessageSpec {
//!     message: "Subject: SPAM SPAM\r\n\r\nbody\r\n".into(),
//!     ..MessageSpec::default()
//! };
//! let t = run_message(&mut mta, &spam).await?;
//! assert!(matches!(t.outcome, Outcome::Rejected { reply: Some(r), .. } if r.contains("No spam")));
//!
//! let ham = MessageSpec::default(); // "Subject: test"
//! let t = minimilter::run_next_message(&mut mta, &ham).await?;
//! assert_eq!(t.outcome, Outcome::Accepted);
//! let delivered = t.delivered.unwrap();
//! assert!(delivered.headers.iter().any(|h| h.name == "X-Checked"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! `minimilter check` (crate `minimilter-cli`) does the same against a
//! running milter from the command line. To test behind a real Postfix,
//! serve the filter in the test process on a loopback port
//! ([`Listener::bind`], [`Listener::local_spec`]) and point Postfix's
//! `smtpd_milters` at it, as `tests/writing_milters_postfix.rs` does.
//!
//! ## Examples
//!
//! - `examples/keyword_milter.rs`: headers, end-of-message verdicts, a
//!   header added, the daemon shell and a metric of its own;
//! - `examples/rcpt_limit_milter.rs`: decisions at RCPT from macros
//!   (`{auth_authen}`, `{client_addr}`), per-connection and per-message
//!   state, an async lookup with a timeout, a refusal during the body;
//! - `examples/header_rewrite_milter.rs`: headers deleted, changed and
//!   added and the envelope sender changed at end of message;
//! - `examples/body_digest_milter.rs`: the body read with bounded memory,
//!   `Skip` once enough is read, CPU work in `spawn_blocking`, quarantine.
//!
//! `tests/writing_milters.rs` tests the last three as above, and
//! `tests/writing_milters_postfix.rs` behind a real Postfix.

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
pub use config::{FailSafe, ServerConfig, UnknownFailSafe};
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
    Interrupted, MessageSpec, Outcome, RefusedRcpt, StepRecord, Transcript, UnsentBody,
    run_message, run_next_message,
};

/// The protocol core, re-exported so a filter needs one dependency.
pub use milter_proto as proto;
/// The protocol types a filter and its tests meet (the fields of
/// [`Requirements`] and [`ConnectInfo`], the errors of [`Modifications`] and
/// [`SmtpReply`], the requests in a [`Transcript`]).
pub use milter_proto::{
    Actions, ConnectAddress, DataSize, MacroStage, MacroStore, ModifyError, ReplyError,
    Requirements, Response, SmtpReply, Step, Steps, Verdict,
};

/// Compiles the README's code samples as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
