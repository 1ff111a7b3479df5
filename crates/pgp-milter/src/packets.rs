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
        total += len;
        pos = end;
        if !partial {
            break;
        }
    }
    let packet = Packet {
        tag,
        offset: start,
        len: total,
        first,
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
}
