//! "Does this look like ciphertext?": a cheap test on the bytes of
//! encrypted-data and Padding packets.
//!
//! Real ciphertext (AES/CFB, OCB, EAX, GCM output) and the random padding
//! RFC 9580 §5.14 asks for are indistinguishable from uniformly random
//! bytes. Text is not: whatever its charset, it uses few byte values, very
//! unevenly. Two statistics are computed over windows of `n` bytes:
//!
//! * **collisions** `S = Σ o_v²`, where `o_v` counts byte value `v` in the
//!   window (Pearson's χ² is `256·S/n − n`). Uniform bytes give
//!   `E[S] = n + n(n−1)/256`; English text about 15 times more.
//! * **text bytes** `T`: how many bytes are NUL, TAB, LF, CR or printable
//!   ASCII (99 of 256 values). Uniform bytes give `T ~ Binomial(n, 99/256)`;
//!   ASCII, UTF-7 and UTF-16 text of Latin script give `T ≈ n`. This one
//!   catches short text that the collision statistic, whose bound is loose
//!   for small `n`, lets through.
//!
//! A window fails if either statistic is at or over its threshold for `n`
//! ([`THRESHOLDS`]). Each threshold bounds the false-positive probability
//! for one window of uniformly random bytes by `1e-21`:
//!
//! * for `T`, the exact binomial tail `P(Bin(n, 99/256) ≥ t) ≤ 1e-21`;
//! * for `S`, a Chernoff bound made rigorous by Poissonization
//!   (Mitzenmacher & Upfal, *Probability and Computing*, Cor. 5.9: an event
//!   on the multinomial counts has at most `e·√n` times its probability
//!   under independent Poisson(`n/256`) counts):
//!   `P(S ≥ t) ≤ e·√n · min_θ M(θ)^256 · e^{−θt}` with
//!   `M(θ) = Σ_{o=0}^{n} Pois(o; n/256)·e^{θo²}` (counts never exceed `n`).
//!   (the smallest such `t`, found numerically, rounded up by 1%).
//!   The test `thresholds_bound_the_false_positive_rate` recomputes both
//!   bounds for every table entry.
//!
//! Windows: every aligned 4096-byte window of a packet's bytes is tested.
//! So is every 64-byte window starting at a multiple of 32 ([`RUN`]), for
//! text bytes only (the 64-byte threshold, 61): text is seldom spread
//! evenly, and a sentence of 95 bytes or more planted among random bytes
//! (which a large window dilutes below its threshold) always fills one of
//! these windows. Counting text bytes per 32-byte block costs one table
//! lookup per byte; no histogram is kept for them.
//! At the end of a packet the last `m` bytes are tested too, `m` the largest
//! table size not over what is available (at most 4096), and for a packet
//! shorter than 4096 bytes also its first `m`: every byte of a packet of 64
//! bytes or more is inside at least one tested window. Packets under 64
//! bytes are not tested (they cannot be told from random with this bound).
//!
//! False positives per message: a message of `N` packet bytes gets at most
//! `N/4096 + 2` windows per packet, two statistics each, and `N/32` short
//! windows (one statistic). A message of 1 TiB has fewer than 2^36
//! windows, so its false-positive probability is below
//! `2^36 · 1e-21 ≈ 6.9e-11`; a 100 MB message below `1e-14`.
//!
//! Detection (what it refuses): in a full window, any byte distribution
//! with `Σ p_v² ≥ 1.88/256` (English letters: about 15/256; the base64
//! alphabet's letters decoded: about 3.4/256), or 46% or more text bytes.

/// Full window size.
pub const WINDOW: usize = 4096;

/// Smallest window tested.
pub const MIN_WINDOW: usize = 64;

/// `(n, collision threshold, text-byte threshold)`: a window of `n` bytes
/// fails if `Σ o_v² ≥ s` or if `t` or more of its bytes are text bytes.
pub const THRESHOLDS: [(usize, u64, u32); 7] = [
    (64, 848, 61),
    (128, 1733, 103),
    (256, 3609, 175),
    (512, 7776, 306),
    (1024, 17745, 547),
    (2048, 44165, 1005),
    (4096, 122834, 1884),
];

/// Step of the short text-byte windows: each is two adjacent blocks of
/// `RUN` bytes, tested against the threshold for [`MIN_WINDOW`] bytes.
pub const RUN: usize = MIN_WINDOW / 2;

/// Text bytes of a short window at which it fails (the threshold for
/// [`MIN_WINDOW`] bytes in [`THRESHOLDS`]).
const RUN_MAX: u32 = THRESHOLDS[0].2;

/// 1 for a text byte, 0 otherwise (see `is_text_byte`).
const TEXT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8, 0 | b'\t' | b'\n' | b'\r' | 0x20..=0x7e) as u8;
        b += 1;
    }
    t
};

/// A text byte, by comparisons (see `TEXT`).
#[inline]
fn is_text(b: u8) -> bool {
    b.wrapping_sub(0x20) < 0x5f || b == 0 || b == b'\t' || b == b'\n' || b == b'\r'
}

/// NUL, TAB, LF, CR and printable ASCII (the definition; [`text_count`]
/// sums the same bytes by range).
#[cfg(test)]
fn is_text_byte(b: u8) -> bool {
    matches!(b, 0 | b'\t' | b'\n' | b'\r' | 0x20..=0x7e)
}

/// How many of the counted bytes are text bytes: NUL, TAB, LF, CR and
/// printable ASCII.
fn text_count(counts: &[u32; 256]) -> u32 {
    counts[0]
        + counts[usize::from(b'\t')]
        + counts[usize::from(b'\n')]
        + counts[usize::from(b'\r')]
        + counts[0x20..=0x7e].iter().sum::<u32>()
}

/// What failed, in words for the reply.
fn verdict(counts: &[u32; 256], n: usize) -> Result<(), String> {
    let Some(&(_, s_max, t_max)) = THRESHOLDS.iter().find(|(m, _, _)| *m == n) else {
        return Ok(());
    };
    let s: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    // The text bytes of `is_text_byte`, summed by range (this runs for
    // every window; a test checks it against the byte-by-byte sum).
    let t = text_count(counts);
    if t >= t_max {
        return Err(format!("{t} of {n} bytes are text characters"));
    }
    if s >= s_max {
        return Err(format!(
            "byte values far from uniform (collision sum {s} in {n} bytes, random stays under {s_max})"
        ));
    }
    Ok(())
}

/// The test over one packet's bytes, fed in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Randomness {
    /// The last up to [`WINDOW`] bytes, in a ring. Grows with the first
    /// [`WINDOW`] bytes (a session-key or small data packet never pays
    /// for a whole window), then is written round.
    ring: Vec<u8>,
    /// Histogram of the current aligned window.
    counts: Box<[u32; 256]>,
    /// Bytes seen in total.
    total: u64,
    /// Text bytes in the current block of [`RUN`] bytes.
    run: u32,
    /// Text bytes in the block before it (0 before the first).
    prev_run: u32,
}

impl Default for Randomness {
    fn default() -> Self {
        Randomness {
            ring: Vec::new(),
            counts: Box::new([0; 256]),
            total: 0,
            run: 0,
            prev_run: 0,
        }
    }
}

impl Randomness {
    /// Bytes the tester holds (its ring), for the reader's high-water mark.
    pub const BUFFER: usize = WINDOW;

    /// The next bytes of the packet.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let at = (self.total % WINDOW as u64) as usize;
            let take = bytes.len().min(WINDOW - at);
            let (now, rest) = bytes.split_at(take);
            if self.ring.len() < WINDOW {
                // Still filling: `at` is the length (nothing went round).
                let want = (at + take).max(2 * self.ring.capacity()).min(WINDOW);
                self.ring.reserve_exact(want - self.ring.len());
                self.ring.extend_from_slice(now);
            } else {
                self.ring[at..at + take].copy_from_slice(now);
            }
            for &b in now {
                self.counts[usize::from(b)] += 1;
            }
            self.runs(self.total, now)?;
            self.total += take as u64;
            bytes = rest;
            if at + take == WINDOW {
                verdict(&self.counts, WINDOW)?;
                self.counts.fill(0);
            }
        }
        Ok(())
    }

    /// The short windows over `bytes`, which start at stream offset `at`.
    fn runs(&mut self, at: u64, bytes: &[u8]) -> Result<(), String> {
        let mut fill = (at % RUN as u64) as usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = rest.len().min(RUN - fill);
            let (now, next) = rest.split_at(take);
            self.run += match <&[u8; RUN]>::try_from(now) {
                // A whole block: a comparison per byte the compiler turns
                // into vector instructions (a table lookup would not be).
                Ok(block) => u32::from(block.iter().map(|&b| u8::from(is_text(b))).sum::<u8>()),
                Err(_) => now
                    .iter()
                    .map(|&b| u32::from(TEXT[usize::from(b)]))
                    .sum::<u32>(),
            };
            fill += take;
            rest = next;
            if fill == RUN {
                if self.prev_run + self.run >= RUN_MAX {
                    return Err(format!(
                        "{} of {MIN_WINDOW} bytes are text characters",
                        self.prev_run + self.run
                    ));
                }
                self.prev_run = self.run;
                self.run = 0;
                fill = 0;
            }
        }
        Ok(())
    }

    /// Bytes fed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// All bytes fed, while fewer than [`WINDOW`] were (`None` after).
    pub fn all(&self) -> Option<&[u8]> {
        (self.total < WINDOW as u64).then_some(&self.ring[..])
    }

    /// The end of the packet: the tail windows.
    pub fn finish(&self) -> Result<(), String> {
        let held = self.total.min(WINDOW as u64) as usize;
        let Some(&(m, _, _)) = THRESHOLDS.iter().rev().find(|(m, _, _)| *m <= held) else {
            return Ok(());
        };
        // The ring holds the last `held` bytes ending at `end`.
        let end = (self.total % WINDOW as u64) as usize;
        let mut counts = [0u32; 256];
        for i in 0..m {
            let b = self.ring[(end + WINDOW - m + i) % WINDOW];
            counts[usize::from(b)] += 1;
        }
        verdict(&counts, m)?;
        if self.total < WINDOW as u64 {
            let mut counts = [0u32; 256];
            for &b in &self.ring[..m] {
                counts[usize::from(b)] += 1;
            }
            verdict(&counts, m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_and_the_comparisons_agree_with_the_definition() {
        for b in 0..=255u8 {
            assert_eq!(is_text(b), is_text_byte(b), "{b}");
            assert_eq!(TEXT[usize::from(b)] == 1, is_text_byte(b), "{b}");
        }
    }

    #[test]
    fn text_bytes_are_counted_by_range_as_one_by_one() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200 {
            let mut counts = [0u32; 256];
            for c in counts.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = (x % 50) as u32;
            }
            let one_by_one: u32 = (0..=255u8)
                .filter(|&b| is_text_byte(b))
                .map(|b| counts[usize::from(b)])
                .sum();
            assert_eq!(text_count(&counts), one_by_one);
        }
    }

    use testkit::random::random_bytes;

    fn run(data: &[u8], chunk: usize) -> Result<(), String> {
        let mut r = Randomness::default();
        for c in data.chunks(chunk.max(1)) {
            r.feed(c)?;
        }
        r.finish()
    }

    fn ln_pois(o: f64, mu: f64) -> f64 {
        -mu + o * mu.ln() - ln_gamma(o + 1.0)
    }

    /// ln Γ(x) by Stirling's series (x ≥ 1 here; exact enough for bounds
    /// that hold with orders of magnitude to spare).
    fn ln_gamma(x: f64) -> f64 {
        if x < 8.0 {
            return ln_gamma(x + 1.0) - x.ln();
        }
        (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x)
            - 1.0 / (360.0 * x.powi(3))
    }

    fn ln_sum_exp(terms: impl Iterator<Item = f64>) -> f64 {
        let v: Vec<f64> = terms.collect();
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    }

    /// ln of the Poissonized Chernoff bound on P(S ≥ s), best θ on a grid.
    fn ln_collision_bound(n: usize, s: u64) -> f64 {
        let mu = n as f64 / 256.0;
        let mut best = 0.0f64;
        for k in 0..400 {
            let theta = 10f64.powf(-7.0 + f64::from(k) * 6.0 / 400.0);
            let ln_m = ln_sum_exp((0..=n).map(|o| {
                let o = o as f64;
                ln_pois(o, mu) + theta * o * o
            }));
            best = best.min(256.0 * ln_m - theta * s as f64);
        }
        1.0 + 0.5 * (n as f64).ln() + best
    }

    fn ln_binomial_tail(n: usize, p: f64, t: u32) -> f64 {
        ln_sum_exp((t as usize..=n).map(|j| {
            let (n, j) = (n as f64, j as f64);
            ln_gamma(n + 1.0) - ln_gamma(j + 1.0) - ln_gamma(n - j + 1.0)
                + j * p.ln()
                + (n - j) * (1.0 - p).ln()
        }))
    }

    #[test]
    fn thresholds_bound_the_false_positive_rate() {
        let text_values = (0..=255u8).filter(|&b| is_text_byte(b)).count();
        assert_eq!(text_values, 99);
        let limit = 1e-21f64.ln();
        for (n, s, t) in THRESHOLDS {
            assert!(
                ln_binomial_tail(n, 99.0 / 256.0, t) <= limit,
                "text threshold {t} for {n}"
            );
            // Not needlessly lax: one less would not hold.
            assert!(ln_binomial_tail(n, 99.0 / 256.0, t - 1) > limit);
            assert!(ln_collision_bound(n, s) <= limit, "collision {s} for {n}");
        }
    }

    #[test]
    fn random_bytes_pass_in_any_chunking() {
        for seed in 1..200u64 {
            let n = (seed as usize * 7919) % 20_000;
            let data = random_bytes(seed, n);
            for chunk in [1, 7, 4096, 65536] {
                assert_eq!(run(&data, chunk), Ok(()), "seed {seed} n {n}");
            }
        }
    }

    #[test]
    fn random_windows_stay_far_below_the_thresholds() {
        // 2000 full windows: the largest statistics seen stay within six
        // standard deviations of their means (S: 69 616 ± 361; T: 1584 ±
        // 31), far below the thresholds (122 834 and 1884).
        let data = random_bytes(42, 2000 * WINDOW);
        let (mut max_s, mut max_t) = (0u64, 0u32);
        for w in data.chunks(WINDOW) {
            let mut c = [0u32; 256];
            w.iter().for_each(|&b| c[usize::from(b)] += 1);
            max_s = max_s.max(c.iter().map(|&x| u64::from(x).pow(2)).sum());
            max_t = max_t.max(
                (0..=255u8)
                    .filter(|&b| is_text_byte(b))
                    .map(|b| c[usize::from(b)])
                    .sum(),
            );
        }
        assert!(max_s < 71_800 && max_t < 1770, "{max_s} {max_t}");
    }

    #[test]
    fn text_fails() {
        let english = b"Meet me at noon by the old bridge. Bring the documents and the key. ";
        let text: Vec<u8> = english.iter().cycle().take(10_000).cloned().collect();
        for n in [64, 100, 1000, 5000, 10_000] {
            assert!(run(&text[..n], 13).is_err(), "{n}");
        }
        // UTF-16 text (what UTF-7's base64 runs decode to).
        let utf16: Vec<u8> = english
            .iter()
            .flat_map(|&b| [0, b])
            .cycle()
            .take(300)
            .collect();
        assert!(run(&utf16, 300).is_err());
        // Text hidden after random bytes, in the tail of the last window.
        let mut mixed = random_bytes(7, 3 * WINDOW);
        mixed.extend_from_slice(&text[..1500]);
        assert!(run(&mixed, 1000).is_err());
        // ... or in the second half of a short packet.
        let mut short = random_bytes(8, 1100);
        short.extend_from_slice(&text[..1000]);
        assert!(run(&short, 5000).is_err());
        // Too short to judge: passes.
        assert_eq!(run(&text[..63], 63), Ok(()));
    }

    #[test]
    fn a_sentence_among_random_bytes_fails() {
        // 95 bytes of text planted at any offset of random bytes fill one
        // short window; the large windows alone let this through.
        let sentence = b"marker: the merger closes Friday at nine; keep this quiet, the vote is unanimous, burn it..";
        assert_eq!(sentence.len(), 91);
        let planted: Vec<u8> = sentence.iter().chain(b"!!!!").cloned().collect();
        for at in [0, 1, 31, 32, 33, 1000, 4095, 4096, 9000] {
            let mut data = random_bytes(at as u64 + 3, 12_000);
            data[at..at + planted.len()].copy_from_slice(&planted);
            for chunk in [1, 13, 4096] {
                assert!(run(&data, chunk).is_err(), "at {at} chunk {chunk}");
            }
        }
        // Planted every 4096 bytes, each 360 bytes: the large windows stay
        // under their thresholds, the short ones do not.
        let mut data = random_bytes(5, 5 * WINDOW);
        for w in 0..5 {
            let at = w * WINDOW + 1000;
            for (i, b) in data[at..at + 360].iter_mut().enumerate() {
                *b = sentence[i % sentence.len()];
            }
        }
        assert!(run(&data, 4096).is_err());
    }

    #[test]
    fn base64_spelling_words_fails() {
        use base64::Engine;
        let words = "TheQuickBrownFoxJumpsOverTheLazyDogMeetMeAtNoonBringTheMoney";
        let b64: String = words.chars().cycle().take(8192).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .unwrap();
        assert!(run(&bytes, 4096).is_err());
    }
}
