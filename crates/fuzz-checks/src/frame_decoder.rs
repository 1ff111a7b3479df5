//! `frame_decoder`: arbitrary bytes through [`FrameDecoder`], whole and cut
//! into arbitrary pieces.
//!
//! Invariants:
//! - no panic; the pieces give the same frames and the same error as the
//!   whole stream (packet boundaries do not depend on how reads fall);
//! - every frame re-encodes byte-identically, and the frames re-encoded back
//!   to back are exactly the bytes consumed;
//! - every payload is within the limit, and the decoder never waits for (so
//!   never buffers) a packet whose declared length exceeds the limit: what
//!   is left in the buffer is always less than one largest packet;
//! - memory follows the bytes that arrive: one `decode` call grows the
//!   buffer by at most a doubling of what it held or one reserve step, never
//!   by what a hostile length promises;
//! - at end of stream, leftovers are reported as `Truncated`, never a panic;
//! - whatever parses as a command or response is canonical (re-encodes to the
//!   same payload; lenient macro packets excepted).

use bytes::BytesMut;
use milter_proto::{Command, Frame, FrameDecoder, FrameError, Response, encode_frame};

use crate::{Input, Outcome, ensure, ensure_eq};

/// How much `FrameDecoder::decode` reserves at most for a packet still
/// arriving (`RESERVE_STEP` in milter-proto's `frame.rs`).
pub const RESERVE_STEP: usize = 64 * 1024;

/// The fuzz entry: a limit choice, up to 7 cut points, then the stream.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let limit = match input.u8() % 4 {
        0 => usize::from(input.u8()),
        1 => 65_535,
        2 => 262_143,
        _ => 1_048_575,
    };
    let cuts: Vec<usize> = (0..input.u8() % 8)
        .map(|_| usize::from(input.u16()))
        .collect();
    check_stream(input.rest(), &cuts, limit)
}

/// Tracks the largest buffer capacity seen, for the growth bound.
struct Tracked {
    dec: FrameDecoder,
    max_cap: usize,
}

impl Tracked {
    /// Decodes as much of `buf` as possible, checking every call.
    fn drain(
        &mut self,
        buf: &mut BytesMut,
        frames: &mut Vec<Frame>,
    ) -> Result<Result<(), FrameError>, crate::Failure> {
        let max = self.dec.max_payload();
        loop {
            let before = buf.capacity();
            self.max_cap = self.max_cap.max(before);
            let r = self.dec.decode(buf);
            let after = buf.capacity();
            ensure!(
                after <= before.max(2 * self.max_cap.max(buf.len() + RESERVE_STEP)),
                "capacity {before} -> {after} holding {} bytes",
                buf.len()
            );
            self.max_cap = self.max_cap.max(after);
            match r {
                Ok(Some(f)) => {
                    ensure!(
                        f.payload.len() <= max,
                        "payload {} > limit {max}",
                        f.payload.len()
                    );
                    frames.push(f);
                }
                Ok(None) => {
                    // Waiting: only for a packet that fits the limit.
                    if buf.len() >= 4 {
                        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        ensure!(
                            len >= 1 && len - 1 <= max,
                            "waiting for a {len}-byte packet, limit {max}"
                        );
                    }
                    ensure!(
                        buf.len() < 5 + max,
                        "{} bytes buffered, limit {max}",
                        buf.len()
                    );
                    return Ok(Ok(()));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// Decodes `stream` whole and cut at `cuts` (taken modulo its length) with a
/// payload limit of `limit`, checking the invariants above.
pub fn check_stream(stream: &[u8], cuts: &[usize], limit: usize) -> Outcome {
    let mut t = Tracked {
        dec: FrameDecoder::new(limit),
        max_cap: 0,
    };

    // All at once.
    let mut whole_frames = Vec::new();
    let mut whole_buf = BytesMut::from(stream);
    let whole_result = t.drain(&mut whole_buf, &mut whole_frames)?;

    // In pieces.
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut t = Tracked {
        dec: FrameDecoder::new(limit),
        max_cap: 0,
    };
    let mut split_frames = Vec::new();
    let mut split_buf = BytesMut::new();
    let mut split_result = Ok(());
    let mut from = 0;
    for to in cuts {
        split_buf.extend_from_slice(&stream[from..to]);
        from = to;
        split_result = t.drain(&mut split_buf, &mut split_frames)?;
        if split_result.is_err() {
            break;
        }
    }
    ensure_eq!(split_frames, whole_frames);
    ensure_eq!(split_result, whole_result);

    // The frames are exactly the bytes consumed.
    let mut again = BytesMut::new();
    for f in &whole_frames {
        encode_frame(f.code, &[&f.payload], &mut again);
    }
    ensure!(
        stream.starts_with(&again),
        "frames do not re-encode to the stream"
    );
    if whole_result.is_ok() {
        ensure_eq!(again.len() + whole_buf.len(), stream.len());
        ensure_eq!(split_buf, whole_buf);
        let had_leftovers = !whole_buf.is_empty();
        let eof = t.dec.decode_eof(&mut whole_buf);
        if had_leftovers {
            ensure!(
                matches!(eof, Err(FrameError::Truncated { have, .. }) if have == whole_buf.len()),
                "leftovers at end of stream gave {eof:?}"
            );
        } else {
            ensure_eq!(eof, Ok(None));
        }
    }

    for f in whole_frames {
        check_canonical(&f)?;
    }
    Ok(())
}

/// Whatever parses is canonical: it re-encodes to the same bytes (macro
/// packets excepted: they are parsed leniently).
pub fn check_canonical(f: &Frame) -> Outcome {
    if let Ok(cmd) = Command::parse(f.clone()) {
        ensure_eq!(cmd.code(), f.code);
        if f.code != b'D' {
            let mut out = BytesMut::new();
            cmd.encode(&mut out);
            ensure_eq!(&out[5..], &f.payload[..], "command {cmd:?}");
        }
    }
    if let Ok(resp) = Response::parse(f.clone()) {
        ensure_eq!(resp.code(), f.code);
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        ensure_eq!(&out[5..], &f.payload[..], "response {resp:?}");
    }
    Ok(())
}
