//! Files that are OpenPGP packets and, read by another program, a document.
//!
//! The randomness test cannot tell compressed data from ciphertext: both
//! are close to uniform bytes. A binary attachment whose encrypted-data
//! packet holds a ZIP archive of deflated text (a ZIP reader finds the
//! archive by its end record, whatever comes before it, as it does for
//! self-extracting archives) or a PDF (viewers look for `%PDF-` in the
//! first 1024 bytes) passes as encrypted, and `unzip` or a PDF viewer shows
//! the text. Two exact checks close this for the formats that tolerate
//! bytes before them:
//!
//! * **ZIP**: an end-of-central-directory record (`PK\x05\x06`) in the last
//!   65,557 bytes of the file (22 bytes and at most a 65,535-byte comment),
//!   on one disk (disk numbers 0) with as many entries on the disk as in
//!   total: what `unzip` opens. In uniform bytes the signature and these
//!   fields match with probability 2^-80 per position.
//! * **PDF**: `%PDF-` and a digit and a dot in the first 1024 bytes
//!   (2^-56 per position).
//!
//! Only binary payloads (the attachment file as saved) are checked: armor
//! must first be decoded by the reader's own OpenPGP software. Memory: the
//! first 1024 bytes and the positions and fields of candidate records.

/// Where a ZIP reader looks for the end record: its 22 bytes and at most
/// a 65,535-byte comment before the end of the file.
const ZIP_TAIL: u64 = 22 + 65_535;

/// Candidates kept at most (uniform bytes give about one in 65,000
/// messages; more is a file built to hide one).
const MAX_CANDIDATES: usize = 256;

/// How many first bytes a PDF viewer searches for the header.
const PDF_HEAD: usize = 1024;

const EOCD: &[u8; 4] = b"PK\x05\x06";

/// The scanner of one binary payload.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Polyglot {
    /// The first [`PDF_HEAD`] bytes.
    head: Vec<u8>,
    /// The last up to 3 bytes (a signature may straddle two chunks).
    tail: Vec<u8>,
    /// Offsets of `PK\x05\x06` still within [`ZIP_TAIL`] of the end, with
    /// the up to 18 bytes that follow each.
    candidates: Vec<(u64, Vec<u8>)>,
    /// Bytes seen.
    total: u64,
    /// More than [`MAX_CANDIDATES`] candidates were seen at once.
    overflow: bool,
    /// The most candidates held at once.
    peak: usize,
}

impl Polyglot {
    /// The most bytes this scanner held at once (about).
    pub fn held(&self) -> usize {
        self.head.len() + self.peak * 26
    }

    /// The next bytes of the file. What it finds is told by
    /// [`Polyglot::finish`] (so that the first refusal in the order of the
    /// file wins whatever the chunking).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.head.len() < PDF_HEAD {
            let take = (PDF_HEAD - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        // Fields of earlier candidates.
        for (_, fields) in &mut self.candidates {
            if fields.len() < 18 {
                let take = (18 - fields.len()).min(bytes.len());
                fields.extend_from_slice(&bytes[..take]);
            }
        }
        let start = self.total;
        // Signatures starting in the tail of the previous bytes.
        let mut stitch = self.tail.clone();
        stitch.extend_from_slice(&bytes[..bytes.len().min(3)]);
        let before = self.tail.len() as u64;
        for at in memchr::memmem::find_iter(&stitch, EOCD) {
            if (at as u64) < before {
                let sig_end = at + 4;
                let fields_from = sig_end - before as usize;
                let fields = bytes[fields_from.min(bytes.len())..][..]
                    .iter()
                    .take(18)
                    .copied()
                    .collect();
                self.push(start - before + at as u64, fields);
            }
        }
        for at in memchr::memmem::find_iter(bytes, EOCD) {
            let fields = bytes[at + 4..].iter().take(18).copied().collect();
            self.push(start + at as u64, fields);
        }
        self.total += bytes.len() as u64;
        let keep = bytes.len().min(3);
        if keep == 3 {
            self.tail.clear();
        } else {
            let drop = (self.tail.len() + keep).saturating_sub(3);
            self.tail.drain(..drop);
        }
        self.tail.extend_from_slice(&bytes[bytes.len() - keep..]);
        // Candidates too far from the end to be the end record.
        let total = self.total;
        self.candidates.retain(|(at, _)| at + ZIP_TAIL >= total);
    }

    fn push(&mut self, at: u64, fields: Vec<u8>) {
        if self.candidates.len() >= MAX_CANDIDATES {
            self.overflow = true;
            return;
        }
        self.candidates.push((at, fields));
        self.peak = self.peak.max(self.candidates.len());
    }

    /// The end of the file: is it also a document?
    pub fn finish(&self) -> Result<(), String> {
        if self.overflow {
            return Err(format!(
                "more than {MAX_CANDIDATES} ZIP end-record signatures in 64 KiB"
            ));
        }
        let pdf = memchr::memmem::find_iter(&self.head, b"%PDF-").any(|at| {
            let rest = &self.head[at + 5..];
            rest.len() >= 2 && rest[0].is_ascii_digit() && rest[1] == b'.'
        });
        if pdf {
            return Err("the file is also a PDF document (%PDF- header)".into());
        }
        for (at, f) in &self.candidates {
            let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
            if f.len() == 18
                && at + 22 <= self.total
                && u16_at(0) == 0
                && u16_at(2) == 0
                && u16_at(4) == u16_at(6)
            {
                return Err(format!(
                    "the file is also a ZIP archive (end record at offset {at})"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8], chunk: usize) -> Result<(), String> {
        let mut p = Polyglot::default();
        for c in data.chunks(chunk.max(1)) {
            p.feed(c);
        }
        p.finish()
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// An end record of an archive of one entry, with a comment.
    fn eocd(comment: &[u8]) -> Vec<u8> {
        let mut e = EOCD.to_vec();
        e.extend([0, 0, 0, 0, 1, 0, 1, 0]);
        e.extend(46u32.to_le_bytes());
        e.extend(100u32.to_le_bytes());
        e.extend((comment.len() as u16).to_le_bytes());
        e.extend(comment);
        e
    }

    #[test]
    fn a_zip_end_record_near_the_end_is_found_in_any_chunking() {
        for (before, comment) in [(5000, &b""[..]), (70_000, b"note"), (3, b"")] {
            let mut data = noise(before as u64, before);
            data.extend(eocd(comment));
            for chunk in [1, 2, 3, 5, 17, 4096, 1 << 20] {
                let r = run(&data, chunk);
                assert!(
                    r.as_ref().is_err_and(|e| e.contains("ZIP")),
                    "{before} {chunk}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn an_end_record_far_from_the_end_or_malformed_is_not_a_zip() {
        let mut data = noise(1, 1000);
        data.extend(eocd(b""));
        data.extend(noise(2, 70_000));
        assert_eq!(run(&data, 4096), Ok(()));
        let mut data = noise(3, 1000);
        let mut e = eocd(b"");
        e[4] = 1; // another disk
        data.extend(e);
        assert_eq!(run(&data, 7), Ok(()));
    }

    #[test]
    fn a_pdf_header_in_the_first_kilobyte_is_found() {
        let mut data = noise(4, 900);
        data.extend(b"%PDF-1.7\n");
        data.extend(noise(5, 5000));
        assert!(run(&data, 3).is_err());
        let mut data = noise(6, 1100);
        data.extend(b"%PDF-1.7\n");
        assert_eq!(run(&data, 3), Ok(()));
    }

    #[test]
    fn uniform_bytes_pass() {
        for seed in 1..50u64 {
            let data = noise(seed, 200_000);
            assert_eq!(run(&data, 1 + seed as usize * 977), Ok(()), "{seed}");
        }
    }
}
