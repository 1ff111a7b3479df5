//! The relay's threads: each MTA connection is relayed by two OS threads,
//! one per direction, each a loop of blocking `recv(2)`, cut, `send(2)`
//! (as an MTA's own milter client is blocking).
//!
//! Why threads and not the event loop: per hop the loop cost an
//! `epoll_wait` besides the `recvfrom` and `sendto`, and the wake-up went
//! through the runtime; a thread blocked in `recv` is woken by the kernel
//! straight from the peer's `send`. The runtime is left with what is not on
//! the path of the mail: accepting connections and connecting to the
//! milter.
//!
//! What a connection costs: two threads with [`STACK`] of address space
//! each (of which only the pages touched are memory, a few KiB), the two
//! read buffers (16 KiB each while packets are small), and the kernel's
//! task structures. Connections are bounded by `--max-connections`: one
//! beyond it is closed at once, so the MTA applies its default action as
//! with the milter down.
//!
//! Timeouts are the sockets' own: a read that waits `idle_timeout` checks
//! whether the *other* direction was active meanwhile (the timeout is for
//! the connection as a whole) and closes both sides if not; a write has
//! `write_timeout` in all. When a thread ends the connection (a framing
//! error, a write that fails, the idle timeout) it shuts both sockets
//! down, which wakes the other thread at once. An end of stream from one
//! side is passed on as a half close, and the other direction goes on
//! until its own end, as without the proxy.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use milter_proto::FrameDecoder;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use super::proxy::{Batch, MAX_PAYLOAD, Note, Settings, Side, cut, unix_ms};
use super::socket::{ReadBuf, Stream};

/// Address space reserved for each relay thread's stack. The threads run
/// the cutting, the hand-over and, rarely, a log line; 128 KiB leaves room
/// for those many times over, and only the pages used become memory.
pub const STACK: usize = 128 * 1024;

/// How long a connection's last note (its end) may wait for room in the
/// writer's queue. The mail is done by then; this only bounds the thread.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The connections being relayed (or connecting to the milter), bounded.
pub struct Relays {
    max: usize,
    active: AtomicUsize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
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
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Arc<Relays> {
        Arc::new(Relays {
            max,
            active: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
        })
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
    /// from then) to `milter` on two new threads. If a thread cannot be
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
        let started_unix_ms = unix_ms();
        let batch = Batch::new(
            connection,
            started_unix_ms,
            tx.clone(),
            settings.writer.clone(),
        );
        let conn = Arc::new(Conn {
            connection,
            mta,
            milter,
            started: accepted,
            last_activity_us: AtomicU64::new(0),
            batch: Mutex::new(batch),
            reason: Mutex::new(None),
        });
        lock(&self.open).insert(connection, conn.clone());
        let relays = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("relay-{connection}"))
            .stack_size(STACK)
            .spawn(move || {
                // Both let go when the thread ends, even by a panic.
                let _registered = Registered(relays, connection, slot);
                lock(&conn.batch).send(Note::Open {
                    connection,
                    started_unix_ms,
                });
                run(&conn, &settings, &tx);
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

/// One relayed connection, shared by its two threads.
pub struct Conn {
    connection: u64,
    mta: Stream,
    milter: Stream,
    started: Instant,
    /// Microseconds (since `started`) of the last read from either side.
    last_activity_us: AtomicU64,
    /// Both directions' packets, in the order they were relayed: a packet
    /// is added before it is written on, so an answer (which can only
    /// arrive after its command was written) never comes before it.
    batch: Mutex<Batch>,
    /// Why the connection ended, if not by both sides closing.
    reason: Mutex<Option<String>>,
}

impl Conn {
    fn at_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Ends the connection: both sockets are shut down, which wakes the
    /// other thread. The first reason given is the one recorded.
    fn stop(&self, reason: String) {
        lock(&self.reason).get_or_insert(reason);
        let _ = self.mta.shutdown(Shutdown::Both);
        let _ = self.milter.shutdown(Shutdown::Both);
    }
}

/// The connection's thread: relays MTA to milter, with a second thread for
/// milter to MTA, and sends the connection's end to the writer once both
/// are done.
fn run(conn: &Arc<Conn>, settings: &Arc<Settings>, tx: &Sender<Note>) {
    let (c, s) = (conn.clone(), settings.clone());
    let other = std::thread::Builder::new()
        .name(format!("relay-{}-back", conn.connection))
        .stack_size(STACK)
        .spawn(move || pump(&c, Side::Milter, &s));
    match other {
        Ok(other) => {
            pump(conn, Side::Mta, settings);
            let _ = other.join();
        }
        Err(e) => {
            tracing::warn!(
                connection = conn.connection,
                "cannot start a relay thread: {e}; closing the MTA's connection so it applies its default action"
            );
            conn.stop(format!("cannot start a relay thread: {e}"));
        }
    }
    let (lost, transactions) = {
        let mut b = lock(&conn.batch);
        b.hand_over();
        (b.lost, b.transactions)
    };
    let closed = Note::Closed {
        connection: conn.connection,
        at_us: conn.at_us(),
        reason: lock(&conn.reason).take().unwrap_or_else(|| "closed".into()),
        lost,
        transactions,
    };
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

/// Relays what `side` sends to the other side until its end of stream (a
/// half close, passed on), or until the connection is stopped.
fn pump(conn: &Conn, side: Side, settings: &Settings) {
    let (from, to) = match side {
        Side::Mta => (&conn.mta, &conn.milter),
        Side::Milter => (&conn.milter, &conn.mta),
    };
    if let Err(e) = from
        .set_read_timeout(settings.idle_timeout)
        .and_then(|()| to.set_write_timeout(settings.write_timeout))
    {
        conn.stop(format!("setting socket timeouts: {e}"));
        return;
    }
    let dec = FrameDecoder::new(MAX_PAYLOAD);
    let mut buf = ReadBuf::default();
    let mut first_from_mta = side == Side::Mta;
    let mut refused = None;
    let who = if side == Side::Mta { "MTA" } else { "milter" };
    loop {
        let n = match from.read_into(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Idle this way; the connection is idle only if the other
                // way was too.
                let last = Duration::from_micros(conn.last_activity_us.load(Ordering::Relaxed));
                let due = last + settings.idle_timeout;
                let now = conn.started.elapsed();
                if now >= due {
                    conn.stop("idle".into());
                    return;
                }
                let left = (due - now).max(Duration::from_millis(1));
                if let Err(e) = from.set_read_timeout(left) {
                    conn.stop(format!("setting socket timeouts: {e}"));
                    return;
                }
                continue;
            }
            // A reset is the end of the stream, as it was for the peer.
            Err(_) => 0,
        };
        let now = conn.at_us();
        conn.last_activity_us.fetch_max(now, Ordering::Relaxed);
        if n == 0 {
            // End of stream: pass on whatever partial packet was left, then
            // the end itself (a half close), as the other side would have
            // seen it without the proxy.
            let rest = buf.bytes();
            if !rest.is_empty()
                && let Err(e) = to.write_all(rest, settings.write_timeout)
            {
                conn.stop(write_failure(&e));
                return;
            }
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
        let c = {
            let mut batch = lock(&conn.batch);
            cut(
                side,
                buf.bytes(),
                &dec,
                &mut first_from_mta,
                &mut refused,
                &mut batch,
                now,
            )
        };
        let out = c.replaced.as_deref().unwrap_or(&buf.bytes()[..c.len]);
        if !out.is_empty()
            && let Err(e) = to.write_all(out, settings.write_timeout)
        {
            conn.stop(write_failure(&e));
            return;
        }
        buf.consume(c.len);
        // After the write: handing over (which may wake the writer) never
        // delays a packet.
        {
            let mut batch = lock(&conn.batch);
            if let Some(refused) = refused.take() {
                batch.refused(refused);
            }
            if c.boundary || batch.full() {
                batch.hand_over();
            }
        }
        if let Some(e) = c.bad {
            tracing::warn!(
                connection = conn.connection,
                "bad packet from the {who}: {e}; closing both connections"
            );
            conn.stop(format!("bad packet from the {who}: {e}"));
            return;
        }
    }
}

fn write_failure(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        "write timeout".into()
    } else {
        format!("write error: {e}")
    }
}
