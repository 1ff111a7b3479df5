//! A complete milter: refuses, defers or drops mail by a keyword in the
//! Subject, and tags everything it lets through with a header.
//!
//!   cargo run --example keyword_milter -- --listen inet:127.0.0.1:8891
//!
//! Subject contains `[reject]` -> 550 5.7.1, `[tempfail]` -> 451 4.7.1,
//! `[discard]` -> accepted and dropped; anything else is delivered with
//! `X-Keyword-Milter: passed (queue id ...)` added.

use minimilter::{
    Actions, Ctx, Header, MacroStage, Milter, Modifications, Requirements, ServerConfig, SmtpReply,
    SocketSpec, StepResult, Steps, UnixSocketOptions, Verdict,
};

struct KeywordMilter;

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
        Ok(Verdict::Continue)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut specs = Vec::new();
    let mut unix = UnixSocketOptions::default();
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => specs.push(value()?.parse::<SocketSpec>()?),
            "--socket-mode" => unix.mode = Some(u32::from_str_radix(&value()?, 8)?),
            "--socket-group" => unix.group = Some(value()?),
            "--max-connections" => config.max_connections = value()?.parse()?,
            _ => return Err(format!("usage: keyword_milter [--listen SOCKET]... [--socket-mode 660] [--socket-group postfix] [--max-connections 1024] (got {arg:?})").into()),
        }
    }
    if specs.is_empty() {
        specs.push("inet:127.0.0.1:8891".parse()?);
    }
    minimilter::run(KeywordMilter, &specs, &unix, config).await?;
    Ok(())
}
