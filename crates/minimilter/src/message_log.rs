//! One log line per message, with the same fields whatever the milter:
//! queue id, client, sender, recipients, verdict, reason, milliseconds.
//! Written by the runtime when the message's outcome is settled (a
//! message-level decision at any step, the answer at end of message, or
//! an abort), so mail a filter leaves alone gets its line too.
//!
//! Addresses are in their canonical form ([`crate::EnvelopeAddress`]).
//! What the MTA did not send is `-`: a filter that negotiated away the
//! connect, MAIL or RCPT steps is seen through the macros the MTA sends
//! with them instead (`_`, `{mail_addr}`, `{rcpt_addr}`; Postfix sends all
//! three by default).

use std::time::Instant;

use bytes::Bytes;
use milter_proto::{MacroStore, Step, Verdict};

/// The message being followed on one connection.
///
/// Addresses are kept as they came and put in canonical form only when the
/// line is written, and only if it is enabled: parsing and formatting them
/// for every message was about a quarter of the runtime's instructions per
/// message for a milter that logs nothing at this level.
#[derive(Debug, Default)]
pub(crate) struct MessageLog {
    client: Option<String>,
    sender: Option<String>,
    rcpts: Vec<String>,
    /// The same from macros, used when the commands were negotiated away
    /// (the values as sent, sharing the macro store's copy).
    macro_client: Option<Bytes>,
    macro_sender: Option<Bytes>,
    macro_rcpts: Vec<Bytes>,
    started: Option<Instant>,
    /// The line for this message was written.
    logged: bool,
}

/// Whether `verdict` at `step` settles the whole message (a refused
/// recipient does not; accept and discard at RCPT do).
pub(crate) fn ends_message(step: Step, verdict: &Verdict) -> bool {
    match step {
        Step::Connect | Step::Helo => false,
        Step::Rcpt => matches!(verdict, Verdict::Accept | Verdict::Discard),
        Step::EndOfMessage => true,
        _ => !matches!(verdict, Verdict::Continue | Verdict::Skip),
    }
}

impl MessageLog {
    pub(crate) fn client(&mut self, hostname: &str, address: &str) {
        self.client = Some(
            if address.is_empty() || hostname == format!("[{address}]") {
                hostname.to_owned()
            } else {
                format!("{hostname} [{address}]")
            },
        );
    }

    /// A new message starts (its MAIL macros or first step arrived; the
    /// second of the two signals is no news).
    pub(crate) fn start(&mut self) {
        if self.started.is_some() && !self.logged {
            return;
        }
        self.sender = None;
        self.rcpts.clear();
        self.macro_sender = None;
        self.macro_rcpts.clear();
        self.started = Some(Instant::now());
        self.logged = false;
    }

    /// Macros of a step the filter does not receive: what they say about
    /// the client, sender or recipient (`stage` is the step's command code).
    pub(crate) fn macros(&mut self, stage: u8, macros: &MacroStore) {
        if stage == b'M' {
            self.start();
        }
        if !tracing::enabled!(target: "minimilter::message", tracing::Level::INFO) {
            // Nothing will be written: the values are not needed.
            return;
        }
        let raw = |name: &str| macros.get(name).filter(|v| !v.is_empty()).cloned();
        match stage {
            b'C' => self.macro_client = raw("_"),
            b'M' => self.macro_sender = raw("{mail_addr}"),
            b'R' => {
                if let Some(a) = raw("{rcpt_addr}") {
                    self.macro_rcpts.push(a);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn sender(&mut self, address: &str) {
        self.sender = Some(address.to_owned());
    }

    pub(crate) fn rcpt(&mut self, address: &str) {
        self.rcpts.push(address.to_owned());
    }

    /// Whether the line for the current message was written.
    pub(crate) fn is_logged(&self) -> bool {
        self.logged
    }

    /// Writes the message's line once: `verdict` as the MTA will apply it
    /// (`accept` for continue at end of message), `reason` as the filter
    /// gave it or the reply text (asked for only if the line is enabled).
    /// Whether the message was settled now (not when it was already, nor
    /// outside a message), whether or not the line is enabled.
    pub(crate) fn settle(
        &mut self,
        conn: u64,
        macros: &MacroStore,
        verdict: &str,
        reason: impl FnOnce() -> String,
    ) -> bool {
        if self.logged || self.started.is_none() {
            return false;
        }
        self.logged = true;
        if !tracing::enabled!(target: "minimilter::message", tracing::Level::INFO) {
            return true;
        }
        let reason = reason();
        let ms = self.started.map_or(0, |t| t.elapsed().as_millis() as u64);
        let queue_id = macros
            .get_str("i")
            .filter(|v| !v.is_empty())
            .map_or_else(|| "-".into(), |v| v.into_owned());
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let client = (self.client.clone())
            .or_else(|| self.macro_client.as_ref().map(text))
            .unwrap_or_else(|| "-".into());
        let sender = (self.sender.as_deref().map(canonical))
            .or_else(|| self.macro_sender.as_ref().map(|a| canonical(&text(a))))
            .unwrap_or_else(|| "-".into());
        let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(",");
        let rcpts = match (self.rcpts.is_empty(), self.macro_rcpts.is_empty()) {
            (false, _) => join(&mut self.rcpts.iter().map(|a| canonical(a))),
            (true, false) => join(&mut self.macro_rcpts.iter().map(|a| canonical(&text(a)))),
            (true, true) => "-".into(),
        };
        tracing::info!(
            target: "minimilter::message",
            conn,
            queue_id = %queue_id,
            client = %client,
            from = %sender,
            to = %rcpts,
            verdict = %verdict,
            reason = %reason,
            ms,
            "message"
        );
        true
    }
}

/// `<mailbox>` as the MTA routes it (so the line names the mailbox, not
/// the client's spelling: `<"bob"@EXAMPLE.org.>` is `<bob@example.org>`).
fn canonical(raw: &str) -> String {
    match crate::EnvelopeAddress::parse(raw) {
        crate::EnvelopeAddress::Null => "<>".to_owned(),
        a => format!("<{a}>"),
    }
}

/// The verdict's name as the MTA applies it at `step`.
pub(crate) fn applied_name(step: Step, verdict: &Verdict) -> &'static str {
    match (step, verdict) {
        (Step::EndOfMessage, Verdict::Continue | Verdict::Skip) => "accept",
        (_, v) => v.name(),
    }
}

/// The reply text of a refusal, for the reason field when the filter
/// gives none.
pub(crate) fn reply_text(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Reject(Some(r)) | Verdict::Tempfail(Some(r)) => {
            Some(r.display_text().replace('\n', " "))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_named_as_the_mta_routes_them() {
        assert_eq!(canonical("<\"bob\"@EXAMPLE.org.>"), "<bob@example.org>");
        assert_eq!(canonical("<>"), "<>");
        assert_eq!(canonical("bob@example.org"), "<bob@example.org>");
    }

    #[test]
    fn only_message_level_decisions_settle_a_message() {
        let reject = Verdict::Reject(None);
        assert!(!ends_message(Step::Rcpt, &reject));
        assert!(ends_message(Step::Rcpt, &Verdict::Discard));
        assert!(ends_message(Step::Header, &reject));
        assert!(!ends_message(Step::Body, &Verdict::Skip));
        assert!(ends_message(Step::EndOfMessage, &Verdict::Continue));
        assert!(!ends_message(Step::Connect, &reject));
        assert_eq!(applied_name(Step::EndOfMessage, &Verdict::Skip), "accept");
    }
}
