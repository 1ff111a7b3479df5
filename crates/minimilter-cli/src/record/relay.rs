//! The relay's threads: each MTA connection is relayed by one OS thread,
//! a loop of `poll(2)` on both sockets, `recv(2)`, cut, `send(2)` (as an
//! MTA's own milter client is blocking).
//!
//! Why threads and not the event loop: per hop the loop cost an
//! `epoll_wait` besides the `recvfrom` and `sendto`, and the wake-up went
//! through the runtime. The runtime is left with what is not on the path
//! of the mail: accepting connections and connecting to the milter.
//!
//! Why one thread for both directions, and why it may spin: each hop
//! through the proxy wakes a sleeping thread, and on an idle virtual
//! machine that means waking a halted vCPU, tens of µs up to a
//! millisecond, twice per milter step (the command's hop and the
//! answer's). The milter protocol is a dialogue, so the thread that
//! relays both ways knows when the next packet is due at once: the
//! milter's answer after a command that awaits one (the negotiated
//! no-reply flags say which do not), and the MTA's next command after the
//! answer to a header, the end of headers or a body chunk (the MTA has the
//! message and sends its next part at once). Then it polls both sockets
//! without sleeping for up to `--spin-us` ([`Spin`]) before it blocks;
//! anywhere else (waiting for the SMTP client: connect, HELO, MAIL, RCPT,
//! DATA, the next message) it blocks at once. The spin is bounded three
//! ways: in time per wait; per connection, by resting after spins that
//! found nothing (a milter slower than the spin, or a CPU given to other
//! work); across connections, by spinning on at most half the CPUs at
//! once, yielding the CPU (`sched_yield`) between polls so that a runnable
//! milter or MTA on the same CPU goes first; and not at all while the
//! machine has no CPU to spare ([`watch_load`]): a spin saves a wake-up
//! only where a CPU would otherwise go idle.
//!
//! What a connection costs: one thread with [`STACK`] of address space (of
//! which only the pages touched are memory, a few KiB), the two read
//! buffers (16 KiB each while packets are small), and the kernel's task
//! structure. Connections are bounded by `--max-connections`: one beyond
//! it is closed at once, so the MTA applies its default action as with the
//! milter down.
//!
//! Timeouts: the idle timeout (nothing from either side) is `poll`'s own;
//! a write has `write_timeout` in all (`SO_SNDTIMEO`; the sockets stay in
//! blocking mode and a read is only made once `poll` says it will not
//! wait). While a write waits for a peer that does not read, the other
//! direction waits too: the protocol is a dialogue (each side writes when
//! its turn comes), so only a peer that writes without ever reading meets
//! that, and the write timeout ends it. Ending a connection
//! ([`Relays::close_all`], a framing error, a failed write, the idle
//! timeout) shuts both sockets down, which wakes the thread if it waits.
//! An end of stream from one side is passed on as a half close, and the
//! other direction goes on until its own end, as without the proxy.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use milter_proto::command::code;
use milter_proto::response::code as answer;
use milter_proto::{FrameDecoder, Protocol, Step};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use super::proxy::{Batch, MAX_PAYLOAD, Note, Settings, Side, cut, unix_ms};
use super::socket::{ReadBuf, Stream};

/// Address space reserved for each relay thread's stack. The thread runs
/// the cutting, the hand-over and, rarely, a log line; 128 KiB leaves room
/// for those many times over, and only the pages used become memory.
pub const STACK: usize = 128 * 1024;

/// How long a connection's last note (its end) may wait for room in the
/// writer's queue. The mail is done by then; this only bounds the thread.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// `--spin-us`'s default: off. On this project's shared 2-vCPU machine
/// spinning did not lower the latency per step under load (where the load
/// watcher mostly keeps it off anyway) and cost CPU; whether it pays on an
/// idle machine, where a proxy's wake-ups cost the most, is measured with
/// `scripts/bench/record_overhead.py` (docs/performance.md, "Overhead of
/// `minimilter record`"). 200 µs covers most answers of a milter that does
/// not itself wait (on DNS, a database, ...).
pub const DEFAULT_SPIN_US: u64 = 0;

/// How often the machine's load is sampled (see [`watch_load`]), and over
/// how many samples it is averaged.
const LOAD_SAMPLE: Duration = Duration::from_millis(100);
const LOAD_WINDOW: usize = 10;

/// Spins in a row that found nothing before a connection rests.
const MISSES_BEFORE_REST: u32 = 3;
/// Waits a resting connection blocks at once before it spins again.
const REST_WAITS: u32 = 64;

/// How long a connection's thread polls without sleeping where the next
/// packet is due at once (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Spin {
    /// Longest spin per wait; zero: never spin.
    pub max: Duration,
    /// Most threads spinning at once (the others block at once).
    pub threads: usize,
}

impl Spin {
    /// Spins of at most `us` µs (0: never), on at most half the CPUs.
    pub fn new(us: u64) -> Spin {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Spin {
            max: Duration::from_micros(us),
            threads: (cpus / 2).max(1),
        }
    }
}

/// The connections being relayed (or connecting to the milter), bounded.
pub struct Relays {
    max: usize,
    active: AtomicUsize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    spin: Spin,
    spinning: AtomicUsize,
    /// The machine has a CPU to spare (see [`watch_load`]).
    spare: AtomicBool,
    /// Spins that found a packet, and spins that found nothing.
    spins: [AtomicU64; 2],
}

/// A place among the [`Relays`]' bounded number, held from accepting a
/// connection to the end of its relay.
pub struct Slot(Arc<Relays>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A relay's entry in [`Relays`] (for [`Relays::close_all`]) and its
/// place, both given up on drop.
struct Registered(
    Arc<Relays>,
    u64,
    #[allow(dead_code, reason = "held for its drop")] Slot,
);

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.0.open).remove(&self.1);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relays {
    /// At most `max` connections at once, each spinning as `spin` says
    /// while the machine has a CPU to spare.
    pub fn new(max: usize, spin: Spin) -> Arc<Relays> {
        let relays = Relays::unwatched(max, spin);
        if !spin.max.is_zero() {
            let weak = Arc::downgrade(&relays);
            let watching = std::thread::Builder::new()
                .name("load".into())
                .stack_size(STACK)
                .spawn(move || watch_load(&weak));
            if let Err(e) = watching {
                tracing::warn!("cannot start the load watcher: {e}; relays will not spin");
                relays.spare.store(false, Ordering::Relaxed);
            }
        }
        relays
    }

    /// As [`Relays::new`], spinning whatever the machine's load.
    fn unwatched(max: usize, spin: Spin) -> Arc<Relays> {
        Arc::new(Relays {
            max,
            active: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            spin,
            spinning: AtomicUsize::new(0),
            spare: AtomicBool::new(true),
            spins: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// Spins so far that found a packet, and that found nothing.
    pub fn spins(&self) -> (u64, u64) {
        let [hit, miss] = &self.spins;
        (hit.load(Ordering::Relaxed), miss.load(Ordering::Relaxed))
    }

    /// A place for one more connection, unless `max` are open.
    pub fn reserve(self: &Arc<Self>) -> Option<Slot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Connections open or connecting.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Starts relaying `mta` (accepted at `accepted`: packet times count
    /// from then) to `milter` on a new thread. If the thread cannot be
    /// started, both connections are closed (the MTA applies its default
    /// action).
    #[allow(clippy::too_many_arguments, reason = "one call site, all distinct")]
    pub fn start(
        self: &Arc<Self>,
        slot: Slot,
        connection: u64,
        accepted: Instant,
        mta: Stream,
        milter: Stream,
        settings: Arc<Settings>,
        tx: Sender<Note>,
    ) {
        let conn = Arc::new(Conn {
            connection,
            mta,
            milter,
            started: accepted,
            reason: Mutex::new(None),
        });
        lock(&self.open).insert(connection, conn.clone());
        let relays = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("relay-{connection}"))
            .stack_size(STACK)
            .spawn(move || {
                // Both let go when the thread ends, even by a panic.
                let registered = Registered(relays, connection, slot);
                run(&conn, &settings, &registered.0, tx);
            });
        if let Err(e) = spawned {
            tracing::warn!(
                connection,
                "cannot start a relay thread: {e}; closing the MTA's connection so it applies its default action"
            );
            if let Some(c) = lock(&self.open).remove(&connection) {
                c.stop(String::new());
            }
        }
    }

    /// Ends every connection now (both sockets shut down; each relay then
    /// records its end and finishes).
    pub fn close_all(&self) {
        for c in lock(&self.open).values() {
            c.stop("proxy shutting down".into());
        }
    }
}

/// One relayed connection: what its thread and [`Relays::close_all`]
/// share.
pub struct Conn {
    connection: u64,
    mta: Stream,
    milter: Stream,
    started: Instant,
    /// Why the connection ended, if not by both sides closing.
    reason: Mutex<Option<String>>,
}

impl Conn {
    fn at_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Ends the connection: both sockets are shut down, which wakes the
    /// thread if it waits. The first reason given is the one recorded.
    fn stop(&self, reason: String) {
        lock(&self.reason).get_or_insert(reason);
        let _ = self.mta.shutdown(Shutdown::Both);
        let _ = self.milter.shutdown(Shutdown::Both);
    }

    fn socket(&self, side: Side) -> &Stream {
        match side {
            Side::Mta => &self.mta,
            Side::Milter => &self.milter,
        }
    }
}

/// The connection's thread: relays both ways until both sides have ended,
/// then sends the connection's end to the writer.
fn run(conn: &Conn, settings: &Settings, relays: &Relays, tx: Sender<Note>) {
    let started_unix_ms = unix_ms();
    let mut batch = Batch::new(
        conn.connection,
        started_unix_ms,
        tx.clone(),
        settings.writer.clone(),
    );
    batch.send(Note::Open {
        connection: conn.connection,
        started_unix_ms,
    });
    Relay {
        conn,
        settings,
        relays,
        batch: &mut batch,
        dec: FrameDecoder::new(MAX_PAYLOAD),
        bufs: [ReadBuf::default(), ReadBuf::default()],
        open: [true, true],
        first_from_mta: true,
        refused: None,
        last_activity: Instant::now(),
        next: Next::default(),
        misses: [0, 0],
        rest: 0,
    }
    .run();
    batch.hand_over();
    let closed = Note::Closed {
        connection: conn.connection,
        at_us: conn.at_us(),
        reason: lock(&conn.reason).take().unwrap_or_else(|| "closed".into()),
        lost: batch.lost,
        transactions: batch.transactions,
    };
    drop(batch);
    // The writer must hear of every end (it frees the connection's state),
    // so this one note may wait for room, bounded; the mail is done.
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut note = closed;
    let mut pause = Duration::from_millis(1);
    loop {
        match tx.try_send(note) {
            Ok(()) | Err(TrySendError::Closed(_)) => break,
            Err(TrySendError::Full(n)) if Instant::now() < deadline => {
                note = n;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    connection = conn.connection,
                    "transcript writer stalled; the connection's end was not recorded"
                );
                break;
            }
        }
    }
}

/// Watches whether the machine has a CPU to spare, and lets relays spin
/// only then: a spin saves a wake-up only where a CPU would otherwise go
/// idle (and, in a VM, halt); on a busy machine it takes a CPU from work
/// that waits for one, the milter's among it. Every [`LOAD_SAMPLE`] it
/// reads the CPUs' idle time (`/proc/stat`); over the last [`LOAD_WINDOW`]
/// samples it must come to at least half a CPU. (The spins themselves
/// count as busy: a relay that spins on an otherwise idle machine still
/// leaves a CPU idle, as one step at a time occupies one CPU at most.)
/// Ends with the [`Relays`].
fn watch_load(relays: &Weak<Relays>) {
    let mut window = [0u64; LOAD_WINDOW];
    let mut at = 0;
    let mut samples = 0;
    loop {
        std::thread::sleep(LOAD_SAMPLE);
        let Some(relays) = relays.upgrade() else {
            return;
        };
        let Some(idle) = idle_ns() else {
            // Without the figure, the other bounds on spinning still hold.
            relays.spare.store(true, Ordering::Relaxed);
            continue;
        };
        let then = window[at];
        window[at] = idle;
        at = (at + 1) % LOAD_WINDOW;
        samples += 1;
        if samples <= LOAD_WINDOW {
            continue;
        }
        let span = LOAD_SAMPLE.as_nanos() as u64 * LOAD_WINDOW as u64;
        relays
            .spare
            .store(idle.saturating_sub(then) >= span / 2, Ordering::Relaxed);
    }
}

/// Nanoseconds all CPUs have been idle since boot (`/proc/stat`'s first
/// line, idle and iowait, in clock ticks).
fn idle_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let mut f = text.lines().next()?.split_whitespace();
    (f.next()? == "cpu").then_some(())?;
    let ticks: Vec<u64> = f.take(5).map(|v| v.parse().ok()).collect::<Option<_>>()?;
    let hz = rustix::param::clock_ticks_per_second();
    Some((ticks.get(3)? + ticks.get(4)?) * 1_000_000_000 / hz)
}

/// Index of a side's read buffer and open flag.
fn ix(side: Side) -> usize {
    match side {
        Side::Mta => 0,
        Side::Milter => 1,
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Mta => Side::Milter,
        Side::Milter => Side::Mta,
    }
}

/// What the conversation so far says about the next packet: whether it is
/// due at once (worth a spin) or waits on the SMTP client.
#[derive(Debug, Default)]
pub struct Next {
    /// The negotiated no-reply flags (from the milter's negotiation
    /// answer): commands the milter does not answer.
    no_reply: Protocol,
    /// A command that awaits an answer went out, and its final answer has
    /// not come back.
    owed: bool,
    /// The last command that awaited an answer.
    awaited: u8,
    /// The MTA's next command follows at once (it is in the middle of
    /// sending a message, or sent macros for a command to come).
    mta_soon: bool,
}

impl Next {
    /// The MTA relayed a packet with this code.
    pub fn mta_sent(&mut self, c: u8) {
        let awaits = c == code::OPTNEG
            || Step::from_command_code(c)
                .is_some_and(|s| !self.no_reply.intersects(s.no_reply_bit()));
        if awaits {
            self.owed = true;
            self.awaited = c;
            self.mta_soon = false;
        } else {
            // Macros precede their command; a header, end of headers or
            // body chunk not answered is followed by the message's next part.
            self.mta_soon = matches!(c, code::MACRO | code::HEADER | code::EOH | code::BODY);
        }
    }

    /// The milter relayed a packet with this code and payload.
    pub fn milter_sent(&mut self, c: u8, payload: &[u8]) {
        if c == answer::OPTNEG
            && let Some(p) = payload.get(8..12)
        {
            self.no_reply =
                Protocol::from_bits_retain(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                    & Protocol::ALL_NO_REPLY;
        }
        // Modifications, progress and quarantine come before the final
        // answer of end of message; anything else ends the step.
        let last = !matches!(
            c,
            answer::ADDRCPT
                | answer::DELRCPT
                | answer::ADDRCPT_PAR
                | answer::REPLBODY
                | answer::CHGFROM
                | answer::ADDHEADER
                | answer::INSHEADER
                | answer::CHGHEADER
                | answer::PROGRESS
                | answer::QUARANTINE
                | answer::SETSYMLIST
        );
        if last && std::mem::take(&mut self.owed) {
            // Within a message, and after the negotiation, the MTA goes on
            // at once; after the other steps it waits on the SMTP client.
            self.mta_soon = matches!(
                self.awaited,
                code::HEADER | code::EOH | code::BODY | code::OPTNEG
            );
        }
    }

    /// The next packet is due at once.
    pub fn soon(&self) -> bool {
        self.owed || self.mta_soon
    }
}

/// A connection's relay, on its thread.
struct Relay<'a> {
    conn: &'a Conn,
    settings: &'a Settings,
    relays: &'a Relays,
    batch: &'a mut Batch,
    dec: FrameDecoder,
    /// Read buffers of the MTA's and the milter's side.
    bufs: [ReadBuf; 2],
    /// Each side is still read (its end of stream has not come).
    open: [bool; 2],
    first_from_mta: bool,
    refused: Option<serde_json::Value>,
    last_activity: Instant,
    next: Next,
    /// Spins in a row that found nothing, of those waiting for the
    /// milter's answer and of those waiting for the MTA (a hit of one kind
    /// does not hide a milter slower than the spin).
    misses: [u32; 2],
    /// Waits left before this connection spins again.
    rest: u32,
}

/// Why a relay ends, once the reason is recorded.
struct End;

impl Relay<'_> {
    fn run(mut self) {
        for s in [&self.conn.mta, &self.conn.milter] {
            // The read timeout only backs up `poll` (a read is made once
            // it will not wait).
            if let Err(e) = s
                .set_read_timeout(self.settings.idle_timeout)
                .and_then(|()| s.set_write_timeout(self.settings.write_timeout))
            {
                self.conn.stop(format!("setting socket timeouts: {e}"));
                return;
            }
        }
        while self.open.iter().any(|o| *o) {
            let ready = match self.wait() {
                Ok(r) => r,
                Err(End) => return,
            };
            for side in [Side::Mta, Side::Milter] {
                if ready[ix(side)] && self.relay(side).is_err() {
                    return;
                }
            }
        }
    }

    /// Waits until a side that is still read has something (or its end):
    /// spinning first if the next packet is due at once, then blocking
    /// until the idle timeout.
    fn wait(&mut self) -> Result<[bool; 2], End> {
        let conn = self.conn;
        let (mta, milter) = (&conn.mta, &conn.milter);
        let mut fds = [
            PollFd::new(mta, PollFlags::IN),
            PollFd::new(milter, PollFlags::IN),
        ];
        let (from, to) = match self.open {
            [true, true] => (0, 2),
            [true, false] => (0, 1),
            _ => (1, 2),
        };
        let fds = &mut fds[from..to];
        let ready = |fds: &[PollFd]| {
            let mut r = [false; 2];
            for (i, f) in fds.iter().enumerate() {
                r[from + i] = !f.revents().is_empty();
            }
            r
        };
        if self.spin_now() {
            let spinning = &self.relays.spinning;
            let spin = self.relays.spin;
            if spinning.fetch_add(1, Ordering::AcqRel) < spin.threads {
                let until = Instant::now() + spin.max;
                let zero = Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let found = loop {
                    match poll(fds, Some(&zero)) {
                        Ok(0) | Err(rustix::io::Errno::INTR) => {}
                        Ok(_) => break true,
                        Err(_) => break false,
                    }
                    if Instant::now() >= until {
                        break false;
                    }
                    // A milter or MTA that is runnable on this CPU goes
                    // first (a system call that returns at once if none).
                    std::thread::yield_now();
                };
                spinning.fetch_sub(1, Ordering::AcqRel);
                self.relays.spins[usize::from(!found)].fetch_add(1, Ordering::Relaxed);
                let kind = usize::from(!self.next.owed);
                if found {
                    self.misses[kind] = 0;
                    return Ok(ready(fds));
                }
                self.misses[kind] += 1;
                if self.misses[kind] >= MISSES_BEFORE_REST {
                    (self.misses, self.rest) = ([0, 0], REST_WAITS);
                }
            } else {
                spinning.fetch_sub(1, Ordering::AcqRel);
            }
        }
        loop {
            let idle = self.last_activity.elapsed();
            let Some(left) = self.settings.idle_timeout.checked_sub(idle) else {
                self.conn.stop("idle".into());
                return Err(End);
            };
            let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            match poll(fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => return Ok(ready(fds)),
                Err(e) => {
                    self.conn.stop(format!("poll: {e}"));
                    return Err(End);
                }
            }
        }
    }

    /// Whether this wait spins: the next packet is due at once, spinning
    /// is on, and the connection is not resting.
    fn spin_now(&mut self) -> bool {
        if self.relays.spin.max.is_zero()
            || !self.next.soon()
            || !self.relays.spare.load(Ordering::Relaxed)
        {
            return false;
        }
        if self.rest > 0 {
            self.rest -= 1;
            return false;
        }
        true
    }

    /// Reads what `side` has sent and relays its complete packets, or its
    /// end of stream (passed on as a half close).
    fn relay(&mut self, side: Side) -> Result<(), End> {
        let (from, to) = (self.conn.socket(side), self.conn.socket(other(side)));
        let buf = &mut self.bufs[ix(side)];
        let n = match from.read_into(buf) {
            Ok(n) => n,
            // Nothing after all (`poll` said there was): wait again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            // A reset is the end of the stream, as it was for the peer.
            Err(_) => 0,
        };
        self.last_activity = Instant::now();
        let write_timeout = self.settings.write_timeout;
        if n == 0 {
            // End of stream: pass on whatever partial packet was left, then
            // the end itself (a half close), as the other side would have
            // seen it without the proxy.
            self.open[ix(side)] = false;
            let rest = buf.bytes();
            if !rest.is_empty()
                && let Err(e) = to.write_all(rest, write_timeout)
            {
                self.conn.stop(write_failure(&e));
                return Err(End);
            }
            let _ = to.shutdown(Shutdown::Write);
            return Ok(());
        }
        let now = self.conn.at_us();
        let c = cut(
            side,
            buf.bytes(),
            &self.dec,
            &mut self.first_from_mta,
            &mut self.refused,
            self.batch,
            now,
        );
        let out = c.replaced.as_deref().unwrap_or(&buf.bytes()[..c.len]);
        if !out.is_empty()
            && let Err(e) = to.write_all(out, write_timeout)
        {
            self.conn.stop(write_failure(&e));
            return Err(End);
        }
        // What comes next (packets as relayed: complete, one after another).
        let mut at = 0;
        while at + 5 <= out.len() {
            let len = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]) as usize;
            let end = (at + 4 + len).min(out.len());
            match side {
                Side::Mta => self.next.mta_sent(out[at + 4]),
                Side::Milter => self.next.milter_sent(out[at + 4], &out[at + 5..end]),
            }
            at = end;
        }
        buf.consume(c.len);
        // After the write: handing over (which may wake the writer) never
        // delays a packet.
        if let Some(refused) = self.refused.take() {
            self.batch.refused(refused);
        }
        if c.boundary || self.batch.full() {
            self.batch.hand_over();
        }
        if let Some(e) = c.bad {
            let who = if side == Side::Mta { "MTA" } else { "milter" };
            tracing::warn!(
                connection = self.conn.connection,
                "bad packet from the {who}: {e}; closing both connections"
            );
            self.conn.stop(format!("bad packet from the {who}: {e}"));
            return Err(End);
        }
        Ok(())
    }
}

fn write_failure(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        "write timeout".into()
    } else {
        format!("write error: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use milter_proto::Frame;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn packet(c: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32 + 1).to_be_bytes().to_vec();
        p.push(c);
        p.extend_from_slice(payload);
        p
    }

    fn read_packet(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut p = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut p).ok()?;
        Some((p[0], p[1..].to_vec()))
    }

    /// A milter that answers each header after `delay(n)` (n counts the
    /// headers), end of message with a header and accept, and closes at the
    /// end of the proxy's stream.
    fn milter(mut s: UnixStream, delay: fn(usize) -> Duration) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut headers = 0;
            while let Some((c, _)) = read_packet(&mut s) {
                let answer = match c {
                    code::OPTNEG => vec![packet(b'O', &[0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0])],
                    code::HEADER => {
                        std::thread::sleep(delay(headers));
                        headers += 1;
                        vec![packet(answer::CONTINUE, b"")]
                    }
                    code::BODYEOB => vec![
                        packet(answer::ADDHEADER, b"X-Seen\0yes\0"),
                        packet(answer::ACCEPT, b""),
                    ],
                    _ => continue,
                };
                for a in answer {
                    s.write_all(&a).unwrap();
                }
            }
        })
    }

    /// Relays one connection through `relays`: negotiation, `headers`
    /// headers each with its macros, end of message, then the MTA's half
    /// close; returns what the MTA read and what was recorded.
    fn converse(
        relays: &Arc<Relays>,
        headers: usize,
        delay: fn(usize) -> Duration,
    ) -> (Vec<u8>, Vec<(Side, u8)>) {
        let (mta_end, mut mta) = UnixStream::pair().unwrap();
        let (milter_end, m) = UnixStream::pair().unwrap();
        let answers = milter(m, delay);
        let settings = Arc::new(Settings {
            writer: Arc::default(),
            to: "unix:/nonexistent".parse().unwrap(),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let slot = relays.reserve().unwrap();
        relays.start(
            slot,
            1,
            Instant::now(),
            Stream::Unix(mta_end),
            Stream::Unix(milter_end),
            settings,
            tx,
        );
        mta.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut offer = 6u32.to_be_bytes().to_vec();
        offer.extend(0x1FFu32.to_be_bytes());
        offer.extend(0x1F_FFFFu32.to_be_bytes());
        mta.write_all(&packet(code::OPTNEG, &offer)).unwrap();
        let mut got = vec![read_packet(&mut mta).unwrap().0];
        for n in 0..headers {
            let mut p = packet(code::MACRO, b"Li\0Q1\0");
            p.extend(packet(code::HEADER, format!("X-{n}\0v\0").as_bytes()));
            mta.write_all(&p).unwrap();
            got.push(read_packet(&mut mta).unwrap().0);
        }
        mta.write_all(&packet(code::BODYEOB, b"")).unwrap();
        got.push(read_packet(&mut mta).unwrap().0);
        got.push(read_packet(&mut mta).unwrap().0);
        mta.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        mta.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"", "the milter's close passed on");
        answers.join().unwrap();
        let mut recorded = Vec::new();
        while let Some(note) = rx.blocking_recv() {
            match note {
                Note::Packets { packets, .. } => recorded.extend(
                    packets
                        .into_iter()
                        .map(|(side, _, f): (Side, u64, Frame)| (side, f.code)),
                ),
                Note::Closed { reason, .. } => {
                    assert_eq!(reason, "closed");
                    break;
                }
                _ => {}
            }
        }
        (got, recorded)
    }

    /// What the conversation of [`converse`] must look like, as relayed
    /// and as recorded, whatever the spinning.
    fn check(headers: usize, got: &[u8], recorded: &[(Side, u8)]) {
        let mut want = vec![b'O'];
        want.extend(std::iter::repeat_n(b'c', headers));
        want.extend([b'h', b'a']);
        assert_eq!(got, want, "every answer reached the MTA, in order");
        let mut order = vec![(Side::Mta, b'O'), (Side::Milter, b'O')];
        for _ in 0..headers {
            order.extend([(Side::Mta, b'D'), (Side::Mta, b'L'), (Side::Milter, b'c')]);
        }
        order.extend([
            (Side::Mta, b'E'),
            (Side::Milter, b'h'),
            (Side::Milter, b'a'),
        ]);
        assert_eq!(
            recorded, order,
            "recorded as relayed, commands before answers"
        );
    }

    #[test]
    fn spinning_relays_every_packet_in_order_whether_the_answer_comes_during_the_spin_or_after() {
        // Spins of 20 ms; every third header is answered after 60 ms, so
        // that spin finds nothing and the thread blocks, the others at once.
        let relays = Relays::unwatched(4, Spin::new(20_000));
        let delay = |n: usize| Duration::from_millis(if n % 3 == 2 { 60 } else { 0 });
        let (got, recorded) = converse(&relays, 12, delay);
        check(12, &got, &recorded);
        let (hits, misses) = relays.spins();
        assert!(hits > 0, "answers found while spinning ({hits}, {misses})");
        assert!(
            misses > 0,
            "slow answers outlast the spin ({hits}, {misses})"
        );
    }

    #[test]
    fn a_connection_whose_spins_find_nothing_rests_and_still_relays_all() {
        // Every header answered after 5 ms, the spin 1 ms: after three
        // empty spins the connection blocks at once for a while.
        let relays = Relays::unwatched(4, Spin::new(1_000));
        let (got, recorded) = converse(&relays, 20, |_| Duration::from_millis(5));
        check(20, &got, &recorded);
        let (hits, misses) = relays.spins();
        assert!(misses >= MISSES_BEFORE_REST as u64, "{hits} {misses}");
        assert!(
            hits + misses < 20 + 2,
            "fewer spins than waits for an answer: the connection rested ({hits}, {misses})"
        );
    }

    #[test]
    fn with_spinning_off_the_relay_never_spins_and_relays_the_same() {
        let relays = Relays::unwatched(4, Spin::new(0));
        let (got, recorded) = converse(&relays, 6, |_| Duration::ZERO);
        check(6, &got, &recorded);
        assert_eq!(relays.spins(), (0, 0));
    }

    #[test]
    fn an_awaited_command_owes_an_answer_until_its_final_one() {
        let mut n = Next::default();
        n.mta_sent(code::OPTNEG);
        assert!(n.soon(), "the negotiation is answered at once");
        // The milter answers the offer: no reply to headers.
        let mut optneg = 6u32.to_be_bytes().to_vec();
        optneg.extend(0u32.to_be_bytes());
        optneg.extend(Protocol::NR_HEADER.bits().to_be_bytes());
        n.milter_sent(answer::OPTNEG, &optneg);
        assert!(n.soon(), "after the negotiation the MTA connects at once");
        n.mta_sent(code::MACRO);
        assert!(n.soon(), "macros precede their command");
        n.mta_sent(code::CONNECT);
        assert!(n.soon(), "connect awaits its answer");
        n.milter_sent(answer::CONTINUE, b"");
        assert!(!n.soon(), "after connect the MTA waits on the SMTP client");
        n.mta_sent(code::MAIL);
        n.milter_sent(answer::CONTINUE, b"");
        assert!(!n.soon());
        n.mta_sent(code::HEADER);
        assert!(n.soon(), "a header not answered: the next part follows");
        n.mta_sent(code::EOH);
        assert!(n.soon(), "end of headers awaits its answer");
        n.milter_sent(answer::CONTINUE, b"");
        assert!(n.soon(), "after it, the body follows at once");
        n.mta_sent(code::BODYEOB);
        n.milter_sent(answer::ADDHEADER, b"");
        n.milter_sent(answer::PROGRESS, b"");
        assert!(n.soon(), "modifications and progress are not the answer");
        n.milter_sent(answer::ACCEPT, b"");
        assert!(!n.soon(), "after end of message the next one waits on SMTP");
        n.mta_sent(code::ABORT);
        assert!(!n.soon(), "abort awaits nothing");
    }
}
