//! Small host helpers both MTA harnesses need: files, processes, ports,
//! and reading the logs the instances write.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

pub(crate) fn is_listening(port: u16) -> Result<bool, Error> {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io("running `ss` (package iproute2)", e))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "`ss -Hltn \"sport = :{port}\"` failed: {}",
            out.status
        )));
    }
    Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
}

pub(crate) fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {mode:o} {}", path.display()), e))
}

/// Writes a root-owned 0644 file regardless of the umask (daemons read some of these
/// after dropping privileges).
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    let mut f =
        File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    set_mode(path, 0o644)
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &lines[lines.len().saturating_sub(n)..] {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Waits until a line of the log at `path` contains `needle`, looking every
/// `poll`; returns the first such line, or `None` after `timeout`.
pub(crate) fn wait_for_line(
    path: &Path,
    needle: &str,
    timeout: Duration,
    poll: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = read_lossy(path).lines().find(|l| l.contains(needle)) {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(poll);
    }
}

/// The last `lines` lines of the log at `path`, under a heading naming it.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = read_lossy(path);
    let shown = text.lines().count().min(lines);
    format!(
        "--- last {shown} line(s) of {} ---\n{}",
        path.display(),
        tail(&text, lines)
    )
}

/// An error whose message ends with where the instance lives and the last
/// lines of its log.
pub(crate) fn instance_error(what: &str, root: &Path, log: &Path, lines: usize) -> Error {
    Error::new(format!(
        "{what}\n(instance in {}; set TESTKIT_KEEP=1 to keep it)\n{}",
        root.display(),
        log_tail(log, lines)
    ))
}
