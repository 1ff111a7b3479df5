//! Errors as an administrator reads them: one line, naming the file, key or
//! socket, with no Debug text and no backtrace.

use std::error::Error;

/// Any error a milter's hooks return to the shell.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A start-up failure the daemon reports and exits on.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A command-line or `[server]` value that cannot be used (exit 2 for
    /// the command line is clap's; this is exit 1, like a bad file).
    #[error("{0}")]
    Config(String),
    /// Something the milter's own hook refused, already a sentence.
    #[error("{}", one_line(.0.as_ref()))]
    Milter(BoxError),
    /// Sockets, the async runtime, signal handlers.
    #[error("{0}")]
    Start(String),
}

impl From<BoxError> for DaemonError {
    fn from(e: BoxError) -> Self {
        DaemonError::Milter(e)
    }
}

/// `error` and its sources on one line, `outer: inner`, leaving out a
/// source whose text the outer message already carries (an `io::Error`
/// printed inside a wrapper's own text would otherwise appear twice), and
/// folding any line breaks a message carries.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    fold(&text)
}

/// Line breaks and the runs of blanks around them become one space.
pub(crate) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("binding unix:/x: {source}")]
    struct Doubled {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("binding unix:/x")]
    struct Chained {
        source: std::io::Error,
    }

    #[test]
    fn a_source_is_named_once() {
        let io = || std::io::Error::from_raw_os_error(2);
        let d = one_line(&Doubled { source: io() });
        assert_eq!(d, "binding unix:/x: No such file or directory (os error 2)");
        let c = one_line(&Chained { source: io() });
        assert_eq!(c, d);
    }

    #[test]
    fn several_lines_become_one() {
        assert_eq!(
            fold("TOML parse error at line 1\n  |\n1 | x\n"),
            "TOML parse error at line 1 | 1 | x"
        );
    }
}
