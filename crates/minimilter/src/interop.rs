//! A milter that performs whatever end-of-message actions a message asks
//! for in `X-Action:` headers, so MTAs, test tools and our own client can be
//! checked against every modification of protocol 6. Served by
//! `examples/action_milter.rs`; used in-process by the client tests.
//!
//! One action per `X-Action` header, words separated by spaces:
//!
//! | header value | action |
//! |---|---|
//! | `add-header NAME VALUE...` | append a header |
//! | `insert-header INDEX NAME VALUE...` | insert a header at INDEX |
//! | `change-header NAME INDEX VALUE...` | change the INDEX-th NAME header |
//! | `delete-header NAME INDEX` | delete the INDEX-th NAME header |
//! | `add-rcpt ADDR` / `add-rcpt-par ADDR ARGS...` / `del-rcpt ADDR` | envelope recipients |
//! | `chgfrom ADDR [ARGS...]` | envelope sender |
//! | `replace-body BYTES` | replace the body with BYTES bytes of text lines |
//! | `quarantine REASON...` | hold the message |
//! | `skip-body` | answer the first body chunk with skip |
//! | `slow MILLISECONDS` | take this long at end of message (progress is sent) |
//! | `panic` | panic at end of message (the runtime answers with its fail-safe reply) |
//! | `reject CODE X.Y.Z LINE|LINE...` / `tempfail CODE X.Y.Z LINE|...` | refuse with a (multi-line) reply |
//! | `discard` / `accept` | the verdict |
//!
//! Every message also gets `X-Action-Body-Bytes: N`, the body size it saw.

use std::time::Duration;

use crate::{
    Actions, BoxError, Ctx, Header, Milter, Modifications, Requirements, SmtpReply, StepResult,
    Steps, Verdict,
};
use bytes::Bytes;

/// The interop milter.
#[derive(Debug, Default, Clone, Copy)]
pub struct ActionMilter;

/// Per-message state.
#[derive(Default)]
pub struct Message {
    actions: Vec<String>,
    body_bytes: usize,
}

fn reply(words: &[&str]) -> Result<SmtpReply, BoxError> {
    let code: u16 = words.first().ok_or("missing code")?.parse()?;
    let enhanced = words.get(1).copied();
    let text = words.get(2..).unwrap_or_default().join(" ");
    let lines: Vec<&str> = text.split('|').collect();
    Ok(SmtpReply::multiline(code, enhanced, &lines)?)
}

/// `size` bytes of CRLF text lines.
pub fn body_of(size: usize) -> Bytes {
    let line = b"The quick brown fox jumps over the lazy dog. 0123456789\r\n";
    let mut body = Vec::with_capacity(size);
    while body.len() < size {
        let take = line.len().min(size - body.len());
        body.extend_from_slice(&line[..take]);
    }
    Bytes::from(body)
}

impl Milter for ActionMilter {
    type Connection = ();
    type Message = Message;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::HEADER | Steps::BODY,
            actions: Actions::all(),
            ..Requirements::default()
        }
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        if header.is("X-Action") {
            cx.msg.actions.push(header.value_str().trim().to_owned());
        }
        Ok(Verdict::Continue)
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        cx.msg.body_bytes += chunk.len();
        if cx.msg.actions.iter().any(|a| a == "skip-body") {
            return Ok(Verdict::Skip);
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let mut verdict = Verdict::Continue;
        for action in &cx.msg.actions {
            let w: Vec<&str> = action.split_whitespace().collect();
            let rest = |i: usize| w.get(i..).unwrap_or_default().join(" ");
            let num = |i: usize| -> Result<u32, BoxError> {
                Ok(w.get(i).ok_or("missing number")?.parse()?)
            };
            match w.first().copied().unwrap_or_default() {
                "add-header" => mods.add_header(w.get(1).ok_or("name")?, &rest(2))?,
                "insert-header" => {
                    mods.insert_header(num(1)?, w.get(2).ok_or("name")?, &rest(3))?
                }
                "change-header" => {
                    mods.change_header(w.get(1).ok_or("name")?, num(2)?, &rest(3))?
                }
                "delete-header" => mods.delete_header(w.get(1).ok_or("name")?, num(2)?)?,
                "add-rcpt" => mods.add_recipient(w.get(1).ok_or("address")?)?,
                "add-rcpt-par" => {
                    mods.add_recipient_with_args(w.get(1).ok_or("address")?, &rest(2))?
                }
                "del-rcpt" => mods.delete_recipient(w.get(1).ok_or("address")?)?,
                "chgfrom" => {
                    let args = rest(2);
                    mods.change_sender(
                        w.get(1).ok_or("address")?,
                        (!args.is_empty()).then_some(&args),
                    )?
                }
                "replace-body" => mods.replace_body(body_of(num(1)? as usize))?,
                "quarantine" => mods.quarantine(&rest(1))?,
                "slow" => tokio::time::sleep(Duration::from_millis(num(1)?.into())).await,
                "panic" => panic!("X-Action asked the filter to panic"),
                "reject" => verdict = Verdict::reject_with(reply(&w[1..])?),
                "tempfail" => verdict = Verdict::tempfail_with(reply(&w[1..])?),
                "discard" => verdict = Verdict::Discard,
                "accept" => verdict = Verdict::Accept,
                _ => {}
            }
        }
        mods.add_header("X-Action-Body-Bytes", &cx.msg.body_bytes.to_string())?;
        Ok(verdict)
    }
}
