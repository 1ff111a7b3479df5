//! The OpenPGP message grammar (RFC 9580 §10.3) over packets parsed by
//! rpgp ([`crate::openpgp`]): what counts as an encrypted message (optional
//! Marker/Padding, one or more session-key packets, exactly one
//! encrypted-data packet), as signed data, as a key. The grammar is ours;
//! the packet framing and bodies are rpgp's.
//!
//! The packet walker kept below (`walk`, `key_packet`, `signature_info`)
//! still serves the keyring until it moves to rpgp too.

use thiserror::Error;

use crate::openpgp::{self, OpenPgpError, PacketInfo};

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

/// What a packet sequence is, by the OpenPGP message grammar (RFC 9580
/// §10.3), applied to the packets rpgp parsed ([`openpgp::packets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One or more session-key packets, then one encrypted-data packet.
    Encrypted {
        /// Public-key session keys (one per recipient key).
        pkesk: usize,
        /// Password session keys.
        skesk: usize,
    },
    /// Signed data: one-pass signatures or signatures around literal data,
    /// possibly inside Compressed Data (what `gpg --sign` makes).
    Signed,
    /// Signature packets only (a detached or cleartext signature).
    Signatures,
    /// A transferable public or secret key.
    Key,
    /// Well-formed packets that are none of the above (literal data alone,
    /// compressed data, session keys without data...). The text says which.
    Other(String),
}

/// Packets rpgp refuses, or a grammar packet of a version we do not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapeError {
    /// rpgp could not parse the packets (or failed internally).
    #[error(transparent)]
    Parse(#[from] OpenPgpError),
    /// A packet the grammar needs has a version we do not know.
    #[error("packet tag {tag} with unknown version {version:?}")]
    Version {
        /// The packet's tag.
        tag: u8,
        /// Its version octet.
        version: Option<u8>,
    },
}

impl ShapeError {
    /// True if the fault is ours (rpgp panicked, input over the bound): the
    /// message gets a tempfail, not a refusal.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            ShapeError::Parse(OpenPgpError::Panicked(_) | OpenPgpError::TooLarge { .. })
        )
    }
}

/// Parses `data` with rpgp and names its shape.
pub fn shape(data: &[u8]) -> Result<Shape, ShapeError> {
    shape_of(&openpgp::packets(data)?)
}

/// The shape of already parsed packets.
pub fn shape_of(packets: &[PacketInfo]) -> Result<Shape, ShapeError> {
    // Marker and padding packets carry nothing; readers ignore them.
    let packets: Vec<&PacketInfo> = packets
        .iter()
        .filter(|p| p.tag != tag::MARKER && p.tag != tag::PADDING)
        .collect();
    let Some(first) = packets.first() else {
        return Ok(Shape::Other("only marker or padding packets".into()));
    };
    match first.tag {
        tag::PKESK | tag::SKESK => return encrypted(&packets),
        tag::PUBLIC_KEY | tag::SECRET_KEY => return Ok(Shape::Key),
        tag::SED | tag::SEIPD | tag::AEAD => {
            return Ok(Shape::Other(
                "encrypted data without a session key packet".into(),
            ));
        }
        _ => {}
    }
    // Signed data may sit inside Compressed Data, or hold it (RFC 9580
    // §10.3: a Compressed Message is itself an OpenPGP Message); look
    // through it (rpgp decompressed it, bounded).
    let mut tags = Vec::new();
    flatten(&packets, &mut tags);
    let compressed = packets.iter().any(|p| p.tag == tag::COMPRESSED);
    if tags.iter().all(|&t| t == tag::SIGNATURE) && !compressed {
        return Ok(Shape::Signatures);
    }
    if matches!(
        tags.first(),
        Some(&(tag::SIGNATURE | tag::ONE_PASS_SIGNATURE))
    ) && tags.contains(&tag::LITERAL)
        && tags
            .iter()
            .all(|&t| matches!(t, tag::SIGNATURE | tag::ONE_PASS_SIGNATURE | tag::LITERAL))
    {
        return Ok(Shape::Signed);
    }
    Ok(Shape::Other(match first.tag {
        tag::LITERAL => "literal (unencrypted) data".into(),
        tag::COMPRESSED => "compressed (unencrypted, unsigned) data".into(),
        t => format!("unexpected packet tag {t} first"),
    }))
}

/// The tags of `packets` with every Compressed Data packet replaced by its
/// contents (marker and padding packets left out).
fn flatten(packets: &[&PacketInfo], out: &mut Vec<u8>) {
    for p in packets {
        match &p.contents {
            Some(inner) => flatten(
                &inner
                    .iter()
                    .filter(|p| p.tag != tag::MARKER && p.tag != tag::PADDING)
                    .collect::<Vec<_>>(),
                out,
            ),
            None => out.push(p.tag),
        }
    }
}

/// `ESK+ EncryptedData` with nothing after it.
fn encrypted(packets: &[&PacketInfo]) -> Result<Shape, ShapeError> {
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

fn check_version(p: &PacketInfo, known: &[u8]) -> Result<(), ShapeError> {
    match p.version {
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

/// The recipients of every PKESK packet in `packets` (an encrypted
/// message), in order. Symmetric session keys (SKESK) have no recipient and
/// are not listed, so a passphrase-only message gives an empty list.
pub fn recipients(packets: &[PacketInfo]) -> Result<Vec<KeyTarget>, ShapeError> {
    packets
        .iter()
        .filter(|p| p.tag == tag::PKESK)
        .map(|p| {
            p.recipient.clone().ok_or(ShapeError::Version {
                tag: p.tag,
                version: p.version,
            })
        })
        .collect()
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

    /// A v3 PKESK to key ID 0x11.., RSA (one MPI).
    fn pkesk() -> Vec<u8> {
        let mut body = vec![3];
        body.extend_from_slice(&[0x11; 8]);
        body.extend_from_slice(&[1, 0, 8, 0xaa]);
        body
    }

    /// A v4 SKESK: AES-256, simple S2K with SHA-256.
    const SKESK: [u8; 4] = [4, 9, 0, 8];

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
        let mut data = new_fmt(tag::SKESK, &SKESK);
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
        let mut cut = data.clone();
        cut.truncate(data.len() - 1);
        assert!(matches!(
            shape(&cut),
            Err(ShapeError::Parse(OpenPgpError::Packet { tag: 18, .. }))
        ));
        // RFC 9580 §4.2.1.4: a first partial chunk under 512 octets is
        // refused (rpgp; the old walker took it).
        let mut short = new_fmt(tag::SKESK, &SKESK);
        short.extend_from_slice(&[0xc0 | tag::SEIPD, 0xe0 | 8]);
        short.extend_from_slice(&chunk[..256]);
        short.extend_from_slice(&[1, 7]);
        assert!(matches!(
            shape(&short),
            Err(ShapeError::Parse(OpenPgpError::Packet { tag: 18, .. }))
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
        // Legacy indeterminate length on the data packet.
        let mut data = old_fmt(tag::PKESK, &pkesk());
        data.push(0x80 | (tag::SED << 2) | 3);
        data.extend_from_slice(&body);
        assert!(matches!(shape(&data).unwrap(), Shape::Encrypted { .. }));
    }

    #[test]
    fn marker_and_padding_are_ignored() {
        let mut data = new_fmt(tag::MARKER, b"PGP");
        data.extend(new_fmt(tag::PKESK, &pkesk()));
        data.extend(new_fmt(tag::SEIPD, &[1, 9, 2, 6]));
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
        let mut no_esk = new_fmt(tag::SEIPD, &[1, 0]);
        no_esk.extend(new_fmt(tag::PADDING, &[0; 4]));
        assert!(matches!(shape(&no_esk).unwrap(), Shape::Other(_)));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(shape(b""), Err(ShapeError::Parse(OpenPgpError::Empty)));
        assert!(matches!(
            shape(b"hello"),
            Err(ShapeError::Parse(OpenPgpError::Header { offset: 0, .. }))
        ));
        // Tag 0 is reserved.
        assert!(shape(&[0xc0, 1, 1]).is_err());
        // A body longer than the data.
        assert!(matches!(
            shape(&[0xc1, 10, 3]),
            Err(ShapeError::Parse(OpenPgpError::Packet { tag: 1, .. }))
        ));
        // A header cut off after its first octet (rpgp's PacketParser would
        // end quietly there).
        let mut cut = new_fmt(tag::PKESK, &pkesk());
        cut.extend(new_fmt(tag::SEIPD, &[1, 0]));
        cut.push(0xc0 | tag::SEIPD);
        assert!(matches!(
            shape(&cut),
            Err(ShapeError::Parse(OpenPgpError::Header { .. }))
        ));
        // Partial length on a session-key packet.
        assert!(shape(&[0xc1, 0xe9, 3, 0]).is_err());
        // A PKESK whose RSA MPI is cut short.
        let mut data = new_fmt(tag::PKESK, &[3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 64, 1]);
        data.extend(new_fmt(tag::SEIPD, &[1, 0]));
        assert!(shape(&data).is_err());
        // Unknown PKESK version: rpgp keeps it as a packet, the grammar
        // refuses it.
        let mut data = new_fmt(tag::PKESK, &[9, 1, 2]);
        data.extend(new_fmt(tag::SEIPD, &[1, 0]));
        assert!(matches!(
            shape(&data),
            Err(ShapeError::Version { tag: 1, .. })
        ));
        // Unknown SEIPD version: rpgp refuses the packet.
        let mut data = new_fmt(tag::PKESK, &pkesk());
        data.extend(new_fmt(tag::SEIPD, &[7, 0]));
        assert!(shape(&data).is_err());
    }

    #[test]
    fn pkesk_recipients() {
        let mut wildcard = vec![3];
        wildcard.extend_from_slice(&[0; 8]);
        wildcard.extend_from_slice(&[1, 0, 8, 0xaa]);
        let mut v6 = vec![6, 21, 4];
        v6.extend_from_slice(&[0x22; 20]);
        v6.extend_from_slice(&[1, 0, 8, 0xaa]);
        let mut data = old_fmt(tag::PKESK, &pkesk());
        data.extend(new_fmt(tag::SKESK, &SKESK));
        data.extend(new_fmt(tag::PKESK, &wildcard));
        data.extend(new_fmt(tag::PKESK, &v6));
        data.extend(new_fmt(tag::PKESK, &[6, 0, 1, 0, 8, 0xaa]));
        data.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
        let parsed = openpgp::packets(&data).unwrap();
        assert!(matches!(
            shape_of(&parsed).unwrap(),
            Shape::Encrypted { pkesk: 4, skesk: 1 }
        ));
        assert_eq!(
            recipients(&parsed).unwrap(),
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
        let mut sym = new_fmt(tag::SKESK, &SKESK);
        sym.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
        assert_eq!(
            recipients(&openpgp::packets(&sym).unwrap()).unwrap(),
            vec![]
        );
        // Too short to hold a key ID, a bad v6 recipient size: rpgp refuses
        // the packet; an unknown version has no recipient.
        for body in [&[3, 1, 2][..], &[6, 40, 4, 1], &[6, 3, 9, 1, 2], &[]] {
            let mut d = new_fmt(tag::PKESK, body);
            d.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
            assert!(openpgp::packets(&d).is_err(), "{body:?}");
        }
        let mut d = new_fmt(tag::PKESK, &[7, 0]);
        d.extend(new_fmt(tag::SEIPD, &[1, 2, 3]));
        assert!(recipients(&openpgp::packets(&d).unwrap()).is_err());
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
