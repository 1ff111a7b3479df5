//! Incremental OpenPGP packet framing (RFC 9580 §4.2): packet headers in
//! both formats, every length form, partial body chunks, read from bytes in
//! any chunking without holding large bodies.
//!
//! What happens to a packet's body depends on its tag:
//!
//! * **collected** (session keys, signatures, one-pass signatures, keys,
//!   user IDs and attributes, Marker, Trust, anything unknown): held whole,
//!   up to [`PayloadLimits::max_small_packet_bytes`], then parsed by rpgp
//!   through [`crate::openpgp::packets`] (its isolation: bounded input,
//!   panics caught), which also yields versions and PKESK recipients;
//! * **encrypted data** (SED, SEIPD, AEAD): its first [`PREFIX`] octets are
//!   handed to rpgp as a packet of that length (the version and algorithm
//!   fields are checked there), every octet goes through the randomness
//!   test ([`super::randomness`]), nothing is kept;
//! * **Padding**: the randomness test;
//! * **Literal Data**: its header (format, file name, date) is checked, the
//!   data is skipped;
//! * **Compressed Data**: decompressed as a stream (ZIP, ZLIB, BZip2,
//!   uncompressed) into a nested framing of its own, charged to the
//!   decompression budget and bounded in depth.
//!
//! Partial body lengths are allowed only on the packets RFC 9580 §4.2.1.4
//! allows them on (literal, compressed and encrypted data), and their first
//! chunk must be at least 512 octets — rpgp's rule, which the whole-message
//! detector applies today. A legacy packet of indeterminate length runs to
//! the end of the data.

use super::grammar::{Grammar, Mode, Shape};
use super::key_material::random_fields;
use super::randomness::{MIN_WINDOW, Randomness};
use super::{Carried, PayloadError, PayloadLimits};
use crate::openpgp::{self, OpenPgpError, packet_name};
use crate::packets::{KeyTarget, tag};

/// Octets of an encrypted-data packet handed to rpgp to check its fields
/// (SEIPD v2: 4 octets of fields and a 32-octet salt; AEAD: 4 and an IV).
pub const PREFIX: usize = 64;

/// Octets at the start of an encrypted-data packet left out of the
/// randomness test: version and algorithm octets, which are not random.
const FIXED_FIELDS: usize = 4;

/// Decompressed output is produced in pieces of this size.
pub const INFLATE_CHUNK: usize = 8192;

/// What the framing shares across nested streams of one payload.
#[derive(Debug)]
pub struct Ctx {
    /// The bounds.
    pub limits: PayloadLimits,
    /// Octets decompressed so far.
    pub decompressed: u64,
    /// PKESK recipients of the current block.
    pub recipients: Vec<KeyTarget>,
    /// Most octets held at once by collection buffers.
    pub peak_collect: usize,
    /// A randomness tester was used.
    pub used_window: bool,
    /// Deepest Compressed Data nesting decompressed (each level holds an
    /// output buffer of [`INFLATE_CHUNK`] octets).
    pub inflate_depth: usize,
    /// The randomness test over the small pieces of the message that
    /// should be random but are too short to be tested alone: the random
    /// fields of session-key packets ([`random_fields`]) and encrypted-data
    /// and Padding packets under [`MIN_WINDOW`] octets, all concatenated.
    /// Without it a thousand session-key packets, or many small Padding
    /// packets, could each carry a few hundred octets of text. The caller
    /// may carry it from leaf to leaf (see `PayloadReader::with_carried`),
    /// with the bytes of User IDs and attributes so far.
    pub carried: Carried,
}

impl Ctx {
    /// A fresh context.
    pub fn new(limits: PayloadLimits) -> Self {
        Ctx {
            limits,
            decompressed: 0,
            recipients: Vec::new(),
            peak_collect: 0,
            used_window: false,
            inflate_depth: 0,
            carried: Carried::default(),
        }
    }
}

/// The packets of one sequence (a block, a binary payload, or the contents
/// of Compressed Data).
#[derive(Debug)]
pub struct PacketStream {
    depth: usize,
    grammar: Grammar,
    /// Octets consumed so far (for offsets in reasons).
    offset: u64,
    /// The header being read.
    header: [u8; 6],
    header_len: usize,
    current: Option<Current>,
    /// Packets read completely.
    complete: u64,
}

#[derive(Debug)]
struct Current {
    tag: u8,
    offset: u64,
    /// Octets left in the current chunk (unused if `indeterminate`).
    chunk_left: u64,
    /// More chunks follow this one (partial body length).
    partial: bool,
    /// Legacy indeterminate length: to the end of the data.
    indeterminate: bool,
    /// Reading the length octets of the next chunk.
    length: Option<([u8; 5], usize)>,
    /// Body octets so far.
    body: u64,
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Collect(Vec<u8>),
    /// Header octets of the literal still to come (format, name length,
    /// name, date); the data after them is skipped.
    Literal {
        at: usize,
        need: usize,
    },
    Encrypted {
        prefix: Vec<u8>,
        checked: bool,
        rand: Box<Randomness>,
    },
    Padding(Box<Randomness>),
    Compressed(Box<Compressed>),
}

#[derive(Debug)]
struct Compressed {
    decoder: Option<Decoder>,
    inner: PacketStream,
    ended: bool,
    out: Vec<u8>,
}

enum Decoder {
    Stored,
    Deflate(flate2::Decompress),
    Bzip2(bzip2::Decompress),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Stored => "Stored",
            Decoder::Deflate(_) => "Deflate",
            Decoder::Bzip2(_) => "Bzip2",
        })
    }
}

/// Tags whose bodies stream (may be large, may use partial lengths).
fn streams(t: u8) -> bool {
    matches!(
        t,
        tag::LITERAL | tag::COMPRESSED | tag::SED | tag::SEIPD | tag::AEAD | tag::PADDING
    )
}

fn may_be_partial(t: u8) -> bool {
    matches!(
        t,
        tag::LITERAL | tag::COMPRESSED | tag::SED | tag::SEIPD | tag::AEAD
    )
}

fn bad(t: u8, offset: u64, why: &str) -> PayloadError {
    PayloadError::Packets(format!(
        "bad {} packet at offset {offset}: {why}",
        packet_name(t)
    ))
}

impl PacketStream {
    /// A stream at compression depth `depth` (0: the payload's own packets).
    pub fn new(depth: usize) -> Self {
        PacketStream {
            depth,
            grammar: Grammar::new(if depth == 0 {
                Mode::Top
            } else {
                Mode::InCompressed
            }),
            offset: 0,
            header: [0; 6],
            header_len: 0,
            current: None,
            complete: 0,
        }
    }

    /// True if no packet has been read completely yet (the bytes so far
    /// may not be OpenPGP at all).
    pub fn nothing_recognized(&self) -> bool {
        self.complete == 0
    }

    /// The next octets of the sequence.
    pub fn feed(&mut self, mut bytes: &[u8], ctx: &mut Ctx) -> Result<(), PayloadError> {
        while !bytes.is_empty() {
            let Some(cur) = &mut self.current else {
                let done = self.header_byte(bytes[0])?;
                self.offset += 1;
                bytes = &bytes[1..];
                if let Some((t, len)) = done {
                    self.start(t, len, ctx)?;
                }
                continue;
            };
            if let Some((buf, n)) = &mut cur.length {
                buf[*n] = bytes[0];
                *n += 1;
                bytes = &bytes[1..];
                self.offset += 1;
                match body_length(&buf[..*n]) {
                    None => {}
                    Some(Len::Partial(size)) => {
                        cur.chunk_left = size;
                        cur.length = None;
                    }
                    Some(Len::Fixed(size)) => {
                        cur.chunk_left = size;
                        cur.partial = false;
                        cur.length = None;
                        if size == 0 {
                            self.end_packet(ctx)?;
                        }
                    }
                }
                continue;
            }
            let take = if cur.indeterminate {
                bytes.len()
            } else {
                bytes
                    .len()
                    .min(usize::try_from(cur.chunk_left).unwrap_or(usize::MAX))
            };
            let (now, rest) = bytes.split_at(take);
            bytes = rest;
            self.offset += take as u64;
            sink_feed(cur, now, ctx)?;
            if cur.indeterminate {
                continue;
            }
            cur.chunk_left -= take as u64;
            if cur.chunk_left == 0 {
                if cur.partial {
                    cur.length = Some(([0; 5], 0));
                } else {
                    self.end_packet(ctx)?;
                }
            }
        }
        Ok(())
    }

    /// One header octet; returns the tag and body length once complete.
    fn header_byte(&mut self, b: u8) -> Result<Option<(u8, Framing)>, PayloadError> {
        let at = self.offset - self.header_len as u64;
        if self.header_len == 0 && b & 0x80 == 0 {
            return Err(PayloadError::Packets(format!(
                "not an OpenPGP packet header at offset {at}"
            )));
        }
        self.header[self.header_len] = b;
        self.header_len += 1;
        let h = &self.header[..self.header_len];
        let first = h[0];
        let done = if first & 0x40 != 0 {
            let t = first & 0x3f;
            match body_length(&h[1..]) {
                None => None,
                Some(Len::Fixed(n)) => Some((t, Framing::Fixed(n))),
                Some(Len::Partial(n)) => Some((t, Framing::Partial(n))),
            }
        } else {
            let t = (first >> 2) & 0x0f;
            let need = match first & 3 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => 0,
            };
            if first & 3 == 3 {
                Some((t, Framing::Indeterminate))
            } else if h.len() == 1 + need {
                let n = h[1..]
                    .iter()
                    .fold(0u64, |acc, &o| (acc << 8) | u64::from(o));
                Some((t, Framing::Fixed(n)))
            } else {
                None
            }
        };
        if let Some((t, _)) = done {
            self.header_len = 0;
            if t == 0 {
                return Err(PayloadError::Packets(format!(
                    "packet with the reserved tag 0 at offset {at}"
                )));
            }
        }
        Ok(done)
    }

    fn start(&mut self, t: u8, framing: Framing, ctx: &mut Ctx) -> Result<(), PayloadError> {
        let offset = self.offset;
        let (chunk_left, partial, indeterminate) = match framing {
            Framing::Fixed(n) => (n, false, false),
            Framing::Partial(n) => {
                if !may_be_partial(t) {
                    return Err(bad(
                        t,
                        offset,
                        "partial body length on a packet that may not have one",
                    ));
                }
                if n < 512 {
                    return Err(bad(t, offset, "first partial body chunk under 512 octets"));
                }
                (n, true, false)
            }
            Framing::Indeterminate => (0, false, true),
        };
        self.grammar.packet(t)?;
        let sink = match t {
            tag::LITERAL => Sink::Literal { at: 0, need: 2 },
            tag::SED | tag::SEIPD | tag::AEAD => {
                ctx.used_window = true;
                Sink::Encrypted {
                    prefix: Vec::with_capacity(PREFIX),
                    checked: false,
                    rand: Box::default(),
                }
            }
            tag::PADDING => {
                ctx.used_window = true;
                Sink::Padding(Box::default())
            }
            tag::COMPRESSED => {
                if self.depth >= ctx.limits.max_compression_depth {
                    return Err(PayloadError::Limit(format!(
                        "compressed data nested more than {} deep",
                        ctx.limits.max_compression_depth
                    )));
                }
                ctx.inflate_depth = ctx.inflate_depth.max(self.depth + 1);
                Sink::Compressed(Box::new(Compressed {
                    decoder: None,
                    inner: PacketStream::new(self.depth + 1),
                    ended: false,
                    out: vec![0; INFLATE_CHUNK],
                }))
            }
            _ => {
                debug_assert!(!streams(t));
                if !indeterminate && chunk_left > ctx.limits.max_small_packet_bytes as u64 {
                    return Err(PayloadError::Limit(format!(
                        "{} packet of {chunk_left} octets, over the {}-octet limit",
                        packet_name(t),
                        ctx.limits.max_small_packet_bytes
                    )));
                }
                Sink::Collect(Vec::with_capacity(chunk_left.min(4096) as usize))
            }
        };
        self.current = Some(Current {
            tag: t,
            offset: offset - 1,
            chunk_left,
            partial,
            indeterminate,
            length: None,
            body: 0,
            sink,
        });
        if !partial && !indeterminate && chunk_left == 0 {
            self.end_packet(ctx)?;
        }
        Ok(())
    }

    fn end_packet(&mut self, ctx: &mut Ctx) -> Result<(), PayloadError> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let (t, offset) = (cur.tag, cur.offset);
        match cur.sink {
            Sink::Collect(body) => {
                // A PKESK of a shape rpgp is known to accept is not handed
                // to it (see `pkesk_accepted`); everything else is.
                if t == tag::PKESK
                    && let Some(r) = pkesk_accepted(&body)
                {
                    push_recipient(ctx, r)?;
                } else {
                    let info = validate(t, offset, &body)?;
                    check_version(t, info.version)?;
                    if t == tag::PKESK {
                        let Some(r) = info.recipient else {
                            return Err(unknown_version(t, info.version));
                        };
                        push_recipient(ctx, r)?;
                    }
                }
                let key_text = match t {
                    tag::USER_ID | tag::USER_ATTRIBUTE | tag::TRUST => body.len(),
                    tag::SIGNATURE if self.grammar.in_key_block() => {
                        let (n, values) = super::subpackets::free_text_bytes(&body);
                        if ctx.limits.require_random_ciphertext {
                            for v in values {
                                feed_pieces(ctx, v).map_err(|why| not_random(t, offset, &why))?;
                            }
                        }
                        n
                    }
                    _ => 0,
                };
                if key_text > 0 {
                    ctx.carried.key_text += key_text;
                    if ctx.carried.key_text > ctx.limits.max_key_text_bytes {
                        return Err(PayloadError::Limit(format!(
                            "key blocks with more than {} bytes of User IDs, attributes and signature notes",
                            ctx.limits.max_key_text_bytes
                        )));
                    }
                }
                if matches!(t, tag::PKESK | tag::SKESK) && ctx.limits.require_random_ciphertext {
                    for field in random_fields(t, &body) {
                        feed_pieces(ctx, field).map_err(|why| not_random(t, offset, &why))?;
                    }
                }
            }
            Sink::Literal { need, .. } => {
                if need > 0 {
                    return Err(bad(t, offset, "cut off"));
                }
            }
            Sink::Encrypted {
                prefix,
                checked,
                rand,
            } => {
                if !checked {
                    check_prefix(t, offset, &prefix)?;
                }
                if ctx.limits.require_random_ciphertext {
                    rand.finish().map_err(|why| not_random(t, offset, &why))?;
                    small_piece(ctx, &rand).map_err(|why| not_random(t, offset, &why))?;
                }
            }
            Sink::Padding(rand) => {
                if ctx.limits.require_random_ciphertext {
                    rand.finish().map_err(|why| not_random(t, offset, &why))?;
                    small_piece(ctx, &rand).map_err(|why| not_random(t, offset, &why))?;
                }
            }
            Sink::Compressed(mut c) => {
                c.finish(t, offset, ctx)?;
                let shape = c.inner.finish(ctx)?;
                self.grammar.compressed_contents(shape == Shape::Signed);
            }
        }
        self.complete += 1;
        Ok(())
    }

    /// The end of the data: the sequence's shape.
    pub fn finish(&mut self, ctx: &mut Ctx) -> Result<Shape, PayloadError> {
        if self.header_len > 0 {
            return Err(PayloadError::Truncated(format!(
                "packet header cut off at offset {}",
                self.offset - self.header_len as u64
            )));
        }
        if let Some(cur) = &self.current {
            if !cur.indeterminate {
                return Err(bad(cur.tag, cur.offset, "cut off"));
            }
            self.end_packet(ctx)?;
        }
        self.grammar.finish()
    }
}

/// Bytes of distinct pieces remembered per message; past this, repeated
/// pieces are tested again.
pub const MAX_SEEN_BYTES: usize = 64 << 10;

/// More bytes for the test over the small pieces ([`Ctx::carried`]),
/// unless the same bytes were tested before.
fn feed_pieces(ctx: &mut Ctx, bytes: &[u8]) -> Result<(), String> {
    ctx.used_window = true;
    let c = &mut ctx.carried;
    if c.seen.contains(bytes) {
        return Ok(());
    }
    if c.seen_bytes + bytes.len() <= MAX_SEEN_BYTES {
        c.seen_bytes += bytes.len();
        c.seen.insert(bytes.to_vec());
    }
    ctx.carried.pieces.get_or_insert_default().feed(bytes)
}

/// A packet too short for its own test goes to the small pieces' one.
fn small_piece(ctx: &mut Ctx, rand: &Randomness) -> Result<(), String> {
    match rand.all() {
        Some(all) if rand.total() < MIN_WINDOW as u64 => feed_pieces(ctx, all),
        _ => Ok(()),
    }
}

fn not_random(t: u8, offset: u64, why: &str) -> PayloadError {
    PayloadError::NotCiphertext(format!(
        "{} packet at offset {offset}: {why}",
        packet_name(t)
    ))
}

fn unknown_version(t: u8, version: Option<u8>) -> PayloadError {
    PayloadError::Packets(format!(
        "{} packet of unknown version {}",
        packet_name(t),
        version.map_or_else(|| "(none)".to_string(), |v| v.to_string())
    ))
}

/// The versions the grammar knows (as [`crate::packets`]).
fn check_version(t: u8, version: Option<u8>) -> Result<(), PayloadError> {
    let known: &[u8] = match t {
        tag::PKESK => &[3, 6],
        tag::SKESK => &[4, 5, 6],
        tag::SEIPD => &[1, 2],
        tag::AEAD => &[1],
        _ => return Ok(()),
    };
    match version {
        Some(v) if known.contains(&v) => Ok(()),
        v => Err(unknown_version(t, v)),
    }
}

/// Hands one complete packet body to rpgp (with a fresh five-octet-length
/// header) and returns its summary.
fn validate(t: u8, offset: u64, body: &[u8]) -> Result<openpgp::PacketInfo, PayloadError> {
    let mut packet = Vec::with_capacity(body.len() + 6);
    packet.push(0xc0 | t);
    packet.push(0xff);
    packet.extend_from_slice(&(body.len() as u32).to_be_bytes());
    packet.extend_from_slice(body);
    match openpgp::packets(&packet) {
        Ok(mut infos) if infos.len() == 1 => Ok(infos.remove(0)),
        Ok(_) => Err(bad(t, offset, "malformed")),
        Err(OpenPgpError::Packet { why, .. } | OpenPgpError::Header { why, .. }) => {
            Err(bad(t, offset, &why))
        }
        Err(e @ OpenPgpError::Panicked(_)) => Err(PayloadError::Rpgp(e)),
        Err(e) => Err(bad(t, offset, &e.to_string())),
    }
}

/// rpgp checks the fields at the start of an encrypted-data packet.
///
/// A SEIPD packet whose fields rpgp is known to accept is not handed to
/// it: a call costs about as much as the rest of a small message's
/// payload (a packet buffer, rpgp's readers, its error types), and for
/// these prefixes its answer is fixed (see [`seipd_accepted`]). Every
/// other prefix still gets rpgp's verdict and reason.
fn check_prefix(t: u8, offset: u64, prefix: &[u8]) -> Result<(), PayloadError> {
    if t == tag::SEIPD && seipd_accepted(prefix) {
        return Ok(());
    }
    let info = validate(t, offset, prefix)?;
    check_version(t, info.version)
}

/// One more PKESK recipient of the current block, within the limit.
fn push_recipient(ctx: &mut Ctx, r: KeyTarget) -> Result<(), PayloadError> {
    if ctx.recipients.len() >= ctx.limits.max_recipients {
        return Err(PayloadError::Limit(format!(
            "more than {} public-key session key packets",
            ctx.limits.max_recipients
        )));
    }
    ctx.recipients.push(r);
    Ok(())
}

/// The recipient of a version 3 PKESK body of the two shapes nearly all
/// mail carries (RSA: one MPI; ECDH: an MPI and a length-prefixed wrapped
/// key), when rpgp 0.21 is known to accept it: its
/// `PublicKeyEncryptedSessionKey::try_from_reader` reads the version, the
/// 8-octet key ID, the algorithm and exactly these fields (an MPI of at
/// most 16384 bits), and `Packet::from_reader` refuses a body with
/// octets left over. What rpgp then reports is what this returns (an
/// all-zero key ID is the wildcard). `None` only means "ask rpgp", which
/// also gives the reason for a refusal.
fn pkesk_accepted(body: &[u8]) -> Option<KeyTarget> {
    fn mpi(b: &[u8]) -> Option<&[u8]> {
        let bits = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        if bits > 16384 {
            return None;
        }
        b.get(2 + usize::from(bits.div_ceil(8))..)
    }
    let [3, id @ .., algo] = body.get(..10)? else {
        return None;
    };
    let fields = &body[10..];
    let rest = match algo {
        // RSA (encrypt or sign), RSA encrypt-only.
        1..=3 => mpi(fields)?,
        // ECDH: the ephemeral point, then the wrapped session key.
        18 => {
            let after = mpi(fields)?;
            let (&len, key) = after.split_first()?;
            key.get(usize::from(len)..)?
        }
        _ => return None,
    };
    if !rest.is_empty() {
        return None;
    }
    let id: [u8; 8] = id.try_into().ok()?;
    Some(if id == [0; 8] {
        KeyTarget::Wildcard
    } else {
        KeyTarget::KeyId(id)
    })
}

/// Whether rpgp 0.21's `SymEncryptedProtectedData::try_from_reader`
/// accepts a SEIPD body starting with `prefix` (and ending with it or
/// going on): version 1 is the version octet alone, the rest is data;
/// version 2 is the version, a symmetric and an AEAD algorithm octet
/// (any value: rpgp maps unknown ones and does not fail), a chunk size
/// octet of 0 to 16 (64 B to 4 MiB, RFC 9580 §5.13.2) and a 32-octet
/// salt. Both have a version [`check_version`] knows. A `false` here
/// only means "ask rpgp".
fn seipd_accepted(prefix: &[u8]) -> bool {
    match prefix {
        [1, ..] => true,
        [2, _, _, chunk, ..] => *chunk <= 16 && prefix.len() >= 4 + 32,
        _ => false,
    }
}

fn sink_feed(cur: &mut Current, bytes: &[u8], ctx: &mut Ctx) -> Result<(), PayloadError> {
    let (t, offset, before) = (cur.tag, cur.offset, cur.body);
    cur.body += bytes.len() as u64;
    match &mut cur.sink {
        Sink::Collect(buf) => {
            if buf.len() + bytes.len() > ctx.limits.max_small_packet_bytes {
                return Err(PayloadError::Limit(format!(
                    "{} packet over the {}-octet limit",
                    packet_name(t),
                    ctx.limits.max_small_packet_bytes
                )));
            }
            buf.extend_from_slice(bytes);
            ctx.peak_collect = ctx.peak_collect.max(buf.len());
        }
        Sink::Literal { at, need } => {
            let mut i = 0;
            while *need > 0 && i < bytes.len() {
                if *at == 1 {
                    // The name length: the name and a four-octet date follow.
                    *need = usize::from(bytes[i]) + 4 + 1;
                }
                *at += 1;
                *need -= 1;
                i += 1;
            }
        }
        Sink::Encrypted {
            prefix,
            checked,
            rand,
        } => {
            if !*checked {
                let take = (PREFIX - prefix.len()).min(bytes.len());
                prefix.extend_from_slice(&bytes[..take]);
                if prefix.len() == PREFIX {
                    check_prefix(t, offset, prefix)?;
                    *checked = true;
                }
            }
            if ctx.limits.require_random_ciphertext {
                let skip = (FIXED_FIELDS as u64)
                    .saturating_sub(before)
                    .min(bytes.len() as u64);
                rand.feed(&bytes[skip as usize..])
                    .map_err(|why| not_random(t, offset, &why))?;
            }
        }
        Sink::Padding(rand) => {
            if ctx.limits.require_random_ciphertext {
                rand.feed(bytes)
                    .map_err(|why| not_random(t, offset, &why))?;
            }
        }
        Sink::Compressed(c) => c.feed(t, offset, bytes, ctx)?,
    }
    Ok(())
}

impl Compressed {
    fn feed(
        &mut self,
        t: u8,
        offset: u64,
        mut bytes: &[u8],
        ctx: &mut Ctx,
    ) -> Result<(), PayloadError> {
        if self.decoder.is_none() {
            let Some((&algo, rest)) = bytes.split_first() else {
                return Ok(());
            };
            self.decoder = Some(match algo {
                0 => Decoder::Stored,
                1 => Decoder::Deflate(flate2::Decompress::new(false)),
                2 => Decoder::Deflate(flate2::Decompress::new(true)),
                3 => Decoder::Bzip2(bzip2::Decompress::new(true)),
                a => {
                    return Err(bad(
                        t,
                        offset,
                        &format!("unknown compression algorithm {a}"),
                    ));
                }
            });
            bytes = rest;
        }
        self.run(t, offset, bytes, false, ctx)
    }

    /// Decompresses `input` (and with `last`, flushes) into the inner stream.
    fn run(
        &mut self,
        t: u8,
        offset: u64,
        mut input: &[u8],
        last: bool,
        ctx: &mut Ctx,
    ) -> Result<(), PayloadError> {
        let Some(decoder) = &mut self.decoder else {
            return Err(bad(t, offset, "cut off"));
        };
        if let Decoder::Stored = decoder {
            return charged_feed(&mut self.inner, input, ctx);
        }
        loop {
            if self.ended {
                if !input.is_empty() {
                    return Err(bad(
                        t,
                        offset,
                        "data after the end of the compressed stream",
                    ));
                }
                return Ok(());
            }
            // A corrupt stream reports the error after writing what it
            // decoded before the fault: that output is read first, so the
            // verdict is the first fault in byte order whatever the
            // chunking.
            let (used, produced, ended, corrupt) = match decoder {
                Decoder::Deflate(d) => {
                    let (i0, o0) = (d.total_in(), d.total_out());
                    let flush = if last {
                        flate2::FlushDecompress::Finish
                    } else {
                        flate2::FlushDecompress::None
                    };
                    let r = d.decompress(input, &mut self.out, flush);
                    (
                        (d.total_in() - i0) as usize,
                        (d.total_out() - o0) as usize,
                        r.as_ref().is_ok_and(|s| *s == flate2::Status::StreamEnd),
                        r.is_err().then_some("corrupt deflate stream"),
                    )
                }
                Decoder::Bzip2(d) => {
                    let (i0, o0) = (d.total_in(), d.total_out());
                    let r = d.decompress(input, &mut self.out);
                    (
                        (d.total_in() - i0) as usize,
                        (d.total_out() - o0) as usize,
                        r.as_ref().is_ok_and(|s| *s == bzip2::Status::StreamEnd),
                        r.is_err().then_some("corrupt bzip2 stream"),
                    )
                }
                Decoder::Stored => unreachable!("handled above"),
            };
            input = &input[used.min(input.len())..];
            self.ended = ended;
            if produced > 0 {
                charged_feed(
                    &mut self.inner,
                    &self.out[..produced.min(self.out.len())],
                    ctx,
                )?;
            }
            if let Some(why) = corrupt {
                return Err(bad(t, offset, why));
            }
            if !ended && used == 0 && produced == 0 {
                // No progress: the decoder wants more input.
                if last {
                    return Err(bad(t, offset, "compressed stream cut off"));
                }
                return Ok(());
            }
            if input.is_empty() && produced < self.out.len() && !last {
                return Ok(());
            }
        }
    }

    fn finish(&mut self, t: u8, offset: u64, ctx: &mut Ctx) -> Result<(), PayloadError> {
        match &self.decoder {
            None => Err(bad(t, offset, "no compression algorithm octet")),
            Some(Decoder::Stored) => Ok(()),
            Some(_) => self.run(t, offset, &[], true, ctx),
        }
    }
}

/// Feeds decompressed octets to the inner stream, charged to the budget.
/// The octets within the budget are read first, so an error in them wins
/// over the budget's: the first fault in byte order, whatever the chunking.
fn charged_feed(inner: &mut PacketStream, data: &[u8], ctx: &mut Ctx) -> Result<(), PayloadError> {
    let left = ctx
        .limits
        .max_decompressed_bytes
        .saturating_sub(ctx.decompressed);
    let within = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
    if !openpgp::inline_work::charge(within as u64) {
        // Judged inline and over the allowance: the step is redone off the
        // async worker, this verdict is thrown away.
        return Err(PayloadError::Limit(
            "inline work allowance exhausted".into(),
        ));
    }
    ctx.decompressed += within as u64;
    inner.feed(&data[..within], ctx)?;
    if within < data.len() {
        return Err(PayloadError::Limit(format!(
            "compressed data expands beyond the limit of {} octets",
            ctx.limits.max_decompressed_bytes
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Fixed(u64),
    Partial(u64),
    Indeterminate,
}

enum Len {
    Fixed(u64),
    Partial(u64),
}

/// A new-format body length from its octets, once they are all there.
fn body_length(o: &[u8]) -> Option<Len> {
    let first = *o.first()?;
    match first {
        0..=191 => Some(Len::Fixed(u64::from(first))),
        192..=223 => {
            let second = *o.get(1)?;
            Some(Len::Fixed(
                ((u64::from(first) - 192) << 8) + u64::from(second) + 192,
            ))
        }
        224..=254 => Some(Len::Partial(1 << (first & 0x1f))),
        255 => {
            let four: [u8; 4] = o.get(1..5)?.try_into().ok()?;
            Some(Len::Fixed(u64::from(u32::from_be_bytes(four))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SEIPD fast path accepts only what rpgp accepts: every version
    /// octet, every chunk size octet, every prefix length up to [`PREFIX`].
    #[test]
    fn the_seipd_fast_path_agrees_with_rpgp() {
        let mut accepted = 0;
        for version in 0..=3u8 {
            for chunk in 0..=255u8 {
                for len in 1..=PREFIX {
                    let mut prefix: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
                    prefix[0] = version;
                    if len > 3 {
                        prefix[3] = chunk;
                    }
                    let rpgp = validate(tag::SEIPD, 0, &prefix)
                        .and_then(|info| check_version(tag::SEIPD, info.version));
                    if seipd_accepted(&prefix) {
                        accepted += 1;
                        assert!(rpgp.is_ok(), "{prefix:?}: {rpgp:?}");
                    }
                    // Whatever the path, the answer is rpgp's.
                    assert_eq!(
                        check_prefix(tag::SEIPD, 0, &prefix).is_ok(),
                        rpgp.is_ok(),
                        "{prefix:?}"
                    );
                }
            }
        }
        assert!(accepted > 256 * PREFIX, "the fast path is taken");
    }

    /// The PKESK fast path gives rpgp's recipient, and only for bodies
    /// rpgp accepts: every algorithm octet, MPIs of every bit length
    /// around their bounds, wrapped keys of every length, cut short and
    /// with octets left over.
    #[test]
    fn the_pkesk_fast_path_agrees_with_rpgp() {
        let mut bodies = Vec::new();
        for id in [[0u8; 8], [0x42, 0xde, 0x44, 0xf2, 0x78, 0xa6, 0x4c, 0x75]] {
            for algo in 0..=40u8 {
                for bits in [0u16, 1, 7, 8, 9, 255, 263, 2048, 16384, 16385, 65535] {
                    let bytes = usize::from(bits.div_ceil(8)).min(2100);
                    for wrapped in [None, Some(0usize), Some(1), Some(48), Some(255)] {
                        let mut b = vec![3];
                        b.extend_from_slice(&id);
                        b.push(algo);
                        b.extend_from_slice(&bits.to_be_bytes());
                        b.extend((0..bytes).map(|i| (i as u8) | 1));
                        if let Some(n) = wrapped {
                            b.push(n as u8);
                            b.extend((0..n).map(|i| i as u8));
                        }
                        for cut in [0, 1, 5] {
                            bodies.push(b[..b.len().saturating_sub(cut)].to_vec());
                        }
                        let mut longer = b.clone();
                        longer.push(7);
                        bodies.push(longer);
                    }
                }
            }
        }
        let mut fast = 0;
        for b in &bodies {
            let Some(r) = pkesk_accepted(b) else { continue };
            fast += 1;
            let info = validate(tag::PKESK, 0, b).unwrap_or_else(|e| panic!("{b:?}: {e}"));
            assert_eq!(info.version, Some(3), "{b:?}");
            assert_eq!(info.recipient, Some(r), "{b:?}");
        }
        assert!(fast > 40, "the fast path is taken ({fast})");
    }
}
