//! Writing results through handles instead of `print!`, which panics when
//! standard output is a pipe whose reader has gone (`minimilter check ... |
//! head -2`). Results are built in a `String` and written once; a closed
//! pipe drops the rest quietly and the exit status stays the verdict's.

use std::io::{ErrorKind, Write};

use anyhow::Context;

/// `outln!(out, "fmt", args...)` appends a formatted line to the `String`
/// `out` (appending to a `String` cannot fail, unlike `writeln!`).
macro_rules! outln {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}
pub(crate) use outln;

/// Writes `text` to standard output. A reader that closed the pipe early is
/// not an error (it has what it wanted); any other write error is.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// Writes `text` to standard error, ignoring failure: diagnostics have
/// nowhere else to go.
pub fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// An error and its causes, `: `-separated, each named once (the library
/// errors keep their cause out of their own text).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
