//! Fixed-seed pseudo-random numbers for tests: the same cases on every run.
//!
//! xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift
//! generators"): a few lines, no dependency, and uniform enough to stand in
//! for ciphertext in the OpenPGP tests (pgp-milter's randomness test passes
//! its bytes, as it passes real ciphertext). Not for anything secret.

/// The generator; the tuple field is its state (never 0: a zero state stays
/// zero, so [`random_bytes`] forces the low bit).
#[derive(Debug, Clone)]
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next byte: the top 8 bits, the best mixed ones.
    pub fn next_byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// Fills `buf` with [`Xorshift::next_byte`]s.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_byte();
        }
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True in about `percent` of the calls.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// `n` bytes from the seed `seed` (its low bit set).
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut r = Xorshift(seed | 1);
    (0..n).map(|_| r.next_byte()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_value_turns_up_about_equally_often() {
        let bytes = random_bytes(7, 256 * 1000);
        let mut counts = [0u32; 256];
        for b in bytes {
            counts[usize::from(b)] += 1;
        }
        // 1000 expected per value; 5 standard deviations is about 160.
        assert!(
            counts.iter().all(|&c| (840..=1160).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_others() {
        assert_eq!(random_bytes(3, 64), random_bytes(3, 64));
        assert_ne!(random_bytes(3, 64), random_bytes(5, 64));
        // A zero seed would be stuck at zero without the forced low bit.
        assert!(random_bytes(0, 64).iter().any(|&b| b != 0));
    }

    #[test]
    fn below_stays_below_and_pick_reaches_every_item() {
        let mut r = Xorshift(42);
        let items = ["a", "b", "c"];
        let mut seen = [false; 3];
        for _ in 0..300 {
            assert!(r.below(5) < 5);
            let p = r.pick(&items);
            seen[items.iter().position(|i| i == p).unwrap()] = true;
        }
        assert_eq!(r.below(0), 0);
        assert!(seen.iter().all(|&s| s));
    }
}
