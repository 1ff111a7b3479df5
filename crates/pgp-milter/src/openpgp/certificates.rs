//! Public-key certificates through rpgp: parsed, self-signatures verified,
//! summarized as [`Cert`]s for the keyring (which keeps the policy: which
//! keys count for which address).

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag};

use super::cert::{Cert, Key, KeyPacket, UserIdStatus, date};
use super::tag;
use super::{MAX_COMPRESSION_DEPTH, OpenPgpError, check_size, isolated, parse};

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
        // Keys are never compressed: starting at the depth limit makes
        // Compressed Data an error instead of decompressing it.
        let packets = parse(data, MAX_COMPRESSION_DEPTH).map_err(|e| match e {
            OpenPgpError::Decompression(_) => {
                OpenPgpError::Certificate("compressed data in a public key block".into())
            }
            e => e,
        })?;
        let cert_error = |why: &str| Err(OpenPgpError::Certificate(why.to_owned()));
        if packets
            .iter()
            .any(|p| p.tag == tag::SECRET_KEY || p.tag == tag::SECRET_SUBKEY)
        {
            return cert_error("secret key material: only public keys belong in the keyring");
        }
        if let Some(p) = packets.iter().find(|p| !KEY_BLOCK_TAGS.contains(&p.tag)) {
            return cert_error(&format!(
                "{} packet in a public key",
                super::packet_name(p.tag)
            ));
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
            .map_err(|_| OpenPgpError::Certificate("unreadable public key".into()))?
        {
            // rpgp's error text is Debug output; ours is a short reason.
            let key = key.map_err(|_| {
                OpenPgpError::Certificate("malformed public key, user ID or key signature".into())
            })?;
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
