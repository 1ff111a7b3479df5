//! Runtime settings: limits, timeouts, and the fail-safe reply.

use std::time::Duration;

use milter_proto::{SmtpReply, Verdict};

/// What the MTA is told when the filter fails (returns an error, panics or
/// times out). Like Postfix's `milter_default_action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailSafe {
    /// 4xx: the client retries later; nothing is lost. The default.
    Tempfail,
    /// Let the message through unfiltered.
    Accept,
    /// 5xx: refuse. Only for filters whose failure must never let mail in.
    Reject,
}

impl FailSafe {
    /// The verdict sent for a failed step.
    pub fn verdict(&self) -> Verdict {
        match self {
            FailSafe::Tempfail => Verdict::Tempfail(Some(
                SmtpReply::new(
                    451,
                    Some("4.3.0"),
                    "Temporary failure in mail filter, try again later",
                )
                .expect("valid reply"),
            )),
            FailSafe::Accept => Verdict::Continue,
            FailSafe::Reject => Verdict::Reject(Some(
                SmtpReply::new(550, Some("5.7.1"), "Message refused by mail filter")
                    .expect("valid reply"),
            )),
        }
    }
}

/// A fail-safe action that is none of `tempfail`, `accept` or `reject`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fail-safe action {0:?} (expected tempfail, accept or reject)")]
pub struct UnknownFailSafe(pub String);

/// Parses the names Postfix's `milter_default_action` uses for the same
/// three choices.
///
/// ```
/// use minimilter::{FailSafe, UnknownFailSafe};
/// assert_eq!("accept".parse(), Ok(FailSafe::Accept));
/// assert_eq!(
///     "quarantine".parse::<FailSafe>(),
///     Err(UnknownFailSafe("quarantine".into()))
/// );
/// ```
impl std::str::FromStr for FailSafe {
    type Err = UnknownFailSafe;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tempfail" => Ok(FailSafe::Tempfail),
            "accept" => Ok(FailSafe::Accept),
            "reject" => Ok(FailSafe::Reject),
            other => Err(UnknownFailSafe(other.to_owned())),
        }
    }
}

/// The shortest [`ServerConfig::progress_interval`] the runtime uses.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of a [`Server`](crate::Server).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once; more are closed at accept (the MTA then
    /// applies its own default action). Default 1024.
    pub max_connections: usize,
    /// Largest packet payload accepted from the MTA. Postfix sends headers of
    /// up to `header_size_limit` (100 KiB) in one packet whatever was
    /// negotiated, so this must exceed 64 KiB. Default 1 MiB.
    pub max_packet: usize,
    /// Longest wait for the next command between packets. An SMTP client
    /// can keep a session open for a long time without causing milter
    /// traffic (NOOP, RSET, a slow DATA transfer), so this is long, like
    /// libmilter's 7210 s; dead TCP peers are found by keepalive instead.
    /// Default 7210 s.
    pub idle_timeout: Duration,
    /// Longest wait for the MTA's option negotiation after connecting. An
    /// MTA sends it at once; a silent peer must not hold a connection slot.
    /// Default 10 s.
    pub negotiation_timeout: Duration,
    /// Longest time from the first byte of a packet to its last (a peer
    /// dripping bytes does not extend it), and longest wait for a write to
    /// the MTA. Default 30 s.
    pub io_timeout: Duration,
    /// Longest a filter may take at connect, HELO, MAIL, RCPT, DATA and
    /// unknown commands. Postfix waits 30 s (`milter_command_timeout`). Default 25 s.
    pub command_timeout: Duration,
    /// Longest a filter may take at header, end of headers, body and end of
    /// message. Postfix waits 300 s (`milter_content_timeout`). Default 280 s.
    pub content_timeout: Duration,
    /// While end of message runs longer than this, send progress packets at
    /// this interval so the MTA keeps waiting (protocol 6 only). Default 60 s;
    /// at least [`MIN_PROGRESS_INTERVAL`] (a shorter one, zero included, is
    /// raised to it rather than flooding the MTA).
    pub progress_interval: Duration,
    /// How long in-flight messages may take to finish after shutdown starts.
    /// Default 30 s.
    pub shutdown_grace: Duration,
    /// Reply for a failed filter step. Default tempfail.
    pub fail_safe: FailSafe,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 1024,
            max_packet: 1024 * 1024,
            idle_timeout: Duration::from_secs(7210),
            negotiation_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(25),
            content_timeout: Duration::from_secs(280),
            progress_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            fail_safe: FailSafe::Tempfail,
        }
    }
}
