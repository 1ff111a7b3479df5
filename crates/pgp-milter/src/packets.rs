//! The OpenPGP message grammar (RFC 9580 §10.3) over packets parsed by
//! rpgp ([`crate::openpgp`]): what counts as an encrypted message (optional
//! Marker/Padding, one or more session-key packets, exactly one
//! encrypted-data packet), as signed data, as a key. The grammar is ours;
//! the packet framing and bodies are rpgp's.

use thiserror::Error;

use crate::openpgp::{self, OpenPgpError, PacketInfo};

pub use crate::openpgp::{KeyTarget, hex, tag};

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

/// In words, for refusal reasons (`a key`, `signatures only`).
impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Encrypted { .. } => f.write_str("an encrypted message"),
            Shape::Signed => f.write_str("a signed message"),
            Shape::Signatures => f.write_str("signatures only"),
            Shape::Key => f.write_str("a key"),
            Shape::Other(why) => f.write_str(why),
        }
    }
}

/// Packets rpgp refuses, or a grammar packet of a version we do not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapeError {
    /// rpgp could not parse the packets (or failed internally).
    #[error(transparent)]
    Parse(#[from] OpenPgpError),
    /// A packet the grammar needs has a version we do not know.
    #[error(
        "{} packet of unknown version {}",
        openpgp::packet_name(*tag),
        version.map_or_else(|| "(none)".to_string(), |v| v.to_string())
    )]
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
    if packets.iter().all(|p| p.tag == tag::SIGNATURE) {
        return Ok(Shape::Signatures);
    }
    // Anything else must be one OpenPGP Message by the RFC 9580 §10.3
    // grammar, with nothing after it: a literal, compressed data holding a
    // message, a signature before a message, or a one-pass signature, a
    // message and its signature. Each production holds exactly one message,
    // so exactly one literal: what gpg calls "multiple plaintexts" or
    // "ambiguous signature data" does not parse.
    let (signed, rest) = match message(&packets, 0) {
        Ok(parsed) => parsed,
        Err(why) => return Ok(Shape::Other(why)),
    };
    if let Some(extra) = rest.first() {
        return Ok(Shape::Other(format!(
            "{} packet after the end of the message",
            openpgp::packet_name(extra.tag)
        )));
    }
    if signed {
        return Ok(Shape::Signed);
    }
    Ok(Shape::Other(match first.tag {
        tag::LITERAL => "literal (unencrypted) data".into(),
        _ => "compressed (unencrypted, unsigned) data".into(),
    }))
}

/// Deepest nesting of signatures and compressed data around one literal
/// (each level is a packet, so the input size bounds it too; this bounds
/// the recursion).
const MAX_MESSAGE_NESTING: usize = 64;

/// One OpenPGP Message (RFC 9580 §10.3) from the front of `packets`
/// (marker and padding already left out): whether it is signed, and what
/// follows it. Encrypted messages are not looked into here: this is the
/// grammar of signed and plain data.
fn message<'a>(
    packets: &'a [&'a PacketInfo],
    depth: usize,
) -> Result<(bool, &'a [&'a PacketInfo]), String> {
    if depth > MAX_MESSAGE_NESTING {
        return Err(format!(
            "signatures nested more than {MAX_MESSAGE_NESTING} deep"
        ));
    }
    let Some((first, rest)) = packets.split_first() else {
        return Err("a signature without the signed data".into());
    };
    match first.tag {
        tag::LITERAL => Ok((false, rest)),
        tag::COMPRESSED => {
            let inner: Vec<&PacketInfo> = first
                .contents
                .iter()
                .flatten()
                .filter(|p| p.tag != tag::MARKER && p.tag != tag::PADDING)
                .collect();
            let (signed, after) = message(&inner, depth + 1)?;
            if let Some(extra) = after.first() {
                return Err(format!(
                    "{} packet after the message inside compressed data",
                    openpgp::packet_name(extra.tag)
                ));
            }
            Ok((signed, rest))
        }
        tag::SIGNATURE => {
            let (_, after) = message(rest, depth + 1)?;
            Ok((true, after))
        }
        tag::ONE_PASS_SIGNATURE => {
            let (_, after) = message(rest, depth + 1)?;
            match after.split_first() {
                Some((sig, after)) if sig.tag == tag::SIGNATURE => Ok((true, after)),
                _ => Err("a one-pass signature without its signature packet".into()),
            }
        }
        t => Err(format!(
            "{} packet where signed or literal data was expected",
            openpgp::packet_name(t)
        )),
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
                        "{} packet where encrypted data was expected",
                        openpgp::packet_name(t)
                    )));
                }
            }
            Ok(Shape::Encrypted { pkesk, skesk })
        }
        [_, more, ..] => Ok(Shape::Other(format!(
            "{} packet after the encrypted data",
            openpgp::packet_name(more.tag)
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
}
