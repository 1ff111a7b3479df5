//! Packet framing: a 4-byte big-endian length (which counts the code byte),
//! one code byte, then the payload.
//!
//! The declared length is checked against a limit *before* any memory is
//! reserved: several milter implementations allocated whatever a port scanner's
//! `GET ` (1195725856 as a length) asked for. A length of zero is a framing error
//! rather than "read the next packet's first byte as our code", which is what
//! libmilter does.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Most memory reserved at once for a packet still arriving.
const RESERVE_STEP: usize = 64 * 1024;

/// One packet, with its payload shared (never copied) from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command (MTA to milter) or response (milter to MTA) code.
    pub code: u8,
    /// Everything after the code byte.
    pub payload: Bytes,
}

/// Why a byte stream could not be cut into packets. Every variant is fatal for
/// the connection: after it, packet boundaries are unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is larger than the limit in force.
    #[error("packet length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// The declared length (code byte included).
        len: u32,
        /// The limit in force (code byte included).
        max: usize,
    },
    /// A length field of zero: there is not even a code byte.
    #[error("packet length 0 (no code byte)")]
    Empty,
    /// The stream ended in the middle of a packet.
    #[error("stream ended inside a packet ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received of the packet.
        have: usize,
        /// Bytes the packet needs.
        need: usize,
    },
}

/// Cuts packets off the front of a buffer.
///
/// Shaped like tokio-util's `Decoder`: `Ok(None)` means "need more bytes".
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_payload: usize,
}

impl FrameDecoder {
    /// A decoder that accepts payloads of up to `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder { max_payload }
    }

    /// The payload limit in force.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Changes the payload limit (after negotiation, for example).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload;
    }

    /// Judges a packet's 4-octet length field (already read as big-endian)
    /// by this decoder's rules: the bytes that follow the field (code byte
    /// and payload), or why the stream cannot be cut there. Zero is
    /// [`FrameError::Empty`]; a payload over the limit is
    /// [`FrameError::TooLong`]. For callers that cut packets out of bytes
    /// they do not own (a relay), so they need not restate the rules.
    pub fn judge_len(&self, len: u32) -> Result<usize, FrameError> {
        if len == 0 {
            return Err(FrameError::Empty);
        }
        // `len` counts the code byte, the limit is on the payload.
        if (len as usize - 1) > self.max_payload {
            return Err(FrameError::TooLong {
                len,
                max: self.max_payload + 1,
            });
        }
        Ok(len as usize)
    }

    /// Takes one packet off the front of `buf`, if a whole one is there.
    ///
    /// On `Ok(None)`, `buf` may have been given spare capacity for the rest of
    /// the packet (bounded by the limit), so the caller's next read fills it.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = self.judge_len(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]))?;
        let total = 4 + len;
        if buf.len() < total {
            // Room for what is missing, in steps: memory follows the bytes that
            // actually arrive, not what a (possibly hostile) length promises.
            buf.reserve((total - buf.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        let code = buf[4];
        buf.advance(5);
        let payload = buf.split_to(len - 1).freeze();
        Ok(Some(Frame { code, payload }))
    }

    /// Like [`decode`](Self::decode), at end of stream: leftover bytes are an error.
    pub fn decode_eof(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => {
                let need = if buf.len() >= 4 {
                    4 + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
                } else {
                    5
                };
                Err(FrameError::Truncated {
                    have: buf.len(),
                    need,
                })
            }
        }
    }
}

/// Appends one packet with the given code and payload pieces to `out`.
///
/// The pieces are written back to back; callers pass NUL terminators as their
/// own pieces so no intermediate string is built.
pub fn encode_frame(code: u8, pieces: &[&[u8]], out: &mut BytesMut) {
    let payload_len: usize = pieces.iter().map(|p| p.len()).sum();
    let len = u32::try_from(payload_len + 1).expect("milter packet longer than 4 GiB");
    out.reserve(5 + payload_len);
    out.put_u32(len);
    out.put_u8(code);
    for piece in pieces {
        out.put_slice(piece);
    }
}

/// What a first packet that is not option negotiation most likely was, for
/// one helpful log line instead of an error storm.
pub fn classify_probe(first_bytes: &[u8]) -> &'static str {
    const HTTP: [&[u8]; 7] = [
        b"GET ", b"POST", b"HEAD", b"PUT ", b"OPTI", b"CONN", b"DELE",
    ];
    if HTTP.iter().any(|m| first_bytes.starts_with(m)) {
        "an HTTP request"
    } else if first_bytes.len() >= 3 && first_bytes[0] == 0x16 && first_bytes[1] == 0x03 {
        "a TLS ClientHello"
    } else if first_bytes.starts_with(&[0x03, 0x00]) {
        "an RDP/TPKT header"
    } else if first_bytes.starts_with(b"SSH-") {
        "an SSH banner"
    } else if first_bytes.starts_with(b"EHLO")
        || first_bytes.starts_with(b"HELO")
        || first_bytes.starts_with(b"ehlo")
        || first_bytes.starts_with(b"helo")
    {
        "an SMTP command (is the MTA pointed at the milter port as if it were SMTP?)"
    } else if !first_bytes.is_empty()
        && first_bytes
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        "text, not a milter packet"
    } else {
        "binary data that is not a milter packet"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_exact_bytes_and_leaves_the_rest() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x03Bab\x00\x00\x00\x01A"[..]);
        let dec = FrameDecoder::new(16);
        let f = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.code, b'B');
        assert_eq!(&f.payload[..], b"ab");
        let f = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.code, f.payload.len()), (b'A', 0));
        assert!(buf.is_empty());
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn partial_packets_wait_for_more() {
        let dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&b"\x00\x00"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\x00\x04Bab");
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"c");
        assert_eq!(&dec.decode(&mut buf).unwrap().unwrap().payload[..], b"abc");
    }

    #[test]
    fn length_is_checked_before_allocating() {
        let dec = FrameDecoder::new(65_535);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\n"[..]);
        let cap = buf.capacity();
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::TooLong {
                len: 0x4745_5420,
                max: 65_536
            })
        );
        assert_eq!(buf.capacity(), cap, "no memory reserved for a bogus length");
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xffB"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn judge_len_gives_the_bytes_after_the_field_or_the_decoders_error() {
        let dec = FrameDecoder::new(2);
        assert_eq!(dec.judge_len(0), Err(FrameError::Empty));
        assert_eq!(dec.judge_len(1), Ok(1), "a code byte and no payload");
        assert_eq!(dec.judge_len(3), Ok(3), "a payload at the limit");
        assert_eq!(
            dec.judge_len(4),
            Err(FrameError::TooLong { len: 4, max: 3 })
        );
        assert_eq!(
            dec.judge_len(u32::MAX),
            Err(FrameError::TooLong {
                len: u32::MAX,
                max: 3
            })
        );
        // The same verdicts as decode gives for a packet with that field.
        for len in [0u32, 1, 3, 4, u32::MAX] {
            let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
            buf.extend_from_slice(&[b'B'; 3]);
            match dec.judge_len(len) {
                Err(e) => assert_eq!(dec.decode(&mut buf), Err(e)),
                Ok(n) => assert_eq!(dec.decode(&mut buf).unwrap().unwrap().payload.len(), n - 1),
            }
        }
    }

    #[test]
    fn limit_counts_payload_only() {
        let dec = FrameDecoder::new(2);
        let mut ok = BytesMut::from(&b"\x00\x00\x00\x03Bab"[..]);
        assert!(dec.decode(&mut ok).unwrap().is_some());
        let mut big = BytesMut::from(&b"\x00\x00\x00\x04Babc"[..]);
        assert!(dec.decode(&mut big).is_err());
    }

    #[test]
    fn zero_length_is_an_error() {
        let dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00A"[..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::Empty));
    }

    #[test]
    fn eof_inside_a_packet_is_reported() {
        let dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x05Bab"[..]);
        assert_eq!(
            dec.decode_eof(&mut buf),
            Err(FrameError::Truncated { have: 7, need: 9 })
        );
        let mut empty = BytesMut::new();
        assert_eq!(dec.decode_eof(&mut empty), Ok(None));
    }

    #[test]
    fn encodes_exact_bytes() {
        let mut out = BytesMut::new();
        encode_frame(b'L', &[b"Subject", b"\0", b"hi", b"\0"], &mut out);
        assert_eq!(&out[..], b"\x00\x00\x00\x0cLSubject\0hi\0");
    }

    #[test]
    fn probes_are_named() {
        assert_eq!(classify_probe(b"GET / HTTP/1.0"), "an HTTP request");
        assert_eq!(
            classify_probe(&[0x16, 0x03, 0x01, 0x02]),
            "a TLS ClientHello"
        );
        assert_eq!(
            classify_probe(&[0x03, 0x00, 0x00, 0x2f]),
            "an RDP/TPKT header"
        );
        assert_eq!(
            classify_probe(&[0xde, 0xad, 0xbe, 0xef]),
            "binary data that is not a milter packet"
        );
    }
}
