//! One OpenPGP payload (the decoded body of one MIME leaf), judged as its
//! bytes arrive, in memory that does not grow with its size.
//!
//! The MIME reader undoes the transfer encoding and hands the decoded bytes
//! of a leaf to a [`PayloadReader`], in chunks of any size:
//!
//! ```
//! use pgp_milter::payload::{Encoding, PayloadLimits, PayloadReader};
//! # fn leaf_chunks() -> Vec<&'static [u8]> { vec![b"  \r\n"] }
//! let limits = PayloadLimits::default();
//! let mut reader = PayloadReader::new(Encoding::Auto, &limits);
//! for chunk in leaf_chunks() {
//!     // An error here is final: refuse the message now (early reject).
//!     reader.feed(chunk).unwrap();
//! }
//! let payload = reader.finish().unwrap();
//! assert_eq!(payload.kind, pgp_milter::payload::PayloadKind::Empty);
//! ```
//!
//! * [`Encoding::Armored`]: white space, then one or more ASCII-armored
//!   blocks (RFC 9580 §6.2) separated by white space; any other text is
//!   plaintext. Armor header lines are bounded (count, length, well-formed keys).
//! * [`Encoding::Binary`]: OpenPGP packets (a `.pgp` attachment, the second
//!   part of PGP/MIME sent in binary); only an encrypted message or a key
//!   counts, any other bytes are an ordinary, unencrypted attachment.
//! * [`Encoding::Auto`]: binary if the first byte has its high bit set (every
//!   OpenPGP packet header does, no text character of ASCII does), armored
//!   otherwise. This is the rule today's detector applies to non-text parts.
//!
//! After `feed` has returned an error the reader is spent: further calls
//! return the same error. `finish` after an error returns it too. The same
//! bytes give the same result in any chunking (property test in
//! `tests/payload_reader.rs`, fuzz target `payload_chunking`).
//!
//! # How the MIME side calls it
//!
//! * One reader per leaf that may carry OpenPGP data: `Encoding::Auto` for
//!   attachments and the PGP/MIME payload part, `Encoding::Armored` for
//!   `text/*` parts. A white-space-only leaf gives [`PayloadKind::Empty`].
//!   The RFC 3156 control part (`Version: 1`) is not OpenPGP data: the MIME
//!   side recognizes it itself.
//! * An error from `feed` or `finish`: refuse with its `Display` text
//!   (prefix it with where the leaf stands), or tempfail when
//!   [`PayloadError::class`] is [`ErrorClass::Internal`].
//! * One decompression budget per message: pass what is left of it in
//!   [`PayloadLimits::max_decompressed_bytes`] and subtract
//!   [`Payload::decompressed_bytes`] afterwards.
//! * Recipient-key checks take [`Block::recipients`], one list per
//!   encrypted block (what [`crate::policy::Policy::judge_message`] wants).
//!
//! What the armor may hold is decided per block, by the same rules as the
//! whole-message detector ([`crate::detect::detect`]):
//!
//! | armor                  | packets                     | [`PayloadKind`]     |
//! |------------------------|-----------------------------|---------------------|
//! | `PGP MESSAGE`          | ESKs + one encrypted packet | `Encrypted`         |
//! | `PGP MESSAGE`          | signed data (§10.3)         | `SignedMessage`     |
//! | `PGP SIGNED MESSAGE`   | signatures (cleartext text) | `CleartextSigned`   |
//! | `PGP SIGNATURE`        | signatures only             | `Signature`         |
//! | `PGP PUBLIC/PRIVATE KEY BLOCK` | a key               | `Key`               |
//!
//! Anything else is refused (a bare literal or unsigned compressed data as
//! [`ErrorClass::Plaintext`], other mismatches as [`ErrorClass::Invalid`]).
//! Whether a `Signature` is allowed where it stands (only as the second
//! part of PGP/MIME signed) is the MIME side's decision, as is whether
//! signed data is acceptable at all (the policy's `require`). A binary
//! payload counts only as `Encrypted` or `Key` (any other packets are an
//! unencrypted attachment), as in the detector.
//!
//! What is stricter than the whole-message detector: armor header lines
//! are bounded in count and length and their keys well formed (see the
//! private `armor` module); a key block may
//! hold only key-block packets (a literal packet riding after a key was
//! accepted before); encrypted-data and Padding packets must look random
//! ([`randomness`]).
//!
//! # Memory
//!
//! The reader holds at most: one armor line that must be read whole (BEGIN,
//! END, header, checksum: bounded by [`PayloadLimits::max_header_line_bytes`]
//! and a small constant), one small packet being collected for rpgp
//! ([`PayloadLimits::max_small_packet_bytes`]), one randomness window
//! (4 KiB ring and a histogram) and the first 64 octets of an encrypted
//! packet. [`Payload::buffer_high_water`] reports an upper bound of what it
//! held at once (the sum of each buffer's largest size): about 5 KiB for
//! an encrypted message of any size. Carried from leaf to leaf of a
//! message ([`Carried`]): the test over small pieces (another ring and
//! histogram once used) and the distinct pieces already tested (at most
//! 64 KiB). A binary payload adds the ZIP/PDF scanner: its first 1 KiB and
//! the fields of candidate ZIP end records (a few in real data, at most
//! 256). Large packet bodies (encrypted data,
//! literal data, padding) are checked while they stream by and never held.
//! Decompression (only signed messages carry Compressed Data outside the
//! encryption) adds an 8 KiB output buffer per nesting level and the
//! decompressor's own state (zlib's 32 KiB window; bzip2 in its small-memory
//! mode, at most about 2.5 MB for a 900k block), and its output is bounded
//! by [`PayloadLimits::max_decompressed_bytes`].
//!
//! # rpgp
//!
//! rpgp sees only small packets (at most `max_small_packet_bytes`) and the
//! first 64 octets of encrypted-data packets, always through
//! [`crate::openpgp::packets`] (bounded input, panics caught and turned
//! into [`ErrorClass::Internal`]). Since no call hands rpgp more than
//! 64 KiB, each is short; running the reader on a blocking thread is no
//! longer needed for rpgp's sake.

mod armor;
mod framing;
mod grammar;
mod key_material;
mod polyglot;
pub mod randomness;
mod subpackets;

use thiserror::Error;

use self::armor::ArmorReader;
use self::framing::{Ctx, PacketStream};
use self::grammar::Shape;
use crate::openpgp::OpenPgpError;
use crate::packets::KeyTarget;

/// How the leaf's decoded bytes carry OpenPGP data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// ASCII armor (text parts, `.asc` attachments, PGP/MIME's armored
    /// second part).
    Armored,
    /// Binary packets.
    Binary,
    /// Decided from the first byte: high bit set means binary.
    Auto,
}

/// The bounds of one payload. [`Default`] is what the milter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Armor header lines (`Version:`, `Comment:`...) per block.
    pub max_header_lines: usize,
    /// Octets of one armor header line (and of a cleartext `Hash:` line),
    /// line end excluded.
    pub max_header_line_bytes: usize,
    /// Largest packet collected whole and handed to rpgp (session keys,
    /// signatures, keys, user IDs and attributes). Larger ones are refused.
    pub max_small_packet_bytes: usize,
    /// Armored blocks per payload.
    pub max_blocks: usize,
    /// Recipients (PKESK packets) per payload.
    pub max_recipients: usize,
    /// Decompressed octets this payload may produce (the caller passes what
    /// is left of the message's budget; see [`Payload::decompressed_bytes`]).
    pub max_decompressed_bytes: u64,
    /// Compressed Data inside Compressed Data, at most this deep.
    pub max_compression_depth: usize,
    /// Bytes of User ID, user attribute (photo ID) and trust packets that
    /// key blocks may hold, in all leaves of a message together: they are
    /// text (or an image) that a key next to an encrypted message could
    /// carry. Real keys have a few User IDs of some 40 bytes each.
    pub max_key_text_bytes: usize,
    /// Encrypted-data and Padding packets must look random
    /// (see the randomness test). Off only in tests of other layers.
    pub require_random_ciphertext: bool,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        PayloadLimits {
            max_header_lines: 5,
            max_header_line_bytes: 96,
            max_small_packet_bytes: 64 << 10,
            max_blocks: 64,
            max_recipients: 1000,
            max_decompressed_bytes: crate::openpgp::MAX_DECOMPRESSED_BYTES as u64,
            max_compression_depth: crate::openpgp::MAX_COMPRESSION_DEPTH,
            max_key_text_bytes: 1024,
            require_random_ciphertext: true,
        }
    }
}

/// What a payload is (for an armored payload of several blocks: the
/// strongest of its blocks, ordered as the detector combines parts:
/// signed over encrypted over key over empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// White space only (no block, no packet).
    Empty,
    /// A key block (public or secret): public data, not a message.
    Key,
    /// Session-key packets and exactly one encrypted-data packet.
    Encrypted,
    /// Signature packets only (detached signature, PGP/MIME signature part).
    Signature,
    /// An inline signed message (`gpg --sign`): signed literal data.
    SignedMessage,
    /// A cleartext-signed text (`PGP SIGNED MESSAGE`).
    CleartextSigned,
}

/// One armored block (or the whole binary payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What the block is.
    pub kind: PayloadKind,
    /// Its PKESK recipients in order (empty unless `Encrypted`;
    /// passphrase-only messages have none).
    pub recipients: Vec<KeyTarget>,
}

/// A payload that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The combined kind of its blocks.
    pub kind: PayloadKind,
    /// The PKESK recipients of all its encrypted blocks, in order.
    pub recipients: Vec<KeyTarget>,
    /// Each block, in order (what the keyring check wants: one recipient
    /// list per encrypted message).
    pub blocks: Vec<Block>,
    /// Octets decompression produced (charge them to the message's budget).
    pub decompressed_bytes: u64,
    /// The most octets the reader held at once (its own buffers).
    pub buffer_high_water: usize,
    /// What the next leaf of the message goes on with
    /// ([`PayloadReader::with_carried`]).
    pub carried: Carried,
}

/// What one leaf hands on to the next leaf of the same message, so that a
/// message of many leaves gets no more than one of a single leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The test over the small pieces that should be random (session-key
    /// fields, short encrypted-data and Padding packets): pieces too short
    /// to judge in one leaf are judged with those of the others.
    pub pieces: Option<Box<randomness::Randomness>>,
    /// Bytes of User ID, user attribute and trust packets in key blocks
    /// (see [`PayloadLimits::max_key_text_bytes`]).
    pub key_text: usize,
    /// The pieces tested so far (up to a bound of bytes): a piece seen
    /// before (the same recipient's key ID in every block, the same
    /// encrypted message attached twice) is not tested again. Repeating
    /// random bytes carries no text, and the repetition itself would look
    /// far from uniform. A `BTreeSet`, not a `HashSet`: the bytes are the
    /// sender's, so no hash of them to aim collisions at, and the order of
    /// work does not depend on a random hash seed (the deterministic fuzz
    /// run of the test command saw different coverage on every run while
    /// this was a `HashSet`).
    pub seen: std::collections::BTreeSet<Vec<u8>>,
    /// Bytes held in `seen`.
    pub seen_bytes: usize,
}

/// How the caller should answer a [`PayloadError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The bytes are (or may be) readable plaintext: not OpenPGP, text next
    /// to the armor, or "ciphertext" that is not random. Reject.
    Plaintext,
    /// OpenPGP that is malformed, of an unknown version, out of grammar or
    /// over a bound. Reject.
    Invalid,
    /// Our own failure (rpgp panicked). Tempfail.
    Internal,
}

/// Why a payload is refused. `Display` is the reason for the SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// No OpenPGP data where it was expected (binary bytes that are not
    /// packets, text that is not armor).
    #[error("not OpenPGP data: {0}")]
    NotOpenPgp(String),
    /// Text next to the armor.
    #[error("text outside the OpenPGP armor")]
    TextOutsideArmor,
    /// Encrypted data or padding whose bytes are not random.
    #[error("not ciphertext: {0}")]
    NotCiphertext(String),
    /// Unencrypted, unsigned data where an OpenPGP message stands (a bare
    /// literal packet) — binary attachments of any other shape too.
    #[error("unencrypted OpenPGP data: {0}")]
    Unencrypted(String),
    /// Malformed armor (headers, base64, checksum, lines).
    #[error("invalid OpenPGP armor: {0}")]
    Armor(String),
    /// Malformed or unknown packets, or packets out of the message grammar.
    #[error("invalid OpenPGP data: {0}")]
    Packets(String),
    /// A packet rpgp refused.
    #[error("invalid OpenPGP data: {0}")]
    Rpgp(OpenPgpError),
    /// A bound of [`PayloadLimits`] was reached.
    #[error("OpenPGP data over a limit: {0}")]
    Limit(String),
    /// Truncated input: `finish` in the middle of a block or packet.
    #[error("OpenPGP data is truncated: {0}")]
    Truncated(String),
    /// Our failure; the message is tempfailed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PayloadError {
    /// How to answer.
    pub fn class(&self) -> ErrorClass {
        match self {
            PayloadError::NotOpenPgp(_)
            | PayloadError::TextOutsideArmor
            | PayloadError::NotCiphertext(_)
            | PayloadError::Unencrypted(_) => ErrorClass::Plaintext,
            PayloadError::Rpgp(OpenPgpError::Panicked(_)) | PayloadError::Internal(_) => {
                ErrorClass::Internal
            }
            PayloadError::Armor(_)
            | PayloadError::Packets(_)
            | PayloadError::Rpgp(_)
            | PayloadError::Limit(_)
            | PayloadError::Truncated(_) => ErrorClass::Invalid,
        }
    }
}

/// The incremental reader of one payload. See the module documentation.
#[derive(Debug)]
pub struct PayloadReader {
    input: Input,
    ctx: Ctx,
    /// A binary payload is also checked for being a ZIP or PDF file.
    polyglot: Option<Box<polyglot::Polyglot>>,
    failed: Option<PayloadError>,
    fed: u64,
}

#[derive(Debug)]
enum Input {
    Auto,
    Armored(ArmorReader),
    Binary(PacketStream),
}

/// What the reader holds besides lines and collected packets once a
/// randomness window is in use: the ring and histogram, the encrypted
/// packet's prefix for rpgp.
const WINDOW_STATE: usize = randomness::WINDOW + 256 * 4 + framing::PREFIX;

impl PayloadReader {
    /// A reader for one leaf.
    pub fn new(encoding: Encoding, limits: &PayloadLimits) -> Self {
        let input = match encoding {
            Encoding::Armored => Input::Armored(ArmorReader::default()),
            Encoding::Binary => Input::Binary(PacketStream::new(0)),
            Encoding::Auto => Input::Auto,
        };
        let polyglot = (matches!(encoding, Encoding::Binary) && limits.require_random_ciphertext)
            .then(Box::default);
        PayloadReader {
            input,
            ctx: Ctx::new(limits.clone()),
            polyglot,
            failed: None,
            fed: 0,
        }
    }

    /// Goes on from the leaves before (their [`Payload::carried`]).
    pub fn with_carried(mut self, carried: Carried) -> Self {
        self.ctx.carried = carried;
        self
    }

    /// The next decoded bytes of the leaf, any chunking. An error is final
    /// (and may come before the end: early reject).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if let Input::Auto = self.input {
            self.input = if bytes[0] & 0x80 != 0 {
                if self.ctx.limits.require_random_ciphertext {
                    self.polyglot = Some(Box::default());
                }
                Input::Binary(PacketStream::new(0))
            } else {
                Input::Armored(ArmorReader::default())
            };
        }
        self.fed += bytes.len() as u64;
        if let Some(p) = &mut self.polyglot {
            p.feed(bytes);
        }
        let r = match &mut self.input {
            Input::Armored(a) => a.feed(bytes, &mut self.ctx),
            Input::Binary(s) => {
                let r = s.feed(bytes, &mut self.ctx);
                r.map_err(|e| binary_error(e, s.nothing_recognized()))
            }
            Input::Auto => Ok(()),
        };
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// The end of the leaf: the verdict.
    pub fn finish(mut self) -> Result<Payload, PayloadError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let blocks = match &mut self.input {
            Input::Auto => Vec::new(),
            Input::Armored(a) => {
                a.finish(&mut self.ctx)?;
                std::mem::take(&mut a.blocks)
            }
            Input::Binary(s) => {
                let r = s.finish(&mut self.ctx);
                let shape = r.map_err(|e| binary_error(e, s.nothing_recognized()))?;
                let kind = match shape {
                    Shape::Encrypted => PayloadKind::Encrypted,
                    Shape::Key => PayloadKind::Key,
                    other => {
                        return Err(PayloadError::Unencrypted(format!(
                            "binary OpenPGP data that is not encrypted ({})",
                            match other {
                                Shape::Signed => "a signed message",
                                Shape::Signatures => "signatures only",
                                _ => "compressed data",
                            }
                        )));
                    }
                };
                vec![Block {
                    kind,
                    recipients: std::mem::take(&mut self.ctx.recipients),
                }]
            }
        };
        if let Some(p) = &self.polyglot {
            p.finish().map_err(PayloadError::NotCiphertext)?;
        }
        if let Some(pieces) = &self.ctx.carried.pieces {
            pieces.finish().map_err(|why| {
                PayloadError::NotCiphertext(format!("session keys and short packets: {why}"))
            })?;
        }
        let kind = combine(&blocks);
        let peak_line = match &self.input {
            Input::Armored(a) => a.peak_line,
            _ => 0,
        };
        Ok(Payload {
            kind,
            recipients: blocks
                .iter()
                .flat_map(|b| b.recipients.iter().cloned())
                .collect(),
            blocks,
            decompressed_bytes: self.ctx.decompressed,
            buffer_high_water: peak_line
                + self.polyglot.as_ref().map_or(0, |p| p.held())
                + self.ctx.peak_collect
                + if self.ctx.used_window {
                    WINDOW_STATE
                } else {
                    0
                }
                + self.ctx.inflate_depth * framing::INFLATE_CHUNK,
            carried: self.ctx.carried,
        })
    }
}

/// In a binary payload, bytes that fail before any packet was recognized
/// are not OpenPGP at all: an ordinary attachment (plaintext).
fn binary_error(e: PayloadError, fresh: bool) -> PayloadError {
    match e {
        PayloadError::Packets(why) | PayloadError::Limit(why) | PayloadError::Truncated(why)
            if fresh =>
        {
            PayloadError::NotOpenPgp(why)
        }
        PayloadError::Rpgp(OpenPgpError::Panicked(p)) => {
            PayloadError::Rpgp(OpenPgpError::Panicked(p))
        }
        PayloadError::Rpgp(e) if fresh => PayloadError::NotOpenPgp(e.to_string()),
        e => e,
    }
}

/// The kind of several blocks: a signature over signed data over encrypted
/// over a key over nothing (the detector's order, with a bare signature
/// first so a caller that refuses it where it stands sees it).
fn combine(blocks: &[Block]) -> PayloadKind {
    let rank = |k: PayloadKind| match k {
        PayloadKind::Empty => 0,
        PayloadKind::Key => 1,
        PayloadKind::Encrypted => 2,
        PayloadKind::SignedMessage | PayloadKind::CleartextSigned => 3,
        PayloadKind::Signature => 4,
    };
    blocks
        .iter()
        .map(|b| b.kind)
        .fold(PayloadKind::Empty, |acc, k| {
            if rank(k) > rank(acc) { k } else { acc }
        })
}
