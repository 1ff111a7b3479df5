//! A complete milter: refuses, defers or drops mail by a keyword in the
//! Subject, and tags everything it lets through with a header.
//!
//!   cargo run --example keyword_milter -- --listen inet:127.0.0.1:8891
//!
//! Subject contains `[reject]` -> 550 5.7.1, `[tempfail]` -> 451 4.7.1,
//! `[discard]` -> accepted and dropped; anything else is delivered with
//! `X-Keyword-Milter: passed (queue id ...)` added.

use std::process::ExitCode;

use minimilter::daemon::{self, BoxError, Configured, Daemon, FileSection, NoArgs, Serve};
use minimilter::{
    Actions, Ctx, Header, MacroStage, Milter, Modifications, Requirements, SmtpReply, StepResult,
    Steps, Verdict,
};
use prometheus_client::metrics::counter::Counter;

struct KeywordMilter {
    /// Messages let through with the header (a metric of the milter's own,
    /// `keyword_milter_tagged_total` at `/metrics` with `--metrics`).
    tagged: Counter,
}

#[derive(Default)]
struct Message {
    subject: String,
}

impl Milter for KeywordMilter {
    type Connection = ();
    type Message = Message;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::HEADER,
            no_reply: Steps::HEADER, // headers are only read: the MTA need not wait
            actions: Actions::ADD_HEADERS,
            macros: vec![(MacroStage::EndOfMessage, "i".into())],
            ..Requirements::default()
        }
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        if header.is("Subject") {
            cx.msg.subject = header.value_str().to_lowercase();
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let subject = &cx.msg.subject;
        if subject.contains("[reject]") {
            let text = "Message refused: the subject contains [reject]";
            return Ok(Verdict::reject_with(SmtpReply::new(
                550,
                Some("5.7.1"),
                text,
            )?));
        }
        if subject.contains("[tempfail]") {
            let text = "Try again later: the subject contains [tempfail]";
            return Ok(Verdict::tempfail_with(SmtpReply::new(
                451,
                Some("4.7.1"),
                text,
            )?));
        }
        if subject.contains("[discard]") {
            return Ok(Verdict::Discard);
        }
        let queue_id = cx.macro_str("i").unwrap_or_default().into_owned();
        mods.add_header("X-Keyword-Milter", &format!("passed (queue id {queue_id})"))?;
        self.tagged.inc();
        Ok(Verdict::Continue)
    }
}

/// The program around the filter: the shared daemon shell (command line,
/// `[server]` in `--config`, logging, signals, `--check-config`, systemd).
struct Keyword;

impl Daemon for Keyword {
    const NAME: &'static str = "keyword_milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Refuses, defers or drops mail by a keyword in the Subject \
        ([reject], [tempfail], [discard]) and tags the rest with a header.";
    const DEFAULT_LISTEN: &'static str = "inet:127.0.0.1:8891";
    type Args = NoArgs;

    fn configure(file: Option<&FileSection>, _: &NoArgs) -> Result<Configured<Self>, BoxError> {
        daemon::only_server_section(file)?;
        Ok(Configured::new(Keyword))
    }

    async fn serve(self, mut serve: Serve) -> Result<(), BoxError> {
        let tagged = Counter::default();
        serve.registry().register(
            "tagged",
            "Messages let through with the X-Keyword-Milter header",
            tagged.clone(),
        );
        serve.run(KeywordMilter { tagged }).await
    }
}

fn main() -> ExitCode {
    daemon::main::<Keyword>()
}
