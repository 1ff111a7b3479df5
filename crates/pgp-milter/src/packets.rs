//! A walker over OpenPGP packet headers (RFC 4880 §4.2, RFC 9580 §4.2).
//!
//! It reads packet framing only — tags and lengths, in both the legacy and
//! the OpenPGP header format, partial body lengths included — plus the
//! version octet of the packets the message grammar depends on. It never
//! decrypts, decompresses or verifies anything: that is enough to tell an
//! encrypted message (session keys, then one encrypted container) from
//! signed data, key blocks and garbage.

use thiserror::Error;

/// Packet tags this module knows by name.
pub mod tag {
    /// Public-Key Encrypted Session Key.
    pub const PKESK: u8 = 1;
    /// Signature.
    pub const SIGNATURE: u8 = 2;
    /// Symmetric-Key Encrypted Session Key.
    pub const SKESK: u8 = 3;
    /// One-Pass Signature.
    pub const ONE_PASS_SIGNATURE: u8 = 4;
    /// Secret key.
    pub const SECRET_KEY: u8 = 5;
    /// Public key.
    pub const PUBLIC_KEY: u8 = 6;
    /// Compressed data.
    pub const COMPRESSED: u8 = 8;
    /// Symmetrically Encrypted Data (legacy, no integrity protection).
    pub const SED: u8 = 9;
    /// Marker (ignored by readers).
    pub const MARKER: u8 = 10;
    /// Literal data.
    pub const LITERAL: u8 = 11;
    /// Symmetrically Encrypted and Integrity Protected Data.
    pub const SEIPD: u8 = 18;
    /// LibrePGP/GnuPG OCB "AEAD Encrypted Data".
    pub const AEAD: u8 = 20;
    /// Padding (RFC 9580).
    pub const PADDING: u8 = 21;
    /// Secret subkey.
    pub const SECRET_SUBKEY: u8 = 7;
    /// Trust (GnuPG keyring metadata, ignored).
    pub const TRUST: u8 = 12;
    /// User ID.
    pub const USER_ID: u8 = 13;
    /// Public subkey.
    pub const PUBLIC_SUBKEY: u8 = 14;
    /// User attribute (a photo ID).
    pub const USER_ATTRIBUTE: u8 = 17;
}

/// Why bytes are not a well-formed packet sequence.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    /// No data at all.
    #[error("no OpenPGP packets")]
    Empty,
    /// A byte that cannot start a packet header.
    #[error("byte {byte:#04x} at offset {offset} is not an OpenPGP packet header")]
    NotAHeader {
        /// The offending byte.
        byte: u8,
        /// Where.
        offset: usize,
    },
    /// Tag 0 is reserved and never valid.
    #[error("reserved packet tag 0 at offset {0}")]
    ReservedTag(usize),
    /// The data ends inside a header or a body.
    #[error("truncated OpenPGP packet (tag {tag}) at offset {offset}")]
    Truncated {
        /// The packet's tag.
        tag: u8,
        /// Where its header starts.
        offset: usize,
    },
    /// A packet whose body does not hold what its tag and version require.
    #[error("malformed packet (tag {tag}) at offset {offset}: {what}")]
    Malformed {
        /// The packet's tag.
        tag: u8,
        /// Where its header starts.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// Partial body lengths on a packet that may not have them.
    #[error("partial body length on packet tag {tag} at offset {offset}")]
    PartialNotAllowed {
        /// The packet's tag.
        tag: u8,
        /// Where its header starts.
        offset: usize,
    },
}

/// One packet: its tag, where it starts, and the first octet of its body
/// (the version for most packets), if the body is not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The packet tag.
    pub tag: u8,
    /// Offset of the header in the data.
    pub offset: usize,
    /// The body length (all chunks, for partial lengths).
    pub len: usize,
    /// First body octet, if any.
    pub first: Option<u8>,
    /// Offset of the body (of its first chunk, for partial lengths).
    pub body_start: usize,
    /// The body came in partial-length chunks.
    pub partial: bool,
}

impl Packet {
    /// The body, for a packet without partial lengths (the only kind key
    /// and session-key packets may have); `data` is what was walked.
    pub fn body<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        if self.partial {
            return None;
        }
        data.get(self.body_start..self.body_start.checked_add(self.len)?)
    }
}

/// Splits `data` into packets, checking every header and that every body
/// fits. Partial body lengths are followed chunk by chunk.
pub fn walk(data: &[u8]) -> Result<Vec<Packet>, PacketError> {
    if data.is_empty() {
        return Err(PacketError::Empty);
    }
    let mut packets = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (packet, next) = one(data, pos)?;
        packets.push(packet);
        pos = next;
    }
    Ok(packets)
}

/// Reads the packet at `start`; returns it and the offset after it.
fn one(data: &[u8], start: usize) -> Result<(Packet, usize), PacketError> {
    let b = data[start];
    if b & 0x80 == 0 {
        return Err(PacketError::NotAHeader {
            byte: b,
            offset: start,
        });
    }
    let truncated = |tag| PacketError::Truncated { tag, offset: start };
    let mut pos = start + 1;
    if b & 0x40 == 0 {
        // Legacy format: tag in bits 5..2, length type in bits 1..0.
        let tag = (b >> 2) & 0x0f;
        if tag == 0 {
            return Err(PacketError::ReservedTag(start));
        }
        let len = match b & 0x03 {
            0 => read_be(data, &mut pos, 1).ok_or(truncated(tag))?,
            1 => read_be(data, &mut pos, 2).ok_or(truncated(tag))?,
            2 => read_be(data, &mut pos, 4).ok_or(truncated(tag))?,
            _ => data.len() - pos,
        };
        let end = pos.checked_add(len).ok_or(truncated(tag))?;
        if end > data.len() {
            return Err(truncated(tag));
        }
        let packet = Packet {
            tag,
            offset: start,
            len,
            first: data[pos..end].first().copied(),
            body_start: pos,
            partial: false,
        };
        return Ok((packet, end));
    }
    // OpenPGP format: tag in bits 5..0, then one or more length octets.
    let tag = b & 0x3f;
    if tag == 0 {
        return Err(PacketError::ReservedTag(start));
    }
    let mut total = 0usize;
    let mut first = None;
    let mut body_start = None;
    let mut any_partial = false;
    loop {
        let o1 = *data.get(pos).ok_or(truncated(tag))? as usize;
        pos += 1;
        let (len, partial) = match o1 {
            0..=191 => (o1, false),
            192..=223 => {
                let o2 = *data.get(pos).ok_or(truncated(tag))? as usize;
                pos += 1;
                (((o1 - 192) << 8) + o2 + 192, false)
            }
            255 => (read_be(data, &mut pos, 4).ok_or(truncated(tag))?, false),
            _ => (1usize << (o1 & 0x1f), true),
        };
        if partial && !may_be_partial(tag) {
            return Err(PacketError::PartialNotAllowed { tag, offset: start });
        }
        let end = pos.checked_add(len).ok_or(truncated(tag))?;
        if end > data.len() {
            return Err(truncated(tag));
        }
        if first.is_none() {
            first = data[pos..end].first().copied();
        }
        body_start.get_or_insert(pos);
        total += len;
        pos = end;
        any_partial |= partial;
        if !partial {
            break;
        }
    }
    let packet = Packet {
        tag,
        offset: start,
        len: total,
        first,
        body_start: body_start.unwrap_or(pos),
        partial: any_partial,
    };
    Ok((packet, pos))
}

/// Only data packets may use partial body lengths.
fn may_be_partial(tag: u8) -> bool {
    matches!(
        tag,
        tag::COMPRESSED | tag::SED | tag::LITERAL | tag::SEIPD | tag::AEAD
    )
}

fn read_be(data: &[u8], pos: &mut usize, n: usize) -> Option<usize> {
    let bytes = data.get(*pos..*pos + n)?;
    *pos += n;
    Some(bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize))
}

/// What a packet sequence is, by the OpenPGP message grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One or more session-key packets, then one encrypted-data packet.
    Encrypted {
        /// Public-key session keys (one per recipient key).
        pkesk: usize,
        /// Password session keys.
        skesk: usize,
    },
    /// Signed data: one-pass signatures or signatures around literal data.
    Signed,
    /// Signature packets only (a detached or cleartext signature).
    Signatures,
    /// A transferable public or secret key.
    Key,
    /// Well-formed packets that are none of the above (literal data alone,
    /// compressed data, session keys without data...). The text says which.
    Other(String),
}

/// Packet framing plus the grammar of the whole sequence.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapeError {
    /// The framing is broken.
    #[error(transparent)]
    Packets(#[from] PacketError),
    /// A packet the grammar needs has a version we do not know.
    #[error("packet tag {tag} with unknown version {version:?}")]
    Version {
        /// The packet's tag.
        tag: u8,
        /// Its first body octet.
        version: Option<u8>,
    },
}

/// Walks `data` and names its shape.
pub fn shape(data: &[u8]) -> Result<Shape, ShapeError> {
    let packets = walk(data)?;
    // Marker and padding packets carry nothing; readers ignore them.
    let packets: Vec<Packet> = packets
        .into_iter()
        .filter(|p| p.tag != tag::MARKER && p.tag != tag::PADDING)
        .collect();
    let tags: Vec<u8> = packets.iter().map(|p| p.tag).collect();
    let Some(&first) = tags.first() else {
        return Ok(Shape::Other("only marker or padding packets".into()));
    };
    match first {
        tag::PKESK | tag::SKESK => encrypted(&packets),
        tag::PUBLIC_KEY | tag::SECRET_KEY => Ok(Shape::Key),
        tag::SIGNATURE if tags.iter().all(|&t| t == tag::SIGNATURE) => Ok(Shape::Signatures),
        tag::SIGNATURE | tag::ONE_PASS_SIGNATURE
            if tags.contains(&tag::LITERAL)
                && tags.iter().all(|&t| {
                    matches!(t, tag::SIGNATURE | tag::ONE_PASS_SIGNATURE | tag::LITERAL)
                }) =>
        {
            Ok(Shape::Signed)
        }
        tag::SED | tag::SEIPD | tag::AEAD => Ok(Shape::Other(
            "encrypted data without a session key packet".into(),
        )),
        tag::LITERAL => Ok(Shape::Other("literal (unencrypted) data".into())),
        tag::COMPRESSED => Ok(Shape::Other("compressed (unencrypted) data".into())),
        t => Ok(Shape::Other(format!("unexpected packet tag {t} first"))),
    }
}

/// `ESK+ EncryptedData` with nothing after it.
fn encrypted(packets: &[Packet]) -> Result<Shape, ShapeError> {
    let (mut pkesk, mut skesk) = (0, 0);
    let mut rest = packets;
    while let Some((p, tail)) = rest.split_first() {
        match p.tag {
            tag::PKESK => {
                check_version(p, &[3, 6])?;
                pkesk += 1;
            }
            tag::SKESK => {
                check_version(p, &[4, 5, 6])?;
                skesk += 1;
            }
            _ => break,
        }
        rest = tail;
    }
    match rest {
        [] => Ok(Shape::Other("session keys without encrypted data".into())),
        [data] => {
            match data.tag {
                tag::SED => {}
                tag::SEIPD => check_version(data, &[1, 2])?,
                tag::AEAD => check_version(data, &[1])?,
                t => {
                    return Ok(Shape::Other(format!(
                        "packet tag {t} where encrypted data was expected"
                    )));
                }
            }
            Ok(Shape::Encrypted { pkesk, skesk })
        }
        [_, more, ..] => Ok(Shape::Other(format!(
            "packet tag {} after the encrypted data",
            more.tag
        ))),
    }
}

fn check_version(p: &Packet, known: &[u8]) -> Result<(), ShapeError> {
    match p.first {
        Some(v) if known.contains(&v) => Ok(()),
        version => Err(ShapeError::Version {
            tag: p.tag,
            version,
        }),
    }
}

/// Whom a public-key session-key packet is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyTarget {
    /// A v3 PKESK: the recipient key's 8-octet key ID.
    KeyId([u8; 8]),
    /// A v6 PKESK: the recipient key's version and fingerprint.
    Fingerprint {
        /// Key version (4 or 6).
        version: u8,
        /// The fingerprint (20 octets for v4, 32 for v6).
        fingerprint: Vec<u8>,
    },
    /// A hidden recipient: the all-zero key ID (v3, `gpg --throw-keyids`,
    /// `--hidden-recipient`) or an anonymous v6 PKESK.
    Wildcard,
}

impl std::fmt::Display for KeyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyTarget::KeyId(id) => write!(f, "{}", hex(id)),
            KeyTarget::Fingerprint { fingerprint, .. } => write!(f, "{}", hex(fingerprint)),
            KeyTarget::Wildcard => f.write_str("hidden recipient"),
        }
    }
}

/// Upper-case hexadecimal, as GnuPG prints key IDs and fingerprints.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The recipients of every PKESK packet in `data` (an encrypted message),
/// in order. Symmetric session keys (SKESK) have no recipient and are not
/// listed, so a passphrase-only message gives an empty list.
pub fn recipients(data: &[u8]) -> Result<Vec<KeyTarget>, PacketError> {
    let mut out = Vec::new();
    for p in walk(data)? {
        if p.tag != tag::PKESK {
            continue;
        }
        let malformed = |what: &str| PacketError::Malformed {
            tag: p.tag,
            offset: p.offset,
            what: what.to_owned(),
        };
        let body = p.body(data).ok_or_else(|| malformed("no body"))?;
        out.push(pkesk_target(body).map_err(malformed)?);
    }
    Ok(out)
}

fn pkesk_target(body: &[u8]) -> Result<KeyTarget, &'static str> {
    match body.first() {
        Some(3) => {
            let id: [u8; 8] = body
                .get(1..9)
                .and_then(|s| s.try_into().ok())
                .ok_or("v3 PKESK shorter than its key ID")?;
            Ok(if id == [0; 8] {
                KeyTarget::Wildcard
            } else {
                KeyTarget::KeyId(id)
            })
        }
        Some(6) => {
            let n = *body.get(1).ok_or("v6 PKESK without its recipient size")? as usize;
            if n == 0 {
                return Ok(KeyTarget::Wildcard);
            }
            let fields = body
                .get(2..2 + n)
                .ok_or("v6 PKESK shorter than its recipient")?;
            let (version, fingerprint) = (fields[0], &fields[1..]);
            match (version, fingerprint.len()) {
                (4, 20) | (6, 32) => Ok(KeyTarget::Fingerprint {
                    version,
                    fingerprint: fingerprint.to_vec(),
                }),
                _ => Err("v6 PKESK with an unknown key version or fingerprint size"),
            }
        }
        _ => Err("unknown PKESK version"),
    }
}

/// What a public-key or public-subkey packet identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPacket {
    /// Key version (4, 5 or 6).
    pub version: u8,
    /// Public-key algorithm ID (RFC 9580 §9.1).
    pub algorithm: u8,
    /// The fingerprint: v4 SHA-1 (RFC 4880 §12.2), v5/v6 SHA-256
    /// (LibrePGP, RFC 9580 §5.5.4).
    pub fingerprint: Vec<u8>,
    /// The key ID: the low 64 bits of a v4 fingerprint, the high 64 bits
    /// of a v5/v6 one.
    pub key_id: [u8; 8],
}

/// Computes the fingerprint and key ID of a key packet's `body`.
pub fn key_packet(body: &[u8]) -> Result<KeyPacket, String> {
    use sha1::Digest;
    let version = *body.first().ok_or("empty key packet")?;
    let algorithm = *body.get(5).ok_or("key packet shorter than its header")?;
    let fingerprint: Vec<u8> = match version {
        4 => {
            let len = u16::try_from(body.len()).map_err(|_| "v4 key packet over 65535 octets")?;
            let mut h = sha1::Sha1::new();
            h.update([0x99]);
            h.update(len.to_be_bytes());
            h.update(body);
            h.finalize().to_vec()
        }
        5 | 6 => {
            let len = u32::try_from(body.len()).map_err(|_| "key packet too long")?;
            let mut h = sha2::Sha256::new();
            h.update([if version == 6 { 0x9b } else { 0x9a }]);
            h.update(len.to_be_bytes());
            h.update(body);
            h.finalize().to_vec()
        }
        v => {
            return Err(format!(
                "key version {v} is not supported (only 4, 5 and 6)"
            ));
        }
    };
    let id = if version == 4 {
        &fingerprint[12..20]
    } else {
        &fingerprint[..8]
    };
    let key_id: [u8; 8] = id.try_into().map_err(|_| "fingerprint too short")?;
    Ok(KeyPacket {
        version,
        algorithm,
        fingerprint,
        key_id,
    })
}

/// The parts of a signature packet a keyring needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureInfo {
    /// Signature type (0x10..0x13 certifications, 0x18 subkey binding,
    /// 0x1f direct key, 0x20/0x28 revocations...).
    pub sig_type: u8,
    /// The first octet of the Key Flags subpacket (RFC 9580 §5.2.3.29) in
    /// the hashed area, if there is one.
    pub key_flags: Option<u8>,
}

/// Reads a signature packet's type and hashed key flags. Nothing is
/// verified.
pub fn signature_info(body: &[u8]) -> Result<SignatureInfo, &'static str> {
    let version = *body.first().ok_or("empty signature packet")?;
    match version {
        3 => Ok(SignatureInfo {
            sig_type: *body.get(2).ok_or("truncated v3 signature")?,
            key_flags: None,
        }),
        4..=6 => {
            let sig_type = *body.get(1).ok_or("truncated signature")?;
            let (len, start): (usize, usize) = if version == 4 {
                (read_be(body, &mut 4, 2).ok_or("truncated signature")?, 6)
            } else {
                (read_be(body, &mut 4, 4).ok_or("truncated signature")?, 8)
            };
            let area = body
                .get(start..start.checked_add(len).ok_or("bad subpacket area")?)
                .ok_or("signature shorter than its hashed subpackets")?;
            Ok(SignatureInfo {
                sig_type,
                key_flags: key_flags(area)?,
            })
        }
        _ => Err("unknown signature version"),
    }
}

/// Key Flags (subpacket type 27) in a subpacket area.
fn key_flags(area: &[u8]) -> Result<Option<u8>, &'static str> {
    let mut pos = 0;
    let mut flags = None;
    while pos < area.len() {
        let o1 = area[pos] as usize;
        pos += 1;
        let len = match o1 {
            0..=191 => o1,
            192..=254 => {
                let o2 = *area.get(pos).ok_or("truncated subpacket length")? as usize;
                pos += 1;
                ((o1 - 192) << 8) + o2 + 192
            }
            _ => read_be(area, &mut pos, 4).ok_or("truncated subpacket length")?,
        };
        let end = pos.checked_add(len).ok_or("bad subpacket length")?;
        let sub = area.get(pos..end).ok_or("subpacket longer than its area")?;
        let (&kind, data) = sub.split_first().ok_or("empty subpacket")?;
        if kind & 0x7f == 27 {
            flags = Some(data.first().copied().unwrap_or(0));
        }
        pos = end;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format packet with a one-octet length.
    fn new_fmt(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xc0 | tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    }

    /// A legacy-format packet with a two-octet length.
    fn old_fmt(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | (tag << 2) | 1];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn pkesk() -> Vec<u8> {
        let mut body = vec![3];
        body.extend_from_slice(&[0x11; 8]);
        body.extend_from_slice(&[18, 0, 8, 0xaa]);
        body
    }

    #[test]
    fn legacy_pkesk_then_new_seipd_is_encrypted() {
        let mut data = old_fmt(tag::PKESK, &pkesk());
        data.extend(new_fmt(tag::SEIPD, &[1, 2, 3, 4]));
        assert_eq!(
            shape(&data).unwrap(),
            Shape::Encrypted { pkesk: 1, skesk: 0 }
        );
    }

    #[test]
    fn partial_lengths_are_followed() {
        let mut data = new_fmt(tag::SKESK, &[4, 9, 3, 2]);
        // SEIPD: first chunk 512 octets (partial 0xe9), then a final 3-octet chunk.
        data.push(0xc0 | tag::SEIPD);
        data.push(0xe0 | 9);
        let mut chunk = vec![0u8; 512];
        chunk[0] = 1;
        data.extend_from_slice(&chunk);
        data.extend_from_slice(&[3, 7, 7, 7]);
        assert_eq!(
            shape(&data).unwrap(),
            Shape::Encrypted { pkesk: 0, skesk: 1 }
        );
        // Cut inside the second chunk: truncated.
        data.truncate(data.len() - 1);
        assert!(matches!(
            shape(&data),
            Err(ShapeError::Packets(PacketError::Truncated { tag: 18, .. }))
        ));
    }

    #[test]
    fn two_octet_and_four_octet_lengths() {
        let body = vec![1u8; 300];
        let mut data = new_fmt(tag::PKESK, &pkesk());
        let l = body.len() - 192;
        data.extend_from_slice(&[0xc0 | tag::SEIPD, (l >> 8) as u8 + 192, l as u8]);
        data.extend_from_slice(&body);
        assert!(matches!(shape(&data).unwrap(), Shape::Encrypted { .. }));
        let mut data = new_fmt(tag::PKESK, &pkesk());
        data.extend_from_slice(&[0xc0 | tag::SEIPD, 255, 0, 0, 1, 44]);
        data.extend_from_slice(&body);
        assert!(matches!(shape(&data).unwrap(), Shape::Encrypted { .. }));
    }

    #[test]
    fn marker_and_padding_are_ignored() {
        let mut data = new_fmt(tag::MARKER, b"PGP");
        data.extend(new_fmt(tag::PKESK, &pkesk()));
        data.extend(new_fmt(tag::SEIPD, &[2, 9, 2, 6]));
        data.extend(new_fmt(tag::PADDING, &[0; 16]));
        assert!(matches!(shape(&data).unwrap(), Shape::Encrypted { .. }));
    }

    #[test]
    fn not_encrypted_shapes() {
        assert_eq!(
            shape(&new_fmt(tag::LITERAL, b"b\0\0\0\0\0hi")).unwrap(),
            Shape::Other("literal (unencrypted) data".into())
        );
        assert!(matches!(
            shape(&new_fmt(tag::PKESK, &pkesk())).unwrap(),
            Shape::Other(_)
        ));
        let mut two = new_fmt(tag::PKESK, &pkesk());
        two.extend(new_fmt(tag::SEIPD, &[1, 0]));
        two.extend(new_fmt(tag::LITERAL, b"b\0\0\0\0\0hi"));
        assert!(matches!(shape(&two).unwrap(), Shape::Other(_)));
        assert_eq!(
            shape(&new_fmt(tag::SIGNATURE, &[4, 0])).unwrap(),
            Shape::Signatures
        );
        assert_eq!(
            shape(&new_fmt(tag::PUBLIC_KEY, &[4, 0])).unwrap(),
            Shape::Key
        );
        let mut signed = new_fmt(tag::ONE_PASS_SIGNATURE, &[3, 0]);
        signed.extend(new_fmt(tag::LITERAL, b"b\0\0\0\0\0hi"));
        signed.extend(new_fmt(tag::SIGNATURE, &[4, 0]));
        assert_eq!(shape(&signed).unwrap(), Shape::Signed);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(walk(b""), Err(PacketError::Empty));
        assert!(matches!(
            walk(b"hello"),
            Err(PacketError::NotAHeader { byte: b'h', .. })
        ));
        assert!(matches!(
            walk(&[0xc0, 1, 1]),
            Err(PacketError::ReservedTag(0))
        ));
        assert!(matches!(
            walk(&[0xc1, 10, 3]),
            Err(PacketError::Truncated { tag: 1, .. })
        ));
        // Partial length on a session-key packet.
        assert!(matches!(
            walk(&[0xc1, 0xe1, 3, 0]),
            Err(PacketError::PartialNotAllowed { tag: 1, .. })
        ));
        // Unknown PKESK version.
        let mut data = new_fmt(tag::PKESK, &[9, 1, 2]);
        data.extend(new_fmt(tag::SEIPD, &[1, 0]));
        assert!(matches!(
            shape(&data),
            Err(ShapeError::Version { tag: 1, .. })
        ));
    }

    #[test]
    fn pkesk_recipients() {
        let mut wildcard = vec![3];
        wildcard.extend_from_slice(&[0; 8]);
        wildcard.extend_from_slice(&[18, 0, 8, 0xaa]);
        let mut v6 = vec![6, 21, 4];
        v6.extend_from_slice(&[0x22; 20]);
        v6.extend_from_slice(&[25, 1, 2]);
        let mut data = old_fmt(tag::PKESK, &pkesk());
        data.extend(new_fmt(tag::SKESK, &[4, 9, 3, 2]));
        data.extend(new_fmt(tag::PKESK, &wildcard));
        data.extend(new_fmt(tag::PKESK, &v6));
        data.extend(new_fmt(tag::PKESK, &[6, 0, 25, 1, 2]));
        data.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
        assert_eq!(
            recipients(&data).unwrap(),
            vec![
                KeyTarget::KeyId([0x11; 8]),
                KeyTarget::Wildcard,
                KeyTarget::Fingerprint {
                    version: 4,
                    fingerprint: vec![0x22; 20]
                },
                KeyTarget::Wildcard,
            ]
        );
        assert_eq!(KeyTarget::KeyId([0xab; 8]).to_string(), "ABABABABABABABAB");
        // Passphrase only: no recipients.
        let mut sym = new_fmt(tag::SKESK, &[4, 9, 3, 2]);
        sym.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
        assert_eq!(recipients(&sym).unwrap(), vec![]);
        // Too short to hold a key ID, a bad v6 recipient size, an unknown
        // version: errors, not panics.
        for body in [
            &[3, 1, 2][..],
            &[6, 40, 4, 1],
            &[6, 3, 9, 1, 2],
            &[7, 0],
            &[],
        ] {
            let mut d = new_fmt(tag::PKESK, body);
            d.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
            assert!(
                matches!(recipients(&d), Err(PacketError::Malformed { tag: 1, .. })),
                "{body:?}"
            );
        }
    }

    #[test]
    fn packet_bodies_after_every_length_form() {
        let body: Vec<u8> = (0..=255).cycle().take(300).collect();
        let mut data = old_fmt(tag::USER_ID, &body);
        let l = body.len() - 192;
        data.extend_from_slice(&[0xc0 | tag::USER_ID, (l >> 8) as u8 + 192, l as u8]);
        data.extend_from_slice(&body);
        data.extend_from_slice(&[0xc0 | tag::USER_ID, 255, 0, 0, 1, 44]);
        data.extend_from_slice(&body);
        data.extend(new_fmt(tag::USER_ID, &body[..10]));
        let packets = walk(&data).unwrap();
        assert_eq!(packets.len(), 4);
        for p in &packets[..3] {
            assert_eq!(p.body(&data), Some(&body[..]));
        }
        assert_eq!(packets[3].body(&data), Some(&body[..10]));
    }

    #[test]
    fn key_packet_fingerprints() {
        use base64::Engine;
        // RFC 9580 Appendix A.1: sample v4 Ed25519Legacy key, fingerprint
        // C959BDBAFA32A2F89A153B678CFDE12197965A9A.
        let data = base64::engine::general_purpose::STANDARD
            .decode("xjMEU/NfCxYJKwYBBAHaRw8BAQdAPwmJlL3ZFu1AUxl5NOSofIBzOhKA1i+AEJkuQ+47JAY=")
            .unwrap();
        let [p] = walk(&data).unwrap()[..] else {
            panic!()
        };
        assert_eq!(p.tag, tag::PUBLIC_KEY);
        let k = key_packet(p.body(&data).unwrap()).unwrap();
        assert_eq!((k.version, k.algorithm), (4, 22));
        assert_eq!(
            hex(&k.fingerprint),
            "C959BDBAFA32A2F89A153B678CFDE12197965A9A"
        );
        assert_eq!(hex(&k.key_id), "8CFDE12197965A9A");
        assert!(key_packet(&[]).is_err());
        assert!(key_packet(&[4, 0, 0]).is_err());
        assert!(key_packet(&[3, 0, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn signature_key_flags() {
        // v4 subkey binding: hashed area with creation time and key flags 0x0c.
        let hashed = [5, 2, 0, 0, 0, 1, 2, 27, 0x0c];
        let mut body = vec![4, 0x18, 22, 8, 0, hashed.len() as u8];
        body.extend_from_slice(&hashed);
        body.extend_from_slice(&[0, 0, 1, 2]);
        assert_eq!(
            signature_info(&body).unwrap(),
            SignatureInfo {
                sig_type: 0x18,
                key_flags: Some(0x0c)
            }
        );
        body[5] = 200;
        assert!(signature_info(&body).is_err());
        assert!(signature_info(&[4, 0x18, 22, 8, 0, 2, 5]).is_err());
        assert!(signature_info(&[4, 0x13, 22, 8, 0, 2, 3, 2]).is_err());
        assert!(signature_info(&[9]).is_err());
    }
}
