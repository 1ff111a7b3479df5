//! The bytes of a session-key packet that real encryption makes random.
//!
//! A PKESK or SKESK packet is mostly fields whose values a sender chooses
//! freely and rpgp does not judge: key IDs and fingerprints, the encrypted
//! session key (an RSA or Elgamal ciphertext, an ECDH ephemeral point and
//! wrapped key, X25519/X448 values), S2K salts, IVs and AEAD tags. Real
//! OpenPGP fills every one of them with output of a hash, a cipher or a
//! random generator, so they look random; text put there (a thousand
//! PKESKs, each with 2 KiB of prose as its "RSA ciphertext", make an
//! attachment anyone can read) does not. [`random_fields`] picks these
//! fields out, leaving the few octets that are structure (versions,
//! algorithm IDs, lengths, S2K parameters, the point-format prefix of an
//! ECDH point) and the all-zero key ID of a hidden recipient, so that the
//! randomness test sees only bytes that are uniform in real mail.
//!
//! A body of a shape this module does not know (a newer version, a
//! public-key algorithm outside RFC 9580's list) gives all its octets after
//! the version: the test then sees a few structured octets among random
//! ones, which it tolerates (its thresholds are far above what a handful
//! of fixed octets add).

use crate::packets::tag;

/// The random fields of a PKESK or SKESK `body`, in order, as slices of it.
/// Malformed bodies are rpgp's to refuse; here they give what can be read.
pub fn random_fields(t: u8, body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let read = match t {
        tag::PKESK => pkesk(body, &mut out),
        tag::SKESK => skesk(body, &mut out),
        _ => None,
    };
    if read.is_none() {
        out.clear();
        out.push(body.get(1..).unwrap_or_default());
    }
    out.retain(|f| !f.is_empty());
    out
}

/// A cursor over a body.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (now, rest) = self.b.split_at(n);
        self.b = rest;
        Some(now)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// An MPI's value octets (RFC 9580 §3.2).
    fn mpi(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2)?;
        let bits = usize::from(u16::from_be_bytes([len[0], len[1]]));
        self.take(bits.div_ceil(8))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

fn pkesk<'a>(body: &'a [u8], out: &mut Vec<&'a [u8]>) -> Option<()> {
    let mut c = Cursor { b: body };
    let version = c.byte()?;
    match version {
        3 => {
            let id = c.take(8)?;
            if id != [0; 8] {
                out.push(id);
            }
        }
        6 => {
            // The key version and fingerprint (none for an anonymous
            // recipient).
            let n = usize::from(c.byte()?);
            if n > 0 {
                c.byte()?;
                out.push(c.take(n - 1)?);
            }
        }
        _ => return None,
    }
    let algo = c.byte()?;
    match algo {
        // RSA: one MPI, the ciphertext.
        1..=3 => out.push(c.mpi()?),
        // Elgamal: two MPIs.
        16 => {
            out.push(c.mpi()?);
            out.push(c.mpi()?);
        }
        // ECDH: the ephemeral point (after its format prefix, 0x40 or
        // 0x04), then the wrapped key after its length octet.
        18 => {
            let point = c.mpi()?;
            out.push(point.get(1..)?);
            let n = usize::from(c.byte()?);
            out.push(c.take(n)?);
        }
        // X25519, X448: the ephemeral key, a length octet, in v3 the
        // cleartext symmetric algorithm, the wrapped key.
        25 | 26 => {
            out.push(c.take(if algo == 25 { 32 } else { 56 })?);
            let n = usize::from(c.byte()?);
            if version == 3 {
                c.byte()?;
                out.push(c.take(n.checked_sub(1)?)?);
            } else {
                out.push(c.take(n)?);
            }
        }
        _ => return None,
    }
    // What follows is rpgp's to refuse; it is not random structure.
    out.push(c.rest());
    Some(())
}

fn skesk<'a>(body: &'a [u8], out: &mut Vec<&'a [u8]>) -> Option<()> {
    let mut c = Cursor { b: body };
    let version = c.byte()?;
    match version {
        4 => {
            c.byte()?; // symmetric algorithm
            s2k(&mut c, out)?;
            // The encrypted session key, if any.
            out.push(c.rest());
        }
        5 | 6 => {
            if version == 6 {
                c.byte()?; // count of the following fields
            }
            c.take(2)?; // symmetric and AEAD algorithms
            if version == 6 {
                let n = usize::from(c.byte()?);
                let mut spec = Cursor { b: c.take(n)? };
                s2k(&mut spec, out)?;
                out.push(spec.rest());
            } else {
                s2k(&mut c, out)?;
            }
            // IV, encrypted session key and tag.
            out.push(c.rest());
        }
        _ => return None,
    }
    Some(())
}

/// An S2K specifier (RFC 9580 §3.7.1): its salt is random.
fn s2k<'a>(c: &mut Cursor<'a>, out: &mut Vec<&'a [u8]>) -> Option<()> {
    match c.byte()? {
        // Simple: a hash algorithm.
        0 => {
            c.byte()?;
        }
        // Salted, iterated and salted: hash, salt, (count).
        kind @ (1 | 3) => {
            c.byte()?;
            out.push(c.take(8)?);
            if kind == 3 {
                c.byte()?;
            }
        }
        // Argon2: salt, then t, p, m.
        4 => {
            out.push(c.take(16)?);
            c.take(3)?;
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(t: u8, body: &[u8]) -> Vec<u8> {
        random_fields(t, body).concat()
    }

    #[test]
    fn rsa_pkesk_gives_key_id_and_ciphertext() {
        let mut body = vec![3, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0x00, 0x0f, 0x7f, 0xaa];
        assert_eq!(
            joined(tag::PKESK, &body),
            [1, 2, 3, 4, 5, 6, 7, 8, 0x7f, 0xaa]
        );
        // A hidden recipient's zero key ID is left out.
        body[1..9].fill(0);
        assert_eq!(joined(tag::PKESK, &body), [0x7f, 0xaa]);
    }

    #[test]
    fn ecdh_pkesk_leaves_out_the_point_prefix_and_lengths() {
        let body = [
            3, 0, 0, 0, 0, 0, 0, 0, 0, 18, 0, 17, 0x40, 0xee, 0xdd, 2, 0xcc, 0xbb,
        ];
        assert_eq!(joined(tag::PKESK, &body), [0xee, 0xdd, 0xcc, 0xbb]);
    }

    #[test]
    fn v6_x25519_and_skesk() {
        let mut body = vec![6, 33, 6];
        body.extend([0xf0; 32]);
        body.push(25);
        body.extend([0xe0; 32]);
        body.push(3);
        body.extend([0xd0; 3]);
        let got = joined(tag::PKESK, &body);
        assert_eq!(got.len(), 32 + 32 + 3);
        assert!(!got.contains(&25) && !got.contains(&6));
        // SKESK v4, iterated and salted S2K, with an encrypted session key.
        let body = [4, 9, 3, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0x60, 0xa1, 0xa2];
        assert_eq!(
            joined(tag::SKESK, &body),
            [1, 2, 3, 4, 5, 6, 7, 8, 0xa1, 0xa2]
        );
        // SKESK v6, Argon2.
        let mut body = vec![6, 21, 9, 2, 20, 4];
        body.extend([0x11; 16]);
        body.extend([1, 4, 21]);
        body.extend([0x22; 5]);
        let got = joined(tag::SKESK, &body);
        assert_eq!(got, [[0x11; 16].as_slice(), &[0x22; 5]].concat());
    }

    #[test]
    fn unknown_shapes_give_everything_after_the_version() {
        let body = [3, 1, 2, 3, 4, 5, 6, 7, 8, 99, 0x41, 0x42];
        assert_eq!(joined(tag::PKESK, &body), &body[1..]);
        assert_eq!(joined(tag::PKESK, &[3, 1]), [1]);
    }
}
