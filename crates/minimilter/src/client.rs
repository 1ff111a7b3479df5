//! The MTA side: connect to any milter, negotiate, and drive it step by step
//! the way Postfix does, with Postfix's timeouts. Every response is checked
//! by the sans-IO [`MtaSession`]; a misbehaving milter is reported as a
//! [`ClientError::Violation`] naming what it did, never as a hang.
//!
//! Every timeout is a deadline for a whole exchange, not for each read: a
//! milter that trickles its reply a byte at a time must not stretch a 30 s
//! limit into minutes (Postfix bounds the whole exchange the same way).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use milter_proto::{
    Answer, Command, Dispatch, Frame, FrameDecoder, FrameError, MilterOptions, MtaEvent,
    MtaSession, Offer, Response, Step, Violation,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::script::{MessageScript, ScriptResult};
use crate::spec::SocketSpec;
use crate::transaction::{Outcome, decisive};

/// Settings of a [`MilterClient`]; the defaults are Postfix's.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// What to offer at negotiation (default: Postfix, protocol 6).
    pub offer: Offer,
    /// Connecting plus negotiation, together (`milter_connect_timeout`, 30 s).
    pub connect_timeout: Duration,
    /// Sending one of connect, HELO, MAIL, RCPT, DATA and unknown commands
    /// plus receiving the whole answer (`milter_command_timeout`, 30 s).
    pub command_timeout: Duration,
    /// Sending one of headers, end of headers, body and end of message plus
    /// receiving the whole answer (`milter_content_timeout`, 300 s). A
    /// progress packet starts it afresh.
    pub content_timeout: Duration,
    /// Largest response packet accepted (Postfix: 1 GiB; here 64 MiB).
    pub max_packet: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            offer: Offer::postfix(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            content_timeout: Duration::from_secs(300),
            max_packet: 64 * 1024 * 1024,
        }
    }
}

/// Why talking to a milter failed.
///
/// Variants with an underlying error return it from
/// [`source`](std::error::Error::source) and leave it out of their own text,
/// so a report that walks the chain (`anyhow`'s `{:#}`) names it once.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to {spec}")]
    Connect {
        /// Where.
        spec: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The milter did not answer in time (or not all of its answer).
    #[error("no complete answer from the milter {what} within {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// The milter closed the connection while an answer was awaited.
    #[error("the milter closed the connection {what}")]
    Closed {
        /// What was awaited.
        what: String,
    },
    /// The milter broke the protocol.
    #[error("protocol violation {what}: {violation}")]
    Violation {
        /// What was awaited.
        what: String,
        /// The violation.
        violation: Violation,
    },
    /// Framing failed (for example, a packet over the size limit).
    #[error("bad packet from the milter {what}: {error}")]
    Frame {
        /// What was awaited.
        what: String,
        /// The error.
        error: FrameError,
    },
    /// Socket error.
    #[error("I/O error {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The data to send cannot be put in a milter packet (a NUL byte in a
    /// header, an address or a macro: the protocol's strings end at NUL, so
    /// sending it would desynchronise the stream). Nothing was sent.
    #[error("cannot send {what}: {problem}")]
    Unsendable {
        /// What was to be sent.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The client cannot go on: a command that is not a step was given, or
    /// an earlier step failed while its answer was awaited.
    #[error("the milter connection is unusable: {0}")]
    Unusable(&'static str),
}

impl ClientError {
    /// True for errors that are the milter's fault under the protocol
    /// (violations and malformed packets), as opposed to transport trouble.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            ClientError::Violation { .. } | ClientError::Frame { .. }
        )
    }

    /// True when the fault is in what we were asked to send (the message or
    /// the session description), not in the milter or the transport.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            ClientError::Unsendable { .. } | ClientError::Unusable(_)
        )
    }
}

/// Why `command` (with `macros` before it) cannot be written, in words, or
/// None if it can. Checked before anything is written, because the protocol
/// core treats an unencodable command as a caller bug and panics.
pub(crate) fn unsendable(command: &Command, macros: &[(String, String)]) -> Option<String> {
    let nul = |b: &[u8]| b.contains(&0);
    if command.is_encodable() {
        return macros
            .iter()
            .find(|(n, v)| nul(n.as_bytes()) || nul(v.as_bytes()))
            .map(|(name, _)| format!("macro {name:?} contains a NUL byte"));
    }
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(match command {
        Command::Header { name, value } if nul(name) => {
            format!("header name {:?} contains a NUL byte", lossy(name))
        }
        Command::Header { name, value } if nul(value) => {
            format!("the value of header {:?} contains a NUL byte", lossy(name))
        }
        Command::Connect { hostname, .. } if nul(hostname) => {
            format!("client host name {:?} contains a NUL byte", lossy(hostname))
        }
        Command::Connect { .. } => "the client address contains a NUL byte".into(),
        Command::Helo(s) => format!("HELO name {:?} contains a NUL byte", lossy(s)),
        Command::Mail(args) | Command::Rcpt(args) if args.is_empty() => "no address given".into(),
        Command::Mail(args) | Command::Rcpt(args) => {
            let bad = args.iter().find(|a| nul(a)).map(|a| lossy(a));
            format!(
                "address or ESMTP argument {:?} contains a NUL byte",
                bad.unwrap_or_default()
            )
        }
        Command::Unknown(s) => format!("command {:?} contains a NUL byte", lossy(s)),
        other => format!("{other:?} cannot be encoded"),
    })
}

/// "at STEP", for error texts built only when an error happens.
struct AtStep(Step);

impl std::fmt::Display for AtStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}", self.0)
    }
}

/// What happened at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// The step.
    pub step: Step,
    /// Sent? Awaited?
    pub dispatch: Dispatch,
    /// The final answer, if one was awaited.
    pub answer: Option<Answer>,
    /// Modifications (and quarantine) received with it.
    pub modifications: Vec<Response>,
    /// Progress packets received while waiting.
    pub progress: u32,
    /// From sending to the final answer.
    pub elapsed: Duration,
}

/// A byte stream to a milter.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for T {}

/// A negotiated connection to a milter.
pub struct MilterClient {
    stream: Box<dyn ClientStream>,
    session: MtaSession,
    decoder: FrameDecoder,
    buf: BytesMut,
    /// What [`MilterClient::play_script`] writes next, kept between messages
    /// so replaying allocates nothing.
    wbuf: Vec<u8>,
    cfg: ClientConfig,
    negotiation_time: Duration,
}

async fn open(spec: &SocketSpec) -> std::io::Result<Box<dyn ClientStream>> {
    Ok(match spec {
        SocketSpec::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        SocketSpec::Inet { host, port, v6 } => {
            let host = match (host.as_str(), v6) {
                ("" | "*", false) => "127.0.0.1",
                ("" | "*", true) => "::1",
                (h, _) => h,
            };
            let s = tokio::net::TcpStream::connect((host, *port)).await?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
    })
}

impl MilterClient {
    /// Connects to `spec` and negotiates, within `connect_timeout`.
    pub async fn connect(
        spec: &SocketSpec,
        cfg: ClientConfig,
    ) -> Result<MilterClient, ClientError> {
        let limit = cfg.connect_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let stream = match tokio::time::timeout_at(deadline, open(spec)).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: format!("connecting to {spec}"),
                    after: limit,
                });
            }
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    spec: spec.to_string(),
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        MilterClient::negotiate_until(stream, cfg, deadline).await
    }

    /// Negotiates over an already-connected stream, within `connect_timeout`.
    pub async fn negotiate(
        stream: Box<dyn ClientStream>,
        cfg: ClientConfig,
    ) -> Result<MilterClient, ClientError> {
        let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
        MilterClient::negotiate_until(stream, cfg, deadline).await
    }

    async fn negotiate_until(
        stream: Box<dyn ClientStream>,
        cfg: ClientConfig,
        deadline: tokio::time::Instant,
    ) -> Result<MilterClient, ClientError> {
        let started = Instant::now();
        let mut client = MilterClient {
            stream,
            session: MtaSession::new(cfg.offer.clone()),
            decoder: FrameDecoder::new(cfg.max_packet),
            buf: BytesMut::with_capacity(8 * 1024),
            wbuf: Vec::new(),
            negotiation_time: Duration::ZERO,
            cfg,
        };
        client.session.start();
        let what = "at option negotiation";
        let limit = client.cfg.connect_timeout;
        client.flush(what, deadline, limit).await?;
        let frame = client.read_frame(&what, deadline, limit).await?;
        match client.session.receive(frame) {
            Ok(MtaEvent::Negotiated(_)) => {}
            Ok(other) => unreachable!("negotiation yields only Negotiated, got {other:?}"),
            Err(violation) => {
                return Err(ClientError::Violation {
                    what: what.into(),
                    violation,
                });
            }
        }
        client.negotiation_time = started.elapsed();
        Ok(client)
    }

    /// What the milter negotiated.
    pub fn options(&self) -> &MilterOptions {
        self.session
            .options()
            .expect("negotiated in the constructor")
    }

    /// How long connecting and negotiating took.
    pub fn negotiation_time(&self) -> Duration {
        self.negotiation_time
    }

    /// Whether `step` would be sent now (negotiated, not skipped).
    pub fn would_send(&self, step: Step) -> bool {
        self.session.would_send(step)
    }

    /// Writes what the session has queued, by `deadline`; `limit` is the
    /// timeout the deadline came from, for the error text.
    async fn flush(
        &mut self,
        what: &str,
        deadline: tokio::time::Instant,
        limit: Duration,
    ) -> Result<(), ClientError> {
        if !self.wbuf.is_empty() {
            // A replayed message left packets unwritten (see play_script):
            // they go first, in one write with what the session queued.
            self.wbuf.extend_from_slice(self.session.output());
            self.session.clear_output();
            let write = self.stream.write_all(&self.wbuf);
            return match tokio::time::timeout_at(deadline, write).await {
                Err(_) => Err(ClientError::Timeout {
                    what: format!("(writing) {what}"),
                    after: limit,
                }),
                Ok(Err(source)) => Err(ClientError::Io {
                    what: format!("writing {what}"),
                    source,
                }),
                Ok(Ok(())) => {
                    self.wbuf.clear();
                    Ok(())
                }
            };
        }
        if self.session.output().is_empty() {
            return Ok(());
        }
        let write = self.stream.write_all(self.session.output());
        match tokio::time::timeout_at(deadline, write).await {
            Err(_) => Err(ClientError::Timeout {
                what: format!("(writing) {what}"),
                after: limit,
            }),
            Ok(Err(source)) => Err(ClientError::Io {
                what: format!("writing {what}"),
                source,
            }),
            Ok(Ok(())) => {
                self.session.clear_output();
                Ok(())
            }
        }
    }

    /// Reads one whole packet by `deadline`, however it is split up on the
    /// wire.
    async fn read_frame(
        &mut self,
        what: &(dyn std::fmt::Display + Sync),
        deadline: tokio::time::Instant,
        limit: Duration,
    ) -> Result<Frame, ClientError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(error) => {
                    return Err(ClientError::Frame {
                        what: what.to_string(),
                        error,
                    });
                }
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8 * 1024);
            }
            let read = self.stream.read_buf(&mut self.buf);
            let n = match tokio::time::timeout_at(deadline, read).await {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: what.to_string(),
                        after: limit,
                    });
                }
                Ok(Err(source)) => {
                    return Err(ClientError::Io {
                        what: format!("reading {what}"),
                        source,
                    });
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(ClientError::Closed {
                    what: what.to_string(),
                });
            }
        }
    }

    /// Sends the macros for `command`'s step, then the command, and (if the
    /// milter replies to it) reads until its final answer, all within the
    /// step's timeout (a progress packet starts it afresh).
    ///
    /// Data the protocol cannot carry (a NUL byte in a string) is refused
    /// with [`ClientError::Unsendable`] before anything is written.
    pub async fn step(
        &mut self,
        macros: &[(String, String)],
        command: Command,
    ) -> Result<StepOutcome, ClientError> {
        let Some(step) = Step::from_command_code(command.code()) else {
            return Err(ClientError::Unusable("not a step command"));
        };
        if self.session.is_awaiting() {
            return Err(ClientError::Unusable(
                "an earlier step failed while its answer was awaited",
            ));
        }
        let what = format!("at {step}");
        if let Some(problem) = unsendable(&command, macros) {
            return Err(ClientError::Unsendable {
                what: step.to_string(),
                problem,
            });
        }
        let limit = if step.is_content_step() {
            self.cfg.content_timeout
        } else {
            self.cfg.command_timeout
        };
        let started = Instant::now();
        let mut deadline = tokio::time::Instant::now() + limit;
        self.session.send_macros(step, macros);
        let dispatch = self.session.send_step(command);
        self.flush(&what, deadline, limit).await?;
        let mut outcome = StepOutcome {
            step,
            dispatch,
            answer: None,
            modifications: Vec::new(),
            progress: 0,
            elapsed: Duration::ZERO,
        };
        if dispatch == Dispatch::AwaitAnswer {
            loop {
                let frame = self.read_frame(&what.as_str(), deadline, limit).await?;
                match self.session.receive(frame) {
                    Ok(MtaEvent::Progress) => {
                        outcome.progress += 1;
                        deadline = tokio::time::Instant::now() + limit;
                    }
                    Ok(MtaEvent::Modification(m)) => outcome.modifications.push(m),
                    Ok(MtaEvent::Answer(a)) => {
                        outcome.answer = Some(a);
                        break;
                    }
                    Ok(MtaEvent::Negotiated(_)) => unreachable!("negotiation is over"),
                    Err(violation) => return Err(ClientError::Violation { what, violation }),
                }
            }
        }
        // Anything already buffered now is a reply nobody asked for (for
        // example an answer to a no-reply step): report it, do not misread it
        // as the answer to the next command.
        if let Ok(Some(frame)) = self.decoder.decode(&mut self.buf) {
            return Err(ClientError::Violation {
                what: format!("after {step}"),
                violation: Violation::Unsolicited(frame.code as char),
            });
        }
        outcome.elapsed = started.elapsed();
        Ok(outcome)
    }

    /// Replays `script` (see [`crate::script`]): the whole SMTP session if
    /// `greet`, else only the next message (MAIL to end of message) on this
    /// connection. Modifications (and quarantine) are handed to
    /// `on_modification` as they arrive, after the session has checked them.
    ///
    /// Returns the verdict as [`run_message`](crate::run_message) would.
    /// After a message that did not end the session, the ABORT Postfix sends
    /// is queued and goes out with the next write (a step, or QUIT).
    pub async fn play_script(
        &mut self,
        script: &MessageScript,
        greet: bool,
        on_modification: &mut (dyn FnMut(&Response) + Send),
    ) -> Result<ScriptResult, ClientError> {
        if self.session.is_awaiting() {
            return Err(ClientError::Unusable(
                "an earlier step failed while its answer was awaited",
            ));
        }
        if script.options() != self.options() {
            return Err(ClientError::Unusable(
                "the script was encoded for other negotiated options",
            ));
        }
        // Whatever is still unwritten (the last message's ABORT, and the
        // packets before it if no answer was awaited after them) goes first.
        self.wbuf.extend_from_slice(self.session.output());
        self.session.clear_output();
        let first = if greet { 0 } else { script.message_start };
        let mut accepted_rcpts = 0u32;
        let mut refused_rcpts = 0u32;
        let mut last_refusal = None;
        for (i, s) in script.steps.iter().enumerate().skip(first) {
            if i == script.rcpts_end && accepted_rcpts == 0 {
                // No valid recipients: the client never gets to DATA.
                let outcome = last_refusal.unwrap_or(Outcome::Rejected {
                    at: Step::Rcpt,
                    reply: None,
                });
                return Ok(self.end_early(outcome, refused_rcpts));
            }
            let step = s.step;
            // After a skip of the body, run_message stops sending chunks
            // (their macros included).
            if step == Step::Body && !self.session.would_send(Step::Body) {
                continue;
            }
            script.append_macros(s, &mut self.wbuf);
            let dispatch = self.session.send_encoded_step(step);
            if dispatch != Dispatch::NotSent {
                script.append_command(s, &mut self.wbuf);
            }
            if dispatch != Dispatch::AwaitAnswer {
                if step == Step::Rcpt {
                    accepted_rcpts += 1;
                }
                continue;
            }
            let answer = self.exchange(step, on_modification).await?;
            let verdict = decisive(&answer, step);
            match (step, verdict) {
                (Step::EndOfMessage, verdict) => {
                    let outcome = verdict.unwrap_or(Outcome::Accepted);
                    return Ok(self.end_early(outcome, refused_rcpts));
                }
                (_, None) => {
                    if step == Step::Rcpt {
                        accepted_rcpts += 1;
                    }
                }
                (Step::Connect | Step::Helo, Some(outcome)) => {
                    return Ok(ScriptResult {
                        outcome,
                        session_ended: true,
                        refused_rcpts,
                    });
                }
                // A refusal at RCPT refuses that recipient only.
                (Step::Rcpt, Some(o @ (Outcome::Rejected { .. } | Outcome::Tempfailed { .. }))) => {
                    refused_rcpts += 1;
                    last_refusal = Some(o);
                }
                (_, Some(outcome)) => return Ok(self.end_early(outcome, refused_rcpts)),
            }
        }
        unreachable!("a script ends with end of message, which always returns")
    }

    /// The message ended (at end of message or before it): ABORT is queued
    /// unless the milter asked to shut the session down. It stays in `wbuf`
    /// behind any packets not yet written, for the next write.
    fn end_early(&mut self, outcome: Outcome, refused_rcpts: u32) -> ScriptResult {
        let session_ended = matches!(outcome, Outcome::Shutdown { .. });
        if !session_ended {
            self.session.send_abort();
            self.wbuf.extend_from_slice(self.session.output());
            self.session.clear_output();
        }
        ScriptResult {
            outcome,
            session_ended,
            refused_rcpts,
        }
    }

    /// Writes `wbuf` and reads until the final answer to `step`, with
    /// [`step`](Self::step)'s deadline and checks. Error texts are built only
    /// when an error happens.
    async fn exchange(
        &mut self,
        step: Step,
        on_modification: &mut (dyn FnMut(&Response) + Send),
    ) -> Result<Answer, ClientError> {
        let limit = if step.is_content_step() {
            self.cfg.content_timeout
        } else {
            self.cfg.command_timeout
        };
        let mut deadline = tokio::time::Instant::now() + limit;
        let write = self.stream.write_all(&self.wbuf);
        let written = tokio::time::timeout_at(deadline, write).await;
        // Written or not, these bytes are done with: after a failed write
        // the connection is unusable.
        self.wbuf.clear();
        match written {
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: format!("(writing) at {step}"),
                    after: limit,
                });
            }
            Ok(Err(source)) => {
                return Err(ClientError::Io {
                    what: format!("writing at {step}"),
                    source,
                });
            }
            Ok(Ok(())) => {}
        }
        let answer = loop {
            let frame = self.read_frame_at(step, deadline, limit).await?;
            match self.session.receive(frame) {
                Ok(MtaEvent::Progress) => deadline = tokio::time::Instant::now() + limit,
                Ok(MtaEvent::Modification(m)) => on_modification(&m),
                Ok(MtaEvent::Answer(a)) => break a,
                Ok(MtaEvent::Negotiated(_)) => unreachable!("negotiation is over"),
                Err(violation) => {
                    return Err(ClientError::Violation {
                        what: format!("at {step}"),
                        violation,
                    });
                }
            }
        };
        // As in step(): anything already buffered is a reply nobody asked for.
        if let Ok(Some(frame)) = self.decoder.decode(&mut self.buf) {
            return Err(ClientError::Violation {
                what: format!("after {step}"),
                violation: Violation::Unsolicited(frame.code as char),
            });
        }
        Ok(answer)
    }

    /// [`read_frame`](Self::read_frame) for a step, its text built only on
    /// error.
    async fn read_frame_at(
        &mut self,
        step: Step,
        deadline: tokio::time::Instant,
        limit: Duration,
    ) -> Result<Frame, ClientError> {
        self.read_frame(&AtStep(step), deadline, limit).await
    }

    /// Ends the current message without end of message (`A`, no reply).
    pub async fn abort(&mut self) -> Result<(), ClientError> {
        self.session.send_abort();
        let limit = self.cfg.command_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        self.flush("at abort", deadline, limit).await
    }

    /// Sends QUIT and closes.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.session.send_quit();
        let limit = self.cfg.command_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        self.flush("at quit", deadline, limit).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Closes without QUIT, as Postfix does after a connection-level verdict.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
