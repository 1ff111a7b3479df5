//! The OpenPGP message grammar (RFC 9580 §10.3), checked packet by packet as
//! the tags stream by, so a packet out of place is refused when its header
//! arrives (early reject), not at the end.
//!
//! The same rules as [`crate::packets::shape_of`], with Marker and Padding
//! ignored wherever they stand:
//!
//! * encrypted: one or more session-key packets (PKESK, SKESK), then exactly
//!   one encrypted-data packet (SED, SEIPD, AEAD), then nothing;
//! * a key block: a public or secret key first, then only the packets a
//!   key block holds (subkeys, user IDs and attributes, signatures, Trust);
//!   the whole-message detector took anything after the key, which would
//!   let a literal packet ride along — refused here;
//! * signatures only (a detached signature);
//! * a signed message: `{Signature, One-Pass Signature}* (Literal |
//!   Compressed) Signature^k`, `k` the number of one-pass signatures — the
//!   language the §10.3 productions `Signature Message` and
//!   `One-Pass Signature Message Signature` generate around one literal
//!   (or compressed) core. Compressed Data must hold exactly one such
//!   message (checked by the framing of its decompressed contents, in
//!   [`Mode::InCompressed`]).

use super::PayloadError;
use crate::openpgp::packet_name;
use crate::packets::tag;

/// Deepest nesting of signatures around one literal (as the detector).
pub const MAX_SIGNATURE_NESTING: usize = 64;

/// Where the packets stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The payload's packets (or an armored block's).
    Top,
    /// The decompressed contents of Compressed Data: exactly one signed or
    /// literal message.
    InCompressed,
}

/// What a complete packet sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Session keys and one encrypted-data packet.
    Encrypted,
    /// A key block.
    Key,
    /// Signature packets only.
    Signatures,
    /// A message with at least one signature (here or inside compressed data).
    Signed,
    /// A literal (or compressed) message without any signature.
    Unsigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Esk,
    Encrypted,
    Key,
    Prefix { ops: usize, sigs: usize },
    After { closing: usize, signed: bool },
}

/// The grammar's state over one packet sequence.
#[derive(Debug, Clone)]
pub struct Grammar {
    mode: Mode,
    state: State,
}

fn name(t: u8) -> String {
    packet_name(t)
}

fn err(why: String) -> PayloadError {
    PayloadError::Packets(why)
}

/// Packets a key block may hold after its primary key (RFC 9580 §10.1,
/// §10.2), Marker and Padding aside.
const KEY_BLOCK: [u8; 8] = [
    tag::PUBLIC_KEY,
    tag::PUBLIC_SUBKEY,
    tag::SECRET_KEY,
    tag::SECRET_SUBKEY,
    tag::USER_ID,
    tag::USER_ATTRIBUTE,
    tag::SIGNATURE,
    tag::TRUST,
];

impl Grammar {
    /// An empty sequence.
    pub fn new(mode: Mode) -> Self {
        Grammar {
            mode,
            state: State::Start,
        }
    }

    /// The header of the next packet arrived.
    pub fn packet(&mut self, t: u8) -> Result<(), PayloadError> {
        if t == tag::MARKER || t == tag::PADDING {
            return Ok(());
        }
        let top = self.mode == Mode::Top;
        self.state = match (self.state, t) {
            (State::Start, tag::PKESK | tag::SKESK) if top => State::Esk,
            (State::Start, tag::PUBLIC_KEY | tag::SECRET_KEY) if top => State::Key,
            (State::Start, tag::SED | tag::SEIPD | tag::AEAD) if top => {
                return Err(err("encrypted data without a session key packet".into()));
            }
            (State::Start, tag::LITERAL) if top => {
                return Err(PayloadError::Unencrypted("literal data".into()));
            }
            (State::Start, tag::SIGNATURE) => State::Prefix { ops: 0, sigs: 1 },
            (State::Start, tag::ONE_PASS_SIGNATURE) => State::Prefix { ops: 1, sigs: 0 },
            (State::Start, tag::LITERAL | tag::COMPRESSED) => State::After {
                closing: 0,
                signed: false,
            },
            (State::Start, t) => {
                return Err(err(if top {
                    format!("{} packet where an OpenPGP message was expected", name(t))
                } else {
                    format!(
                        "{} packet where signed or literal data was expected inside compressed data",
                        name(t)
                    )
                }));
            }
            (State::Esk, tag::PKESK | tag::SKESK) => State::Esk,
            (State::Esk, tag::SED | tag::SEIPD | tag::AEAD) => State::Encrypted,
            (State::Esk, t) => {
                return Err(err(format!(
                    "{} packet where encrypted data was expected",
                    name(t)
                )));
            }
            (State::Encrypted, t) => {
                return Err(err(format!("{} packet after the encrypted data", name(t))));
            }
            (State::Key, t) if KEY_BLOCK.contains(&t) => State::Key,
            (State::Key, t) => return Err(err(format!("{} packet in a key block", name(t)))),
            (State::Prefix { ops, sigs }, tag::SIGNATURE | tag::ONE_PASS_SIGNATURE) => {
                if ops + sigs >= MAX_SIGNATURE_NESTING {
                    return Err(err(format!(
                        "signatures nested more than {MAX_SIGNATURE_NESTING} deep"
                    )));
                }
                if t == tag::SIGNATURE {
                    State::Prefix {
                        ops,
                        sigs: sigs + 1,
                    }
                } else {
                    State::Prefix { ops: ops + 1, sigs }
                }
            }
            (State::Prefix { ops, .. }, tag::LITERAL | tag::COMPRESSED) => State::After {
                closing: ops,
                signed: true,
            },
            (State::Prefix { .. }, t) => {
                return Err(err(format!(
                    "{} packet where signed or literal data was expected",
                    name(t)
                )));
            }
            (State::After { closing, signed }, tag::SIGNATURE) if closing > 0 => State::After {
                closing: closing - 1,
                signed,
            },
            (State::After { .. }, t) => {
                return Err(err(format!(
                    "{} packet after the end of the message",
                    name(t)
                )));
            }
        };
        Ok(())
    }

    /// Whether the packets so far are a key block.
    pub fn in_key_block(&self) -> bool {
        self.state == State::Key
    }

    /// The Compressed Data packet just read held a message that is signed
    /// (or not).
    pub fn compressed_contents(&mut self, inner_signed: bool) {
        if let State::After { signed, .. } = &mut self.state {
            *signed |= inner_signed;
        }
    }

    /// The end of the sequence: its shape.
    pub fn finish(&self) -> Result<Shape, PayloadError> {
        let top = self.mode == Mode::Top;
        match self.state {
            State::Start if top => Err(err("only marker or padding packets".into())),
            State::Start => Err(err("compressed data holds no packets".into())),
            State::Esk => Err(err("session keys without encrypted data".into())),
            State::Encrypted => Ok(Shape::Encrypted),
            State::Key => Ok(Shape::Key),
            State::Prefix { ops: 0, .. } if top => Ok(Shape::Signatures),
            State::Prefix { .. } => Err(err("a signature without the signed data".into())),
            State::After { closing, .. } if closing > 0 => Err(err(
                "a one-pass signature without its signature packet".into(),
            )),
            State::After { signed: true, .. } => Ok(Shape::Signed),
            State::After { signed: false, .. } => Ok(Shape::Unsigned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tag::*;

    fn shape(mode: Mode, tags: &[u8]) -> Result<Shape, PayloadError> {
        let mut g = Grammar::new(mode);
        for &t in tags {
            g.packet(t)?;
        }
        g.finish()
    }

    #[test]
    fn encrypted_and_keys() {
        assert_eq!(
            shape(Mode::Top, &[MARKER, PKESK, SKESK, SEIPD, PADDING]),
            Ok(Shape::Encrypted)
        );
        assert!(shape(Mode::Top, &[PKESK]).is_err());
        assert!(shape(Mode::Top, &[SEIPD]).is_err());
        assert!(shape(Mode::Top, &[PKESK, SEIPD, SEIPD]).is_err());
        assert!(shape(Mode::Top, &[PKESK, LITERAL]).is_err());
        assert_eq!(
            shape(
                Mode::Top,
                &[PUBLIC_KEY, USER_ID, SIGNATURE, PUBLIC_SUBKEY, SIGNATURE]
            ),
            Ok(Shape::Key)
        );
        assert!(shape(Mode::Top, &[PUBLIC_KEY, LITERAL]).is_err());
        assert!(shape(Mode::Top, &[PADDING]).is_err());
        assert!(shape(Mode::InCompressed, &[PKESK, SEIPD]).is_err());
    }

    #[test]
    fn signed_messages() {
        use Shape::*;
        assert_eq!(shape(Mode::Top, &[SIGNATURE, SIGNATURE]), Ok(Signatures));
        assert_eq!(
            shape(Mode::Top, &[ONE_PASS_SIGNATURE, LITERAL, SIGNATURE]),
            Ok(Signed)
        );
        assert_eq!(shape(Mode::Top, &[SIGNATURE, LITERAL]), Ok(Signed));
        assert_eq!(
            shape(
                Mode::Top,
                &[
                    ONE_PASS_SIGNATURE,
                    SIGNATURE,
                    ONE_PASS_SIGNATURE,
                    LITERAL,
                    SIGNATURE,
                    SIGNATURE
                ]
            ),
            Ok(Signed)
        );
        assert!(shape(Mode::Top, &[ONE_PASS_SIGNATURE, LITERAL]).is_err());
        assert!(
            shape(
                Mode::Top,
                &[ONE_PASS_SIGNATURE, LITERAL, SIGNATURE, SIGNATURE]
            )
            .is_err()
        );
        assert!(
            shape(
                Mode::Top,
                &[ONE_PASS_SIGNATURE, LITERAL, SIGNATURE, LITERAL]
            )
            .is_err()
        );
        assert!(shape(Mode::Top, &[ONE_PASS_SIGNATURE]).is_err());
        assert!(matches!(
            shape(Mode::Top, &[LITERAL]),
            Err(PayloadError::Unencrypted(_))
        ));
        assert_eq!(shape(Mode::Top, &[COMPRESSED]), Ok(Unsigned));
        assert_eq!(shape(Mode::InCompressed, &[LITERAL]), Ok(Unsigned));
        assert!(shape(Mode::InCompressed, &[SIGNATURE]).is_err());
        assert!(shape(Mode::InCompressed, &[]).is_err());
        let mut g = Grammar::new(Mode::Top);
        g.packet(COMPRESSED).unwrap();
        g.compressed_contents(true);
        assert_eq!(g.finish(), Ok(Signed));
        let deep = vec![SIGNATURE; MAX_SIGNATURE_NESTING + 1];
        assert!(shape(Mode::Top, &deep).is_err());
    }
}
