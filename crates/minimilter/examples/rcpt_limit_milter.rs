//! A policy milter that decides at RCPT time, from macros, state and an
//! asynchronous lookup:
//!
//! - a client that did not authenticate (`{auth_authen}` unset) may only
//!   send to the local domains; any other recipient is refused with
//!   `550 5.7.1 ... relaying from <client address> needs authentication`
//!   (`{client_addr}`);
//! - each message may have at most N recipients, where N comes from a lookup
//!   per authenticated user (a stand-in for a database or HTTP call, bounded
//!   by a timeout). Recipients beyond N get `452 4.5.3 Too many recipients`,
//!   which tells the client to send them again in a later message;
//! - a lookup that takes too long defers the message at MAIL with
//!   `451 4.3.0` instead of guessing;
//! - a body over the size limit is refused while it is still arriving
//!   (`552 5.3.4`), so the rest is not read.
//!
//! It shows the three kinds of state a milter has: the milter itself
//! (configuration, shared by every connection, so `&self` only), per
//! connection ([`Milter::Connection`]: the user's limit, looked up once per
//! SMTP session) and per message ([`Milter::Message`]: counters, reset by the
//! runtime for each message).
//!
//!   cargo run --example rcpt_limit_milter -- --listen inet:127.0.0.1:8892
//!
//! `tests/writing_milters.rs` plays it without a socket and
//! `tests/writing_milters_postfix.rs` behind a real Postfix.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use minimilter::daemon::{self, BoxError, Configured, Daemon, FileSection, NoArgs, Serve};
use minimilter::{
    Ctx, Envelope, MacroStage, Milter, Requirements, SmtpReply, StepResult, Steps, Verdict,
};

/// The policy, shared by every connection.
pub struct RcptLimitMilter {
    /// Recipients an unauthenticated client may send to (lower case).
    pub local_domains: Vec<String>,
    /// Largest body accepted, in bytes.
    pub max_body: usize,
    /// The user directory the limits come from.
    pub directory: Arc<Directory>,
    /// How long a lookup may take before the message is deferred.
    pub lookup_timeout: Duration,
}

/// A stand-in for a remote user directory: answers after `delay`.
pub struct Directory {
    /// Per-user recipient limits; users not listed get `default_limit`.
    pub limits: HashMap<String, usize>,
    /// The limit of a user not listed, and of unauthenticated clients.
    pub default_limit: usize,
    /// How long each answer takes.
    pub delay: Duration,
    /// Lookups made (so a test can see the per-connection cache work).
    pub lookups: AtomicUsize,
}

impl Directory {
    /// The recipient limit of `user`.
    pub async fn recipient_limit(&self, user: &str) -> usize {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        self.limits.get(user).copied().unwrap_or(self.default_limit)
    }
}

/// Per SMTP connection: the authenticated user's limit, once looked up.
/// (Authentication happens once per session, so the cache is correct for
/// every message on the connection.)
#[derive(Default)]
pub struct Connection {
    limit: Option<usize>,
}

/// Per message: reset to `Default` by the runtime when a message starts or
/// is aborted, so nothing leaks into the next message.
#[derive(Default)]
pub struct Message {
    accepted_rcpts: usize,
    body_bytes: usize,
}

impl Milter for RcptLimitMilter {
    type Connection = Connection;
    type Message = Message;

    fn requirements(&self) -> Requirements {
        Requirements {
            // Only these steps are sent; end of message always is.
            steps: Steps::MAIL | Steps::RCPT | Steps::BODY,
            // Multi-letter names in braces, as Sendmail and Postfix spell
            // them (Postfix also takes them bare; `macro_value` finds them
            // either way). Postfix sends neither of these to milters by
            // default at these stages: asking is what makes them arrive.
            macros: vec![
                (MacroStage::Connect, "{client_addr}".into()),
                (MacroStage::Mail, "{auth_authen}".into()),
            ],
            ..Requirements::default()
        }
    }

    async fn mail(&self, cx: Ctx<'_, Self>, _sender: &Envelope) -> StepResult {
        let user = cx.macro_str("{auth_authen}").map(|u| u.into_owned());
        if cx.conn.limit.is_none() {
            let limit = match user {
                // A timeout is the filter's own decision; without one the
                // runtime's step timeout would answer with the fail-safe
                // reply after `command_timeout` (and Postfix may give up
                // first).
                Some(user) => match tokio::time::timeout(
                    self.lookup_timeout,
                    self.directory.recipient_limit(&user),
                )
                .await
                {
                    Ok(limit) => limit,
                    Err(_elapsed) => {
                        return Ok(Verdict::tempfail_with(SmtpReply::new(
                            451,
                            Some("4.3.0"),
                            "User directory unavailable, try again later",
                        )?));
                    }
                },
                None => self.directory.default_limit,
            };
            cx.conn.limit = Some(limit);
        }
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, recipient: &Envelope) -> StepResult {
        let authenticated = cx.macro_value("{auth_authen}").is_some();
        if !authenticated && !self.is_local(recipient) {
            let client = cx.macro_str("{client_addr}").unwrap_or("unknown".into());
            // Never copy untrusted text (the address) into a reply: a
            // control character in it would make SmtpReply::new fail.
            // The client's address is the MTA's own text.
            let text = format!("Relaying from {client} needs authentication");
            return Ok(Verdict::reject_with(SmtpReply::new(
                550,
                Some("5.7.1"),
                &text,
            )?));
        }
        let limit = cx.conn.limit.unwrap_or(self.directory.default_limit);
        if cx.msg.accepted_rcpts >= limit {
            // A refusal at RCPT refuses this recipient only; the message
            // goes on to the others.
            return Ok(Verdict::tempfail_with(SmtpReply::new(
                452,
                Some("4.5.3"),
                "Too many recipients",
            )?));
        }
        cx.msg.accepted_rcpts += 1;
        Ok(Verdict::Continue)
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        cx.msg.body_bytes += chunk.len();
        if cx.msg.body_bytes > self.max_body {
            // Decided at a body chunk: the MTA stops sending the rest.
            return Ok(Verdict::reject_with(SmtpReply::new(
                552,
                Some("5.3.4"),
                "Message too big for this system",
            )?));
        }
        Ok(Verdict::Continue)
    }
}

impl RcptLimitMilter {
    fn is_local(&self, recipient: &Envelope) -> bool {
        // Canonical form: quoting undone, domain lower-cased, trailing dot
        // dropped, source route removed.
        let address = recipient.parsed();
        let domain = address.mailbox().and_then(|m| m.domain());
        domain.is_some_and(|d| self.local_domains.iter().any(|l| l == d.as_str()))
    }
}

/// The program around the filter: the shared daemon shell.
struct RcptLimit;

impl Daemon for RcptLimit {
    const NAME: &'static str = "rcpt_limit_milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Refuses relaying without authentication and caps recipients \
        per message by user, deciding at RCPT time.";
    const DEFAULT_LISTEN: &'static str = "inet:127.0.0.1:8892";
    type Args = NoArgs;

    fn configure(file: Option<&FileSection>, _: &NoArgs) -> Result<Configured<Self>, BoxError> {
        daemon::only_server_section(file)?;
        Ok(Configured::new(RcptLimit))
    }

    async fn serve(self, serve: Serve) -> Result<(), BoxError> {
        serve.run(example_policy()).await
    }
}

/// The policy the example runs with (a real milter reads it from its
/// configuration file).
pub fn example_policy() -> RcptLimitMilter {
    RcptLimitMilter {
        local_domains: vec!["example.org".into()],
        max_body: 10 * 1024 * 1024,
        directory: Arc::new(Directory {
            limits: HashMap::from([("alice".to_string(), 2)]),
            default_limit: 50,
            delay: Duration::from_millis(5),
            lookups: AtomicUsize::new(0),
        }),
        lookup_timeout: Duration::from_secs(2),
    }
}

fn main() -> ExitCode {
    daemon::main::<RcptLimit>()
}
