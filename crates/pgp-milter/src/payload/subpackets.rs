//! How many bytes of a signature's subpackets could carry free text.
//!
//! A key block next to an encrypted message is public data, but its
//! signatures' subpackets can hold text a person reads (`gpg
//! --list-packets`, a key manager): notations, policy URIs, the signer's
//! User ID, a revocation reason, a regular expression, a preferred key
//! server, and any subpacket type this list does not know. Those bytes
//! count against the same per-message budget as User IDs
//! ([`super::PayloadLimits::max_key_text_bytes`]). Subpackets of fixed
//! binary form (times, algorithm preferences, flags, issuer key IDs and
//! fingerprints, an embedded back-signature) do not count. The value of a
//! notation not flagged human-readable (Sequoia salts every signature with
//! 32 random bytes so) is handed back to be tested for randomness with the
//! other small pieces instead: binary, it must look random.

/// Subpacket types (RFC 9580 §5.2.3.7) that hold fixed binary fields.
fn binary(t: u8) -> bool {
    matches!(
        t,
        2 | 3
            | 4
            | 5
            | 7
            | 9
            | 11
            | 12
            | 16
            | 21
            | 22
            | 23
            | 25
            | 27
            | 30
            | 31
            | 32
            | 33
            | 34
            | 35
            | 37
            | 39
    )
}

/// Bytes of free-text-capable subpackets in a signature packet `body`
/// (v4 or v6; v3 signatures have none), and the values of its binary
/// notations. A body too short to read counts whole (rpgp refuses it
/// anyway).
pub fn free_text_bytes(body: &[u8]) -> (usize, Vec<&[u8]>) {
    fn areas<'a>(body: &'a [u8], values: &mut Vec<&'a [u8]>) -> Option<usize> {
        let version = *body.first()?;
        let wide = match version {
            3 => return Some(0),
            4 => false,
            6 => true,
            _ => return None,
        };
        let mut at = 4;
        let mut total = 0;
        for _ in 0..2 {
            let (len, n) = if wide {
                let l = body.get(at..at + 4)?;
                (u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize, 4)
            } else {
                let l = body.get(at..at + 2)?;
                (usize::from(u16::from_be_bytes([l[0], l[1]])), 2)
            };
            at += n;
            let area = body.get(at..at.checked_add(len)?)?;
            total += free_text_in(area, values)?;
            at += len;
        }
        Some(total)
    }
    let mut values = Vec::new();
    match areas(body, &mut values) {
        Some(n) => (n, values),
        None => (body.len(), Vec::new()),
    }
}

/// The free-text bytes of one subpacket area.
fn free_text_in<'a>(mut area: &'a [u8], values: &mut Vec<&'a [u8]>) -> Option<usize> {
    let mut total = 0;
    while !area.is_empty() {
        let (len, n): (usize, usize) = match area[0] {
            l @ 0..192 => (usize::from(l), 1),
            l @ 192..255 => (
                ((usize::from(l) - 192) << 8) + usize::from(*area.get(1)?) + 192,
                2,
            ),
            255 => {
                let l = area.get(1..5)?;
                (u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize, 5)
            }
        };
        let sub = area.get(n..n.checked_add(len)?)?;
        let (&t, data) = sub.split_first()?;
        match t & 0x7f {
            // A notation: flags, name and value lengths, name, value.
            20 if data.len() >= 8 && data[0] & 0x80 == 0 => {
                let name = usize::from(u16::from_be_bytes([data[4], data[5]]));
                let value = data.get(8 + name..).unwrap_or_default();
                total += data.len() - value.len();
                values.push(value);
            }
            t if !binary(t) => total += data.len(),
            _ => {}
        }
        area = &area[n + len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(hashed: &[u8], unhashed: &[u8]) -> Vec<u8> {
        let mut s = vec![4, 0x13, 22, 8];
        s.extend((hashed.len() as u16).to_be_bytes());
        s.extend(hashed);
        s.extend((unhashed.len() as u16).to_be_bytes());
        s.extend(unhashed);
        s.extend([0xab, 0xcd, 0, 8, 1, 0, 8, 1]);
        s
    }

    #[test]
    fn notations_count_binary_fields_do_not() {
        let creation = [5, 2, 0x66, 0, 0, 0];
        let issuer = [9, 16, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(free_text_bytes(&sig(&creation, &issuer)).0, 0);
        let mut notation = vec![1 + 8 + 4 + 10, 0x80 | 20, 0x80, 0, 0, 0, 0, 4, 0, 10];
        notation.extend(b"noteletter");
        notation.extend([0; 4]);
        let body = sig(&[creation.as_slice(), &notation].concat(), &[]);
        assert_eq!(free_text_bytes(&body), (8 + 4 + 10, vec![]));
        // Not human-readable: the name counts, the value is to be random.
        notation[2] = 0;
        let body = sig(&notation, &[]);
        assert_eq!(
            free_text_bytes(&body),
            (8 + 4, vec![b"letter\0\0\0\0".as_slice()])
        );
        // An unknown type counts; a cut-off body counts whole.
        assert_eq!(free_text_bytes(&sig(&[3, 100, 7, 7], &[])).0, 2);
        assert_eq!(free_text_bytes(&[4, 0x13, 22, 8, 0, 9]).0, 6);
    }
}
