//! The MTA side: connect to any milter, negotiate, and drive it step by step
//! the way Postfix does, with Postfix's timeouts. Every response is checked
//! by the sans-IO [`MtaSession`]; a misbehaving milter is reported as a
//! [`ClientError::Violation`] naming what it did, never as a hang.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use milter_proto::{
    Answer, Command, Dispatch, Frame, FrameDecoder, FrameError, MilterOptions, MtaEvent,
    MtaSession, Offer, Response, Step, Violation,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::spec::SocketSpec;

/// Settings of a [`MilterClient`]; the defaults are Postfix's.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// What to offer at negotiation (default: Postfix, protocol 6).
    pub offer: Offer,
    /// Connecting plus negotiation (`milter_connect_timeout`, 30 s).
    pub connect_timeout: Duration,
    /// Each read while waiting at connect, HELO, MAIL, RCPT, DATA and
    /// unknown commands (`milter_command_timeout`, 30 s).
    pub command_timeout: Duration,
    /// Each read while waiting at headers, end of headers, body and end of
    /// message (`milter_content_timeout`, 300 s). Progress restarts it.
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
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to {spec}: {source}")]
    Connect {
        /// Where.
        spec: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The milter did not answer in time.
    #[error("no answer from the milter {what} within {after:?}")]
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
    #[error("I/O error {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
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
        let stream = match tokio::time::timeout(limit, open(spec)).await {
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
        MilterClient::negotiate(stream, cfg).await
    }

    /// Negotiates over an already-connected stream.
    pub async fn negotiate(
        stream: Box<dyn ClientStream>,
        cfg: ClientConfig,
    ) -> Result<MilterClient, ClientError> {
        let started = Instant::now();
        let mut client = MilterClient {
            stream,
            session: MtaSession::new(cfg.offer.clone()),
            decoder: FrameDecoder::new(cfg.max_packet),
            buf: BytesMut::with_capacity(8 * 1024),
            negotiation_time: Duration::ZERO,
            cfg,
        };
        client.session.start();
        let what = "at option negotiation";
        client.flush(what, client.cfg.connect_timeout).await?;
        let frame = client.read_frame(what, client.cfg.connect_timeout).await?;
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

    async fn flush(&mut self, what: &str, limit: Duration) -> Result<(), ClientError> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(limit, self.stream.write_all(self.session.output())).await {
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

    async fn read_frame(&mut self, what: &str, limit: Duration) -> Result<Frame, ClientError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(error) => {
                    return Err(ClientError::Frame {
                        what: what.into(),
                        error,
                    });
                }
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8 * 1024);
            }
            let n = match tokio::time::timeout(limit, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: what.into(),
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
                return Err(ClientError::Closed { what: what.into() });
            }
        }
    }

    /// Sends the macros for `command`'s step, then the command, and (if the
    /// milter replies to it) reads until its final answer.
    pub async fn step(
        &mut self,
        macros: &[(String, String)],
        command: Command,
    ) -> Result<StepOutcome, ClientError> {
        let step = Step::from_command_code(command.code()).expect("a step command");
        let what = format!("at {step}");
        let limit = if step.is_content_step() {
            self.cfg.content_timeout
        } else {
            self.cfg.command_timeout
        };
        let started = Instant::now();
        self.session.send_macros(step, macros);
        let dispatch = self.session.send_step(command);
        self.flush(&what, limit).await?;
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
                let frame = self.read_frame(&what, limit).await?;
                match self.session.receive(frame) {
                    Ok(MtaEvent::Progress) => outcome.progress += 1,
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

    /// Ends the current message without end of message (`A`, no reply).
    pub async fn abort(&mut self) -> Result<(), ClientError> {
        self.session.send_abort();
        self.flush("at abort", self.cfg.command_timeout).await
    }

    /// Sends QUIT and closes.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.session.send_quit();
        self.flush("at quit", self.cfg.command_timeout).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Closes without QUIT, as Postfix does after a connection-level verdict.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
