//! A milter binary run as a child process on a unix socket, for tests that
//! put a production milter (not an in-process one) behind a real MTA.
//!
//! Each test file used to carry its own copy of "spawn, wait for the socket,
//! keep stderr in a file, kill on drop"; the Postfix and Sendmail runs of the
//! same milter need exactly the same thing, so it lives here once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::host::{self, read_lossy};

/// How long [`MilterProcess::start`] waits for the socket by default.
pub const DEFAULT_MILTER_START_TIMEOUT: Duration = Duration::from_secs(20);

const POLL: Duration = Duration::from_millis(50);

/// A milter daemon started by [`MilterProcess::start`]; killed (SIGKILL) and
/// reaped on drop or [`MilterProcess::stop`]. Its stderr (the daemons log
/// there) goes to a file so a test can assert on its decision lines.
#[derive(Debug)]
pub struct MilterProcess {
    child: Option<Child>,
    log: PathBuf,
    socket: PathBuf,
}

impl MilterProcess {
    /// Spawns `command` (stdin and stdout null, stderr to `log`) and waits
    /// until `socket` exists — the daemon creates it once it listens. Fails
    /// with the daemon's log when it exits first or the socket does not
    /// appear within [`DEFAULT_MILTER_START_TIMEOUT`].
    ///
    /// A socket file left by an earlier daemon must be removed first (or the
    /// new daemon must replace it itself), or this returns at once.
    pub fn start(
        command: Command,
        socket: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Result<MilterProcess, Error> {
        let socket = socket.into();
        let ready = socket.clone();
        Self::spawn(command, socket, log.into(), move || Ok(ready.exists()))
    }

    /// Like [`MilterProcess::start`] for a daemon listening on
    /// `inet:127.0.0.1:PORT`: waits until `port` is in LISTEN state (asking
    /// `ss`, not connecting, so no milter session is opened just to probe).
    /// [`MilterProcess::socket`] is then empty.
    pub fn start_inet(
        command: Command,
        port: u16,
        log: impl Into<PathBuf>,
    ) -> Result<MilterProcess, Error> {
        Self::spawn(command, PathBuf::new(), log.into(), move || {
            host::is_listening(port)
        })
    }

    fn spawn(
        mut command: Command,
        socket: PathBuf,
        log: PathBuf,
        listening: impl Fn() -> Result<bool, Error>,
    ) -> Result<MilterProcess, Error> {
        let stderr =
            File::create(&log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| Error::io(format!("starting {command:?}"), e))?;
        let mut milter = MilterProcess {
            child: Some(child),
            log,
            socket,
        };
        let deadline = Instant::now() + DEFAULT_MILTER_START_TIMEOUT;
        while !listening()? {
            let exited = milter
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten();
            if let Some(status) = exited {
                milter.child = None;
                return Err(Error::new(format!(
                    "{command:?} exited before listening ({status}):\n{}",
                    milter.log_text()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "{command:?}: not listening after {DEFAULT_MILTER_START_TIMEOUT:?}:\n{}",
                    milter.log_text()
                )));
            }
            thread::sleep(POLL);
        }
        Ok(milter)
    }

    /// The daemon's pid (`None` once stopped), e.g. to send it SIGHUP.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The unix socket it listens on (empty for [`MilterProcess::start_inet`]).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Everything it wrote to stderr so far.
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }

    /// Waits until a line of its log contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String, Error> {
        host::wait_for_line(&self.log, needle, timeout, POLL).ok_or_else(|| {
            Error::new(format!(
                "no milter log line contains {needle:?} after {timeout:?}:\n{}",
                self.log_text()
            ))
        })
    }

    /// Kills the daemon (SIGKILL: as if it crashed, so nothing is cleaned
    /// up; its socket file stays behind with nobody listening) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MilterProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
