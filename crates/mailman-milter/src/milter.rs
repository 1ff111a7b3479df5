//! The milter: classifies recipients at RCPT, keeps guarded lists and other
//! recipients in separate transactions, and applies [`crate::policy`] at RCPT
//! (`senders = "envelope"`) or at end of headers (`senders = "mailman"`).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use minimilter::proto::reply::ReplyError;
use minimilter::{
    Ctx, Envelope, Header, MacroStage, Milter, Requirements, SmtpReply, StepResult, Steps, Verdict,
};

use crate::address::{envelope, incomplete, mailman_keeps, read_header_addresses};
use crate::approval::BodyScan;
use crate::backend::{BackendError, ListBackend, ListIndex};
use crate::header_match::SeenHeaders;
use crate::list::ListPolicy;
use crate::overrides::ListOverrides;
use crate::policy::{Decision, Post, SenderMode, decide_with_headers, is_approval_header};
use crate::recipient::{AddressRules, Recipient};

/// The default refusal text; `{list}` is replaced by the posting address.
pub const DEFAULT_REJECT_TEXT: &str = "<{list}>: you are not allowed to post to this list";

/// What to do when the list data cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// `451 4.3.0`: the client retries later.
    #[default]
    Tempfail,
    /// Let the mail through; Mailman decides.
    Accept,
}

impl OnBackendError {
    /// The name as written in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            OnBackendError::Tempfail => "tempfail",
            OnBackendError::Accept => "accept",
        }
    }
}

/// How the milter decides (everything but the list data).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whose addresses count as the sender.
    pub senders: SenderMode,
    /// Extensions and alias domains.
    pub rules: AddressRules,
    /// List data unavailable.
    pub on_backend_error: OnBackendError,
    /// Refusal text for lists without their own (`{list}` = posting address).
    pub reject_text: String,
    /// Pass posts that claim pre-approval (`Approved:` header or body line)
    /// to Mailman, which checks the password.
    pub pass_approved: bool,
    /// Per-list settings the list data may lack (Mailman's REST API has no
    /// `refuse_hold`, and its lists no milter refusal text).
    pub overrides: ListOverrides,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            senders: SenderMode::Mailman,
            rules: AddressRules::default(),
            on_backend_error: OnBackendError::Tempfail,
            reject_text: DEFAULT_REJECT_TEXT.into(),
            pass_approved: true,
            overrides: ListOverrides::default(),
        }
    }
}

/// The `550 5.7.1` refusal for `list` from a text template.
pub fn refusal_reply(template: &str, list: &str) -> Result<SmtpReply, ReplyError> {
    SmtpReply::new(550, Some("5.7.1"), &template.replace("{list}", list))
}

fn split_reply(rcpt: &str) -> SmtpReply {
    let text = format!(
        "<{rcpt}>: Too many recipients for this transaction; send to this recipient separately"
    );
    SmtpReply::new(452, Some("4.5.3"), &text)
        .or_else(|_| SmtpReply::new(452, Some("4.5.3"), "Too many recipients"))
        .expect("a valid fixed reply")
}

fn unavailable_reply() -> SmtpReply {
    SmtpReply::new(
        451,
        Some("4.3.0"),
        "Mailing list data temporarily unavailable; try again later",
    )
    .expect("a valid fixed reply")
}

/// The policy class of a transaction: its first accepted recipient's.
#[derive(Debug, Clone)]
enum Class {
    /// The posting address of this guarded list.
    List(Arc<ListPolicy>),
    /// Anything else (other mail, list service addresses, unguarded lists).
    Other,
}

impl Class {
    fn same(&self, other: &Class) -> bool {
        match (self, other) {
            (Class::List(a), Class::List(b)) => a.address == b.address,
            (Class::Other, Class::Other) => true,
            _ => false,
        }
    }
}

/// Per-message state.
#[derive(Debug, Default)]
pub struct Message {
    envelope: Option<String>,
    envelope_raw: String,
    class: Option<Class>,
    rcpts: Vec<String>,
    from: Vec<String>,
    reply_to: Vec<String>,
    sender: Vec<String>,
    approved: bool,
    /// The first sender header (From:, Reply-To:, Sender:) whose value the
    /// milter cannot read as Mailman does: Mailman may find a member there,
    /// so the milter refuses nothing for this message.
    unreadable: Option<String>,
    /// Headers the list's header-match rules look at.
    headers: SeenHeaders,
    pending: Option<Pending>,
    body_scan: BodyScan,
    /// The decisions taken for this message (reason text, class), for
    /// the runtime's one line per message; set where the log fields are,
    /// which have only shared access to the state.
    decided: std::sync::Mutex<Vec<(String, &'static str)>>,
}

/// A backend index and the same with the overrides applied.
type Overridden = (Arc<ListIndex>, Arc<ListIndex>);

/// The mailman-milter filter over a list backend.
pub struct MailmanMilter<B> {
    backend: Arc<B>,
    settings: Arc<Settings>,
    /// The backend's last index and the same with the overrides applied,
    /// so they are applied once per change of the data, not per RCPT.
    overridden: Arc<Mutex<Option<Overridden>>>,
    /// The override entries last seen naming no list (warned about once
    /// per change, as list data is reloaded or REST answers change).
    missing: Arc<Mutex<Vec<String>>>,
}

impl<B: ListBackend> MailmanMilter<B> {
    /// A filter deciding with `settings` from `backend`'s data.
    pub fn new(backend: Arc<B>, settings: Settings) -> Self {
        MailmanMilter {
            backend,
            settings: Arc::new(settings),
            overridden: Arc::default(),
            missing: Arc::default(),
        }
    }

    /// The same filter, sharing its backend, settings and warnings: e.g.
    /// to read the list data in the background while this one serves.
    pub fn twin(&self) -> Self {
        MailmanMilter {
            backend: self.backend.clone(),
            settings: self.settings.clone(),
            overridden: self.overridden.clone(),
            missing: self.missing.clone(),
        }
    }

    /// Reads the list data once, as the first mail would, so problems
    /// (an override naming no list) are logged at start-up; the number of
    /// lists.
    /// A backend that reads lists one by one is not read whole: only the
    /// lists the overrides name are (the number found is returned).
    pub async fn prime(&self) -> Result<usize, BackendError> {
        if self.backend.lazy() {
            let mut named: Vec<String> = self.settings.overrides.lists.keys().cloned().collect();
            named.sort();
            // No candidates: the backend's site data (list domains).
            self.backend.find_lists(&[]).await?;
            let mut found = ListIndex::new();
            // Asked one by one: each is a posting address of its own.
            for name in named {
                let index = self.backend.find_lists(std::slice::from_ref(&name)).await?;
                found.extend(index.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            self.warn_missing(&found);
            return Ok(found.len());
        }
        let index = self.lists().await?;
        // Alias-domain keys name a list twice.
        let lists: std::collections::HashSet<&str> =
            index.values().map(|p| p.address.as_str()).collect();
        Ok(lists.len())
    }

    /// The backend's lists with the configured overrides applied.
    async fn lists(&self) -> Result<Arc<ListIndex>, BackendError> {
        let index = self.backend.lists().await?;
        if self.settings.overrides.is_empty() || self.backend.lazy() {
            return Ok(index);
        }
        let mut cached = self
            .overridden
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((source, applied)) = &*cached
            && Arc::ptr_eq(source, &index)
        {
            return Ok(applied.clone());
        }
        self.warn_missing(&index);
        let applied = Arc::new(self.settings.overrides.apply(&index));
        *cached = Some((index, applied.clone()));
        Ok(applied)
    }

    /// The lists `rcpt` may name, with the configured overrides applied:
    /// for a backend that reads lists one by one, those found; else all.
    async fn find_lists(&self, rcpt: &str) -> Result<Arc<ListIndex>, BackendError> {
        if !self.backend.lazy() {
            return self.lists().await;
        }
        let candidates = self.settings.rules.candidates(rcpt);
        let index = self.backend.find_lists(&candidates).await?;
        if self.settings.overrides.is_empty() {
            return Ok(index);
        }
        Ok(Arc::new(self.settings.overrides.apply(&index)))
    }

    fn warn_missing(&self, index: &ListIndex) {
        let now: Vec<String> = self
            .settings
            .overrides
            .missing(index)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut last = self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        for list in now.iter().filter(|l| !last.contains(l)) {
            tracing::warn!("{}", crate::overrides::missing_override(list));
        }
        *last = now;
    }

    fn refusal(&self, list: &ListPolicy) -> SmtpReply {
        let template = list
            .reject_text
            .as_deref()
            .unwrap_or(&self.settings.reject_text);
        refusal_reply(template, &list.address)
            .or_else(|_| refusal_reply(DEFAULT_REJECT_TEXT, &list.address))
            .expect("the default text is valid")
    }

    fn backend_failure(&self, e: &BackendError) -> Verdict {
        match self.settings.on_backend_error {
            OnBackendError::Tempfail => {
                tracing::warn!("{e}; tempfail");
                Verdict::tempfail_with(unavailable_reply())
            }
            OnBackendError::Accept => {
                tracing::warn!("{e}; passing the mail to Mailman");
                Verdict::Continue
            }
        }
    }

    async fn classify(&self, rcpt: &str) -> Result<Class, BackendError> {
        // Mail outside the list domains never waits for the list data.
        if let Some(domains) = self.backend.list_domains() {
            match self.settings.rules.domain_of(rcpt) {
                Some(d) if domains.contains(&d) => {}
                _ => return Ok(Class::Other),
            }
        }
        let index = self.find_lists(rcpt).await?;
        let class = match self
            .settings
            .rules
            .classify(rcpt, |a| index.contains_key(a))
        {
            Recipient::Post(list) => match index.get(&list) {
                Some(p) if p.is_guarded() => Class::List(p.clone()),
                _ => Class::Other,
            },
            Recipient::Service { .. } | Recipient::Other => Class::Other,
        };
        Ok(class)
    }

    /// Decides a post to `list` by `senders`.
    async fn judge(
        &self,
        list: &ListPolicy,
        senders: &[String],
        approved: bool,
        headers: Option<&SeenHeaders>,
    ) -> Judgement {
        let status = match self.backend.senders(list, senders).await {
            Ok(s) => s,
            Err(e) => return Judgement::Unavailable(self.backend_failure(&e), e.to_string()),
        };
        let post = Post {
            list,
            senders,
            status: &status,
            approved: approved && self.settings.pass_approved,
        };
        let decision = decide_with_headers(&post, headers);
        match decision {
            Decision::Pass(r) => Judgement::Pass(r.to_string()),
            Decision::Refuse(r) => Judgement::Refuse(self.refusal(list), r.to_string()),
        }
    }
}

/// The candidate senders of a post in Mailman 3's order (its default
/// `sender_headers`: From:, the envelope sender, Reply-To:, Sender:; only
/// the envelope sender without `headers`), each once, without those
/// Mailman's validator drops ([`mailman_keeps`]): Mailman never bans,
/// moderates or matches them. The second value says why a refusal cannot
/// rest on them: an envelope sender without a domain, which the MTA
/// completes ([`incomplete`]) before Mailman sees it.
fn candidates(m: &Message, headers: bool) -> (Vec<String>, Option<String>) {
    let none: &[String] = &[];
    let (from, reply_to, sender) = if headers {
        (&m.from[..], &m.reply_to[..], &m.sender[..])
    } else {
        (none, none, none)
    };
    let mut senders: Vec<String> = Vec::new();
    let mut unqualified = None;
    for s in from
        .iter()
        .chain(m.envelope.iter())
        .chain(reply_to)
        .chain(sender)
    {
        if incomplete(s) {
            unqualified.get_or_insert_with(|| {
                format!(
                    "envelope sender {s} has no full domain (the MTA completes it before \
                     Mailman reads it)"
                )
            });
        } else if mailman_keeps(s) && !senders.contains(s) {
            senders.push(s.clone());
        }
    }
    (senders, unqualified)
}

/// The `X-MailFrom:` value Mailman's LMTP runner will add for the
/// envelope sender `raw` (as the milter got it): the address without angle
/// brackets, as Postfix passes a plain address on, and `<>` for the null
/// sender. None where the milter cannot tell what the MTA will send
/// (quoting, a source route, a trailing dot, an address it completes).
fn x_mailfrom(raw: &str) -> Option<&str> {
    let addr = raw.trim();
    let addr = addr
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr);
    if addr.is_empty() {
        // Python's reader (aiosmtpd) gives the null sender as `<>`.
        return Some("<>");
    }
    let (local, domain) = addr.rsplit_once('@')?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = |s: &str, ok: &dyn Fn(char) -> bool| {
        !s.is_empty() && s.split('.').all(|p| !p.is_empty() && p.chars().all(ok))
    };
    let domain_ok =
        domain.contains('.') && dot_atom(domain, &|c: char| c.is_ascii_alphanumeric() || c == '-');
    (dot_atom(local, &atext) && domain_ok).then_some(addr)
}

/// A decision with its log text.
enum Judgement {
    Pass(String),
    Refuse(SmtpReply, String),
    Unavailable(Verdict, String),
}

impl Judgement {
    /// Logs and returns the verdict (pass is `Continue`).
    fn conclude(self, list: &str, log: &LogFields<'_>) -> Verdict {
        match self {
            Judgement::Pass(why) => {
                log.emit(list, "pass", &format!("pass: {why}"));
                Verdict::Continue
            }
            Judgement::Refuse(reply, why) => {
                log.emit(list, "reject", &format!("refuse: {why}"));
                Verdict::reject_with(reply)
            }
            Judgement::Unavailable(v, why) => {
                log.emit(list, verdict_word(&v), &why);
                v
            }
        }
    }
}

/// The log's word for a verdict.
fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Continue | Verdict::Accept => "pass",
        other => other.name(),
    }
}

/// A refusal decided at end of headers, waiting for the body's approval line.
#[derive(Debug)]
struct Pending {
    list: String,
    reply: SmtpReply,
    why: String,
}

/// What every decision log line carries.
struct LogFields<'a> {
    queue_id: String,
    sender: &'a str,
    rcpts: String,
    decided: &'a std::sync::Mutex<Vec<(String, &'static str)>>,
}

impl LogFields<'_> {
    /// Records the decision for the runtime's line of the message
    /// ([`Milter::reason`]); the debug line here adds the list.
    fn emit(&self, list: &str, verdict: &str, reason: &str) {
        let why = (reason.strip_prefix("pass: "))
            .or_else(|| reason.strip_prefix("refuse: "))
            .unwrap_or(reason);
        let text = match list {
            "-" => why.to_owned(),
            list => format!("{list}: {why}"),
        };
        (self.decided.lock().unwrap_or_else(|e| e.into_inner()))
            .push((text, crate::reason_class::class(verdict, why)));
        tracing::debug!(
            queue_id = %self.queue_id,
            sender = %self.sender,
            rcpts = %self.rcpts,
            list = %list,
            verdict = %verdict,
            reason = %reason,
            "decision"
        );
    }
}

fn log_fields<'a>(
    cx: &'a minimilter::Context<'_, (), Message>,
    extra_rcpt: Option<&str>,
) -> LogFields<'a> {
    let mut rcpts = cx.msg.rcpts.clone();
    if let Some(r) = extra_rcpt {
        rcpts.push(r.to_owned());
    }
    LogFields {
        queue_id: cx
            .macro_str("i")
            .map(|s| s.into_owned())
            .unwrap_or_else(|| "-".into()),
        sender: if cx.msg.envelope_raw.is_empty() {
            "<>"
        } else {
            &cx.msg.envelope_raw
        },
        rcpts: rcpts.join(","),
        decided: &cx.msg.decided,
    }
}

impl<B: ListBackend> Milter for MailmanMilter<B> {
    type Connection = ();
    type Message = Message;

    fn requirements(&self) -> Requirements {
        let mut steps = Steps::MAIL | Steps::RCPT;
        if self.settings.senders == SenderMode::Mailman {
            steps |= Steps::HEADER | Steps::END_OF_HEADERS | Steps::BODY;
        }
        Requirements {
            steps,
            no_reply: Steps::HEADER,
            macros: vec![
                (MacroStage::Rcpt, "i".into()),
                (MacroStage::EndOfHeaders, "i".into()),
                (MacroStage::EndOfMessage, "i".into()),
            ],
            ..Requirements::default()
        }
    }

    async fn mail(&self, cx: Ctx<'_, Self>, sender: &Envelope) -> StepResult {
        let raw = sender.address().into_owned();
        cx.msg.envelope = envelope(&raw);
        cx.msg.envelope_raw = raw;
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, recipient: &Envelope) -> StepResult {
        let rcpt = recipient.address().into_owned();
        let class = match self.classify(&rcpt).await {
            Ok(c) => c,
            Err(e) => {
                let v = self.backend_failure(&e);
                log_fields(&cx, Some(&rcpt)).emit("-", verdict_word(&v), &e.to_string());
                if v == Verdict::Continue {
                    // Passed unjudged: keep later guarded recipients apart.
                    cx.msg.class.get_or_insert(Class::Other);
                    cx.msg.rcpts.push(rcpt);
                }
                return Ok(v);
            }
        };
        if self.settings.senders == SenderMode::Envelope {
            // Decided here, for this recipient alone: no need to split.
            if let Class::List(list) = &class {
                let (senders, unqualified) = candidates(cx.msg, false);
                let judgement = match (self.judge(list, &senders, false, None).await, unqualified) {
                    (Judgement::Refuse(_, why), Some(unknown)) => Judgement::Pass(format!(
                        "{unknown}, so Mailman decides (the milter alone would refuse: {why})"
                    )),
                    (j, _) => j,
                };
                let v = judgement.conclude(&list.address, &log_fields(&cx, Some(&rcpt)));
                if v != Verdict::Continue {
                    return Ok(v);
                }
            }
            cx.msg.rcpts.push(rcpt);
            return Ok(Verdict::Continue);
        }
        match &cx.msg.class {
            None => cx.msg.class = Some(class),
            Some(first) if first.same(&class) => {}
            Some(first) => {
                let why = match first {
                    Class::List(l) => format!("transaction is for guarded list {}", l.address),
                    Class::Other => "transaction is not for a guarded list".into(),
                };
                log_fields(&cx, Some(&rcpt)).emit(
                    match &class {
                        Class::List(l) => &l.address,
                        Class::Other => "-",
                    },
                    "defer",
                    &format!("{rcpt} deferred to its own transaction: {why}"),
                );
                return Ok(Verdict::tempfail_with(split_reply(&rcpt)));
            }
        }
        cx.msg.rcpts.push(rcpt);
        Ok(Verdict::Continue)
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        let name = header.name_str();
        let target = if name.eq_ignore_ascii_case("from") {
            Some(&mut cx.msg.from)
        } else if name.eq_ignore_ascii_case("reply-to") {
            Some(&mut cx.msg.reply_to)
        } else if name.eq_ignore_ascii_case("sender") {
            Some(&mut cx.msg.sender)
        } else {
            cx.msg.approved |= is_approval_header(&name);
            None
        };
        let value = header.value_str();
        if name.eq_ignore_ascii_case("content-transfer-encoding")
            && value.trim().eq_ignore_ascii_case("base64")
        {
            // Mailman reads an approval line in the decoded text.
            cx.msg.body_scan = BodyScan::base64();
        }
        if let Some(Class::List(list)) = &cx.msg.class
            && !list.header_matches.is_empty()
        {
            cx.msg.headers.add(&list.header_matches, &name, &value);
        }
        if let Some(t) = target {
            match read_header_addresses(&value) {
                Some(found) => t.extend(found),
                None => {
                    cx.msg.unreadable.get_or_insert_with(|| name.to_string());
                }
            }
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_headers(&self, cx: Ctx<'_, Self>) -> StepResult {
        let Some(Class::List(list)) = cx.msg.class.clone() else {
            tracing::debug!(rcpts = %cx.msg.rcpts.join(","), "no guarded list; pass");
            return Ok(Verdict::Accept);
        };
        let (senders, unqualified) = candidates(cx.msg, true);
        let mut headers = std::mem::take(&mut cx.msg.headers);
        if !list.header_matches.is_empty() {
            headers.add_mailman_headers(&list.header_matches, x_mailfrom(&cx.msg.envelope_raw));
        }
        let unknown = cx
            .msg
            .unreadable
            .as_ref()
            .map(|name| format!("{name}: holds a value the milter cannot read as Mailman does"))
            .or(unqualified);
        let judgement = match (
            self.judge(&list, &senders, cx.msg.approved, Some(&headers))
                .await,
            unknown,
        ) {
            (Judgement::Refuse(_, why), Some(unknown)) => Judgement::Pass(format!(
                "{unknown}, so Mailman decides (the milter alone would refuse: {why})"
            )),
            (j, _) => j,
        };
        match judgement {
            Judgement::Refuse(reply, why)
                if self.settings.pass_approved && list.approval_possible() =>
            {
                // Mailman also takes the approval from the top of the body.
                cx.msg.pending = Some(Pending {
                    list: list.address.clone(),
                    reply,
                    why,
                });
                Ok(Verdict::Continue)
            }
            j => {
                let v = j.conclude(&list.address, &log_fields(&cx, None));
                Ok(if v == Verdict::Continue {
                    Verdict::Accept
                } else {
                    v
                })
            }
        }
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        if cx.msg.pending.is_none() {
            return Ok(Verdict::Continue);
        }
        if cx.msg.body_scan.feed(&chunk) {
            return Ok(self.approved_in_body(&cx));
        }
        Ok(if cx.msg.body_scan.done() {
            Verdict::Skip
        } else {
            Verdict::Continue
        })
    }

    async fn end_of_message(
        &self,
        cx: Ctx<'_, Self>,
        _mods: &mut minimilter::Modifications,
    ) -> StepResult {
        let Some(p) = cx.msg.pending.take() else {
            return Ok(Verdict::Continue);
        };
        if cx.msg.body_scan.finish() {
            cx.msg.pending = Some(p);
            return Ok(self.approved_in_body(&cx));
        }
        log_fields(&cx, None).emit(&p.list, "reject", &format!("refuse: {}", p.why));
        Ok(Verdict::reject_with(p.reply))
    }

    fn reason(&self, msg: &Message) -> Option<String> {
        let decided = msg.decided.lock().unwrap_or_else(|e| e.into_inner());
        let texts: Vec<&str> = decided.iter().map(|(t, _)| t.as_str()).collect();
        (!texts.is_empty()).then(|| texts.join("; "))
    }

    fn reason_class(&self, msg: &Message) -> Option<&'static str> {
        let decided = msg.decided.lock().unwrap_or_else(|e| e.into_inner());
        decided.last().map(|(_, class)| *class)
    }
}

impl<B: ListBackend> MailmanMilter<B> {
    fn approved_in_body(&self, cx: &Ctx<'_, Self>) -> Verdict {
        let list = cx
            .msg
            .pending
            .as_ref()
            .map(|p| p.list.as_str())
            .unwrap_or("-");
        log_fields(cx, None).emit(
            list,
            "pass",
            "pass: pre-approved (Approved: line in the body)",
        );
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::x_mailfrom;

    #[test]
    fn x_mailfrom_is_the_envelope_sender_as_mailman_reads_it() {
        assert_eq!(x_mailfrom("<Bot@CI.example>"), Some("Bot@CI.example"));
        assert_eq!(x_mailfrom("bot@ci.example"), Some("bot@ci.example"));
        assert_eq!(x_mailfrom("<>"), Some("<>"));
        for unknown in [
            "<\"a b\"@example.org>",
            "<@relay.example:a@example.org>",
            "<a@example.org.>",
            "<alice>",
            "<alice@host>",
            "<a..b@example.org>",
        ] {
            assert_eq!(x_mailfrom(unknown), None, "{unknown}");
        }
    }
}
