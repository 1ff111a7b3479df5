//! A milter that rewrites a message at end of message: headers added,
//! changed and deleted, and the envelope sender changed.
//!
//! - every `X-Internal-*` header is deleted (a header name can occur more
//!   than once; each occurrence is addressed by its 1-based index among the
//!   headers of that name);
//! - the Subject of mail from outside the local domains gets an `[external]`
//!   tag (changed in place; a message without a Subject gets one added);
//! - a sender at an internal host name (`alice@host.corp.example.org`) is
//!   masqueraded as `alice@example.org`, in the envelope;
//! - every message gets `X-Rewritten: by header_rewrite_milter (queue id ...)`.
//!
//! Modifications are asked for through [`Modifications`] at end of message,
//! the only step where the protocol allows them, and only for the actions
//! declared in [`Requirements::actions`] (each call checks that the MTA
//! granted the action and returns a typed [`ModifyError`] if not).
//!
//!   cargo run --example header_rewrite_milter -- --listen inet:127.0.0.1:8893

use std::process::ExitCode;

use minimilter::daemon::{self, BoxError, Configured, Daemon, FileSection, NoArgs, Serve};
use minimilter::proto::ModifyError;
use minimilter::{
    Actions, Ctx, Envelope, Header, MacroStage, Milter, Modifications, Requirements, StepResult,
    Steps, Verdict,
};

/// The rewriting policy.
pub struct HeaderRewriteMilter {
    /// Domains whose mail is not tagged (lower case).
    pub local_domains: Vec<String>,
    /// Internal host names are subdomains of this; their senders are
    /// rewritten to `local@masquerade_as`.
    pub masquerade_as: String,
}

/// Per message: what the headers and envelope showed.
#[derive(Default)]
pub struct Message {
    /// The canonical sender, if it has a domain.
    sender: Option<(String, String)>,
    /// How often each `X-Internal-*` name occurred, names as first seen.
    internal: Vec<(String, u32)>,
    /// The first Subject's value.
    subject: Option<String>,
}

impl Milter for HeaderRewriteMilter {
    type Connection = ();
    type Message = Message;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::MAIL | Steps::HEADER,
            // Only read: the MTA need not wait for an answer to each
            // (ignored, and answered by the runtime, if the MTA cannot).
            no_reply: Steps::MAIL | Steps::HEADER,
            actions: Actions::ADD_HEADERS | Actions::CHANGE_HEADERS | Actions::CHANGE_FROM,
            macros: vec![(MacroStage::EndOfMessage, "i".into())],
            ..Requirements::default()
        }
    }

    async fn mail(&self, cx: Ctx<'_, Self>, sender: &Envelope) -> StepResult {
        cx.msg.sender = sender.parsed().mailbox().and_then(|m| {
            let domain = m.domain()?.as_str().to_owned();
            Some((m.local_part().to_owned(), domain))
        });
        Ok(Verdict::Continue)
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        let name = header.name_str();
        // Compared as bytes: a name is not always valid UTF-8.
        if header.name.len() > 11 && header.name[..11].eq_ignore_ascii_case(b"x-internal-") {
            match cx
                .msg
                .internal
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                Some((_, count)) => *count += 1,
                None => cx.msg.internal.push((name.into_owned(), 1)),
            }
        } else if header.is("Subject") && cx.msg.subject.is_none() {
            cx.msg.subject = Some(header.value_str().into_owned());
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        self.rewrite(cx.msg, &cx.macro_str("i").unwrap_or_default(), mods)?;
        Ok(Verdict::Continue)
    }
}

impl HeaderRewriteMilter {
    fn rewrite(
        &self,
        msg: &Message,
        queue_id: &str,
        mods: &mut Modifications,
    ) -> Result<(), ModifyError> {
        for (name, count) in &msg.internal {
            // Highest index first: then each index still names the header it
            // named when the headers were read, whether the MTA renumbers
            // after a delete (Postfix) or not.
            for index in (1..=*count).rev() {
                mods.delete_header(name, index)?;
            }
        }
        let external = match &msg.sender {
            Some((_, domain)) => !self.is_local(domain),
            None => true,
        };
        if external {
            match &msg.subject {
                Some(s) if s.starts_with("[external]") => {}
                Some(s) => mods.change_header("Subject", 1, &format!("[external] {s}"))?,
                None => mods.add_header("Subject", "[external]")?,
            }
        }
        if let Some((local, domain)) = &msg.sender
            && domain.ends_with(&format!(".{}", self.masquerade_as))
        {
            mods.change_sender(&format!("{local}@{}", self.masquerade_as), None)?;
        }
        mods.add_header(
            "X-Rewritten",
            &format!("by header_rewrite_milter (queue id {queue_id})"),
        )
    }

    fn is_local(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|l| l == domain)
            || domain.ends_with(&format!(".{}", self.masquerade_as))
    }
}

/// The program around the filter: the shared daemon shell.
struct HeaderRewrite;

impl Daemon for HeaderRewrite {
    const NAME: &'static str = "header_rewrite_milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Deletes X-Internal-* headers, tags the Subject of external \
        mail and masquerades internal host names in the envelope sender.";
    const DEFAULT_LISTEN: &'static str = "inet:127.0.0.1:8893";
    type Args = NoArgs;

    fn configure(file: Option<&FileSection>, _: &NoArgs) -> Result<Configured<Self>, BoxError> {
        daemon::only_server_section(file)?;
        Ok(Configured::new(HeaderRewrite))
    }

    async fn serve(self, serve: Serve) -> Result<(), BoxError> {
        serve.run(example_policy()).await
    }
}

/// The policy the example runs with.
pub fn example_policy() -> HeaderRewriteMilter {
    HeaderRewriteMilter {
        local_domains: vec!["example.org".into()],
        masquerade_as: "example.org".into(),
    }
}

fn main() -> ExitCode {
    daemon::main::<HeaderRewrite>()
}
