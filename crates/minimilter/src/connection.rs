//! One MTA connection: reads packets, runs them through the protocol session,
//! calls the filter, writes the replies. Everything that can go wrong here
//! (garbage, silence, a slow or broken filter) ends in a log line and either
//! the fail-safe reply or a clean close — never a half-written packet.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use milter_proto::{
    Command, Event, Frame, FrameDecoder, FrameError, MilterSession, OPTNEG_MAX_PAYLOAD, Sent,
    SessionError, Step, Verdict, classify_probe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::config::ServerConfig;
use crate::context::{Context, Modifications};
use crate::filter::{ConnectInfo, Envelope, Header, Milter};
use crate::guard::{FilterFailure, guarded, poll_once};
use crate::listener::Stream;
use crate::message_log::{MessageLog, applied_name, ends_message, reply_text};
use crate::metrics::Observer;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    /// QUIT, or the MTA closed the socket between packets.
    #[error("closed by the MTA")]
    Closed,
    /// The peer is not an MTA speaking the milter protocol.
    #[error("not a milter client: first bytes look like {0}")]
    Probe(&'static str),
    /// Nothing arrived for the idle timeout.
    #[error("idle for {0:?}")]
    IdleTimeout(Duration),
    /// A packet started but did not finish in time, or a write stalled.
    #[error("I/O stalled for {0:?}")]
    IoTimeout(Duration),
    /// Framing failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The MTA broke the protocol.
    #[error(transparent)]
    Protocol(#[from] SessionError),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Shutdown.
    #[error("server shutting down")]
    Shutdown,
}

/// The filter's view of a step, borrowing only the fields it needs so the
/// stream stays free for progress packets.
fn context<'a, C, M>(
    conn: &'a mut C,
    msg: &'a mut M,
    session: &'a MilterSession,
    id: u64,
) -> Context<'a, C, M> {
    Context {
        conn,
        msg,
        macros: session.macros(),
        negotiated: session
            .negotiated()
            .expect("filter steps come after negotiation"),
        id,
    }
}

/// What a read waits for, which decides its deadline.
#[derive(Clone, Copy)]
enum Wait {
    /// The MTA's offer (`negotiation_timeout` from the first read).
    Negotiation,
    /// The next packet between packets (`idle_timeout` from now).
    Idle,
    /// The rest of a packet that has begun (`io_timeout` from its start).
    Packet,
}

/// How a read's wait ended.
enum Waited {
    Read(std::io::Result<usize>),
    Shutdown,
    Timeout,
}

/// Read buffer of a connection waiting between messages: enough for the
/// small packets of the SMTP commands; a large packet grows it as it arrives.
const IDLE_BUFFER: usize = 1024;

/// The state of one connection.
///
/// **Readiness, and why a read costs one system call.** The streams are
/// tokio's (`UnixStream`, `TcpStream`), registered edge-triggered with epoll.
/// When a `recv` fills less than the buffer it was given, tokio (1.30 and
/// later, tokio-rs/tokio#5866) clears the stream's read readiness itself, so
/// the next read parks the task without a `recv` that would return EAGAIN:
/// the kernel empties the whole receive queue into a read that has room, so
/// a short read means nothing was left. No wake-up is lost: readiness is
/// cleared only for the driver tick the read observed, and bytes that arrive
/// after the `recv` raise a new epoll edge, a new tick, and the waker. So
/// per MTA write the runtime makes exactly one `recv` (measured: 2.00 `recvfrom`
/// and 2.00 `sendto` per message for the gate milter, whose MTA writes twice
/// per message and waits for a reply each time; docs/performance.md). A
/// `try_io` of our own would only repeat what tokio does.
///
/// Between the reply and the next command no wake-up can be saved either:
/// the MTA sends its next awaited command only after reading the reply, so
/// that command always finds the task parked, and pipelined no-reply packets
/// (macros, `A`) arrive in the same write as the awaited command that
/// follows them (`minimilter bench` and scripts/bench/loadgen.c write them
/// together) or wake the task once more, which is the MTA's choice, not
/// ours. The `EPOLLOUT` edge the MTA raises by reading our reply comes with
/// the `EPOLLIN` of its next command in practice (one event, one wake-up:
/// 2.07 `epoll_wait` per message of two replies at one connection).
pub(crate) struct Connection<F: Milter, S> {
    filter: Arc<F>,
    cfg: Arc<ServerConfig>,
    stream: S,
    id: u64,
    shutdown: Shutdown,
    session: MilterSession,
    decoder: FrameDecoder,
    buf: BytesMut,
    conn: F::Connection,
    msg: F::Message,
    /// When the packet now arriving must be complete (set at its first byte).
    packet_deadline: Option<Instant>,
    /// The one timer behind every read deadline. A fresh `timeout_at` per
    /// read registered and removed a timer entry for every packet; this one
    /// is never disarmed between reads, is moved earlier at once when a
    /// nearer deadline is needed, and is left alone when the deadline moves
    /// later (every idle wait): when it then fires early, it is moved on.
    read_timer: Pin<Box<Sleep>>,
    /// The waiter on the shutdown signal that wakes a waiting read, kept
    /// for the whole connection: registering a waiter and removing it again
    /// takes the token's lock twice. One waiter is enough: it watches `stop`,
    /// which `kill` always fires too, until `stop` fires inside a message;
    /// from then on it watches `kill`. It is only polled while a read waits;
    /// the atomic flags of [`Shutdown`] are checked around every read.
    shutdown_wait: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Whether `shutdown_wait` watches `stop` (else `kill`).
    watching_stop: bool,
    /// The server's counters.
    stats: Arc<Stats>,
    /// The message's log line.
    log: MessageLog,
    /// Metrics, if the server keeps them.
    observer: Observer,
}

impl<F: Milter, S: Stream> Connection<F, S> {
    pub(crate) fn new(
        filter: Arc<F>,
        cfg: Arc<ServerConfig>,
        stream: S,
        id: u64,
        shutdown: Shutdown,
        stats: Arc<Stats>,
        observer: Observer,
    ) -> Self {
        let requirements = filter.requirements();
        let read_timer = Box::pin(tokio::time::sleep(cfg.negotiation_timeout));
        let shutdown_wait = Box::pin(shutdown.stop.clone().cancelled_owned());
        Connection {
            filter,
            cfg,
            stream,
            id,
            shutdown,
            session: MilterSession::new(requirements),
            decoder: FrameDecoder::new(OPTNEG_MAX_PAYLOAD),
            buf: BytesMut::with_capacity(IDLE_BUFFER),
            conn: F::Connection::default(),
            msg: F::Message::default(),
            packet_deadline: None,
            read_timer,
            shutdown_wait,
            watching_stop: true,
            stats,
            log: MessageLog::default(),
            observer,
        }
    }

    /// Serves the connection to its end.
    pub(crate) async fn run(mut self) -> ConnectionEnd {
        let end = self.serve().await;
        if self.session.negotiated().is_none()
            && !matches!(end, ConnectionEnd::Closed | ConnectionEnd::Shutdown)
        {
            self.observer.negotiation_failed();
        }
        if self.session.negotiated().is_some() {
            if self.session.in_message() {
                self.settle_unfinished(&format!("connection ended: {end}"));
                self.call_abort().await;
            }
            self.call_close().await;
        }
        // Best effort: the peer may be gone already. After QUIT or the MTA's
        // own close there is nobody to tell: dropping the stream closes it
        // (one system call fewer per connection, for MTAs that open one per
        // SMTP session).
        if !matches!(end, ConnectionEnd::Closed) {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        }
        end
    }

    async fn serve(&mut self) -> ConnectionEnd {
        loop {
            let frame = match self.next_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => return ConnectionEnd::Closed,
                Err(e) => return e,
            };
            // Macro packets (most of what an MTA sends) need no filter call
            // and no reply: handled here without building the step's future.
            let event = match self.receive(frame) {
                Ok(e) => e,
                Err(e) => return e,
            };
            if !matches!(event, Event::Macros)
                && let Err(e) = self.handle(event).await
            {
                return e;
            }
            if let Err(e) = self.flush().await {
                return e;
            }
            if self.session.negotiated().is_none() {
                continue;
            }
            if self.shutdown.is_killed() {
                return ConnectionEnd::Shutdown;
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Option<Frame>, ConnectionEnd> {
        loop {
            let first = self.session.awaiting_negotiation();
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => {
                    self.packet_deadline = None;
                    if first && f.code != milter_proto::command::code::OPTNEG {
                        // Rebuild the first bytes as they arrived, to name the probe.
                        let mut head = Vec::with_capacity(16);
                        head.extend_from_slice(&(f.payload.len() as u32 + 1).to_be_bytes());
                        head.push(f.code);
                        head.extend_from_slice(&f.payload[..f.payload.len().min(8)]);
                        return Err(ConnectionEnd::Probe(classify_probe(&head)));
                    }
                    return Ok(Some(f));
                }
                Ok(None) => {}
                // Before negotiation, an unreasonable length is a probe, not an MTA.
                Err(_) if first => {
                    return Err(ConnectionEnd::Probe(classify_probe(
                        &self.buf[..self.buf.len().min(16)],
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            let idle = self.buf.is_empty();
            if idle && !self.session.in_transaction() && self.buf.capacity() > 4 * IDLE_BUFFER {
                // Between messages a connection may idle for hours; give
                // back what a large message made the buffer grow to.
                self.buf = BytesMut::with_capacity(IDLE_BUFFER);
            } else if self.buf.capacity() - self.buf.len() < IDLE_BUFFER / 2 {
                self.buf.reserve(if idle { IDLE_BUFFER } else { 16 * 1024 });
            }
            // Shutdown wins over data already there, as it did when it was
            // requested before this read: `stop` ends a connection between
            // messages, `kill` any connection, at this packet boundary.
            let may_stop = idle && !self.session.in_transaction();
            if self.shutdown_requested(may_stop) {
                return Err(ConnectionEnd::Shutdown);
            }
            let wait = if first {
                Wait::Negotiation
            } else if idle {
                Wait::Idle
            } else {
                Wait::Packet
            };
            let mut read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
            // One poll function for the wait, read first: when the bytes are
            // there (or tokio already knows they are not, see `Connection`'s
            // note on readiness) no clock is read, no timer touched and no
            // shutdown waiter polled; data that arrived wins over a deadline
            // that passed while the task waited to run (as with
            // `timeout_at`); and each wake-up polls the read once.
            let mut deadline = None;
            let waited = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(Waited::Read(r));
                }
                let deadline = *deadline.get_or_insert_with(|| {
                    let now = Instant::now();
                    let d = match wait {
                        // An MTA sends its offer at once; a silent peer must not hold a slot.
                        Wait::Negotiation => *self
                            .packet_deadline
                            .get_or_insert(now + self.cfg.negotiation_timeout),
                        Wait::Idle => {
                            self.packet_deadline = None;
                            now + self.cfg.idle_timeout
                        }
                        // One deadline for the whole packet: dripping bytes does not extend it.
                        Wait::Packet => *self
                            .packet_deadline
                            .get_or_insert(now + self.cfg.io_timeout),
                    };
                    // The timer is only ever moved earlier here. A later
                    // deadline (the idle one, which moves with every wait)
                    // leaves it where it is: when it fires early, it is
                    // moved to the real deadline below. Moving a tokio
                    // timer costs a clock conversion each time.
                    if d < self.read_timer.deadline() {
                        self.read_timer.as_mut().reset(d);
                    }
                    d
                });
                loop {
                    if self.shutdown_wait.as_mut().poll(cx).is_pending() {
                        break;
                    }
                    if may_stop || !self.watching_stop || self.shutdown.is_killed() {
                        return Poll::Ready(Waited::Shutdown);
                    }
                    // `stop` inside a message: the message goes on; from
                    // now on only `kill` interrupts a read
                    // (`shutdown_requested` ends the connection once the
                    // message is over).
                    self.shutdown_wait
                        .set(self.shutdown.kill.clone().cancelled_owned());
                    self.watching_stop = false;
                }
                while self.read_timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= deadline {
                        return Poll::Ready(Waited::Timeout);
                    }
                    self.read_timer.as_mut().reset(deadline);
                }
                Poll::Pending
            })
            .await;
            let n = match waited {
                Waited::Read(r) => r?,
                Waited::Shutdown => return Err(ConnectionEnd::Shutdown),
                Waited::Timeout => {
                    return Err(match wait {
                        Wait::Negotiation => ConnectionEnd::IoTimeout(self.cfg.negotiation_timeout),
                        Wait::Idle => ConnectionEnd::IdleTimeout(self.cfg.idle_timeout),
                        Wait::Packet => ConnectionEnd::IoTimeout(self.cfg.io_timeout),
                    });
                }
            };
            if self.shutdown_requested(may_stop) {
                return Err(ConnectionEnd::Shutdown);
            }
            if n == 0 {
                if first && !self.buf.is_empty() {
                    return Err(ConnectionEnd::Probe(classify_probe(
                        &self.buf[..self.buf.len().min(16)],
                    )));
                }
                return self.decoder.decode_eof(&mut self.buf).map_err(Into::into);
            }
        }
    }

    /// Whether a shutdown signal ends the connection at this packet
    /// boundary: `kill` always, `stop` when no message is in progress.
    /// Two atomic loads; the waiter in `shutdown_wait` is what wakes a
    /// connection that waits for data.
    fn shutdown_requested(&self, may_stop: bool) -> bool {
        self.shutdown.is_killed() || (may_stop && self.shutdown.is_stop_requested())
    }

    async fn flush(&mut self) -> Result<(), ConnectionEnd> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        let limit = self.cfg.io_timeout;
        // Never raced against shutdown: a reply is written whole or not at all.
        let mut write = std::pin::pin!(self.stream.write_all(self.session.output()));
        // A reply almost always fits the socket buffer at once: the timer
        // (a clock read and a timer entry) is made only when it does not.
        match poll_once(write.as_mut()).await {
            Poll::Ready(r) => r?,
            Poll::Pending => match tokio::time::timeout(limit, write).await {
                Err(_) => return Err(ConnectionEnd::IoTimeout(limit)),
                Ok(r) => r?,
            },
        }
        self.session.clear_output();
        Ok(())
    }

    /// Runs a packet through the protocol session.
    fn receive(&mut self, frame: Frame) -> Result<Event, ConnectionEnd> {
        let macro_stage = (frame.code == milter_proto::command::code::MACRO)
            .then(|| frame.payload.first().copied())
            .flatten();
        let event = self.session.receive(frame)?;
        if let Some(stage) = macro_stage {
            self.log.macros(stage, self.session.macros());
        }
        Ok(event)
    }

    /// Acts on what a packet meant: filter calls, the message log, the
    /// connection's end.
    async fn handle(&mut self, event: Event) -> Result<(), ConnectionEnd> {
        match event {
            Event::Negotiated => {
                let neg = self.session.negotiated().expect("just negotiated");
                self.decoder
                    .set_max_payload(self.cfg.max_packet.max(neg.data_size.max_payload()));
                tracing::debug!(
                    conn = self.id,
                    version = neg.version,
                    actions = ?neg.actions,
                    protocol = ?neg.protocol,
                    "negotiated"
                );
                for s in &neg.shortfalls {
                    tracing::info!(conn = self.id, "negotiation: {s}");
                }
            }
            Event::Macros => {}
            Event::Abort { message_was_open } => {
                if message_was_open {
                    self.settle_unfinished("the MTA aborted the message");
                    self.call_abort().await;
                }
            }
            Event::Quit => return Err(ConnectionEnd::Closed),
            Event::NewConnection { message_was_open } => {
                if message_was_open {
                    self.settle_unfinished("the MTA aborted the message");
                    self.call_abort().await;
                }
                self.call_close().await;
                self.conn = F::Connection::default();
                self.msg = F::Message::default();
            }
            Event::Step {
                step,
                command,
                deliver,
                new_message,
                aborted_previous,
            } => {
                if aborted_previous {
                    self.settle_unfinished("the MTA aborted the message");
                    self.call_abort().await;
                }
                if new_message {
                    self.msg = F::Message::default();
                    self.log.start();
                }
                match &command {
                    Command::Connect { hostname, address } => {
                        let host = String::from_utf8_lossy(hostname);
                        let addr = match address {
                            milter_proto::ConnectAddress::Inet { addr, .. }
                            | milter_proto::ConnectAddress::Inet6 { addr, .. } => {
                                String::from_utf8_lossy(addr).into_owned()
                            }
                            _ => String::new(),
                        };
                        self.log.client(&host, &addr);
                    }
                    Command::Mail(args) => {
                        if let Some(a) = args.first() {
                            self.log.sender(&String::from_utf8_lossy(a));
                        }
                    }
                    Command::Rcpt(args) => {
                        if let Some(a) = args.first() {
                            self.log.rcpt(&String::from_utf8_lossy(a));
                        }
                    }
                    _ => {}
                }
                if deliver {
                    self.step(step, command).await?;
                }
            }
        }
        Ok(())
    }

    fn step_limit(&self, step: Step) -> Duration {
        if step.is_content_step() {
            self.cfg.content_timeout
        } else {
            self.cfg.command_timeout
        }
    }

    async fn step(&mut self, step: Step, command: Command) -> Result<(), ConnectionEnd> {
        if self.session.pending_answered() {
            // A decision (or failure) from a no-reply step answers this one;
            // the filter is not asked again.
            if step == Step::EndOfMessage {
                self.stats.message_judged();
            }
            self.session.reply(Verdict::Continue)?;
            return Ok(());
        }
        let limit = self.step_limit(step);
        let started = self.observer.times_steps().then(std::time::Instant::now);
        let outcome = if let Command::EndOfMessage(last_chunk) = command {
            // libmilter treats data on `E` as a last body chunk. MTAs send it
            // empty; for one that does not, the filter sees the chunk first,
            // and a deciding verdict there answers end of message (one reply).
            let wants_body = self
                .session
                .negotiated()
                .is_some_and(|n| n.delivers(Step::Body));
            let early = if wants_body && !last_chunk.is_empty() {
                match self
                    .call_step(Step::Body, Command::Body(last_chunk), limit)
                    .await
                {
                    Ok(Verdict::Continue | Verdict::Skip) => None,
                    other => Some(other),
                }
            } else {
                None
            };
            match early {
                Some(r) => r.map(|v| (v, Vec::new())),
                None => self.end_of_message(limit).await,
            }
        } else {
            self.call_step(step, command, limit)
                .await
                .map(|v| (v, Vec::new()))
        };
        if let Some(started) = started {
            self.observer.step(step, started.elapsed());
        }
        let mut fail_reason = None;
        let verdict = match outcome {
            Ok((verdict, mods)) => {
                warn_mismatched_reply(self.id, step, &verdict);
                // Skip at end of message means nothing more to skip: the
                // message is delivered, and the session answers continue.
                let delivering =
                    matches!(verdict, Verdict::Continue | Verdict::Accept | Verdict::Skip);
                let mut failed = false;
                if delivering {
                    for m in mods {
                        if let Err(e) = self.session.modify(m) {
                            tracing::error!(conn = self.id, %step, "modification refused: {e}");
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    // Drop any modifications already queued: a half-applied
                    // set must not reach the MTA.
                    self.session.clear_output();
                    self.observer.filter_failure("modification");
                    fail_reason = Some("modification refused; fail-safe reply".to_owned());
                    self.cfg.fail_safe.verdict()
                } else {
                    verdict
                }
            }
            Err(FilterFailure::Shutdown) => return Err(ConnectionEnd::Shutdown),
            Err(FilterFailure::Connection) => {
                return Err(ConnectionEnd::IoTimeout(self.cfg.io_timeout));
            }
            Err(failure) => {
                fail_reason = Some(format!("{failure}; fail-safe reply"));
                self.observer.filter_failure(match &failure {
                    FilterFailure::Error(_) => "error",
                    FilterFailure::Panic(_) => "panic",
                    _ => "timeout",
                });
                tracing::error!(
                    conn = self.id,
                    %step,
                    fail_safe = ?self.cfg.fail_safe,
                    "{failure}; answering with the fail-safe reply"
                );
                if matches!(failure, FilterFailure::Panic(_)) {
                    self.msg = F::Message::default();
                }
                // At a no-reply step the session keeps it for the next reply.
                self.cfg.fail_safe.verdict()
            }
        };
        let name = verdict.name();
        if step == Step::EndOfMessage {
            self.stats.message_judged();
        }
        if ends_message(step, &verdict) && !self.log.is_logged() {
            let applied = applied_name(step, &verdict);
            let class = if fail_reason.is_some() {
                "fail_safe"
            } else {
                self.filter.reason_class(&self.msg).unwrap_or(
                    if matches!(verdict, Verdict::Reject(_) | Verdict::Tempfail(_)) {
                        "policy"
                    } else {
                        "none"
                    },
                )
            };
            // Made only if the line is written (a String per message otherwise).
            let reason = || {
                fail_reason
                    .or_else(|| self.filter.reason(&self.msg))
                    .or_else(|| reply_text(&verdict))
                    .unwrap_or_else(|| "-".into())
            };
            if self
                .log
                .settle(self.id, self.session.macros(), applied, reason)
            {
                self.observer.message(applied, class);
            }
        }
        match self.session.reply(verdict)? {
            Sent::Written | Sent::NotNeeded => {}
            Sent::Deferred => tracing::debug!(
                conn = self.id,
                %step,
                "{name} at a no-reply step; it answers the next step the MTA waits for"
            ),
            Sent::Downgraded => tracing::debug!(
                conn = self.id,
                %step,
                "{name} is not valid at this step; sent continue"
            ),
        }
        Ok(())
    }

    async fn call_step(
        &mut self,
        step: Step,
        command: Command,
        limit: Duration,
    ) -> Result<Verdict, FilterFailure> {
        let kill = &self.shutdown.kill;
        let filter = &*self.filter;
        let cx = context(&mut self.conn, &mut self.msg, &self.session, self.id);
        match command {
            Command::Connect { hostname, address } => {
                let info = ConnectInfo { hostname, address };
                guarded(filter.connect(cx, &info), limit, kill).await
            }
            Command::Helo(name) => guarded(filter.helo(cx, &name), limit, kill).await,
            Command::Mail(args) => {
                let env = Envelope::from_args(args);
                guarded(filter.mail(cx, &env), limit, kill).await
            }
            Command::Rcpt(args) => {
                let env = Envelope::from_args(args);
                guarded(filter.rcpt(cx, &env), limit, kill).await
            }
            Command::Data => guarded(filter.data(cx), limit, kill).await,
            Command::Header { name, value } => {
                let h = Header { name, value };
                guarded(filter.header(cx, &h), limit, kill).await
            }
            Command::EndOfHeaders => guarded(filter.end_of_headers(cx), limit, kill).await,
            Command::Body(chunk) => guarded(filter.body(cx, chunk), limit, kill).await,
            Command::Unknown(cmd) => guarded(filter.unknown(cx, &cmd), limit, kill).await,
            other => unreachable!("{step} step with command {other:?}"),
        }
    }

    /// End of message, with progress packets while the filter works.
    async fn end_of_message(
        &mut self,
        limit: Duration,
    ) -> Result<(Verdict, Vec<milter_proto::Response>), FilterFailure> {
        let kill = &self.shutdown.kill;
        let neg = self.session.negotiated().expect("negotiated");
        let mut mods = Modifications::new(neg.actions, neg.data_size.max_payload());
        let filter = &*self.filter;
        let cx = context(&mut self.conn, &mut self.msg, &self.session, self.id);
        let interval = self
            .cfg
            .progress_interval
            .max(crate::config::MIN_PROGRESS_INTERVAL);
        let io_timeout = self.cfg.io_timeout;
        let stream = &mut self.stream;
        let session = &self.session;
        let verdict = {
            let call = guarded(filter.end_of_message(cx, &mut mods), limit, kill);
            tokio::pin!(call);
            // Most filters answer without waiting: then no progress packet
            // is encoded and no progress timer made (a select! makes its
            // branches' futures before it polls any).
            match poll_once(call.as_mut()).await {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    // Progress packets exist from protocol 6 on; the session
                    // encodes them (and refuses outside end of message).
                    let progress = match neg.version >= 6 {
                        true => session.progress_packet().ok(),
                        false => None,
                    };
                    loop {
                        tokio::select! {
                            // Call first: a timer that is never polled is
                            // never registered (nor, being nearer than the
                            // read deadline, does it wake the parked I/O
                            // driver to re-arm epoll).
                            biased;
                            r = &mut call => break r,
                            _ = tokio::time::sleep(interval), if progress.is_some() => {
                                let packet = progress.as_deref().unwrap_or_default();
                                let w = tokio::time::timeout(io_timeout, stream.write_all(packet)).await;
                                if !matches!(w, Ok(Ok(()))) {
                                    // Possibly a partial packet: the stream is unusable.
                                    break Err(FilterFailure::Connection);
                                }
                            }
                        }
                    }
                }
            }
        }?;
        Ok((verdict, mods.into_requests()))
    }

    /// The line of a message that ends without a verdict of its own.
    fn settle_unfinished(&mut self, why: &str) {
        if !self.log.is_logged() {
            let reason = || {
                self.filter
                    .reason(&self.msg)
                    .unwrap_or_else(|| why.to_owned())
            };
            if self
                .log
                .settle(self.id, self.session.macros(), "aborted", reason)
            {
                self.observer.message("aborted", "aborted");
            }
        }
    }

    async fn call_abort(&mut self) {
        let limit = self.cfg.command_timeout;
        let kill = &self.shutdown.kill;
        if self.session.negotiated().is_some() {
            let cx = context(&mut self.conn, &mut self.msg, &self.session, self.id);
            if let Err(e) = guarded(self.filter.abort(cx), limit, kill).await {
                tracing::warn!(conn = self.id, "abort handler: {e}");
            }
        }
        self.msg = F::Message::default();
    }

    async fn call_close(&mut self) {
        let limit = self.cfg.command_timeout;
        // Close runs even after kill: it is the filter's chance to release resources.
        let never = tokio_util::sync::CancellationToken::new();
        if self.session.negotiated().is_some() {
            let cx = context(&mut self.conn, &mut self.msg, &self.session, self.id);
            if let Err(e) = guarded(
                self.filter.close(cx),
                limit.min(Duration::from_secs(5)),
                &never,
            )
            .await
            {
                tracing::warn!(conn = self.id, "close handler: {e}");
            }
        }
    }
}

/// A reply text of the other class is not sent (the MTA's default text
/// is): a filter that built `Reject` with a 4xx text (or `Tempfail` with a
/// 5xx one) meant something else, so say so.
fn warn_mismatched_reply(conn: u64, step: Step, verdict: &Verdict) {
    let (wanted, reply) = match verdict {
        Verdict::Reject(Some(r)) => (5, r),
        Verdict::Tempfail(Some(r)) => (4, r),
        _ => return,
    };
    if reply.class() != wanted {
        tracing::warn!(
            conn,
            %step,
            "{} with a {}xx reply text: the text is not sent, the MTA's default {wanted}xx reply is",
            verdict.name(),
            reply.class()
        );
    }
}
