//! The policy: who is checked, what passes, and what the refusal says.
//! Pure: no sockets, no I/O; the milter feeds it envelope data and
//! detections.

use std::sync::Arc;

use minimilter::SmtpReply;
use serde::Deserialize;

use crate::address::{Address, canonical_domain};
use crate::detect::{Detection, NotPgp};
use crate::keyring::{SharedKeyring, describe_targets};
use crate::packets::KeyTarget;
use crate::report::{NotReport, Report, Returned};

/// What a hidden (wildcard) recipient of an encrypted message counts for
/// with `require_recipient_key`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HiddenRecipients {
    /// A wildcard key ID proves nothing: it does not count as a recipient key.
    #[default]
    Reject,
    /// A wildcard key ID counts as a key of every recipient (unverifiable).
    Accept,
}

/// What happens to an enforced recipient without a key in the keyring, with
/// `require_recipient_key`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownRecipient {
    /// It cannot be satisfied ("no key for \<rcpt\> in the keyring").
    #[default]
    Reject,
    /// Any encrypted message to it passes.
    Accept,
}

/// Which enforced recipients must have a key the message is encrypted to,
/// with `require_recipient_key`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientKeyScope {
    /// At least one of them (the issue's wording: "one of the envelope
    /// recipients").
    #[default]
    Any,
    /// Every one of them; the refusal names the first without one.
    Every,
}

/// What a message from the null sender (`MAIL FROM:<>`) may be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bounces {
    /// Judged like any other message: a plaintext bounce is refused.
    #[default]
    Refuse,
    /// A well-formed delivery status report (RFC 3464/6522) within
    /// `max_bounce_bytes` passes; see `Policy::judge_bounce`.
    AcceptReports,
}

/// What a message must be to pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Require {
    /// Encrypted OpenPGP only.
    #[default]
    Encrypted,
    /// Encrypted, or signed (PGP/MIME signed, cleartext signed, signed inline).
    EncryptedOrSigned,
}

/// Each setting prints as it is spelled in the TOML file
/// (`encrypted-or-signed`), for `--check-config` and the start-up log.
macro_rules! toml_spelling {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(<$ty>::$variant => $text),+
                })
            }
        }
    };
}

toml_spelling!(HiddenRecipients { Reject => "reject", Accept => "accept" });
toml_spelling!(UnknownRecipient { Reject => "reject", Accept => "accept" });
toml_spelling!(RecipientKeyScope { Any => "any", Every => "every" });
toml_spelling!(Bounces { Refuse => "refuse", AcceptReports => "accept-reports" });
toml_spelling!(Require { Encrypted => "encrypted", EncryptedOrSigned => "encrypted-or-signed" });

/// An SMTP reply with a `{reason}` placeholder in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTemplate {
    code: u16,
    enhanced: Option<String>,
    text: String,
}

impl ReplyTemplate {
    /// Parses `"550 5.7.1 text"` (the enhanced code is optional) and checks
    /// that it renders to a valid reply of class `class` (4 or 5).
    pub fn parse(s: &str, class: u16) -> Result<ReplyTemplate, String> {
        let s = s.trim();
        let (code, rest) = s.split_once(' ').unwrap_or((s, ""));
        let code: u16 = code
            .parse()
            .map_err(|_| format!("{s:?} does not start with a three-digit SMTP code"))?;
        if code / 100 != class {
            return Err(format!("code {code} is not a {class}xx code"));
        }
        let (enhanced, text) = match rest.split_once(' ') {
            Some((e, t)) if is_enhanced(e) => (Some(e.to_owned()), t.to_owned()),
            _ if is_enhanced(rest) => (Some(rest.to_owned()), String::new()),
            _ => (None, rest.to_owned()),
        };
        if let Some(name) = unknown_placeholder(&text) {
            return Err(format!(
                "unknown placeholder {{{name}}} (the only one is {{reason}})"
            ));
        }
        let t = ReplyTemplate {
            code,
            enhanced,
            text,
        };
        t.render("sample reason")
            .map_err(|e| format!("not a valid SMTP reply: {e}"))?;
        Ok(t)
    }

    /// The reply with `{reason}` replaced.
    pub fn render(&self, reason: &str) -> Result<SmtpReply, minimilter::proto::ReplyError> {
        SmtpReply::new(
            self.code,
            self.enhanced.as_deref(),
            &self.text.replace("{reason}", reason),
        )
    }
}

/// The first `{name}` in `text` (a name of letters, digits and `_`) that is
/// not `{reason}`: a misspelt placeholder would otherwise go out to senders
/// as written. Other braces are left alone, as text.
fn unknown_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let name = &rest[..close];
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name != "reason"
        {
            return Some(name);
        }
    }
    None
}

impl std::fmt::Display for ReplyTemplate {
    /// As the configuration file spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = &self.enhanced {
            write!(f, " {e}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// Longest reason put into an SMTP reply (the log keeps the whole one).
const MAX_REASON_IN_REPLY: usize = 160;

/// A reason fit for an SMTP reply: printable ASCII only (parts of it can
/// come from the message), and not too long.
fn for_reply(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON_IN_REPLY)
        .collect();
    if reason.chars().count() > MAX_REASON_IN_REPLY {
        out.push_str("...");
    }
    out
}

fn is_enhanced(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// An exemption entry: a whole address, or `@domain` for a whole domain,
/// both canonical (see [`Address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPattern {
    /// `user@example.org` (compared without case).
    Address(String),
    /// `@example.org`.
    Domain(String),
}

impl AddressPattern {
    /// Parses one entry.
    pub fn parse(s: &str) -> Result<AddressPattern, String> {
        let s = s.trim();
        if s.starts_with('@') {
            return canonical_domain(s)
                .map(AddressPattern::Domain)
                .ok_or_else(|| format!("{s:?} is not @domain"));
        }
        match Address::parse(s) {
            Some(a) if !a.local_part().is_empty() && a.domain().is_some_and(|d| !d.is_empty()) => {
                Ok(AddressPattern::Address(a.as_str().to_owned()))
            }
            _ => Err(format!("{s:?} is neither user@domain nor @domain")),
        }
    }

    /// True if `address` matches: the address itself, or, for a whole
    /// address, the address without its extension (`delimiters`).
    pub fn matches(&self, address: &Address, delimiters: &str) -> bool {
        match self {
            AddressPattern::Address(a) => {
                *a == address.as_str()
                    || address
                        .without_extension(delimiters)
                        .is_some_and(|base| *a == base.as_str())
            }
            AddressPattern::Domain(d) => address.domain() == Some(d.as_str()),
        }
    }
}

/// Is a recipient checked?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientClass {
    /// Mail to it must be OpenPGP.
    Enforced,
    /// Mail to it passes unchecked; the text says why.
    Exempt(String),
}

/// The final word on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Deliver; the text says why.
    Accept(String),
    /// Refuse permanently with this reply; the text says why.
    Reject(SmtpReply, String),
    /// Refuse temporarily with this reply; the text says why.
    Tempfail(SmtpReply, String),
}

impl Decision {
    /// `accept`, `reject` or `tempfail`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Accept(_) => "accept",
            Decision::Reject(..) => "reject",
            Decision::Tempfail(..) => "tempfail",
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Accept(r) | Decision::Reject(_, r) | Decision::Tempfail(_, r) => r,
        }
    }
}

/// The validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// What passes.
    pub require: Require,
    /// What is kept whole at most: the parts a rule reads as a whole (an
    /// HTML twin and its text, a signature part). Everything else, a
    /// possible delivery report included (`max_bounce_bytes` bounds that),
    /// is judged as it streams, whatever the message size.
    pub max_body_bytes: usize,
    /// Largest message body accepted, refused like Postfix's
    /// `message_size_limit` (`552 5.3.4`); `None` (default): no limit.
    pub message_size_limit: Option<usize>,
    /// Let mail from authenticated clients (`{auth_authen}` set) through.
    pub skip_authenticated: bool,
    /// Recipient domains checked (canonical, see [`canonical_domain`]);
    /// empty means all.
    pub enforce_domains: Vec<String>,
    /// Senders whose mail passes.
    pub exempt_senders: Vec<AddressPattern>,
    /// Recipients whose mail passes.
    pub exempt_recipients: Vec<AddressPattern>,
    /// Reply for refused mail.
    pub reject_reply: ReplyTemplate,
    /// Reply for internal errors.
    pub tempfail_reply: ReplyTemplate,
    /// Encrypted mail must be encrypted to a key of an enforced recipient.
    pub require_recipient_key: bool,
    /// The public keyring (`keyring_dir`), reloadable.
    pub keyring: Option<Arc<SharedKeyring>>,
    /// Whether wildcard key IDs count as recipient keys.
    pub hidden_recipients: HiddenRecipients,
    /// What an enforced recipient without a key gets.
    pub unknown_recipient: UnknownRecipient,
    /// Whether one enforced recipient's key is enough, or every one's.
    pub recipient_key_scope: RecipientKeyScope,
    /// What a null-sender message may be.
    pub bounces: Bounces,
    /// Largest body of a delivery status report that passes as one.
    pub max_bounce_bytes: usize,
    /// Characters that start an address extension (`bob+tag@`), as
    /// Postfix's `recipient_delimiter`; empty: none.
    pub recipient_delimiter: String,
    /// Let the unencrypted first SecureJoin step pass (see
    /// [`crate::securejoin`]).
    pub accept_securejoin: bool,
    /// An authenticated submission's `From:` must be its envelope sender
    /// (see [`crate::sender_match`]).
    pub from_must_match_sender: bool,
    /// Reply when it is not.
    pub from_mismatch_reply: ReplyTemplate,
}

/// Default `recipient_delimiter`: Postfix's common setting.
pub const DEFAULT_RECIPIENT_DELIMITER: &str = "+";

/// Default refusal when only encrypted mail passes.
pub const DEFAULT_REJECT_ENCRYPTED: &str =
    "550 5.7.1 Only OpenPGP-encrypted mail is accepted here ({reason})";
/// Default refusal when signed mail passes too.
pub const DEFAULT_REJECT_SIGNED: &str =
    "550 5.7.1 Only OpenPGP-encrypted or OpenPGP-signed mail is accepted here ({reason})";
/// Default `max_bounce_bytes`: Postfix returns at most `bounce_size_limit`
/// (50000) bytes of the original message, so its reports stay well below.
pub const DEFAULT_MAX_BOUNCE_BYTES: usize = 128 << 10;
/// Default reply for an authenticated submission whose `From:` is not
/// its envelope sender.
pub const DEFAULT_FROM_MISMATCH: &str = "554 5.7.1 {reason}";
/// Default reply on internal errors.
pub const DEFAULT_TEMPFAIL: &str =
    "451 4.3.0 Could not check the message for OpenPGP, try again later ({reason})";

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require: Require::Encrypted,
            max_body_bytes: 16 << 20,
            message_size_limit: None,
            skip_authenticated: true,
            enforce_domains: Vec::new(),
            exempt_senders: Vec::new(),
            exempt_recipients: Vec::new(),
            reject_reply: ReplyTemplate::parse(DEFAULT_REJECT_ENCRYPTED, 5)
                .expect("default reply is valid"),
            tempfail_reply: ReplyTemplate::parse(DEFAULT_TEMPFAIL, 4)
                .expect("default reply is valid"),
            require_recipient_key: false,
            keyring: None,
            hidden_recipients: HiddenRecipients::Reject,
            unknown_recipient: UnknownRecipient::Reject,
            recipient_key_scope: RecipientKeyScope::Any,
            bounces: Bounces::Refuse,
            max_bounce_bytes: DEFAULT_MAX_BOUNCE_BYTES,
            recipient_delimiter: DEFAULT_RECIPIENT_DELIMITER.to_owned(),
            accept_securejoin: false,
            from_must_match_sender: false,
            from_mismatch_reply: ReplyTemplate::parse(DEFAULT_FROM_MISMATCH, 5)
                .expect("default reply is valid"),
        }
    }
}

impl Policy {
    /// Why mail from `sender` passes unchecked, if it does. `auth` is the
    /// `{auth_authen}` macro (the SASL login name), if the MTA sent it.
    /// `sender` is canonicalised first (any spelling of an exempt sender
    /// is exempt, no other).
    pub fn sender_exemption(&self, sender: &str, auth: Option<&str>) -> Option<String> {
        self.sender_exemption_of(Address::parse(sender).as_ref(), auth)
    }

    /// [`Policy::sender_exemption`] for a sender parsed already (`None`:
    /// the null sender, or one that does not parse).
    pub fn sender_exemption_of(
        &self,
        sender: Option<&Address>,
        auth: Option<&str>,
    ) -> Option<String> {
        if self.skip_authenticated
            && let Some(user) = auth.filter(|a| !a.is_empty())
        {
            return Some(format!("authenticated submission by {user}"));
        }
        // Exact mailbox only: an extension does not widen a sender
        // exemption (senders are unauthenticated; keep the hole small).
        let sender = sender?;
        self.exempt_senders
            .iter()
            .any(|p| p.matches(sender, ""))
            .then(|| format!("exempt sender {}", sender.as_str()))
    }

    /// Whether mail to `rcpt` is checked. `rcpt` is canonicalised first:
    /// the decision is the one for the mailbox the MTA delivers to, however
    /// the client spelled it.
    pub fn recipient_class(&self, rcpt: &str) -> RecipientClass {
        self.recipient_class_of(Address::parse(rcpt).as_ref())
    }

    /// [`Policy::recipient_class`] for a recipient parsed already (`None`:
    /// `<>`, or one that does not parse).
    pub fn recipient_class_of(&self, rcpt: Option<&Address>) -> RecipientClass {
        let Some(rcpt) = rcpt else {
            // `RCPT TO:<>` is refused by every MTA; if one passes it on,
            // it is checked.
            return RecipientClass::Enforced;
        };
        let base = rcpt.without_extension(&self.recipient_delimiter);
        let local = base.as_ref().unwrap_or(rcpt).local_part();
        let shown = rcpt.as_str();
        if local == "postmaster" || local == "abuse" {
            return RecipientClass::Exempt(format!(
                "{shown} is a role address (RFC 5321, RFC 2142)"
            ));
        }
        if self
            .exempt_recipients
            .iter()
            .any(|p| p.matches(rcpt, &self.recipient_delimiter))
        {
            return RecipientClass::Exempt(format!("exempt recipient {shown}"));
        }
        // Only a domain name can be outside the enforced domains. An
        // unqualified recipient (`bob`) gets the MTA's own domain appended
        // (Postfix `myorigin`), and an address literal naming the MTA's own
        // address (`bob@[192.0.2.1]`) is delivered locally: either may be
        // an enforced mailbox under another spelling, so both are checked.
        let outside = |d: &str| !d.starts_with('[') && !self.enforce_domains.iter().any(|e| e == d);
        if !self.enforce_domains.is_empty() && rcpt.domain().is_some_and(outside) {
            return RecipientClass::Exempt(format!("{shown} is not in an enforced domain"));
        }
        RecipientClass::Enforced
    }

    /// The decision for a message whose recipients are enforced.
    pub fn judge(&self, detection: &Detection) -> Decision {
        match (detection, self.require) {
            (Detection::Encrypted(form), _) => Decision::Accept(format!("encrypted ({form})")),
            (Detection::Signed(form), Require::EncryptedOrSigned) => {
                Decision::Accept(format!("signed ({form})"))
            }
            (Detection::Signed(form), Require::Encrypted) => {
                self.reject(&NotPgp::SignedOnly(*form).to_string())
            }
            (Detection::Plain(NotPgp::Internal(why)), _) => self.tempfail(why),
            (Detection::Plain(why), _) => self.reject(&why.to_string()),
        }
    }

    /// The decision for a message to `rcpts`, given what it is and, for an
    /// encrypted message, the PKESK recipients of each encrypted OpenPGP
    /// message in it (`encrypted_to`, one list per block; needed only with
    /// `require_recipient_key`).
    ///
    /// With `require_recipient_key`, an encrypted message passes if at
    /// least one enforced recipient is satisfied: every encrypted block has
    /// a PKESK for one of that recipient's keys (or a wildcard, with
    /// `hidden_recipients = accept`), or the recipient has no key and
    /// `unknown_recipient = accept`. Signed mail passing under
    /// `encrypted-or-signed` is not checked against the keyring.
    pub fn judge_message(
        &self,
        detection: &Detection,
        encrypted_to: Option<&[Vec<KeyTarget>]>,
        rcpts: &[String],
    ) -> Decision {
        let decision = self.judge(detection);
        let Detection::Encrypted(form) = detection else {
            return decision;
        };
        if !self.require_recipient_key {
            return decision;
        }
        let Some(keyring) = self.keyring.as_deref().map(SharedKeyring::get) else {
            return self.tempfail("require_recipient_key without a keyring");
        };
        let Some(blocks) = encrypted_to.filter(|b| !b.is_empty()) else {
            return self.tempfail("recipient keys of the encrypted message not collected");
        };
        if blocks.iter().any(Vec::is_empty) {
            return self.reject(
                "encrypted with a passphrase only (symmetric), not to a recipient's public key",
            );
        }
        let enforced: Vec<&String> = rcpts
            .iter()
            .filter(|r| self.recipient_class(r) == RecipientClass::Enforced)
            .collect();
        let mut failure: Option<String> = None;
        let mut satisfied: Vec<String> = Vec::new();
        for rcpt in &enforced {
            match self.recipient_key(rcpt, form, &keyring, blocks) {
                Ok(why) if self.recipient_key_scope == RecipientKeyScope::Any => {
                    return Decision::Accept(why);
                }
                Ok(why) => satisfied.push(why),
                // Every recipient must be satisfied: the first that is
                // not decides, and is named.
                Err(why) if self.recipient_key_scope == RecipientKeyScope::Every => {
                    return self.reject(&why);
                }
                Err(why) => {
                    failure.get_or_insert(why);
                }
            }
        }
        match (failure, satisfied.as_slice()) {
            (Some(why), _) => self.reject(&why),
            (None, [one]) => Decision::Accept(one.clone()),
            (None, []) => decision,
            (None, all) => Decision::Accept(format!(
                "encrypted ({form}) to a key of each of the {} enforced recipients",
                all.len()
            )),
        }
    }

    /// Whether enforced recipient `rcpt` can read a message whose
    /// encrypted blocks are for `blocks`: `Ok` with the acceptance text,
    /// or `Err` with the refusal reason.
    fn recipient_key(
        &self,
        rcpt: &str,
        form: &crate::detect::Form,
        keyring: &crate::keyring::Keyring,
        blocks: &[Vec<KeyTarget>],
    ) -> Result<String, String> {
        // The address as given first, then without its extension: the
        // key of bob@ is bob+tag@'s key unless bob+tag@ has its own.
        let canonical = Address::parse(rcpt);
        let rcpt = canonical.as_ref().map_or(rcpt, Address::as_str);
        let mut all = keyring.keys_for(rcpt);
        if all.is_empty()
            && let Some(base) = canonical
                .as_ref()
                .and_then(|a| a.without_extension(&self.recipient_delimiter))
        {
            all = keyring.keys_for(base.as_str());
        }
        if all.is_empty() {
            return match self.unknown_recipient {
                UnknownRecipient::Accept => Ok(format!(
                    "encrypted ({form}); no key for {rcpt} in the keyring \
                     (unknown_recipient = accept)"
                )),
                UnknownRecipient::Reject => Err(format!("no key for {rcpt} in the keyring")),
            };
        }
        // Revoked, expired or unverifiable keys do not count; the refusal
        // names why.
        let now = crate::keyring::now();
        let (keys, unusable): (Vec<_>, Vec<_>) = all
            .iter()
            .map(|k| (k, k.problem_at(now)))
            .partition(|(_, problem)| problem.is_none());
        let unusable_reason = |targets: Option<&Vec<KeyTarget>>| {
            let (_, problem) = unusable
                .iter()
                .find(|(k, _)| targets.is_none_or(|t| t.iter().any(|t| k.key.is_target(t))))?;
            Some(format!(
                "key for {rcpt} {}",
                problem.as_deref().unwrap_or("")
            ))
        };
        if keys.is_empty() {
            return Err(unusable_reason(None).unwrap_or_default());
        }
        let hidden_ok = self.hidden_recipients == HiddenRecipients::Accept;
        let matched = |t: &KeyTarget| match t {
            KeyTarget::Wildcard => hidden_ok,
            t => keys.iter().any(|(k, _)| k.key.is_target(t)),
        };
        match blocks.iter().find(|targets| !targets.iter().any(matched)) {
            None => {
                let hidden = blocks.iter().flatten().all(|t| *t == KeyTarget::Wildcard);
                let to = if hidden {
                    format!("a hidden recipient (accepted as {rcpt})")
                } else {
                    format!("a key of {rcpt}")
                };
                Ok(format!("encrypted ({form}) to {to}"))
            }
            Some(targets) => Err(if let Some(why) = unusable_reason(Some(targets)) {
                why
            } else if targets.iter().all(|t| *t == KeyTarget::Wildcard) {
                format!(
                    "encrypted to hidden recipients only (wildcard key IDs), \
                     which do not show a key of {rcpt}"
                )
            } else {
                format!(
                    "not encrypted to a key of {rcpt} (encrypted to {})",
                    describe_targets(targets)
                )
            }),
        }
    }

    /// The decision for a message from `sender` that was judged `decision`
    /// as ordinary mail. With `bounces = accept-reports`, a refused message
    /// from the null sender passes if it is a well-formed delivery status
    /// report (`report`, checked by `report::delivery_report`) of at most
    /// `max_bounce_bytes` body bytes whose returned content is headers
    /// only, nothing, or a message that itself passes (`require`; the
    /// returned message was encrypted to its original recipients, so the
    /// keyring is not consulted). Anything else from the null sender keeps
    /// its refusal: the empty sender alone exempts nothing.
    pub fn judge_bounce(
        &self,
        sender: &str,
        decision: Decision,
        report: Option<&Result<Report, NotReport>>,
        body_bytes: usize,
    ) -> Decision {
        // Cheapest first: most messages are accepted or have a sender.
        if !matches!(decision, Decision::Reject(..))
            || self.bounces == Bounces::Refuse
            || Address::parse(sender).is_some()
        {
            return decision;
        }
        let report = match report {
            None | Some(Err(NotReport::OtherType)) => return decision,
            Some(Err(NotReport::Malformed(why))) => {
                return self.reject(&format!(
                    "null sender, but not a well-formed delivery status report: {why}"
                ));
            }
            Some(Ok(report)) => report,
        };
        if body_bytes > self.max_bounce_bytes {
            return self.reject(&format!(
                "delivery status report larger than {} bytes (max_bounce_bytes)",
                self.max_bounce_bytes
            ));
        }
        if let Returned::Message(returned) = &report.returned {
            match self.judge(returned) {
                Decision::Accept(_) => {}
                Decision::Reject(_, why) => {
                    return self.reject(&format!(
                        "delivery status report returns a message that is not OpenPGP: {why}"
                    ));
                }
                tempfail @ Decision::Tempfail(..) => return tempfail,
            }
        }
        Decision::Accept(format!("delivery status report (bounce) {report}"))
    }

    /// A refusal naming `reason`.
    pub fn reject(&self, reason: &str) -> Decision {
        match self.reject_reply.render(&for_reply(reason)) {
            Ok(reply) => Decision::Reject(reply, reason.to_owned()),
            // The template was checked at start-up; only an odd reason
            // (control characters) can fail: say less.
            Err(_) => Decision::Reject(
                self.reject_reply
                    .render("not OpenPGP")
                    .expect("checked at start-up"),
                reason.to_owned(),
            ),
        }
    }

    /// The refusal of an authenticated submission whose `From:` is not
    /// its envelope sender.
    pub fn from_mismatch(&self, reason: &str) -> Decision {
        let reply = self
            .from_mismatch_reply
            .render(&for_reply(reason))
            .or_else(|_| {
                self.from_mismatch_reply
                    .render("From does not match sender")
            })
            .expect("checked at start-up");
        Decision::Reject(reply, reason.to_owned())
    }

    /// A temporary failure naming `reason`.
    pub fn tempfail(&self, reason: &str) -> Decision {
        let reply = self
            .tempfail_reply
            .render(&for_reply(reason))
            .or_else(|_| self.tempfail_reply.render("internal error"))
            .expect("checked at start-up");
        Decision::Tempfail(reply, reason.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Form;

    #[test]
    fn reply_templates_parse_and_render() {
        let t = ReplyTemplate::parse(DEFAULT_REJECT_ENCRYPTED, 5).unwrap();
        let r = t.render("no OpenPGP data found").unwrap();
        assert_eq!(
            r.to_string(),
            "550 5.7.1 Only OpenPGP-encrypted mail is accepted here (no OpenPGP data found)"
        );
        assert!(ReplyTemplate::parse("451 4.3.0 later", 5).is_err());
        assert!(ReplyTemplate::parse("hello", 5).is_err());
        assert!(ReplyTemplate::parse("554 5.7.1 x", 5).is_ok());
        assert!(ReplyTemplate::parse("550 Nope", 5).is_ok());
        // A misspelt placeholder is refused, naming it; other braces are text.
        let e = ReplyTemplate::parse("550 5.7.1 Encrypt first ({reasons})", 5).unwrap_err();
        assert!(e.contains("unknown placeholder {reasons}"), "{e}");
        assert!(ReplyTemplate::parse("550 5.7.1 {nope} and {reason}", 5).is_err());
        assert!(ReplyTemplate::parse("550 5.7.1 use {} or { x } ({reason})", 5).is_ok());
    }

    #[test]
    fn reasons_from_the_message_are_tamed_in_replies() {
        let p = Policy::default();
        let long = format!(
            "armor is truncated (no END line for BEGIN PGP {})",
            "\u{e9}\tX".repeat(200)
        );
        let Decision::Reject(reply, reason) = p.reject(&long) else {
            panic!()
        };
        assert_eq!(reason, long, "the log keeps the whole reason");
        let text = reply.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.is_ascii(), "{text}");
        assert!(text.ends_with("...)"), "{text}");
    }

    #[test]
    fn role_addresses_are_always_exempt() {
        let p = Policy::default();
        for r in [
            "postmaster@example.org",
            "Postmaster",
            "ABUSE@example.com",
            "abuse",
        ] {
            assert!(
                matches!(p.recipient_class(r), RecipientClass::Exempt(_)),
                "{r}"
            );
        }
        assert_eq!(
            p.recipient_class("bob@example.org"),
            RecipientClass::Enforced
        );
        assert_eq!(
            p.recipient_class("postmaster-list@example.org"),
            RecipientClass::Enforced
        );
    }

    #[test]
    fn exemptions_and_enforced_domains() {
        let p = Policy {
            enforce_domains: vec!["secure.example".into()],
            exempt_recipients: vec![AddressPattern::parse("Help@Secure.Example").unwrap()],
            exempt_senders: vec![AddressPattern::parse("@partner.example").unwrap()],
            ..Policy::default()
        };
        assert_eq!(
            p.recipient_class("bob@SECURE.example"),
            RecipientClass::Enforced
        );
        assert!(matches!(
            p.recipient_class("help@secure.example"),
            RecipientClass::Exempt(_)
        ));
        assert!(matches!(
            p.recipient_class("bob@other.example"),
            RecipientClass::Exempt(_)
        ));
        assert!(p.sender_exemption("x@partner.example", None).is_some());
        assert!(p.sender_exemption("x@other.example", None).is_none());
        assert!(p.sender_exemption("", None).is_none());
        let auth = p.sender_exemption("x@other.example", Some("alice"));
        assert_eq!(auth.as_deref(), Some("authenticated submission by alice"));
        let strict = Policy {
            skip_authenticated: false,
            ..Policy::default()
        };
        assert!(
            strict
                .sender_exemption("x@other.example", Some("alice"))
                .is_none()
        );
        assert!(AddressPattern::parse("nobody").is_err());
        assert!(AddressPattern::parse("@").is_err());
    }

    #[test]
    fn every_spelling_of_an_enforced_recipient_is_enforced() {
        // The reviewer's bypass: Postfix delivers all of these to
        // bob@example.org.
        let p = Policy {
            enforce_domains: vec![canonical_domain("example.org").unwrap()],
            ..Policy::default()
        };
        for r in [
            "bob@example.org",
            "bob@example.org.",
            "<bob@example.org.>",
            "\"bob\"@example.org",
            "<\"b\\ob\"@EXAMPLE.org.>",
            "bob (hi) @ example.org",
            "<@relay.example:bob@example.org.>",
        ] {
            assert_eq!(p.recipient_class(r), RecipientClass::Enforced, "{r}");
        }
        // A configured domain with a trailing dot means the same domain.
        let dotted = Policy {
            enforce_domains: vec![canonical_domain("Example.COM.").unwrap()],
            ..Policy::default()
        };
        assert_eq!(
            dotted.recipient_class("bob@example.com"),
            RecipientClass::Enforced
        );
        assert!(matches!(
            dotted.recipient_class("bob@example.org."),
            RecipientClass::Exempt(_)
        ));
        // Unqualified and address-literal recipients may be an enforced
        // mailbox (myorigin appended, the MTA's own address): checked.
        for r in ["bob", "<bob>", "bob@[127.0.0.1]", "<bob@[IPv6:::1]>"] {
            assert_eq!(p.recipient_class(r), RecipientClass::Enforced, "{r}");
        }
        // The reason names the canonical mailbox.
        assert_eq!(
            p.recipient_class("<bob@other.example.>"),
            RecipientClass::Exempt("bob@other.example is not in an enforced domain".into())
        );
    }

    #[test]
    fn exempt_addresses_match_every_spelling_and_extension() {
        let p = Policy {
            exempt_recipients: vec![AddressPattern::parse("Help@Secure.Example.").unwrap()],
            exempt_senders: vec![
                AddressPattern::parse("robot@partner.example").unwrap(),
                AddressPattern::parse("@friends.example.").unwrap(),
            ],
            ..Policy::default()
        };
        for r in [
            "help@secure.example.",
            "\"help\"@secure.example",
            "help+tickets@secure.example",
        ] {
            assert!(
                matches!(p.recipient_class(r), RecipientClass::Exempt(_)),
                "{r}"
            );
        }
        assert_eq!(
            p.recipient_class("helpdesk@secure.example"),
            RecipientClass::Enforced
        );
        for s in [
            "<robot@partner.example.>",
            "\"robot\"@Partner.Example",
            "anyone@friends.example.",
        ] {
            assert!(p.sender_exemption(s, None).is_some(), "{s}");
        }
        assert!(p.sender_exemption("robots@partner.example", None).is_none());
        // A sender's extension does not widen its exemption.
        assert!(
            p.sender_exemption("robot+x@partner.example", None)
                .is_none()
        );
        // Extensions off: only the exact mailbox.
        let exact = Policy {
            recipient_delimiter: String::new(),
            ..p.clone()
        };
        assert_eq!(
            exact.recipient_class("help+tickets@secure.example"),
            RecipientClass::Enforced
        );
        // Several delimiter characters, as Postfix allows.
        let both = Policy {
            recipient_delimiter: "+-".into(),
            ..p
        };
        assert!(matches!(
            both.recipient_class("help-x@secure.example"),
            RecipientClass::Exempt(_)
        ));
    }

    #[test]
    fn role_addresses_with_an_extension_are_role_addresses() {
        let p = Policy::default();
        for r in [
            "postmaster+x@example.org",
            "\"postmaster\"@example.org.",
            "Abuse+Reports@example.org",
            "postmaster+x",
        ] {
            assert!(
                matches!(p.recipient_class(r), RecipientClass::Exempt(_)),
                "{r}"
            );
        }
        let none = Policy {
            recipient_delimiter: String::new(),
            ..Policy::default()
        };
        assert_eq!(
            none.recipient_class("postmaster+x@example.org"),
            RecipientClass::Enforced
        );
    }

    #[test]
    fn judge_by_requirement() {
        let p = Policy::default();
        assert_eq!(
            p.judge(&Detection::Encrypted(Form::PgpMime)).name(),
            "accept"
        );
        let signed = Detection::Signed(Form::Cleartext);
        let d = p.judge(&signed);
        let Decision::Reject(reply, reason) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(reason, "signed (cleartext signature) but not encrypted");
        assert!(
            reply
                .to_string()
                .starts_with("550 5.7.1 Only OpenPGP-encrypted")
        );
        let lax = Policy {
            require: Require::EncryptedOrSigned,
            ..Policy::default()
        };
        assert_eq!(lax.judge(&signed).name(), "accept");
        let d = p.judge(&Detection::Plain(NotPgp::NoOpenPgp));
        let Decision::Reject(reply, _) = d else {
            panic!()
        };
        assert_eq!(
            reply.to_string(),
            "550 5.7.1 Only OpenPGP-encrypted mail is accepted here (no OpenPGP data found)"
        );
        let d = p.judge(&Detection::Plain(NotPgp::Internal("boom".into())));
        let Decision::Tempfail(reply, _) = d else {
            panic!()
        };
        assert!(reply.to_string().starts_with("451 4.3.0 "), "{reply}");
    }

    mod bounces {
        use super::*;
        use crate::report::RecipientStatus;

        fn report(returned: Returned) -> Report {
            Report {
                reporting_mta: "dns; mx.remote.example".into(),
                recipients: vec![RecipientStatus {
                    final_recipient: "rfc822; nobody@remote.example".into(),
                    action: "failed".into(),
                    status: "5.1.1".into(),
                }],
                returned,
            }
        }

        fn accepting() -> Policy {
            Policy {
                bounces: Bounces::AcceptReports,
                ..Policy::default()
            }
        }

        /// What the ordinary judgement says of a plaintext report.
        fn plain(p: &Policy) -> Decision {
            p.judge(&Detection::Plain(NotPgp::PlaintextPart(
                "text/plain part".into(),
            )))
        }

        #[test]
        fn reports_from_the_null_sender_pass_only_when_configured() {
            let headers = Ok(report(Returned::Headers));
            let p = accepting();
            let d = p.judge_bounce("", plain(&p), Some(&headers), 4000);
            assert_eq!(
                d,
                Decision::Accept(
                    "delivery status report (bounce) from dns; mx.remote.example: failed \
                     rfc822; nobody@remote.example 5.1.1; headers returned"
                        .into()
                )
            );
            let nothing = Ok(report(Returned::Nothing));
            assert_eq!(
                p.judge_bounce("", plain(&p), Some(&nothing), 4000).name(),
                "accept"
            );
            // The default refuses them like any plaintext.
            let strict = Policy::default();
            assert_eq!(
                strict.judge_bounce("", plain(&strict), Some(&headers), 4000),
                plain(&strict)
            );
            // A report from a real sender is ordinary mail.
            assert_eq!(
                p.judge_bounce("mailer@remote.example", plain(&p), Some(&headers), 4000),
                plain(&p)
            );
        }

        #[test]
        fn a_null_sender_alone_exempts_nothing() {
            let p = accepting();
            // Not a report at all: the ordinary refusal and its reason.
            let d = p.judge_bounce("", plain(&p), Some(&Err(NotReport::OtherType)), 100);
            assert_eq!(d, plain(&p));
            assert_eq!(d.reason(), "unencrypted content: text/plain part");
            let d = p.judge_bounce("", plain(&p), None, 100);
            assert_eq!(d, plain(&p));
            // A multipart/report that is not a delivery status report.
            let bad = Err(NotReport::Malformed("4 parts instead of 2 or 3".into()));
            let d = p.judge_bounce("", plain(&p), Some(&bad), 100);
            assert_eq!(d.name(), "reject");
            assert_eq!(
                d.reason(),
                "null sender, but not a well-formed delivery status report: \
                 4 parts instead of 2 or 3"
            );
            // Too large.
            let ok = Ok(report(Returned::Headers));
            let d = p.judge_bounce("", plain(&p), Some(&ok), DEFAULT_MAX_BOUNCE_BYTES + 1);
            assert_eq!(
                d.reason(),
                "delivery status report larger than 131072 bytes (max_bounce_bytes)"
            );
            assert_eq!(
                p.judge_bounce("", plain(&p), Some(&ok), DEFAULT_MAX_BOUNCE_BYTES)
                    .name(),
                "accept"
            );
            let small = Policy {
                max_bounce_bytes: 2048,
                ..accepting()
            };
            assert_eq!(
                small
                    .judge_bounce("", plain(&small), Some(&ok), 2049)
                    .name(),
                "reject"
            );
        }

        #[test]
        fn a_returned_message_must_pass_itself() {
            let p = accepting();
            let returned = |d: Detection| Ok(report(Returned::Message(d)));
            let clear = returned(Detection::Plain(NotPgp::PlaintextPart(
                "text/plain part".into(),
            )));
            let d = p.judge_bounce("", plain(&p), Some(&clear), 4000);
            assert_eq!(
                d.reason(),
                "delivery status report returns a message that is not OpenPGP: \
                 unencrypted content: text/plain part"
            );
            let Decision::Reject(reply, _) = &d else {
                panic!("{d:?}")
            };
            assert!(reply.to_string().starts_with("550 5.7.1 "), "{reply}");
            let enc = returned(Detection::Encrypted(Form::PgpMime));
            assert_eq!(
                p.judge_bounce("", plain(&p), Some(&enc), 4000).name(),
                "accept"
            );
            let signed = returned(Detection::Signed(Form::Cleartext));
            assert_eq!(
                p.judge_bounce("", plain(&p), Some(&signed), 4000).name(),
                "reject"
            );
            let lax = Policy {
                require: Require::EncryptedOrSigned,
                ..accepting()
            };
            assert_eq!(
                lax.judge_bounce("", plain(&lax), Some(&signed), 4000)
                    .name(),
                "accept"
            );
            // The detector failing on the returned message: tempfail.
            let broken = returned(Detection::Plain(NotPgp::Internal("boom".into())));
            assert_eq!(
                p.judge_bounce("", plain(&p), Some(&broken), 4000).name(),
                "tempfail"
            );
        }

        #[test]
        fn other_decisions_are_left_alone() {
            let p = accepting();
            let ok = Ok(report(Returned::Headers));
            let accept = Decision::Accept("encrypted (PGP/MIME)".into());
            assert_eq!(p.judge_bounce("", accept.clone(), Some(&ok), 10), accept);
            let tempfail = p.tempfail("boom");
            assert_eq!(
                p.judge_bounce("", tempfail.clone(), Some(&ok), 10),
                tempfail
            );
        }
    }

    mod recipient_keys {
        use super::*;
        use crate::keyring::{Cert, Key, KeyPacket, Keyring, UserIdStatus};

        /// A certificate for `uid` with a signing primary key and one
        /// encryption subkey whose key ID ends in `n`; the subkey expires
        /// at `expires`, or has `problem`.
        fn cert_with(uid: &str, n: u8, expires: Option<u64>, problem: Option<&str>) -> Cert {
            let key = |id: u8, subkey: bool| Key {
                packet: KeyPacket {
                    version: 4,
                    algorithm: if subkey { 18 } else { 22 },
                    fingerprint: [vec![0xf0; 12], vec![id; 8]].concat(),
                    key_id: [id; 8],
                },
                subkey,
                can_encrypt: subkey,
                expires: expires.filter(|_| subkey),
                problem: problem.filter(|_| subkey).map(str::to_owned),
            };
            Cert {
                keys: vec![key(n + 0x80, false), key(n, true)],
                user_ids: vec![UserIdStatus {
                    user_id: uid.to_owned(),
                    problem: None,
                }],
            }
        }

        fn cert(uid: &str, n: u8) -> Cert {
            cert_with(uid, n, None, None)
        }

        fn policy() -> Policy {
            Policy {
                require_recipient_key: true,
                keyring: Some(Arc::new(SharedKeyring::fixed(Keyring::from_certs(vec![
                    cert("Bob <bob@example.org>", 1),
                    cert("carol@Example.NET", 2),
                ])))),
                ..Policy::default()
            }
        }

        #[test]
        fn expired_and_revoked_keys_do_not_count_and_the_refusal_says_why() {
            // 2025-01-01T00:00:00Z.
            const JAN_2025: u64 = 1_735_689_600;
            let p = Policy {
                require_recipient_key: true,
                keyring: Some(Arc::new(SharedKeyring::fixed(Keyring::from_certs(vec![
                    cert_with("bob@example.org", 1, Some(JAN_2025), None),
                    cert_with("dave@example.org", 4, None, Some("revoked 2025-02-03")),
                    cert_with("erin@example.org", 5, Some(u64::MAX), None),
                ])))),
                ..Policy::default()
            };
            let d = judge(&p, &[vec![BOB]], &["bob@example.org"]);
            assert_eq!(d.name(), "reject");
            assert_eq!(d.reason(), "key for bob@example.org expired 2025-01-01");
            let Decision::Reject(reply, _) = &d else {
                panic!()
            };
            assert!(
                reply
                    .to_string()
                    .contains("(key for bob@example.org expired 2025-01-01)")
            );
            let d = judge(&p, &[vec![KeyTarget::KeyId([4; 8])]], &["dave@example.org"]);
            assert_eq!(d.reason(), "key for dave@example.org revoked 2025-02-03");
            // Unknown key IDs to a recipient whose only key is expired: the
            // expiry is the reason.
            let d = judge(&p, &[vec![CAROL]], &["bob@example.org"]);
            assert_eq!(d.reason(), "key for bob@example.org expired 2025-01-01");
            // A key expiring in the future counts.
            let d = judge(&p, &[vec![KeyTarget::KeyId([5; 8])]], &["erin@example.org"]);
            assert_eq!(d.name(), "accept");
            let ring = p.keyring.as_ref().unwrap().get();
            assert_eq!(
                ring.problems_at(crate::keyring::now()),
                [
                    "key for bob@example.org expired 2025-01-01",
                    "key for dave@example.org revoked 2025-02-03"
                ]
            );
            assert_eq!(ring.address_count(), 1);
        }

        fn judge(p: &Policy, blocks: &[Vec<KeyTarget>], rcpts: &[&str]) -> Decision {
            let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
            p.judge_message(&Detection::Encrypted(Form::PgpMime), Some(blocks), &rcpts)
        }

        const BOB: KeyTarget = KeyTarget::KeyId([1; 8]);
        const CAROL: KeyTarget = KeyTarget::KeyId([2; 8]);
        const BOB_PRIMARY: KeyTarget = KeyTarget::KeyId([0x81; 8]);
        const MALLORY_KEY: KeyTarget = KeyTarget::KeyId([9; 8]);

        #[test]
        fn at_least_one_enforced_recipient_must_have_a_key_targeted() {
            let p = policy();
            let d = judge(&p, &[vec![BOB]], &["bob@example.org"]);
            assert_eq!(
                d,
                Decision::Accept("encrypted (PGP/MIME) to a key of bob@example.org".into())
            );
            assert_eq!(
                judge(&p, &[vec![BOB]], &["Bob@EXAMPLE.org"]).name(),
                "accept"
            );
            assert_eq!(
                judge(&p, &[vec![CAROL, BOB]], &["carol@example.net"]).name(),
                "accept"
            );
            assert_eq!(
                judge(
                    &p,
                    &[vec![CAROL]],
                    &["bob@example.org", "carol@example.net"]
                )
                .name(),
                "accept"
            );
            let d = judge(&p, &[vec![CAROL]], &["bob@example.org"]);
            assert_eq!(d.name(), "reject");
            assert_eq!(
                d.reason(),
                "not encrypted to a key of bob@example.org (encrypted to 0202020202020202)"
            );
            // The signing primary key is not an encryption key.
            assert_eq!(
                judge(&p, &[vec![BOB_PRIMARY]], &["bob@example.org"]).name(),
                "reject"
            );
            // Two encrypted blocks: both must be for the recipient.
            assert_eq!(
                judge(&p, &[vec![BOB], vec![CAROL]], &["bob@example.org"]).name(),
                "reject"
            );
            assert_eq!(
                judge(&p, &[vec![BOB], vec![BOB, CAROL]], &["bob@example.org"]).name(),
                "accept"
            );
            // A role address is not enforced; only bob is.
            assert_eq!(
                judge(
                    &p,
                    &[vec![CAROL]],
                    &["postmaster@example.org", "bob@example.org"]
                )
                .name(),
                "reject"
            );
        }

        #[test]
        fn every_enforced_recipient_must_have_a_key_targeted() {
            let p = Policy {
                recipient_key_scope: RecipientKeyScope::Every,
                ..policy()
            };
            let both = ["bob@example.org", "carol@example.net"];
            assert_eq!(
                judge(&p, &[vec![BOB, CAROL]], &both),
                Decision::Accept(
                    "encrypted (PGP/MIME) to a key of each of the 2 enforced recipients".into()
                )
            );
            // One recipient alone: the same text as with `any`.
            assert_eq!(
                judge(&p, &[vec![BOB]], &["bob@example.org"]),
                Decision::Accept("encrypted (PGP/MIME) to a key of bob@example.org".into())
            );
            // Bob's key only: Carol cannot read it, and is named.
            let d = judge(&p, &[vec![BOB]], &both);
            assert_eq!(d.name(), "reject");
            assert_eq!(
                d.reason(),
                "not encrypted to a key of carol@example.net (encrypted to 0101010101010101)"
            );
            // The first recipient without a key is the one named.
            let d = judge(&p, &[vec![CAROL]], &both);
            assert_eq!(
                d.reason(),
                "not encrypted to a key of bob@example.org (encrypted to 0202020202020202)"
            );
            let d = judge(
                &p,
                &[vec![MALLORY_KEY]],
                &["dave@example.org", "bob@example.org"],
            );
            assert_eq!(d.reason(), "no key for dave@example.org in the keyring");
            // Every encrypted block, for every recipient.
            let d = judge(&p, &[vec![BOB, CAROL], vec![BOB]], &both);
            assert_eq!(
                d.reason(),
                "not encrypted to a key of carol@example.net (encrypted to 0101010101010101)"
            );
            // Unenforced recipients (role addresses) need no key.
            assert_eq!(
                judge(
                    &p,
                    &[vec![BOB]],
                    &["postmaster@example.org", "bob@example.org"]
                )
                .name(),
                "accept"
            );
            // `any` accepts what `every` refuses.
            assert_eq!(judge(&policy(), &[vec![BOB]], &both).name(), "accept");
            // unknown_recipient = accept: a recipient without a key does not
            // block, but a known one still needs its key.
            let lax = Policy {
                unknown_recipient: UnknownRecipient::Accept,
                ..p.clone()
            };
            assert_eq!(
                judge(&lax, &[vec![BOB]], &["bob@example.org", "dave@example.org"]).name(),
                "accept"
            );
            assert_eq!(
                judge(
                    &lax,
                    &[vec![CAROL]],
                    &["bob@example.org", "dave@example.org"]
                )
                .reason(),
                "not encrypted to a key of bob@example.org (encrypted to 0202020202020202)"
            );
            // Hidden recipients count for everyone only when accepted.
            let d = judge(&p, &[vec![KeyTarget::Wildcard, BOB]], &both);
            assert!(
                d.reason()
                    .starts_with("not encrypted to a key of carol@example.net"),
                "{}",
                d.reason()
            );
            let hidden = Policy {
                hidden_recipients: HiddenRecipients::Accept,
                ..p
            };
            assert_eq!(
                judge(&hidden, &[vec![KeyTarget::Wildcard, BOB]], &both).name(),
                "accept"
            );
        }

        #[test]
        fn subaddresses_and_spellings_use_the_mailboxs_key() {
            let p = policy();
            for r in [
                "bob+tag@example.org",
                "\"bob\"@example.org",
                "<bob@Example.org.>",
                "\"bob+x\"@example.org.",
            ] {
                assert_eq!(judge(&p, &[vec![BOB]], &[r]).name(), "accept", "{r}");
            }
            // Still the mailbox's key, not any key.
            let d = judge(&p, &[vec![CAROL]], &["bob+tag@example.org"]);
            assert_eq!(
                d.reason(),
                "not encrypted to a key of bob+tag@example.org (encrypted to 0202020202020202)"
            );
            // An address with its own key: that key, not the mailbox's.
            let own = Policy {
                keyring: Some(Arc::new(SharedKeyring::fixed(Keyring::from_certs(vec![
                    cert("bob@example.org", 1),
                    cert("bob+lists@example.org", 2),
                ])))),
                ..policy()
            };
            assert_eq!(
                judge(&own, &[vec![CAROL]], &["bob+lists@example.org"]).name(),
                "accept"
            );
            assert_eq!(
                judge(&own, &[vec![BOB]], &["bob+lists@example.org"]).name(),
                "reject"
            );
            // Extensions off: bob+tag is a mailbox of its own, without a key.
            let exact = Policy {
                recipient_delimiter: String::new(),
                ..policy()
            };
            assert_eq!(
                judge(&exact, &[vec![BOB]], &["bob+tag@example.org"]).reason(),
                "no key for bob+tag@example.org in the keyring"
            );
        }

        #[test]
        fn unknown_recipients() {
            let p = policy();
            let d = judge(&p, &[vec![BOB]], &["dave@example.org"]);
            assert_eq!(d.reason(), "no key for dave@example.org in the keyring");
            let Decision::Reject(reply, _) = &d else {
                panic!()
            };
            assert!(
                reply
                    .to_string()
                    .contains("(no key for dave@example.org in the keyring)")
            );
            let lax = Policy {
                unknown_recipient: UnknownRecipient::Accept,
                ..policy()
            };
            assert_eq!(
                judge(&lax, &[vec![CAROL]], &["dave@example.org"]).name(),
                "accept"
            );
            // A known recipient still needs its key.
            assert_eq!(
                judge(&lax, &[vec![CAROL]], &["bob@example.org"]).name(),
                "reject"
            );
            // "accept" is about the keyring not knowing the recipient, not
            // about public-key encryption: a passphrase-only message to an
            // unknown recipient is refused (as the README says).
            let d = judge(&lax, &[vec![]], &["dave@example.org"]);
            assert_eq!(d.name(), "reject");
            assert!(d.reason().contains("passphrase only"), "{}", d.reason());
        }

        #[test]
        fn hidden_recipients_and_passphrases() {
            let p = policy();
            let d = judge(&p, &[vec![KeyTarget::Wildcard]], &["bob@example.org"]);
            assert_eq!(d.name(), "reject");
            assert!(
                d.reason()
                    .starts_with("encrypted to hidden recipients only"),
                "{}",
                d.reason()
            );
            // A hidden recipient next to bob's key: bob's key is enough.
            assert_eq!(
                judge(&p, &[vec![KeyTarget::Wildcard, BOB]], &["bob@example.org"]).name(),
                "accept"
            );
            let lax = Policy {
                hidden_recipients: HiddenRecipients::Accept,
                ..policy()
            };
            let d = judge(&lax, &[vec![KeyTarget::Wildcard]], &["bob@example.org"]);
            assert_eq!(
                d,
                Decision::Accept(
                    "encrypted (PGP/MIME) to a hidden recipient (accepted as bob@example.org)"
                        .into()
                )
            );
            // Passphrase only: refused whatever the settings.
            let d = judge(&lax, &[vec![]], &["bob@example.org"]);
            assert_eq!(d.name(), "reject");
            assert!(d.reason().contains("passphrase only"), "{}", d.reason());
        }

        #[test]
        fn only_encrypted_mail_is_checked_against_the_keyring() {
            let p = policy();
            let rcpts = vec!["bob@example.org".to_owned()];
            let plain = Detection::Plain(NotPgp::NoOpenPgp);
            assert_eq!(p.judge_message(&plain, None, &rcpts).name(), "reject");
            let lax = Policy {
                require: Require::EncryptedOrSigned,
                ..policy()
            };
            let signed = Detection::Signed(Form::Cleartext);
            assert_eq!(lax.judge_message(&signed, None, &rcpts).name(), "accept");
            // Off: no key check at all.
            let off = Policy {
                require_recipient_key: false,
                ..policy()
            };
            let enc = Detection::Encrypted(Form::Inline);
            assert_eq!(
                off.judge_message(&enc, Some(&[vec![CAROL]]), &rcpts).name(),
                "accept"
            );
            // Keys not collected: an internal error, tempfail.
            assert_eq!(p.judge_message(&enc, None, &rcpts).name(), "tempfail");
        }
    }
}
