//! The SMTP session options `check` and `bench` share: envelope, client,
//! HELO and macros. One definition, so both describe a session the same way
//! (a milter that skips 127.0.0.1 is benchmarked on the path it takes for
//! real clients only if `bench` can say who the client is).

use std::net::IpAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use minimilter::MessageSpec;

/// Who connects and what the envelope says.
#[derive(Args, Debug, Clone)]
pub struct EnvelopeArgs {
    /// Envelope sender (MAIL FROM), without angle brackets; empty for `<>`.
    #[arg(long, default_value = "sender@example.com")]
    pub from: String,
    /// Envelope recipient (RCPT TO); repeat for several.
    #[arg(
        long = "rcpt",
        value_name = "ADDRESS",
        default_value = "recipient@example.org"
    )]
    pub rcpts: Vec<String>,
    /// SMTP client address, IPv4 or IPv6, or `unknown`.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_addr: String,
    /// SMTP client host name (Postfix sends `[address]` when it does not resolve).
    #[arg(long)]
    pub client_name: Option<String>,
    /// HELO/EHLO name (default: the client name).
    #[arg(long)]
    pub helo: Option<String>,
    /// A macro as NAME=VALUE, e.g. `{auth_authen}=alice` or `i=4ABC123`;
    /// repeat for several. Sent at the stage Postfix sends it at.
    #[arg(long = "macro", value_name = "NAME=VALUE")]
    pub macros: Vec<String>,
}

impl EnvelopeArgs {
    /// The session description for `message`. The queue id is macro `i` if
    /// given, else a generated one.
    pub fn message_spec(&self, message: Bytes) -> anyhow::Result<MessageSpec> {
        let client_addr = if self.client_addr.eq_ignore_ascii_case("unknown") {
            None
        } else {
            Some(self.client_addr.parse::<IpAddr>().with_context(|| {
                format!("--client-addr {:?} is not an IP address", self.client_addr)
            })?)
        };
        let client_name = self
            .client_name
            .clone()
            .unwrap_or_else(|| match client_addr {
                Some(a) => format!("[{a}]"),
                None => "unknown".into(),
            });
        let mut macros = Vec::new();
        for m in &self.macros {
            let Some((name, value)) = m.split_once('=') else {
                bail!("--macro {m:?} is not NAME=VALUE");
            };
            if name.is_empty() {
                bail!("--macro {m:?} has an empty name");
            }
            macros.push((name.to_owned(), value.to_owned()));
        }
        let queue_id = given_queue_id(&macros)
            .map(str::to_owned)
            .unwrap_or_else(|| minimilter::transaction::queue_id(1));
        Ok(MessageSpec {
            helo: self.helo.clone().unwrap_or_else(|| client_name.clone()),
            client_name,
            client_addr,
            client_port: 40000,
            from: self.from.clone(),
            rcpts: self.rcpts.clone(),
            macros,
            message,
            queue_id,
        })
    }
}

/// The queue id given as macro `i` (or `{i}`), if any.
pub fn given_queue_id(macros: &[(String, String)]) -> Option<&str> {
    macros
        .iter()
        .find(|(n, _)| n == "i" || n == "{i}")
        .map(|(_, v)| v.as_str())
}
