use std::fmt;
use std::io;

/// The error type of this crate: a human-readable message.
///
/// Its `Debug` output is the plain message (not a quoted, escaped string) so that
/// `.unwrap()` / `.expect()` in a test print multi-line details such as the tail of the
/// Postfix log readably. It converts into `String`, so `?` works in functions that
/// return `Result<_, String>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl fmt::Display, err: io::Error) -> Self {
        Self::new(format!("{context}: {err}"))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Self::new(err.to_string())
    }
}

impl From<Error> for String {
    fn from(err: Error) -> Self {
        err.message
    }
}
