//! Transcripts: one SMTP transaction between an MTA and a milter, as
//! `minimilter record` saw it pass, in a versioned JSON Lines format that
//! `minimilter replay` and `check --transcript` read back. The format is
//! documented in `docs/transcript.md`; this module is its only writer and
//! reader, so the two cannot drift apart.
//!
//! - [`codec`]: packets as JSON fields and back, byte-exact;
//! - [`line`]: the recorder's writer of JSON lines (as `serde_json` writes
//!   them, without building values first);
//! - [`recorder`]: a state machine (no I/O) fed the packets of one milter
//!   connection, which cuts them into transactions;
//! - [`file`]: reading a transcript file back.

pub mod codec;
pub mod file;
pub mod line;
pub mod recorder;

use milter_proto::{Answer, Step};

/// The `schema` field of every transcript's first line.
pub const SCHEMA: &str = "minimilter-transcript";
/// The version of the format this build writes and reads. Bumped when a
/// field changes meaning or a required field is added; readers refuse other
/// versions rather than misread them.
pub const VERSION: u64 = 1;

/// What a transcript keeps of message bodies (body chunks, end-of-message
/// data and replacement bodies), which hold people's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bodies {
    /// The bytes themselves (replay sends them again).
    Keep,
    /// SHA-256 and length only (replay cannot send the body).
    Hash,
    /// Length only.
    Drop,
}

impl Bodies {
    /// The name in the transcript.
    pub fn name(self) -> &'static str {
        match self {
            Bodies::Keep => "keep",
            Bodies::Hash => "hash",
            Bodies::Drop => "drop",
        }
    }

    /// The mode with this name.
    pub fn from_name(s: &str) -> Option<Bodies> {
        Some(match s {
            "keep" => Bodies::Keep,
            "hash" => Bodies::Hash,
            "drop" => Bodies::Drop,
            _ => return None,
        })
    }
}

/// One final answer of the milter, in the comparable form transcripts hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The step answered.
    pub step: Step,
    /// `continue`, `accept`, `reject`, `tempfail`, `discard`, `skip`,
    /// `shutdown` (a `y` reply counts as reject or tempfail by its class).
    pub answer: String,
    /// The reply text of a `y` answer, as sent.
    pub reply: Option<String>,
}

impl Answered {
    /// From the protocol core's answer.
    pub fn new(step: Step, a: &Answer) -> Answered {
        Answered {
            step,
            answer: a.name().to_owned(),
            reply: match a {
                Answer::Reply(r) => Some(String::from_utf8_lossy(r.wire()).into_owned()),
                _ => None,
            },
        }
    }

    /// `reject "550 5.7.1 no"` or `continue`.
    pub fn describe(&self) -> String {
        match &self.reply {
            Some(r) => format!("{} {r:?}", self.answer),
            None => self.answer.clone(),
        }
    }
}

/// What the MTA did with the transaction, decided by the milter's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `accept`, `reject`, `tempfail`, `discard`, `shutdown`, or `none`
    /// (the transaction ended before the milter decided: the client quit or
    /// the MTA refused it for reasons of its own).
    pub name: String,
    /// The step that decided.
    pub at: Option<Step>,
    /// The reply text, if the milter gave one.
    pub reply: Option<String>,
}

impl Verdict {
    /// The verdict the answers of one transaction (with its connection's
    /// connect and HELO answers) amount to, as Postfix and Sendmail act on
    /// them: the first answer other than continue or skip decides (a
    /// recipient's only refuses that recipient), else end of message
    /// reached means accept, else every recipient refused means that
    /// refusal.
    pub fn of(answers: &[Answered]) -> Verdict {
        let decided = |a: &Answered| Verdict {
            name: a.answer.clone(),
            at: Some(a.step),
            reply: a.reply.clone(),
        };
        if let Some(a) = answers
            .iter()
            .find(|a| a.step != Step::Rcpt && a.answer != "continue" && a.answer != "skip")
        {
            return decided(a);
        }
        if answers.iter().any(|a| a.step == Step::EndOfMessage) {
            return Verdict {
                name: "accept".into(),
                at: Some(Step::EndOfMessage),
                reply: None,
            };
        }
        let rcpts: Vec<&Answered> = answers.iter().filter(|a| a.step == Step::Rcpt).collect();
        if !rcpts.is_empty() && rcpts.iter().all(|a| a.answer != "continue") {
            return decided(rcpts[rcpts.len() - 1]);
        }
        Verdict {
            name: "none".into(),
            at: None,
            reply: None,
        }
    }

    /// `reject at rcpt "550 5.7.1 no"`.
    pub fn describe(&self) -> String {
        let mut s = self.name.clone();
        if let Some(at) = self.at {
            s.push_str(&format!(" at {at}"));
        }
        if let Some(r) = &self.reply {
            s.push_str(&format!(" {r:?}"));
        }
        s
    }
}

/// A step's name as transcripts write it (`connect`, `eom`, ...).
pub fn step_from_name(name: &str) -> Option<Step> {
    Step::ALL.into_iter().find(|s| s.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(step: Step, answer: &str) -> Answered {
        Answered {
            step,
            answer: answer.into(),
            reply: None,
        }
    }

    #[test]
    fn the_first_decisive_answer_decides() {
        let v = Verdict::of(&[
            a(Step::Connect, "continue"),
            a(Step::Mail, "continue"),
            a(Step::Rcpt, "reject"),
            a(Step::Rcpt, "continue"),
            a(Step::Header, "skip"),
            a(Step::EndOfMessage, "tempfail"),
        ]);
        assert_eq!(
            (v.name.as_str(), v.at),
            ("tempfail", Some(Step::EndOfMessage))
        );
        let v = Verdict::of(&[
            a(Step::Connect, "continue"),
            a(Step::EndOfMessage, "continue"),
        ]);
        assert_eq!(v.name, "accept");
        let v = Verdict::of(&[a(Step::Mail, "continue"), a(Step::Rcpt, "reject")]);
        assert_eq!((v.name.as_str(), v.at), ("reject", Some(Step::Rcpt)));
        let v = Verdict::of(&[a(Step::Mail, "continue"), a(Step::Rcpt, "continue")]);
        assert_eq!(v.name, "none");
        let v = Verdict::of(&[a(Step::Connect, "accept")]);
        assert_eq!((v.name.as_str(), v.at), ("accept", Some(Step::Connect)));
    }
}
