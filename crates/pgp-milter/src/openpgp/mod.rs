//! The only door to rpgp (crate `pgp`), the maintained OpenPGP
//! implementation the issue asks the packet parsing to use.
//!
//! Everything that reaches rpgp goes through [`isolated`]: the input size is
//! bounded first, and the call runs under `catch_unwind`, so a panic inside
//! the library becomes [`OpenPgpError::Panicked`] (a tempfail for the
//! message, logged) instead of taking a connection task — or, with
//! `panic = "abort"`, the daemon — down. No profile of this workspace sets
//! `panic = "abort"`; unwinding is what makes the catch work.
//!
//! What comes out is our own summary ([`PacketInfo`], and the keyring's
//! [`cert::Cert`] from [`certificates`]); rpgp's types stay inside
//! this module, so the message grammar in [`crate::packets`] and the keyring
//! policy are ours and a future rpgp release only touches this module.

use std::io::{BufRead, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use pgp::composed::PacketBodyReader;
use pgp::packet::{Packet, PacketHeader, PublicKeyEncryptedSessionKey};
use thiserror::Error;

pub mod cert;
mod certificates;
mod ids;
pub mod inline_work;

pub use certificates::certificates;
pub use ids::{KeyTarget, hex, tag};

/// Largest OpenPGP input handed to rpgp (a message body is already capped by
/// `max_body_bytes`; this also bounds the keyring).
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Most bytes all Compressed Data packets of one message may expand to
/// together (the budget of [`per_message`]). A decompression bomb — or a
/// hundred small ones in one message — stops here; the decompressed data is
/// streamed, not kept, so this bounds work rather than memory.
pub const MAX_DECOMPRESSED_BYTES: usize = 32 << 20;

/// Compressed data inside compressed data is looked into this deep at most
/// (GnuPG never nests; one level of nesting is legal and allowed).
pub const MAX_COMPRESSION_DEPTH: usize = 2;

/// Why OpenPGP data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenPgpError {
    /// No data at all.
    #[error("no OpenPGP packets")]
    Empty,
    /// More input than [`MAX_INPUT_BYTES`].
    #[error("{len} bytes of OpenPGP data, over the {max}-byte limit")]
    TooLarge {
        /// The input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A packet header that is not one, or is cut off.
    #[error("bad or truncated OpenPGP packet header at offset {offset}: {why}")]
    Header {
        /// Where the header starts.
        offset: usize,
        /// Our short reason (never rpgp's text).
        why: String,
    },
    /// A packet whose body rpgp refuses (truncated, wrong fields, unknown
    /// critical tag...).
    #[error("bad {} packet at offset {offset}: {why}", packet_name(*tag))]
    Packet {
        /// The packet tag.
        tag: u8,
        /// Where its header starts.
        offset: usize,
        /// Our short reason (cut off, malformed...), never rpgp's text.
        why: String,
    },
    /// Compressed data that expands beyond [`MAX_DECOMPRESSED_BYTES`] or is
    /// nested deeper than [`MAX_COMPRESSION_DEPTH`].
    #[error("compressed data {0}")]
    Decompression(String),
    /// A key block that is not a set of public certificates.
    #[error("{0}")]
    Certificate(String),
    /// rpgp panicked; the message gets a tempfail.
    #[error("the OpenPGP parser failed internally: {0}")]
    Panicked(String),
}

/// One packet, as far as the message grammar and the keyring care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketInfo {
    /// The packet tag.
    pub tag: u8,
    /// The version octet of session-key and encrypted-data packets.
    pub version: Option<u8>,
    /// Whom a PKESK is for.
    pub recipient: Option<KeyTarget>,
    /// The packets inside Compressed Data, decompressed (bounded).
    pub contents: Option<Vec<PacketInfo>>,
}

/// Runs `f` (which calls rpgp) with panics turned into
/// [`OpenPgpError::Panicked`], logged.
pub fn isolated<T>(f: impl FnOnce() -> Result<T, OpenPgpError>) -> Result<T, OpenPgpError> {
    match catch_unwind(AssertUnwindSafe(|| {
        #[cfg(test)]
        test_hook::maybe_panic();
        // rpgp logs its own multi-line INFO/WARN records about the input
        // (`pgp::packet::single: error …`); the daemon promises one log
        // line per decision, so nothing rpgp says during the call reaches
        // the subscriber (rpgp uses `log`; tracing-log forwards it to the
        // current dispatcher, which here drops it). Our own outcome is
        // logged by the caller.
        tracing::dispatcher::with_default(silent(), f)
    })) {
        Ok(r) => r,
        Err(panic) => {
            let what = minimilter::panic_message(&*panic);
            // A panic message may span lines (assert_eq!) or carry a
            // backtrace; replies and log lines get its first line only.
            let what = one_line(&what);
            tracing::error!(panic = %what, "OpenPGP parser (rpgp) panicked; the message is tempfailed");
            Err(OpenPgpError::Panicked(what))
        }
    }
}

/// The dispatcher that drops everything, made once: making a `Dispatch`
/// registers it with every callsite in the program (a global lock and a
/// walk over all of them), far more work than the small packets checked
/// here, so it is made once and only entered per call.
fn silent() -> &'static tracing::Dispatch {
    static SILENT: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SILENT.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()))
}

/// The first line of `text`, at most 120 characters: what may go into an
/// SMTP reply or a one-line log record.
pub fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let mut out: String = first
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    if first.chars().count() > 120 {
        out.push('…');
    }
    out
}

/// Checks the input bound every entry point applies.
pub fn check_size(data: &[u8]) -> Result<(), OpenPgpError> {
    if data.len() > MAX_INPUT_BYTES {
        return Err(OpenPgpError::TooLarge {
            len: data.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// Parses `data` into packets with rpgp's packet parser: legacy and
/// OpenPGP headers, partial body lengths (first chunk at least 512 octets,
/// RFC 9580 §4.2.1.4), every body checked by rpgp, nothing left over.
/// Compressed Data is decompressed as a stream and parsed too, charged to
/// the message's decompression budget ([`per_message`]; a call outside one
/// gets a budget of its own).
pub fn packets(data: &[u8]) -> Result<Vec<PacketInfo>, OpenPgpError> {
    check_size(data)?;
    let parsed = if budget::active() {
        isolated(|| parse(data, 0))
    } else {
        per_message(|| isolated(|| parse(data, 0)))
    };
    if parsed.as_ref().is_err_and(|_| budget::exceeded()) {
        tracing::debug!(
            limit = MAX_DECOMPRESSED_BYTES,
            "decompression budget of the message exhausted"
        );
    }
    parsed
}

pub use budget::{per_message, resume_message};

/// The decompression budget of one message, shared by all its parts.
///
/// A per-packet cap is not enough: a 45 KB message of a hundred small
/// compressed parts would each expand to the cap. The budget lives in a
/// thread-local because a message is judged synchronously on one thread
/// and the detector's many entry points then need no extra argument.
mod budget {
    use std::cell::Cell;
    use std::io::{self, Read};

    use super::MAX_DECOMPRESSED_BYTES;

    thread_local! {
        /// Decompressed bytes the current message may still produce
        /// (`None`: no message is being judged on this thread).
        static LEFT: Cell<Option<u64>> = const { Cell::new(None) };
        /// Set once a read went over the budget.
        static EXCEEDED: Cell<bool> = const { Cell::new(false) };
    }

    /// True inside [`per_message`].
    pub fn active() -> bool {
        LEFT.with(Cell::get).is_some()
    }

    /// True if the current message ran out of budget.
    pub fn exceeded() -> bool {
        EXCEEDED.with(Cell::get)
    }

    /// Runs `f` (the judgement of one message) with a fresh budget of
    /// [`MAX_DECOMPRESSED_BYTES`] decompressed bytes for everything it
    /// parses; the previous budget comes back afterwards, panic or not.
    pub fn per_message<T>(f: impl FnOnce() -> T) -> T {
        struct Restore(Option<u64>, bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                LEFT.with(|l| l.set(self.0));
                EXCEEDED.with(|e| e.set(self.1));
            }
        }
        let _restore = Restore(
            LEFT.with(|l| l.replace(Some(MAX_DECOMPRESSED_BYTES as u64))),
            EXCEEDED.with(|e| e.replace(false)),
        );
        f()
    }

    /// Like [`per_message`] for a message judged in several steps (as its
    /// bytes arrive): `left` carries the budget from one step to the next
    /// (start it at [`MAX_DECOMPRESSED_BYTES`]).
    pub fn resume_message<T>(left: &mut u64, f: impl FnOnce() -> T) -> T {
        struct Restore<'a>(Option<u64>, bool, &'a mut u64);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                *self.2 = LEFT.with(Cell::get).unwrap_or(0);
                LEFT.with(|l| l.set(self.0));
                EXCEEDED.with(|e| e.set(self.1));
            }
        }
        let start = *left;
        let _restore = Restore(
            LEFT.with(|l| l.replace(Some(start))),
            EXCEEDED.with(|e| e.replace(false)),
            left,
        );
        f()
    }

    /// A decompressor whose output is charged to the budget; reading past
    /// it is an error (and marks the message [`exceeded`]).
    pub struct Charged<R>(pub R);

    impl<R: Read> Read for Charged<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = LEFT.with(Cell::get).unwrap_or(0);
            if left == 0 && !buf.is_empty() {
                // Over budget unless the stream has truly ended: one byte
                // more decides.
                let mut one = [0u8; 1];
                return match self.0.read(&mut one)? {
                    0 => Ok(0),
                    _ => {
                        EXCEEDED.with(|e| e.set(true));
                        Err(io::Error::other("decompression budget exhausted"))
                    }
                };
            }
            let cap = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.0.read(&mut buf[..cap])?;
            LEFT.with(|l| l.set(Some(left - n as u64)));
            if !super::inline_work::charge(n as u64) {
                return Err(io::Error::other("inline work allowance exhausted"));
            }
            Ok(n)
        }
    }
}

/// A reader that knows how many bytes were taken from it (packet offsets).
struct Counted<R> {
    inner: R,
    pos: usize,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt;
        self.inner.consume(amt);
    }
}

/// The packet's name, for error messages a person reads.
pub fn packet_name(tag: u8) -> String {
    match tag {
        1 => "public-key session key".into(),
        2 => "signature".into(),
        3 => "symmetric-key session key".into(),
        4 => "one-pass signature".into(),
        5 => "secret key".into(),
        6 => "public key".into(),
        7 => "secret subkey".into(),
        8 => "compressed data".into(),
        9 => "symmetrically encrypted data".into(),
        10 => "marker".into(),
        11 => "literal data".into(),
        12 => "trust".into(),
        13 => "user ID".into(),
        14 => "public subkey".into(),
        17 => "user attribute".into(),
        18 => "encrypted data (SEIPD)".into(),
        19 => "modification detection code".into(),
        20 => "AEAD encrypted data".into(),
        21 => "padding".into(),
        t => format!("tag {t}"),
    }
}

/// Our words for an I/O failure while reading a packet: rpgp's own error
/// texts are Debug output (and may carry a backtrace or newlines), so they
/// never reach a reply or a log line.
fn io_why(e: &std::io::Error) -> &'static str {
    if budget::exceeded() {
        "decompression budget exhausted"
    } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "cut off"
    } else {
        "truncated or corrupt"
    }
}

/// Our words for rpgp's reason a packet body does not parse.
fn rpgp_why(e: &pgp::errors::Error) -> &'static str {
    use pgp::errors::Error as E;
    match e {
        _ if budget::exceeded() => "decompression budget exhausted",
        E::IO { source, .. } => io_why(source),
        E::PacketIncomplete { .. } => "cut off",
        E::PacketParsing { source } if source.is_incomplete() => "cut off",
        _ => "malformed",
    }
}

fn budget_error() -> OpenPgpError {
    OpenPgpError::Decompression(format!(
        "expands beyond the per-message limit of {} MiB",
        MAX_DECOMPRESSED_BYTES >> 20
    ))
}

fn parse(data: &[u8], depth: usize) -> Result<Vec<PacketInfo>, OpenPgpError> {
    if data.is_empty() {
        return Err(OpenPgpError::Empty);
    }
    parse_stream(data, depth)
}

/// Reads packets from `src` to its end. Literal data is checked and skipped
/// without being kept, so a compressed literal costs budget, not memory.
fn parse_stream<R: BufRead>(src: R, depth: usize) -> Result<Vec<PacketInfo>, OpenPgpError> {
    let mut src = Counted { inner: src, pos: 0 };
    let mut out = Vec::new();
    loop {
        let offset = src.pos;
        let at_end = src
            .fill_buf()
            .map_err(|e| OpenPgpError::Header {
                offset,
                why: io_why(&e).into(),
            })?
            .is_empty();
        if at_end {
            break;
        }
        // rpgp's own PacketParser ends quietly at a header cut off by the
        // end of the data; reading header by header makes that an error.
        let header = PacketHeader::try_from_reader(&mut src).map_err(|e| OpenPgpError::Header {
            offset,
            why: if budget::exceeded() || e.kind() == std::io::ErrorKind::UnexpectedEof {
                io_why(&e).into()
            } else {
                "not a packet header".into()
            },
        })?;
        let tag = u8::from(header.tag());
        let bad = |why: &str| OpenPgpError::Packet {
            tag,
            offset,
            why: why.into(),
        };
        let mut body = PacketBodyReader::new(header, &mut src).map_err(|e| bad(io_why(&e)))?;
        if tag == tag::LITERAL {
            skip_literal(&mut body).map_err(|e| bad(io_why(&e)))?;
            drop(body);
            out.push(PacketInfo {
                tag,
                version: None,
                recipient: None,
                contents: None,
            });
            continue;
        }
        let packet = Packet::from_reader(header, &mut body).map_err(|e| bad(rpgp_why(&e)))?;
        drop(body);
        out.push(info(tag, packet, depth)?);
    }
    if budget::exceeded() {
        return Err(budget_error());
    }
    Ok(out)
}

/// Checks a Literal Data header (RFC 9580 §5.9: format octet, file name
/// length and name, four-octet date) and reads the data to its end.
fn skip_literal(body: &mut impl Read) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    body.read_exact(&mut head)?;
    let mut rest = vec![0u8; usize::from(head[1]) + 4];
    body.read_exact(&mut rest)?;
    std::io::copy(body, &mut std::io::sink())?;
    Ok(())
}

fn info(tag: u8, packet: Packet, depth: usize) -> Result<PacketInfo, OpenPgpError> {
    let mut info = PacketInfo {
        tag,
        version: None,
        recipient: None,
        contents: None,
    };
    match packet {
        Packet::PublicKeyEncryptedSessionKey(p) => {
            info.version = Some(p.version().into());
            info.recipient = match &p {
                PublicKeyEncryptedSessionKey::V3 { id, .. } => Some(if id.is_wildcard() {
                    KeyTarget::Wildcard
                } else {
                    let id: [u8; 8] = id.as_ref().try_into().unwrap_or([0; 8]);
                    KeyTarget::KeyId(id)
                }),
                PublicKeyEncryptedSessionKey::V6 { fingerprint, .. } => Some(match fingerprint {
                    None => KeyTarget::Wildcard,
                    Some(fp) => KeyTarget::Fingerprint {
                        version: fp.version().map_or(0, u8::from),
                        fingerprint: fp.as_bytes().to_vec(),
                    },
                }),
                PublicKeyEncryptedSessionKey::Other { .. } => None,
            };
        }
        Packet::SymKeyEncryptedSessionKey(p) => info.version = Some(p.version().into()),
        Packet::SymEncryptedProtectedData(p) => info.version = u8::try_from(p.version()).ok(),
        // rpgp only parses GnuPG's AEAD packet in its one version.
        Packet::GnupgAeadData(_) => info.version = Some(1),
        Packet::CompressedData(p) => {
            if depth >= MAX_COMPRESSION_DEPTH {
                return Err(OpenPgpError::Decompression(format!(
                    "nested more than {MAX_COMPRESSION_DEPTH} deep"
                )));
            }
            let stream = p.decompress().map_err(|_| {
                OpenPgpError::Decompression("uses an unknown compression algorithm".into())
            })?;
            let inner = std::io::BufReader::new(budget::Charged(stream));
            let contents = parse_stream(inner, depth + 1).map_err(|e| {
                if budget::exceeded() {
                    budget_error()
                } else {
                    e
                }
            })?;
            if contents.is_empty() {
                return Err(OpenPgpError::Decompression("holds no packets".into()));
            }
            info.contents = Some(contents);
        }
        _ => {}
    }
    Ok(info)
}

/// A test-only way to make the next isolated call panic inside the
/// isolation, to prove the panic becomes [`OpenPgpError::Panicked`].
#[cfg(test)]
pub mod test_hook {
    use std::cell::Cell;

    thread_local! {
        static PANIC_NEXT: Cell<bool> = const { Cell::new(false) };
    }

    /// The next isolated call on this thread panics.
    pub fn panic_next_call() {
        PANIC_NEXT.with(|p| p.set(true));
    }

    pub(super) fn maybe_panic() {
        if PANIC_NEXT.with(|p| p.replace(false)) {
            panic!("injected test panic inside rpgp's isolation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Policy};
    use crate::{Detection, NotPgp, detect};

    /// `gpg -a -c` (GnuPG 2.2.40): SKESK v4 + SEIPD v1.
    const SKESK_MESSAGE: &str = "Subject: s\r\nContent-Type: text/plain\r\n\r\n\
-----BEGIN PGP MESSAGE-----\r\n\r\n\
jA0ECQMCUkqrKGOlkxT/0lkBwKDciRsFQo/011swL1/XIrG1HTz9i1kb+Bh0Rqs8\r\n\
huIp6NOeaQc80JHr7kTWFs88wE1/NBGLxkvmwskVPl+uiiuJJS8sQGLhI6gtRYg0\r\n\
TTLSmMO7UYlCww==\r\n\
=RRtR\r\n\
-----END PGP MESSAGE-----\r\n";

    #[test]
    fn a_panic_inside_the_isolation_is_a_typed_error() {
        let r: Result<(), _> = isolated(|| panic!("boom {}", 42));
        assert_eq!(r, Err(OpenPgpError::Panicked("boom 42".into())));
        // The thread and the isolation stay usable afterwards.
        assert_eq!(isolated(|| Ok(7)), Ok(7));
    }

    #[test]
    fn a_panic_in_the_parser_tempfails_the_message() {
        assert!(matches!(
            detect(SKESK_MESSAGE.as_bytes()),
            Detection::Encrypted(_)
        ));
        test_hook::panic_next_call();
        let d = detect(SKESK_MESSAGE.as_bytes());
        // Caught by the isolation around rpgp (not by the detector's own
        // last-resort catch, whose text is "detector panicked").
        let Detection::Plain(NotPgp::Internal(why)) = &d else {
            panic!("{d:?}")
        };
        assert!(why.contains("OpenPGP parser failed internally"), "{why}");
        let Decision::Tempfail(reply, _) = Policy::default().judge(&d) else {
            panic!()
        };
        assert!(reply.to_string().starts_with("451 4.3.0 "), "{reply}");
        // The next message is judged normally again.
        assert!(matches!(
            detect(SKESK_MESSAGE.as_bytes()),
            Detection::Encrypted(_)
        ));
    }

    #[test]
    fn input_is_bounded() {
        let big = vec![0u8; MAX_INPUT_BYTES + 1];
        assert!(matches!(packets(&big), Err(OpenPgpError::TooLarge { .. })));
    }
}
