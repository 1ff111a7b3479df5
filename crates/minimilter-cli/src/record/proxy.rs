//! One MTA connection relayed to the milter, packet by packet.
//!
//! Each packet is cut off the stream by the protocol core's
//! [`FrameDecoder`] and written to the other side as it came (re-framing a
//! packet gives the same bytes), *then* handed to the recorder, so recording
//! never delays a packet. The only packet the proxy may change is the MTA's
//! option negotiation offer: bits it does not know (a future protocol
//! version, flag or action) are refused, because the proxy could not record
//! what they do to the conversation; it logs which.
//!
//! Failure keeps the milter's fail-safe semantics: if the milter cannot be
//! reached, the MTA's connection is closed before anything is said on it,
//! so the MTA applies its `milter_default_action` as with the milter down;
//! if either side breaks the framing, both connections are closed (the MTA
//! again applies its default action, the milter sees the MTA leave).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use milter_proto::{
    Actions, Command, DataSize, Frame, FrameDecoder, FrameError, MAX_VERSION, OptNeg, Protocol,
    command::code,
};
use minimilter::SocketSpec;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

/// Largest packet payload relayed, either way: the largest any MTA can
/// negotiate (`SMFIP_MDS_1M`).
pub const MAX_PAYLOAD: usize = DataSize::M1.max_payload();

/// Packets kept before they are handed to the transcript writer even in the
/// middle of a transaction (bounds what a connection holds).
const BATCH_PACKETS: usize = 256;
/// Payload bytes kept before the same.
const BATCH_BYTES: usize = 1 << 20;
/// How long a connection's last note (its end) may wait for room in the
/// writer's queue. The mail is done by then; this only bounds the task.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// What every connection shares.
pub struct Settings {
    /// The real milter.
    pub to: SocketSpec,
    /// Connecting to the milter.
    pub connect_timeout: Duration,
    /// Neither side sent anything for this long: both are closed.
    pub idle_timeout: Duration,
    /// Writing one packet to either side.
    pub write_timeout: Duration,
}

/// A byte stream either way.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Which side sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The MTA (commands).
    Mta,
    /// The milter (responses).
    Milter,
}

/// What a relay tells the transcript writer (`super::writer`). The relay
/// only collects packets (shared with its read buffer, not copied) and
/// their times; parsing them and writing JSON happens on the writer's
/// thread, off the path of the mail.
#[derive(Debug)]
pub enum Note {
    /// A connection began.
    Open {
        /// Connection number.
        connection: u64,
        /// When (milliseconds since the Unix epoch).
        started_unix_ms: u64,
    },
    /// The proxy narrowed the MTA's offer (see [`relayable`]).
    Refused {
        /// Connection number.
        connection: u64,
        /// `{"version": .., "actions": .., "protocol": ..}`
        refused: Value,
    },
    /// Packets as relayed, in order, with the microsecond (since the
    /// connection began) each was relayed at.
    Packets {
        /// Connection number.
        connection: u64,
        /// The packets.
        packets: Vec<(Side, u64, Frame)>,
    },
    /// The connection ended.
    Closed {
        /// Connection number.
        connection: u64,
        /// When, in microseconds since it began.
        at_us: u64,
        /// Why.
        reason: String,
        /// Packets of this connection were dropped because the writer's
        /// queue was full: its unfinished transcript is incomplete.
        lost: bool,
        /// Transactions (MAIL commands) the MTA began after that, which
        /// were not recorded either.
        later_transactions: u64,
    },
}

/// Transcripts given up because the writer's queue was full (counted by
/// the relays, reported by the writer).
pub static CONNECTIONS_NOT_RECORDED: AtomicU64 = AtomicU64::new(0);

async fn open(spec: &SocketSpec) -> std::io::Result<Box<dyn Stream>> {
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

/// The parts of an offer the proxy relays: known actions and protocol
/// flags, versions up to the core's.
pub fn relayable(offer: &OptNeg) -> OptNeg {
    OptNeg {
        version: offer.version.min(MAX_VERSION),
        actions: offer.actions & Actions::all(),
        protocol: offer.protocol & Protocol::all(),
        macros: offer.macros.clone(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A connection's packets on their way to the writer. When the writer's
/// queue is full the connection stops recording (its packets are dropped,
/// counted and logged once) and the mail goes on: recording never waits.
struct Batch {
    connection: u64,
    packets: Vec<(Side, u64, Frame)>,
    bytes: usize,
    lost: bool,
    /// MAIL commands seen since recording stopped.
    later_transactions: u64,
}

impl Batch {
    fn new(connection: u64) -> Batch {
        Batch {
            connection,
            packets: Vec::with_capacity(32),
            bytes: 0,
            lost: false,
            later_transactions: 0,
        }
    }

    fn push(&mut self, side: Side, at_us: u64, frame: Frame) {
        if self.lost {
            if side == Side::Mta && frame.code == code::MAIL {
                self.later_transactions += 1;
            }
            return;
        }
        self.bytes += frame.payload.len();
        self.packets.push((side, at_us, frame));
    }

    fn full(&self) -> bool {
        self.packets.len() >= BATCH_PACKETS || self.bytes >= BATCH_BYTES
    }

    fn send(&mut self, tx: &Sender<Note>, note: Note) {
        if self.lost {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = tx.try_send(note) {
            self.lost = true;
            self.packets = Vec::new();
            let n = CONNECTIONS_NOT_RECORDED.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                connection = self.connection,
                not_recorded = n,
                "transcript writer is behind; this connection's unfinished transcript is \
                 dropped (mail is unaffected)"
            );
        }
    }

    fn hand_over(&mut self, tx: &Sender<Note>) {
        if self.lost || self.packets.is_empty() {
            return;
        }
        let packets = std::mem::replace(&mut self.packets, Vec::with_capacity(32));
        self.bytes = 0;
        let connection = self.connection;
        self.send(
            tx,
            Note::Packets {
                connection,
                packets,
            },
        );
    }
}

/// Cuts the packets in `buf` and appends them to `out` for the other side
/// and to `batch` for the writer; the offer (first MTA packet) may be
/// narrowed (and `refused` says how). Returns the framing error that
/// stopped the cutting, if one did (the packets before it are still
/// relayed), and whether an MTA packet ended a transaction or session
/// (abort, MAIL, quit: a good moment to hand the batch over).
#[allow(clippy::too_many_arguments)]
fn cut(
    side: Side,
    buf: &mut BytesMut,
    dec: &FrameDecoder,
    first_from_mta: &mut bool,
    refused: &mut Option<Value>,
    out: &mut BytesMut,
    batch: &mut Batch,
    at_us: u64,
) -> (Option<FrameError>, bool) {
    let mut boundary = false;
    loop {
        let mut f = match dec.decode(buf) {
            Ok(Some(f)) => f,
            Ok(None) => return (None, boundary),
            Err(e) => return (Some(e), boundary),
        };
        if side == Side::Mta
            && std::mem::take(first_from_mta)
            && f.code == code::OPTNEG
            && let Ok(Command::OptNeg(offer)) = Command::parse(f.clone())
            && relayable(&offer) != offer
        {
            let r = json!({
                "version": (offer.version > MAX_VERSION).then_some(offer.version),
                "actions": (offer.actions - Actions::all()).bits(),
                "protocol": (offer.protocol - Protocol::all()).bits(),
            });
            tracing::warn!("the MTA offered options this proxy cannot relay exactly; refused: {r}");
            *refused = Some(r);
            let mut tmp = BytesMut::new();
            Command::OptNeg(relayable(&offer)).encode(&mut tmp);
            if let Ok(Some(narrowed)) = dec.decode(&mut tmp) {
                f = narrowed;
            }
        }
        milter_proto::encode_frame(f.code, &[&f.payload], out);
        boundary |= side == Side::Mta
            && matches!(
                f.code,
                code::ABORT | code::MAIL | code::QUIT | code::QUIT_NC
            );
        batch.push(side, at_us, f);
    }
}

/// Relays one MTA connection to the milter until both sides have closed,
/// either breaks the framing, or both are idle.
pub async fn relay(
    mut mta: impl Stream,
    connection: u64,
    settings: Arc<Settings>,
    transcripts: Sender<Note>,
) {
    let started = Instant::now();
    let mut milter = match tokio::time::timeout(settings.connect_timeout, open(&settings.to)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(
                connection,
                "cannot connect to the milter {}: {e}; closing the MTA's connection so it applies its default action",
                settings.to
            );
            return;
        }
        Err(_) => {
            tracing::warn!(
                connection,
                "connecting to the milter {} timed out; closing the MTA's connection so it applies its default action",
                settings.to
            );
            return;
        }
    };
    let mut batch = Batch::new(connection);
    batch.send(
        &transcripts,
        Note::Open {
            connection,
            started_unix_ms: unix_ms(),
        },
    );
    let dec = FrameDecoder::new(MAX_PAYLOAD);
    let (mut mta_buf, mut milter_buf) =
        (BytesMut::with_capacity(8192), BytesMut::with_capacity(8192));
    let mut out = BytesMut::with_capacity(8192);
    let (mut mta_open, mut milter_open) = (true, true);
    let mut first_from_mta = true;
    let mut refused = None;
    let at = || started.elapsed().as_micros() as u64;
    // One timer for the whole connection, moved only when it fires early:
    // a fresh timer per read would register and remove a timer entry for
    // every packet.
    let mut last_activity = Instant::now();
    let idle = tokio::time::sleep(settings.idle_timeout);
    tokio::pin!(idle);
    let reason: String = loop {
        if !mta_open && !milter_open {
            break "closed".into();
        }
        let (side, read) = tokio::select! {
            r = mta.read_buf(&mut mta_buf), if mta_open => (Side::Mta, r),
            r = milter.read_buf(&mut milter_buf), if milter_open => (Side::Milter, r),
            () = &mut idle => {
                let due = last_activity + settings.idle_timeout;
                if Instant::now() >= due {
                    break "idle".into();
                }
                idle.as_mut().reset(due.into());
                continue;
            }
        };
        let (buf, to): (&mut BytesMut, &mut dyn Stream) = match side {
            Side::Mta => (&mut mta_buf, &mut milter),
            Side::Milter => (&mut milter_buf, &mut mta),
        };
        let n = read.unwrap_or(0);
        let now = at();
        last_activity = started + Duration::from_micros(now);
        out.clear();
        let mut bad = None;
        let mut boundary = false;
        if n == 0 {
            // End of stream: pass on whatever partial packet was left, then
            // the end itself (a half close), as the other side would have
            // seen it without the proxy.
            out.extend_from_slice(buf);
            buf.clear();
            match side {
                Side::Mta => mta_open = false,
                Side::Milter => milter_open = false,
            }
        } else {
            (bad, boundary) = cut(
                side,
                buf,
                &dec,
                &mut first_from_mta,
                &mut refused,
                &mut out,
                &mut batch,
                now,
            );
        }
        if !out.is_empty() {
            match tokio::time::timeout(settings.write_timeout, to.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break format!("write error: {e}"),
                Err(_) => break "write timeout".into(),
            }
        }
        if n == 0 {
            let _ = to.shutdown().await;
        }
        // After the write: handing over never delays a packet.
        if let Some(refused) = refused.take() {
            batch.hand_over(&transcripts);
            batch.send(
                &transcripts,
                Note::Refused {
                    connection,
                    refused,
                },
            );
        }
        if boundary || batch.full() {
            batch.hand_over(&transcripts);
        }
        if let Some(e) = bad {
            let who = if side == Side::Mta { "MTA" } else { "milter" };
            tracing::warn!(
                connection,
                "bad packet from the {who}: {e}; closing both connections"
            );
            break format!("bad packet from the {who}: {e}");
        }
    };
    batch.hand_over(&transcripts);
    let closed = Note::Closed {
        connection,
        at_us: at(),
        reason,
        lost: batch.lost,
        later_transactions: batch.later_transactions,
    };
    // The writer must hear of every end (it frees the connection's state),
    // so this one note may wait, bounded; both sockets are done with.
    if tokio::time::timeout(CLOSE_WAIT, transcripts.send(closed))
        .await
        .is_err()
    {
        tracing::warn!(
            connection,
            "transcript writer stalled; the connection's end was not recorded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_offers_pass_whole_and_unknown_bits_are_refused() {
        let postfix = OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(0x1FF),
            protocol: Protocol::from_bits_retain(0x1F_FFFF),
            macros: vec![],
        };
        assert_eq!(
            relayable(&postfix),
            postfix,
            "Postfix's offer is relayed as it is"
        );
        let sendmail = OptNeg {
            protocol: Protocol::from_bits_retain(0x1F_FFFF) | Protocol::MDS_256K | Protocol::MDS_1M,
            ..postfix.clone()
        };
        assert_eq!(
            relayable(&sendmail),
            sendmail,
            "so is Sendmail's, packet sizes included"
        );
        let future = OptNeg {
            version: 7,
            actions: Actions::from_bits_retain(0x1FF | 0x1000),
            protocol: Protocol::from_bits_retain(0x1F_FFFF | 0x0040_0000),
            macros: vec![],
        };
        assert_eq!(
            relayable(&future),
            postfix,
            "unknown version, action and flag refused"
        );
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_full_queue_stops_recording_the_connection_without_waiting() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut batch = Batch::new(7);
        let f = |c: u8| Frame {
            code: c,
            payload: bytes::Bytes::from_static(b"x"),
        };
        batch.push(Side::Mta, 1, f(b'M'));
        batch.hand_over(&tx);
        assert!(!batch.lost);
        let before = CONNECTIONS_NOT_RECORDED.load(Ordering::Relaxed);
        batch.push(Side::Milter, 2, f(b'c'));
        batch.hand_over(&tx); // the queue holds one note already
        assert!(batch.lost);
        assert!(CONNECTIONS_NOT_RECORDED.load(Ordering::Relaxed) > before);
        batch.push(Side::Mta, 3, f(b'E'));
        batch.push(Side::Mta, 4, f(b'M'));
        assert!(batch.packets.is_empty(), "nothing kept once lost");
        assert_eq!(batch.later_transactions, 1, "later transactions counted");
        match rx.try_recv() {
            Ok(Note::Packets { packets, .. }) => assert_eq!(packets.len(), 1),
            other => panic!("{other:?}"),
        }
        batch.hand_over(&tx);
        assert!(rx.try_recv().is_err(), "nothing sent once lost");
    }
}
