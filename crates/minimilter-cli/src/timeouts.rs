//! The timeout options `check` and `bench` share: the same names, defaults
//! (Postfix's) and meaning, so a milter can be measured under the limits it
//! was checked under. Each is a deadline for a whole exchange: a milter that
//! trickles its answer does not stretch it.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use minimilter::ClientConfig;

/// Longest accepted for any time option: beyond it `Instant` arithmetic
/// could overflow, and nobody waits a year for a milter.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// `--connect-timeout`, `--command-timeout`, `--content-timeout`.
#[derive(Args, Debug, Clone)]
pub struct Timeouts {
    /// Seconds for connecting plus option negotiation, together (Postfix's
    /// milter_connect_timeout).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub connect_timeout: f64,
    /// Seconds for each SMTP command step (connect, HELO, MAIL, RCPT, DATA):
    /// sending it and the milter's whole answer (milter_command_timeout).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub command_timeout: f64,
    /// Seconds for each content step (each header, end of headers, each body
    /// chunk, end of message), likewise; a progress packet from the milter
    /// starts it afresh (milter_content_timeout).
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub content_timeout: f64,
}

/// Parses a time option: a positive, finite number of seconds up to a
/// year. Used as clap's value parser, so a bad value is a usage error (exit
/// status 2) like any other bad option.
pub fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_SECONDS {
        Ok(v)
    } else {
        Err(format!(
            "must be a positive number of seconds up to {MAX_SECONDS}, got {s}"
        ))
    }
}

/// `s` seconds as a duration, or an error naming the option `--name`.
pub fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s <= MAX_SECONDS) {
        bail!("--{name} must be a positive number of seconds up to {MAX_SECONDS}, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

impl Timeouts {
    /// `cfg` with these timeouts.
    pub fn apply(&self, cfg: ClientConfig) -> anyhow::Result<ClientConfig> {
        Ok(ClientConfig {
            connect_timeout: seconds("connect-timeout", self.connect_timeout)?,
            command_timeout: seconds("command-timeout", self.command_timeout)?,
            content_timeout: seconds("content-timeout", self.content_timeout)?,
            ..cfg
        })
    }
}
