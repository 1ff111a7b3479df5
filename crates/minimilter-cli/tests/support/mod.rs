//! Shared by the record/replay tests: a milter whose verdicts the test
//! controls, served in-process, the `minimilter record` proxy as a child
//! process, and a stream wrapper that keeps every byte read.

#![allow(dead_code)]

pub mod batch;
pub mod session;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use minimilter::{
    Actions, Ctx, Envelope, Header, Listener, MacroStage, Milter, Modifications, Requirements,
    Server, ServerConfig, SmtpReply, SocketSpec, StepResult, Steps, UnixSocketOptions, Verdict,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Verdicts by envelope and subject:
/// - sender starting `tempfail` -> 451 4.7.1 at MAIL;
/// - recipient starting `refused` -> 550 5.1.1 at RCPT (that recipient only);
/// - subject containing `[reject]` -> 550 5.7.1 at end of message;
/// - subject containing `[discard]` -> discard at end of message;
/// - subject containing `[modify]` -> header `X-Policy: modified` added
///   (`X-Policy: modified strictly` by the strict one);
/// - `strict` only: subject containing `[strict]` -> 550 5.7.1 "strict";
/// - macro `{client_tag}` (sent at connect, which this milter does not
///   ask for, so only the macro packet goes out) equal to `blocked` ->
///   451 4.7.1 at end of message.
pub struct PolicyMilter {
    pub strict: bool,
}

#[derive(Default)]
pub struct Msg {
    subject: String,
}

impl Milter for PolicyMilter {
    type Connection = ();
    type Message = Msg;

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::MAIL | Steps::RCPT | Steps::HEADER | Steps::BODY,
            actions: Actions::ADD_HEADERS,
            macros: vec![(MacroStage::EndOfMessage, "i".into())],
            ..Requirements::default()
        }
    }

    async fn mail(&self, _cx: Ctx<'_, Self>, sender: &Envelope) -> StepResult {
        if sender.address().starts_with("tempfail") {
            return Ok(Verdict::tempfail_with(SmtpReply::new(
                451,
                Some("4.7.1"),
                "sender deferred by policy",
            )?));
        }
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, _cx: Ctx<'_, Self>, rcpt: &Envelope) -> StepResult {
        if rcpt.address().starts_with("refused") {
            return Ok(Verdict::reject_with(SmtpReply::new(
                550,
                Some("5.1.1"),
                "recipient refused by policy",
            )?));
        }
        Ok(Verdict::Continue)
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        if header.is("Subject") {
            cx.msg.subject = header.value_str().to_lowercase();
        }
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        if cx.macro_str("{client_tag}").as_deref() == Some("blocked") {
            return Ok(Verdict::tempfail_with(SmtpReply::new(
                451,
                Some("4.7.1"),
                "client blocked by tag",
            )?));
        }
        let s = &cx.msg.subject;
        if s.contains("[reject]") {
            return Ok(Verdict::reject_with(SmtpReply::new(
                550,
                Some("5.7.1"),
                "message refused by policy",
            )?));
        }
        if self.strict && s.contains("[strict]") {
            return Ok(Verdict::reject_with(SmtpReply::new(
                550,
                Some("5.7.1"),
                "refused by the strict policy",
            )?));
        }
        if s.contains("[discard]") {
            return Ok(Verdict::Discard);
        }
        if s.contains("[modify]") {
            let value = if self.strict {
                "modified strictly"
            } else {
                "modified"
            };
            mods.add_header("X-Policy", value)?;
        }
        Ok(Verdict::Continue)
    }
}

/// Serves the policy milter on a unix socket (mode 666, so an MTA running
/// as another user can connect) until the runtime ends.
pub async fn serve_policy(path: &Path, strict: bool) {
    let unix = UnixSocketOptions {
        mode: Some(0o666),
        ..Default::default()
    };
    let listener = Listener::bind(&SocketSpec::Unix(path.to_owned()), &unix)
        .await
        .expect("bind the policy milter");
    let server = Server::new(PolicyMilter { strict }, ServerConfig::default());
    tokio::spawn(server.serve(vec![listener], std::future::pending()));
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("mm-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn minimilter() -> &'static str {
    env!("CARGO_BIN_EXE_minimilter")
}

/// `minimilter record` as a child process, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub log: PathBuf,
}

impl Proxy {
    /// Starts `record --listen unix:LISTEN --to TO --dir DIR EXTRA...`
    /// (with `--socket-mode 666` unless EXTRA has one) and waits until it
    /// listens.
    pub fn start(listen: &Path, to: &str, dir: &Path, extra: &[&str]) -> Proxy {
        let log = dir.with_extension("log");
        let child = Command::new(minimilter())
            .arg("record")
            .arg("--listen")
            .arg(format!("unix:{}", listen.display()))
            .args(["--to", to, "--dir"])
            .arg(dir)
            // Mode 666 unless the test gives its own.
            .args(if extra.contains(&"--socket-mode") {
                &[][..]
            } else {
                &["--socket-mode", "666"][..]
            })
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start minimilter record");
        let mut p = Proxy { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        // The start-up line is printed once the socket listens (the file
        // exists a moment earlier, between bind and listen, when a connect
        // would be refused).
        while !p.log_text().contains("minimilter record: ") {
            if let Ok(Some(s)) = p.child.try_wait() {
                panic!("record exited early ({s}):\n{}", p.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "record not listening:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every transcript file under `dir`, sorted.
pub fn transcripts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(transcripts(&p));
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Waits until `dir` holds `n` transcripts (they are written just after
/// the transaction ends).
pub fn wait_for_transcripts(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = transcripts(dir);
        if t.len() >= n || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stream that keeps a copy of every byte read from it.
pub struct Tap<S> {
    pub inner: S,
    pub seen: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.seen.lock().unwrap().extend_from_slice(&new);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One milter packet: length (of code and payload), code, payload.
pub fn packet(code: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32 + 1).to_be_bytes().to_vec();
    p.push(code);
    p.extend_from_slice(payload);
    p
}

/// Reads one packet (code, payload), or `None` at the end of the stream.
pub fn read_packet(s: &mut impl std::io::Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0; len - 1];
    s.read_exact(&mut payload).ok()?;
    Some((head[4], payload))
}
