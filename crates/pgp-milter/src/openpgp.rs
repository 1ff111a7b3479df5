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
//! What comes out is our own summary ([`PacketInfo`]); rpgp's types stay in
//! here (and in the keyring's certificate checks, which also call through
//! [`isolated`]), so the message grammar in [`crate::packets`] is ours and a
//! future rpgp release only touches this module.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pgp::composed::{Deserializable, PacketBodyReader, SignedPublicKey};
use pgp::packet::{
    Packet, PacketHeader, PublicKeyEncryptedSessionKey, Signature, SignatureType, SubpacketData,
};
use pgp::types::{KeyDetails, Tag};
use thiserror::Error;

use crate::keyring::{Cert, Key, KeyPacket, UserIdStatus, date};
use crate::packets::{KeyTarget, tag};

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

/// Packets a public key block may hold (RFC 9580 §10.1): keys, subkeys,
/// User IDs and attributes, signatures, and the ignorable Marker, Trust and
/// Padding.
const KEY_BLOCK_TAGS: [u8; 8] = [
    tag::PUBLIC_KEY,
    tag::PUBLIC_SUBKEY,
    tag::USER_ID,
    tag::USER_ATTRIBUTE,
    tag::SIGNATURE,
    tag::TRUST,
    tag::MARKER,
    tag::PADDING,
];

/// Parses binary packets holding one or more transferable public keys and
/// verifies their self-signatures with rpgp. Every packet must parse
/// (rpgp's key parser alone would skip what it does not understand);
/// secret keys are refused.
pub fn certificates(data: &[u8]) -> Result<Vec<Cert>, OpenPgpError> {
    check_size(data)?;
    isolated(|| {
        let packets = parse(data, MAX_COMPRESSION_DEPTH)?;
        let cert_error = |why: &str| Err(OpenPgpError::Certificate(why.to_owned()));
        if packets
            .iter()
            .any(|p| p.tag == tag::SECRET_KEY || p.tag == tag::SECRET_SUBKEY)
        {
            return cert_error("secret key material: only public keys belong in the keyring");
        }
        if let Some(p) = packets.iter().find(|p| !KEY_BLOCK_TAGS.contains(&p.tag)) {
            return cert_error(&format!("packet tag {} in a public key", p.tag));
        }
        let ignorable = [tag::MARKER, tag::TRUST, tag::PADDING];
        if packets
            .iter()
            .map(|p| p.tag)
            .find(|t| !ignorable.contains(t))
            != Some(tag::PUBLIC_KEY)
        {
            return cert_error("does not start with a public key (tag 6)");
        }
        let mut certs = Vec::new();
        for key in SignedPublicKey::from_bytes_many(data)
            .map_err(|e| OpenPgpError::Certificate(e.to_string()))?
        {
            let key = key.map_err(|e| OpenPgpError::Certificate(e.to_string()))?;
            certs.push(evaluate(&key));
        }
        if certs.is_empty() {
            return cert_error("no public key");
        }
        Ok(certs)
    })
}

/// Signature creation time, Unix seconds (0 if absent).
fn created(sig: &Signature) -> u64 {
    sig.created().map_or(0, |t| u64::from(t.as_secs()))
}

/// The newest of `sigs`.
fn newest<'a>(sigs: &[&'a Signature]) -> Option<&'a Signature> {
    sigs.iter().copied().max_by_key(|s| created(s))
}

/// Key ID and fingerprint of a key packet.
fn key_packet(key: &impl KeyDetails) -> KeyPacket {
    let fingerprint = key.fingerprint().as_bytes().to_vec();
    let version = u8::from(key.version());
    let id = if version == 4 {
        &fingerprint[fingerprint.len().saturating_sub(8)..]
    } else {
        &fingerprint[..fingerprint.len().min(8)]
    };
    KeyPacket {
        version,
        algorithm: u8::from(key.algorithm()),
        key_id: id.try_into().unwrap_or([0; 8]),
        fingerprint,
    }
}

/// Public-key algorithms that can encrypt: RSA (1, 2), Elgamal (16, 20),
/// ECDH (18), X25519 (25), X448 (26).
fn algorithm_can_encrypt(algorithm: u8) -> bool {
    matches!(algorithm, 1 | 2 | 16 | 18 | 20 | 25 | 26)
}

/// Capable of encrypting by its algorithm and, when the self-signature has
/// Key Flags, by them.
fn can_encrypt(algorithm: u8, sig: Option<&Signature>) -> bool {
    let has_flags = sig.and_then(Signature::config).is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    });
    algorithm_can_encrypt(algorithm)
        && (!has_flags
            || sig
                .is_some_and(|s| s.key_flags().encrypt_comms() || s.key_flags().encrypt_storage()))
}

/// Expiry (Unix seconds) of a key created at `created_at` under `sig`.
fn expiry(created_at: u64, sig: Option<&Signature>) -> Option<u64> {
    let secs = u64::from(sig?.key_expiration_time()?.as_secs());
    (secs > 0).then_some(created_at + secs)
}

/// Which keys and User IDs of `key` are bound, revoked, expiring.
fn evaluate(key: &SignedPublicKey) -> Cert {
    let primary = &key.primary_key;
    let primary_created = u64::from(primary.created_at().as_secs());
    let revoked =
        |sigs: &[&Signature]| newest(sigs).map(|s| format!("revoked {}", date(created(s))));
    let key_revocations: Vec<&Signature> = key
        .details
        .revocation_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(primary).is_ok())
        .collect();
    let mut self_sigs: Vec<&Signature> = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok())
        .collect();
    let mut user_ids = Vec::new();
    for user in &key.details.users {
        let verified = |t: &[SignatureType]| -> Vec<&Signature> {
            user.signatures
                .iter()
                .filter(|s| s.typ().is_some_and(|typ| t.contains(&typ)))
                .filter(|s| {
                    s.verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
                })
                .collect()
        };
        let certifications = verified(&[
            SignatureType::CertGeneric,
            SignatureType::CertPersona,
            SignatureType::CertCasual,
            SignatureType::CertPositive,
        ]);
        let revocations = verified(&[SignatureType::CertRevocation]);
        let problem = match newest(&certifications) {
            None => Some("unverifiable: no valid self-signature on its User ID".to_owned()),
            Some(cert) => match newest(&revocations) {
                Some(rev) if created(rev) >= created(cert) => {
                    Some(format!("User ID revoked {}", date(created(rev))))
                }
                _ => {
                    self_sigs.push(cert);
                    None
                }
            },
        };
        user_ids.push(UserIdStatus {
            user_id: String::from_utf8_lossy(user.id.id()).into_owned(),
            problem,
        });
    }
    let primary_sig = newest(&self_sigs);
    let primary_problem = revoked(&key_revocations).or_else(|| {
        primary_sig
            .is_none()
            .then(|| "unverifiable: no valid self-signature".to_owned())
    });
    let primary_expires = expiry(primary_created, primary_sig);
    let packet = key_packet(primary);
    let mut keys = vec![Key {
        can_encrypt: can_encrypt(packet.algorithm, primary_sig),
        packet,
        subkey: false,
        expires: primary_expires,
        problem: primary_problem.clone(),
    }];
    for sub in &key.public_subkeys {
        let verified = |t: SignatureType| -> Vec<&Signature> {
            sub.signatures
                .iter()
                .filter(|s| s.typ() == Some(t))
                .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
                .collect()
        };
        let bindings = verified(SignatureType::SubkeyBinding);
        let binding = newest(&bindings);
        let problem = primary_problem.clone().or_else(|| {
            revoked(&verified(SignatureType::SubkeyRevocation)).or_else(|| {
                binding
                    .is_none()
                    .then(|| "unverifiable: no valid subkey binding signature".to_owned())
            })
        });
        let own = expiry(u64::from(sub.key.created_at().as_secs()), binding);
        let expires = match (primary_expires, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let packet = key_packet(&sub.key);
        keys.push(Key {
            can_encrypt: can_encrypt(packet.algorithm, binding),
            packet,
            subkey: true,
            expires,
            problem,
        });
    }
    Cert { keys, user_ids }
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
