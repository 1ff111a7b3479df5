//! Reading the fields inside a packet payload: big-endian integers and
//! NUL-terminated strings, returned as zero-copy slices of the payload.

use bytes::{Buf, Bytes};

/// Why a payload does not have the shape its code requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload ended before a field.
    #[error("'{code}' packet: payload ends before the {field}")]
    Short {
        /// The packet code, as a character.
        code: char,
        /// The field that is missing.
        field: &'static str,
    },
    /// A string field has no terminating NUL byte.
    #[error("'{code}' packet: the {field} is not NUL-terminated")]
    MissingNul {
        /// The packet code, as a character.
        code: char,
        /// The field that is unterminated.
        field: &'static str,
    },
    /// Bytes follow the last field.
    #[error("'{code}' packet: {extra} unexpected bytes after the last field")]
    Trailing {
        /// The packet code, as a character.
        code: char,
        /// How many bytes are left over.
        extra: usize,
    },
    /// A field has a value the protocol does not define.
    #[error("'{code}' packet: invalid {field}")]
    Invalid {
        /// The packet code, as a character.
        code: char,
        /// The field that is wrong.
        field: &'static str,
    },
    /// The code byte is not one the protocol defines.
    #[error("unknown packet code 0x{0:02x}")]
    UnknownCode(u8),
}

/// A read position in one payload.
pub(crate) struct Cursor {
    code: char,
    data: Bytes,
}

impl Cursor {
    pub(crate) fn new(code: u8, data: Bytes) -> Self {
        Cursor {
            code: code as char,
            data,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PayloadError> {
        if self.data.is_empty() {
            return Err(self.short(field));
        }
        let b = self.data[0];
        self.data.advance(1);
        Ok(b)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, PayloadError> {
        if self.data.len() < 2 {
            return Err(self.short(field));
        }
        let v = u16::from_be_bytes([self.data[0], self.data[1]]);
        self.data.advance(2);
        Ok(v)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, PayloadError> {
        if self.data.len() < 4 {
            return Err(self.short(field));
        }
        let d = &self.data;
        let v = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        self.data.advance(4);
        Ok(v)
    }

    /// A NUL-terminated string, without its NUL.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<Bytes, PayloadError> {
        if self.data.is_empty() {
            return Err(self.short(field));
        }
        match memchr_nul(&self.data) {
            Some(i) => {
                // `advance` past the NUL moves a pointer; a second
                // `split_to` would make and drop a reference to the buffer.
                let s = self.data.split_to(i);
                self.data.advance(1);
                Ok(s)
            }
            None => Err(PayloadError::MissingNul {
                code: self.code,
                field,
            }),
        }
    }

    /// Everything that is left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.data)
    }

    pub(crate) fn finish(self) -> Result<(), PayloadError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(PayloadError::Trailing {
                code: self.code,
                extra: self.data.len(),
            })
        }
    }

    pub(crate) fn invalid(&self, field: &'static str) -> PayloadError {
        PayloadError::Invalid {
            code: self.code,
            field,
        }
    }

    fn short(&self, field: &'static str) -> PayloadError {
        PayloadError::Short {
            code: self.code,
            field,
        }
    }
}

/// The first NUL byte, found a word at a time (every header, macro and
/// address string of every packet ends at one).
pub(crate) fn memchr_nul(data: &[u8]) -> Option<usize> {
    memchr::memchr(0, data)
}

/// True if `s` can be sent as a NUL-terminated string.
pub(crate) fn has_nul(s: &[u8]) -> bool {
    memchr_nul(s).is_some()
}
