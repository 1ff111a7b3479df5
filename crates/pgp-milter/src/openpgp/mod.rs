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
//! [`crate::keyring::Cert`] from [`certificates`]); rpgp's types stay inside
//! this module, so the message grammar in [`crate::packets`] and the keyring
//! policy are ours and a future rpgp release only touches this module.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pgp::composed::PacketBodyReader;
use pgp::packet::{Packet, PacketHeader, PublicKeyEncryptedSessionKey};
use thiserror::Error;

use crate::packets::KeyTarget;

mod certificates;

pub use certificates::certificates;

/// Largest OpenPGP input handed to rpgp (a message body is already capped by
/// `max_body_bytes`; this also bounds the keyring and decompressed data).
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Most bytes a Compressed Data packet may expand to. A decompression bomb
/// (a few KiB of zeros compressed) stops here instead of filling memory.
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
        /// rpgp's reason.
        why: String,
    },
    /// A packet whose body rpgp refuses (truncated, wrong fields, unknown
    /// critical tag...).
    #[error("malformed OpenPGP packet (tag {tag}) at offset {offset}: {why}")]
    Packet {
        /// The packet tag.
        tag: u8,
        /// Where its header starts.
        offset: usize,
        /// rpgp's reason.
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
        f()
    })) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!(panic = %what, "OpenPGP parser (rpgp) panicked; the message is tempfailed");
            Err(OpenPgpError::Panicked(what))
        }
    }
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
/// Compressed Data is decompressed (bounded) and parsed too.
pub fn packets(data: &[u8]) -> Result<Vec<PacketInfo>, OpenPgpError> {
    check_size(data)?;
    isolated(|| parse(data, 0))
}

fn parse(data: &[u8], depth: usize) -> Result<Vec<PacketInfo>, OpenPgpError> {
    if data.is_empty() {
        return Err(OpenPgpError::Empty);
    }
    let mut rest: &[u8] = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        // rpgp's own PacketParser ends quietly at a header cut off by the
        // end of the data; reading header by header makes that an error.
        let header =
            PacketHeader::try_from_reader(&mut rest).map_err(|e| OpenPgpError::Header {
                offset,
                why: e.to_string(),
            })?;
        let tag = u8::from(header.tag());
        let bad = |why: String| OpenPgpError::Packet { tag, offset, why };
        let mut body = PacketBodyReader::new(header, &mut rest).map_err(|e| bad(e.to_string()))?;
        let packet = Packet::from_reader(header, &mut body).map_err(|e| bad(e.to_string()))?;
        drop(body);
        out.push(info(tag, packet, depth)?);
    }
    Ok(out)
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
            let mut inner = Vec::new();
            p.decompress()
                .map_err(|e| OpenPgpError::Decompression(format!("does not decompress: {e}")))?
                .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
                .read_to_end(&mut inner)
                .map_err(|e| OpenPgpError::Decompression(format!("does not decompress: {e}")))?;
            if inner.len() > MAX_DECOMPRESSED_BYTES {
                return Err(OpenPgpError::Decompression(format!(
                    "expands beyond {MAX_DECOMPRESSED_BYTES} bytes"
                )));
            }
            info.contents = Some(parse(&inner, depth + 1)?);
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
