//! A filter's answer to one step.

use crate::reply::SmtpReply;

/// What a filter decided at one step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Go on (at end of message: deliver).
    #[default]
    Continue,
    /// Accept: stop consulting the filter for this message (or, at connect and
    /// HELO, this connection).
    Accept,
    /// Refuse with 5xx. With a reply text whose code is 5xx, that text is sent
    /// (`y`); otherwise the MTA's default (`r`), as libmilter does.
    Reject(Option<SmtpReply>),
    /// Refuse with 4xx. With a 4xx reply text, that text is sent; otherwise `t`.
    Tempfail(Option<SmtpReply>),
    /// Accept the message and throw it away. At RCPT, this discards the whole message.
    Discard,
    /// Stop sending body chunks; go straight to end of message. Only
    /// meaningful at the body step, and only if the MTA offered `SKIP`;
    /// elsewhere it is sent as `continue`.
    Skip,
}

impl Verdict {
    /// Reject with a reply text (use [`SmtpReply::new`] to build one).
    pub fn reject_with(reply: SmtpReply) -> Verdict {
        Verdict::Reject(Some(reply))
    }

    /// Tempfail with a reply text.
    pub fn tempfail_with(reply: SmtpReply) -> Verdict {
        Verdict::Tempfail(Some(reply))
    }

    /// A short lower-case name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Continue => "continue",
            Verdict::Accept => "accept",
            Verdict::Reject(_) => "reject",
            Verdict::Tempfail(_) => "tempfail",
            Verdict::Discard => "discard",
            Verdict::Skip => "skip",
        }
    }
}
