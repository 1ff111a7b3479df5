//! A milter that reads the body: it keeps at most the first `scan_limit`
//! bytes (then answers `Skip`, so the MTA stops sending the rest), hashes
//! them off the async threads (`tokio::task::spawn_blocking`), and at end of
//! message
//!
//! - refuses a message whose digest is on a block list (`554 5.7.1`),
//! - puts a message whose digest is on a hold list in the MTA's hold queue
//!   (quarantine), for a person to look at,
//! - tags every other message with `X-Body-Digest: <digest>` (`partial` if
//!   the body was longer than the limit).
//!
//! It shows what the body step needs care with: memory bounded per message
//! whatever the client sends, `Skip` (the MTA still delivers the whole body),
//! and CPU work kept off the threads that serve the other connections.
//!
//!   cargo run --example body_digest_milter -- --listen inet:127.0.0.1:8895

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use minimilter::daemon::{self, BoxError, Configured, Daemon, FileSection, NoArgs, Serve};
use minimilter::{
    Actions, Ctx, Milter, Modifications, Requirements, SmtpReply, StepResult, Steps, Verdict,
};

/// The lists, shared by every connection.
pub struct BodyDigestMilter {
    /// Bytes of body hashed at most.
    pub scan_limit: usize,
    /// Digests (as [`digest`] writes them) refused.
    pub blocked: Arc<HashSet<String>>,
    /// Digests held for review.
    pub held: Arc<HashSet<String>>,
}

/// Per message: the body read so far (at most `scan_limit` bytes).
#[derive(Default)]
pub struct Message {
    body: BytesMut,
    truncated: bool,
}

/// FNV-1a, 64 bits, as 16 hex digits: a stand-in for a real content hash,
/// slow enough on a large body to belong off the async threads.
pub fn digest(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Milter for BodyDigestMilter {
    type Connection = ();
    type Message = Message;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::BODY,
            actions: Actions::ADD_HEADERS | Actions::QUARANTINE,
            ..Requirements::default()
        }
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        let room = self.scan_limit - cx.msg.body.len();
        if chunk.len() > room {
            cx.msg.body.extend_from_slice(&chunk[..room]);
            cx.msg.truncated = true;
            // Enough read: no more chunks. (If the MTA did not offer SKIP,
            // the runtime answers continue, and the next chunk finds no
            // room left.)
            return Ok(Verdict::Skip);
        }
        cx.msg.body.extend_from_slice(&chunk);
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let body = std::mem::take(&mut cx.msg.body).freeze();
        let digest = tokio::task::spawn_blocking(move || digest(&body)).await?;
        if self.blocked.contains(&digest) {
            let text = format!("Message content blocked ({digest})");
            return Ok(Verdict::reject_with(SmtpReply::new(
                554,
                Some("5.7.1"),
                &text,
            )?));
        }
        if self.held.contains(&digest) {
            mods.quarantine(&format!("body digest {digest} is on the hold list"))?;
        }
        let value = match cx.msg.truncated {
            true => format!("{digest} (partial, first {} bytes)", self.scan_limit),
            false => digest,
        };
        mods.add_header("X-Body-Digest", &value)?;
        Ok(Verdict::Continue)
    }
}

/// The program around the filter: the shared daemon shell.
struct BodyDigest;

impl Daemon for BodyDigest {
    const NAME: &'static str = "body_digest_milter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Hashes the start of each body; refuses or holds listed \
        digests and tags the rest.";
    const DEFAULT_LISTEN: &'static str = "inet:127.0.0.1:8895";
    type Args = NoArgs;

    fn configure(file: Option<&FileSection>, _: &NoArgs) -> Result<Configured<Self>, BoxError> {
        daemon::only_server_section(file)?;
        Ok(Configured::new(BodyDigest))
    }

    async fn serve(self, serve: Serve) -> Result<(), BoxError> {
        serve.run(example_policy()).await
    }
}

/// The policy the example runs with: empty lists, 1 MiB hashed.
pub fn example_policy() -> BodyDigestMilter {
    BodyDigestMilter {
        scan_limit: 1024 * 1024,
        blocked: Arc::new(HashSet::new()),
        held: Arc::new(HashSet::new()),
    }
}

fn main() -> ExitCode {
    daemon::main::<BodyDigest>()
}
