//! Arbitrary bytes read as a sequence of choices.
//!
//! A hand-rolled reader rather than the `arbitrary` crate: the seed corpus
//! files are written by hand and by `fuzz-checks`' own tests in this format, so
//! it must be simple and stable, and running out of bytes must simply yield
//! zeros (libFuzzer shortens inputs; a short input is still a valid one).

/// A cursor over fuzzer bytes. Reads past the end return zeros.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads from the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte (0 at the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_pads_with_zeros() {
        let mut i = Input::new(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(i.u8(), 1);
        assert_eq!(i.u16(), 0x0203);
        assert_eq!(i.take(2), &[4, 5]);
        assert_eq!(i.u32(), 0x0600_0000);
        assert!(i.is_empty());
        assert_eq!(i.short_bytes(), &[] as &[u8]);
        assert_eq!(i.rest(), &[] as &[u8]);
    }
}
