//! One MTA connection's packets: how they are cut off the stream, which
//! the proxy may change, and how they reach the transcript writer (the
//! threads that move them are in `super::relay`).
//!
//! Each packet is cut off the stream by the protocol core's
//! [`FrameDecoder`] rules and written to the other side as it came
//! (re-framing a packet gives the same bytes). It is copied into the
//! connection's [`Batch`] just before it is written on, so that an answer
//! (read by the other direction's thread) is never recorded before its
//! command; all other recording work happens after the write or on the
//! writer's thread. The only packet the proxy may change is the MTA's
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use milter_proto::{
    Actions, Command, DataSize, Frame, FrameDecoder, FrameError, MAX_VERSION, OptNeg, Protocol,
    command::code,
};
use minimilter::SocketSpec;
use serde_json::{Value, json};

use super::priority::WriterPriority;
use super::socket::Stream;
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

/// What every connection shares.
pub struct Settings {
    /// The transcript writer's priority (raised when a relay finds its
    /// queue filling up).
    pub writer: Arc<WriterPriority>,
    /// The real milter.
    pub to: SocketSpec,
    /// Connecting to the milter.
    pub connect_timeout: Duration,
    /// Neither side sent anything for this long: both are closed.
    pub idle_timeout: Duration,
    /// Writing one packet to either side.
    pub write_timeout: Duration,
}

/// Which side sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The MTA (commands).
    Mta,
    /// The milter (responses).
    Milter,
}

/// What a relay tells the transcript writer (`super::writer`). The relay
/// only collects packets (payloads copied into one block per many packets) and
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
    /// Recording of a connection stopped (the queue was full) and starts
    /// again here, at a transaction boundary: the writer forgets what it
    /// had of the connection and starts over from `context`.
    Resumed {
        /// Connection number.
        connection: u64,
        /// When the connection began (milliseconds since the Unix epoch).
        started_unix_ms: u64,
        /// What the proxy refused of the offer, if anything.
        refused: Option<Value>,
        /// The packets that every transcript of the connection repeats:
        /// the negotiation, then the current SMTP session's packets before
        /// its first transaction (connect, HELO, their macros and answers).
        context: Vec<(Side, u64, Frame)>,
        /// Transactions the MTA began on the connection before this point
        /// (recorded or not): the next one is number `transactions + 1`.
        transactions: u64,
    },
    /// The connection ended.
    Closed {
        /// Connection number.
        connection: u64,
        /// When, in microseconds since it began.
        at_us: u64,
        /// Why.
        reason: String,
        /// Recording had stopped (the writer's queue was full) and had not
        /// resumed: the writer's unfinished transcript is incomplete.
        lost: bool,
        /// Transactions the MTA began on the connection, recorded or not.
        transactions: u64,
    },
}

/// Transcripts given up because the writer's queue was full (counted by
/// the relays, reported by the writer).
pub static CONNECTIONS_NOT_RECORDED: AtomicU64 = AtomicU64::new(0);

/// Connects to the milter; the socket is then handed to the relay's
/// threads in blocking mode.
pub async fn open(spec: &SocketSpec) -> std::io::Result<Stream> {
    match spec {
        SocketSpec::Unix(path) => Stream::unix(tokio::net::UnixStream::connect(path).await?),
        SocketSpec::Inet { host, port, v6 } => {
            let host = match (host.as_str(), v6) {
                ("" | "*", false) => "127.0.0.1",
                ("" | "*", true) => "::1",
                (h, _) => h,
            };
            Stream::tcp(tokio::net::TcpStream::connect((host, *port)).await?)
        }
    }
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

/// Bytes of the block the recorded payloads are copied into (see
/// [`Batch`]); a larger payload gets a block of its own size.
const ARENA: usize = 64 * 1024;

/// Most packets kept as a connection's context (see [`Note::Resumed`]);
/// a session with more before its first transaction is not resumed.
const CONTEXT_PACKETS: usize = 64;

/// A connection's packets on their way to the writer. When the writer's
/// queue is full the connection stops recording (its packets are dropped,
/// counted and logged) and the mail goes on: recording never waits. It
/// resumes at the next transaction boundary (the MTA's first packet of a
/// transaction, or of a new SMTP session after `K`), from a copy of the
/// connection's context kept for that.
pub struct Batch {
    connection: u64,
    started_unix_ms: u64,
    tx: Sender<Note>,
    writer: Arc<WriterPriority>,
    packets: Vec<(Side, u64, Frame)>,
    bytes: usize,
    /// The recorded packets' payloads, copied out of the read buffer (so
    /// that buffer is never shared and is reused for the connection's
    /// life); handed to the writer as slices of one block, a new block
    /// every [`ARENA`] bytes or so.
    arena: BytesMut,
    /// Recording is stopped (the writer's queue was full).
    pub lost: bool,
    /// Transactions the MTA began (MAIL, or MAIL's macros when MAIL is
    /// negotiated away), recorded or not.
    pub transactions: u64,
    /// The last MTA packet was MAIL's macros (the MAIL that follows is
    /// the same transaction).
    after_mail_macros: bool,
    /// The negotiation and the current SMTP session's packets before its
    /// first transaction; `None` once too long to keep.
    context: Option<Vec<(Side, u64, Frame)>>,
    /// Packets of `context` that are the negotiation (kept across `K`).
    negotiation_len: usize,
    /// Still adding to `context` (no transaction yet in this session).
    in_context: bool,
    /// The next MTA packet begins a new SMTP session (it follows `K`).
    session_start: bool,
    refused: Option<Value>,
}

impl Batch {
    pub fn new(
        connection: u64,
        started_unix_ms: u64,
        tx: Sender<Note>,
        writer: Arc<WriterPriority>,
    ) -> Batch {
        Batch {
            connection,
            started_unix_ms,
            tx,
            writer,
            packets: Vec::with_capacity(32),
            bytes: 0,
            arena: BytesMut::new(),
            lost: false,
            transactions: 0,
            after_mail_macros: false,
            context: Some(Vec::new()),
            negotiation_len: 0,
            in_context: true,
            session_start: false,
            refused: None,
        }
    }

    #[cfg(test)]
    fn push(&mut self, side: Side, at_us: u64, frame: Frame) {
        self.push_raw(side, at_us, frame.code, &frame.payload);
    }

    /// Takes a packet as relayed: its code and payload (in the read buffer).
    fn push_raw(&mut self, side: Side, at_us: u64, code: u8, payload: &[u8]) {
        let (mut boundary, mut starts) = (false, false);
        if side == Side::Mta {
            let mail_macros = code == code::MACRO && payload.first() == Some(&code::MAIL);
            starts = mail_macros || (code == code::MAIL && !self.after_mail_macros);
            self.after_mail_macros = mail_macros;
            boundary = starts || std::mem::take(&mut self.session_start);
            if starts {
                self.transactions += 1;
                self.in_context = false;
            }
            if code == code::QUIT_NC {
                self.session_start = true;
                self.in_context = true;
                if let Some(c) = &mut self.context {
                    c.truncate(self.negotiation_len);
                }
            }
        }
        if self.lost && boundary {
            // `transactions` already counts the one this packet begins.
            self.resume(self.transactions - u64::from(starts));
        }
        if self.in_context
            && let Some(c) = &mut self.context
        {
            if c.len() < CONTEXT_PACKETS {
                // A copy of its own: a slice of the arena would keep a
                // whole block for as long as the connection lasts.
                let copy = Frame {
                    code,
                    payload: Bytes::copy_from_slice(payload),
                };
                c.push((side, at_us, copy));
                if side == Side::Milter && code == code::OPTNEG && self.negotiation_len == 0 {
                    self.negotiation_len = c.len();
                }
            } else {
                self.context = None;
            }
        }
        if self.lost {
            return;
        }
        if self.arena.capacity() < payload.len() {
            self.arena.reserve(payload.len().max(ARENA));
        }
        self.arena.extend_from_slice(payload);
        let payload = self.arena.split().freeze();
        self.bytes += payload.len();
        self.packets.push((side, at_us, Frame { code, payload }));
    }

    /// Tries to start recording again (at a boundary): the writer is told
    /// to start the connection over from its context.
    fn resume(&mut self, before: u64) {
        let Some(context) = &self.context else {
            return;
        };
        // Only once a sixteenth of the queue is free (room for this note
        // and the transactions after it): a connection resumed into a
        // nearly full queue stops again at its next hand-over, having
        // recorded nothing.
        if self.tx.capacity() < self.tx.max_capacity().div_ceil(16) {
            return;
        }
        let note = Note::Resumed {
            connection: self.connection,
            started_unix_ms: self.started_unix_ms,
            refused: self.refused.clone(),
            context: context.clone(),
            transactions: before,
        };
        // The writer logs the resumption, with the gap.
        if self.tx.try_send(note).is_ok() {
            self.lost = false;
        }
    }

    pub fn full(&self) -> bool {
        self.packets.len() >= BATCH_PACKETS || self.bytes >= BATCH_BYTES
    }

    pub fn send(&mut self, note: Note) {
        if self.lost {
            return;
        }
        let sent = self.tx.try_send(note);
        // Three quarters full: the writer is falling behind; it gets a
        // share of the CPU until it has caught up (see `super::priority`).
        if self.tx.capacity() < self.tx.max_capacity() / 4 {
            self.writer.behind();
        }
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = sent {
            self.lost = true;
            self.packets = Vec::new();
            self.bytes = 0;
            let n = CONNECTIONS_NOT_RECORDED.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                connection = self.connection,
                not_recorded = n,
                "transcript writer is behind; this connection's unfinished transcript is \
                 dropped and recording resumes at its next transaction (mail is unaffected)"
            );
        }
    }

    pub fn refused(&mut self, refused: Value) {
        self.hand_over();
        self.refused = Some(refused.clone());
        let connection = self.connection;
        self.send(Note::Refused {
            connection,
            refused,
        });
    }

    pub fn hand_over(&mut self) {
        if self.lost || self.packets.is_empty() {
            return;
        }
        let packets = std::mem::replace(&mut self.packets, Vec::with_capacity(32));
        self.bytes = 0;
        let connection = self.connection;
        self.send(Note::Packets {
            connection,
            packets,
        });
    }
}

/// What [`cut`] found at the front of the bytes read.
#[derive(Debug)]
pub struct Cut {
    /// Bytes that are complete packets: relayed, then dropped from the
    /// read buffer.
    pub len: usize,
    /// What to relay instead of those bytes, if not them as read: the
    /// narrowed offer, then the rest as read.
    pub replaced: Option<Vec<u8>>,
    /// The framing error that stopped the cutting, if one did (the packets
    /// before it are still relayed).
    pub bad: Option<FrameError>,
    /// An MTA packet ended a transaction or session (abort, MAIL, quit: a
    /// good moment to hand the batch over).
    pub boundary: bool,
}

/// Cuts the complete packets at the front of `data` and hands each to
/// `batch` for the writer. What is relayed is those very packets as read
/// (no re-framing), except that the offer (first MTA packet) may be
/// narrowed (and `refused` says how).
pub fn cut(
    side: Side,
    data: &[u8],
    dec: &FrameDecoder,
    first_from_mta: &mut bool,
    refused: &mut Option<Value>,
    batch: &mut Batch,
    at_us: u64,
) -> Cut {
    // The length of the complete packets at the front: those the decoder
    // would return (the same checks, in the same order).
    let judge = |at: usize| {
        data.get(at..at + 4)
            .map(|h| dec.judge_len(u32::from_be_bytes([h[0], h[1], h[2], h[3]])))
    };
    let mut n = 0;
    while let Some(Ok(len)) = judge(n) {
        if data.len() - n - 4 < len {
            break;
        }
        n += 4 + len;
    }
    // What is left is a partial packet or a bad one; its length field says
    // which, by the decoder's rules.
    let bad = judge(n).and_then(Result::err);
    let mut replaced = None;
    let mut boundary = false;
    let mut off = 0;
    while off < n {
        let len =
            u32::from_be_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        let code = data[off + 4];
        let payload = &data[off + 5..off + 4 + len];
        off += 4 + len;
        if side == Side::Mta
            && std::mem::take(first_from_mta)
            && code == code::OPTNEG
            && let Ok(Command::OptNeg(offer)) = Command::parse(Frame {
                code,
                payload: Bytes::copy_from_slice(payload),
            })
            && relayable(&offer) != offer
        {
            let r = json!({
                "version": (offer.version > MAX_VERSION).then_some(offer.version),
                "actions": (offer.actions - Actions::all()).bits(),
                "protocol": (offer.protocol - Protocol::all()).bits(),
            });
            tracing::warn!("the MTA offered options this proxy cannot relay exactly; refused: {r}");
            *refused = Some(r);
            // The offer is the first packet: what is relayed is the
            // narrowed offer, then the rest as read.
            let mut narrowed = BytesMut::new();
            Command::OptNeg(relayable(&offer)).encode(&mut narrowed);
            let mut out = narrowed.to_vec();
            out.extend_from_slice(&data[off..n]);
            replaced = Some(out);
            if let Ok(Some(nf)) = dec.decode(&mut narrowed) {
                batch.push_raw(side, at_us, nf.code, &nf.payload);
            }
            continue;
        }
        boundary |= side == Side::Mta
            && matches!(code, code::ABORT | code::MAIL | code::QUIT | code::QUIT_NC);
        batch.push_raw(side, at_us, code, payload);
    }
    Cut {
        len: n,
        replaced,
        bad,
        boundary,
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
mod cut_tests {
    use super::*;

    fn encoded(c: Command) -> Vec<u8> {
        let mut b = BytesMut::new();
        c.encode(&mut b);
        b.to_vec()
    }

    fn offer(actions: u32, protocol: u32) -> Command {
        Command::OptNeg(OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(actions),
            protocol: Protocol::from_bits_retain(protocol),
            macros: vec![],
        })
    }

    /// Cuts `bytes` as the relay does: what it relays, the error, whether
    /// a boundary was seen, what stays in the read buffer, and the codes
    /// of the packets handed to the batch.
    fn run(bytes: &[u8], first: bool) -> (Vec<u8>, Option<FrameError>, bool, Vec<u8>, Vec<u8>) {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let mut batch = Batch::new(1, 0, tx, Arc::default());
        let mut first = first;
        let mut refused = None;
        let dec = FrameDecoder::new(MAX_PAYLOAD);
        let c = cut(
            Side::Mta,
            bytes,
            &dec,
            &mut first,
            &mut refused,
            &mut batch,
            5,
        );
        let codes = batch.packets.iter().map(|(_, _, f)| f.code).collect();
        let out = c.replaced.unwrap_or_else(|| bytes[..c.len].to_vec());
        (out, c.bad, c.boundary, bytes[c.len..].to_vec(), codes)
    }

    #[test]
    fn complete_packets_go_on_as_read_and_a_partial_one_waits() {
        let mut stream = encoded(offer(0x1FF, 0x1F_FFFF));
        stream.extend(encoded(Command::Helo(Bytes::from_static(b"client"))));
        stream.extend(encoded(Command::Mail(vec![Bytes::from_static(b"<a@b>")])));
        let whole = stream.len();
        let partial = encoded(Command::Body(Bytes::from_static(b"0123456789")));
        stream.extend(&partial[..7]);
        let (out, bad, boundary, rest, codes) = run(&stream, true);
        assert_eq!(&out[..], &stream[..whole], "the same bytes, not re-framed");
        assert_eq!(
            &rest[..],
            &partial[..7],
            "the partial packet stays for the next read"
        );
        assert_eq!((bad, boundary), (None, true));
        assert_eq!(codes, b"OHM");
    }

    #[test]
    fn packets_before_a_bad_one_are_relayed_and_the_error_returned() {
        let mut stream = encoded(Command::Helo(Bytes::from_static(b"client")));
        let good = stream.len();
        stream.extend([0, 0, 0, 0, b'X']);
        let (out, bad, _, _, codes) = run(&stream, false);
        assert_eq!(&out[..], &stream[..good]);
        assert_eq!(bad, Some(FrameError::Empty));
        assert_eq!(codes, b"H");
        let mut stream = encoded(Command::Quit);
        stream.extend(u32::MAX.to_be_bytes());
        let (out, bad, boundary, _, _) = run(&stream, false);
        assert_eq!(&out[..], &encoded(Command::Quit)[..]);
        assert!(matches!(bad, Some(FrameError::TooLong { .. })));
        assert!(boundary);
    }

    #[test]
    fn an_offer_with_unknown_bits_is_relayed_narrowed_and_the_rest_as_read() {
        let mut stream = encoded(offer(0x1FF | 0x1000, 0x1F_FFFF));
        let rest = encoded(Command::Helo(Bytes::from_static(b"client")));
        stream.extend(&rest);
        let (out, _, _, _, _) = run(&stream, true);
        let mut want = encoded(offer(0x1FF, 0x1F_FFFF));
        want.extend(&rest);
        assert_eq!(&out[..], &want[..]);
        // Only the first MTA packet is an offer to narrow.
        let (out, _, _, _, _) = run(&stream, false);
        assert_eq!(&out[..], &stream[..]);
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use crate::record::{store, writer};
    use crate::transcript::Bodies;
    use crate::transcript::file::Transcript;
    use bytes::Bytes;
    use milter_proto::{ConnectAddress, Response};
    use tokio::sync::mpsc::Receiver;

    fn frame(encode: impl FnOnce(&mut BytesMut)) -> Frame {
        let mut b = BytesMut::new();
        encode(&mut b);
        FrameDecoder::new(MAX_PAYLOAD)
            .decode(&mut b)
            .unwrap()
            .unwrap()
    }

    fn mta(c: Command) -> (Side, Frame) {
        (Side::Mta, frame(|b| c.encode(b)))
    }

    fn milter(r: Response) -> (Side, Frame) {
        (Side::Milter, frame(|b| r.encode(b)))
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn negotiation() -> Vec<(Side, Frame)> {
        let o = |actions, protocol| OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(actions),
            protocol: Protocol::from_bits_retain(protocol),
            macros: vec![],
        };
        vec![
            mta(Command::OptNeg(o(0x1FF, 0x1F_FFFF))),
            milter(Response::OptNeg(o(0x1, 0))),
        ]
    }

    fn session(host: &str) -> Vec<(Side, Frame)> {
        vec![
            mta(Command::Macro {
                stage: b'C',
                pairs: vec![(b("j"), b("mx"))],
            }),
            mta(Command::Connect {
                hostname: b(host),
                address: ConnectAddress::Unknown,
            }),
            milter(Response::Continue),
            mta(Command::Helo(b("client"))),
            milter(Response::Continue),
        ]
    }

    /// One transaction whose message has subject `n`, accepted with a header.
    fn transaction(n: u32) -> Vec<(Side, Frame)> {
        vec![
            mta(Command::Macro {
                stage: b'M',
                pairs: vec![(b("i"), b(&format!("Q{n}")))],
            }),
            mta(Command::Mail(vec![b("<a@b>")])),
            milter(Response::Continue),
            mta(Command::Header {
                name: b("Subject"),
                value: b(&format!("message {n}")),
            }),
            milter(Response::Continue),
            mta(Command::EndOfMessage(Bytes::new())),
            milter(Response::AddHeader {
                name: b("X-N"),
                value: b(&n.to_string()),
            }),
            milter(Response::Continue),
        ]
    }

    /// Feeds packets to `batch` as the relay does: handed over after the
    /// MTA's MAIL, abort or quit.
    fn relay(batch: &mut Batch, packets: Vec<(Side, Frame)>, clock: &mut u64) {
        for (side, f) in packets {
            *clock += 10;
            let boundary = side == Side::Mta
                && matches!(
                    f.code,
                    code::ABORT | code::MAIL | code::QUIT | code::QUIT_NC
                );
            batch.push(side, *clock, f);
            if boundary {
                batch.hand_over();
            }
        }
    }

    fn drain(rx: &mut Receiver<Note>, into: &mut Vec<Note>) {
        while let Ok(n) = rx.try_recv() {
            into.push(n);
        }
    }

    /// Runs the writer on `notes` and reads back what it wrote.
    fn write_all(notes: Vec<Note>, name: &str) -> (writer::Totals, Vec<Transcript>) {
        let dir = std::env::temp_dir().join(format!("mm-resume-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = store::Store::open(&dir, 1 << 20, 3600).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(notes.len() + 1);
        for n in notes {
            tx.try_send(n).unwrap();
        }
        drop(tx);
        let totals = writer::run(rx, store, Bodies::Keep, &Default::default());
        let read = store::list_transcripts(&dir)
            .unwrap()
            .iter()
            .map(|p| Transcript::read_with(p, true).unwrap())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        (totals, read)
    }

    fn subject(t: &Transcript) -> String {
        t.lines
            .iter()
            .find(|l| l.get("name").and_then(|v| v.as_str()) == Some("Subject"))
            .and_then(|l| l["value"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_full_queue_stops_recording_and_the_next_transaction_resumes_it() {
        // Room for three notes, and the writer reads only when told: the
        // fourth hand-over finds the queue full.
        let (tx, mut rx) = tokio::sync::mpsc::channel(3);
        let mut notes = Vec::new();
        let mut clock = 0;
        let mut batch = Batch::new(7, 1_000, tx.clone(), Arc::default());
        batch.send(Note::Open {
            connection: 7,
            started_unix_ms: 1_000,
        });
        let mut first = negotiation();
        first.extend(session("mx.one"));
        first.extend(transaction(1));
        relay(&mut batch, first, &mut clock); // hands over at MAIL 1
        relay(&mut batch, transaction(2), &mut clock); // at MAIL 2: queue full now
        assert!(!batch.lost);
        let stops = CONNECTIONS_NOT_RECORDED.load(Ordering::Relaxed);
        relay(&mut batch, transaction(3), &mut clock); // MAIL 3 finds it full
        assert!(batch.lost, "recording stopped, and the relay did not wait");
        assert!(CONNECTIONS_NOT_RECORDED.load(Ordering::Relaxed) > stops);
        assert!(batch.packets.is_empty(), "nothing kept while stopped");
        // Still full at the next boundary: MAIL 4 is not recorded either.
        relay(&mut batch, transaction(4), &mut clock);
        assert!(batch.lost);
        // The writer catches up; MAIL 5 resumes recording.
        drain(&mut rx, &mut notes);
        relay(&mut batch, transaction(5), &mut clock);
        assert!(!batch.lost, "resumed at the transaction boundary");
        relay(&mut batch, vec![mta(Command::Quit)], &mut clock);
        drain(&mut rx, &mut notes);
        batch
            .tx
            .try_send(Note::Closed {
                connection: 7,
                at_us: clock,
                reason: "closed".into(),
                lost: batch.lost,
                transactions: batch.transactions,
            })
            .unwrap();
        drain(&mut rx, &mut notes);
        let (totals, ts) = write_all(notes, "txn");
        assert_eq!(
            totals,
            writer::Totals {
                written: 2,
                failed: 0,
                dropped: 1,
                resumed: 1,
                not_recorded: 3,
            },
            "transactions 2 (unfinished at the stop), 3 and 4 not recorded"
        );
        let got: Vec<(u32, String)> = ts.iter().map(|t| (t.transaction, subject(t))).collect();
        assert_eq!(
            got,
            [(1, "message 1".into()), (5, "message 5".into())],
            "numbered as the MTA counted them"
        );
        let resumed = &ts[1];
        assert_eq!(
            resumed.lines[0]["not_recorded_before"], 3,
            "the gap is in the file"
        );
        assert!(!ts[0].lines[0].contains_key("not_recorded_before"));
        // The resumed transcript stands on its own: negotiation, connect
        // and HELO from the kept context, then the whole transaction.
        assert!(resumed.answer.is_some());
        let steps: Vec<&str> = resumed
            .lines
            .iter()
            .filter(|l| l["type"] == "command")
            .map(|l| l["code"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["C", "H", "M", "L", "E"]);
        assert_eq!(resumed.verdict.name, "accept");
        let kinds = |t: &Transcript| -> Vec<String> {
            t.lines
                .iter()
                .map(|l| format!("{} {}", l["type"], l.get("code").unwrap_or(&l["type"])))
                .collect()
        };
        assert_eq!(
            kinds(resumed),
            kinds(&ts[0]),
            "the same lines as a transcript recorded without a stop"
        );
    }

    #[test]
    fn a_connection_that_stops_twice_counts_each_transaction_not_recorded_once() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let mut notes = Vec::new();
        let mut clock = 0;
        let mut batch = Batch::new(3, 1_000, tx.clone(), Arc::default());
        batch.send(Note::Open {
            connection: 3,
            started_unix_ms: 1_000,
        });
        let mut first = negotiation();
        first.extend(session("mx"));
        first.extend(transaction(1));
        relay(&mut batch, first, &mut clock);
        for n in 2..=4 {
            relay(&mut batch, transaction(n), &mut clock);
        }
        assert!(batch.lost, "stopped at MAIL 4 (transaction 3 unfinished)");
        drain(&mut rx, &mut notes);
        relay(&mut batch, transaction(5), &mut clock);
        assert!(!batch.lost, "resumed at MAIL 5");
        // Other connections fill the queue: MAIL 6 stops it again, and
        // MAIL 7 finds no room to resume.
        for other in [90, 91] {
            tx.try_send(Note::Open {
                connection: other,
                started_unix_ms: 0,
            })
            .unwrap();
        }
        relay(&mut batch, transaction(6), &mut clock);
        relay(&mut batch, transaction(7), &mut clock);
        assert!(batch.lost);
        relay(&mut batch, vec![mta(Command::Quit)], &mut clock);
        drain(&mut rx, &mut notes);
        notes.push(Note::Closed {
            connection: 3,
            at_us: clock,
            reason: "closed".into(),
            lost: batch.lost,
            transactions: batch.transactions,
        });
        let (totals, ts) = write_all(notes, "twice");
        let written: Vec<u32> = ts.iter().map(|t| t.transaction).collect();
        assert_eq!(written, [1, 2]);
        assert_eq!(
            (totals.dropped, totals.resumed, totals.not_recorded),
            (2, 1, 5),
            "3 and 4 before the resumption, 5, 6 and 7 after it"
        );
    }

    #[test]
    fn after_a_new_session_on_the_same_connection_recording_resumes_with_its_context() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let mut notes = Vec::new();
        let mut clock = 0;
        let mut batch = Batch::new(9, 2_000, tx.clone(), Arc::default());
        // The Open note is lost too: the queue is full from the start.
        tx.try_send(Note::Open {
            connection: 99,
            started_unix_ms: 0,
        })
        .unwrap();
        tx.try_send(Note::Open {
            connection: 98,
            started_unix_ms: 0,
        })
        .unwrap();
        batch.send(Note::Open {
            connection: 9,
            started_unix_ms: 2_000,
        });
        assert!(batch.lost);
        let mut first = negotiation();
        first.extend(session("mx.one"));
        first.extend(transaction(1));
        first.push(mta(Command::QuitNewConnection));
        relay(&mut batch, first, &mut clock);
        drain(&mut rx, &mut notes);
        // The next SMTP session's first packet resumes recording.
        let mut second = session("mx.two");
        second.extend(transaction(2));
        relay(&mut batch, second, &mut clock);
        assert!(!batch.lost);
        drain(&mut rx, &mut notes);
        relay(&mut batch, vec![mta(Command::Quit)], &mut clock);
        drain(&mut rx, &mut notes);
        batch
            .tx
            .try_send(Note::Closed {
                connection: 9,
                at_us: clock,
                reason: "closed".into(),
                lost: batch.lost,
                transactions: batch.transactions,
            })
            .unwrap();
        drain(&mut rx, &mut notes);
        let (totals, ts) = write_all(notes, "session");
        assert_eq!(
            (totals.written, totals.resumed, totals.not_recorded),
            (1, 1, 1)
        );
        assert_eq!(ts.len(), 1);
        let t = &ts[0];
        assert_eq!((t.connection, t.transaction), (9, 2));
        assert_eq!(subject(t), "message 2");
        assert_eq!(t.lines[0]["not_recorded_before"], 1);
        let hosts: Vec<&str> = t
            .lines
            .iter()
            .filter(|l| l["type"] == "command" && l["code"] == "C")
            .map(|l| l["hostname"].as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            ["mx.two"],
            "the new session's connect, not the old one's"
        );
    }
}
