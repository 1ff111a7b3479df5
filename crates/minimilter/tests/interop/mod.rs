//! Shared support for the interop tests (`mod interop;` in a test file):
//! the action milter in both implementations as child processes, the
//! libmilter build, temporary directories and commands with a time limit.
//!
//! - [`build_libmilter_action_milter`] compiles `libmilter/action_milter.c`
//!   (Sendmail's libmilter, the reference implementation) with `cc`.
//! - [`rust_action_milter`] is `examples/action_milter.rs`, built by Cargo.
//! - [`ChildMilter`] runs either on a fresh unix socket and stops it on drop.
//!
//! Missing system packages make these helpers panic with instructions
//! (`scripts/install-test-deps.sh`); they never skip a test silently.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// `crates/minimilter/tests/interop`.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// The directory of the miltertest Lua scripts.
pub fn miltertest_dir() -> PathBuf {
    interop_dir().join("miltertest")
}

/// How to install what these tests need.
pub const INSTALL_HINT: &str = "run scripts/install-test-deps.sh as root \
     (installs postfix, swaks, miltertest, libmilter-dev)";

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop. Paths stay short
/// (unix socket paths are limited to 107 bytes).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("minimilter-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Commands with a time limit
// ---------------------------------------------------------------------------

/// What a command run by [`run_with_timeout`] did.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` if it was killed at the time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Exit status, stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {:.1?} (time limit)", self.elapsed),
        };
        format!(
            "status: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` (stdin closed, output captured through files so nothing can
/// block on a full pipe) in its own process group; kills the whole group if
/// it runs longer than `limit`. Panics only if the program cannot be started;
/// the error text names the program.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> RunOutput {
    try_run_with_timeout(cmd, limit)
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()))
}

/// Like [`run_with_timeout`], but returns the error if the program cannot be
/// started (for example `NotFound`).
pub fn try_run_with_timeout(cmd: &mut Command, limit: Duration) -> std::io::Result<RunOutput> {
    use std::os::unix::process::CommandExt;

    let dir = TempDir::new("run");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .process_group(0)
        .spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let read = |p: &Path| {
        let mut s = Vec::new();
        if let Ok(mut f) = File::open(p) {
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    };
    Ok(RunOutput {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        elapsed,
    })
}

// ---------------------------------------------------------------------------
// The two action milters
// ---------------------------------------------------------------------------

/// Builds the libmilter twin of the action milter (`libmilter/action_milter.c`)
/// with `cc ... -lmilter -lpthread` and returns the path of the executable.
///
/// Built once per test process, into `CARGO_TARGET_TMPDIR/libmilter/`
/// (compiled under a unique name, then renamed into place, so concurrent test
/// processes do not disturb each other). Panics with instructions naming
/// `scripts/install-test-deps.sh` when libmilter's headers or library are
/// missing, and with the compiler output on any other failure.
///
/// Its command line: `action_milter -p SOCKET [-n] [-P PROGRESS_MS] [-d LEVEL]`
/// with SOCKET in libmilter syntax (`unix:/path`, `inet:PORT@127.0.0.1`); `-n`
/// asks for no-reply at connect, HELO, MAIL, DATA, unknown, header and end
/// of header. The socket is created with umask 0 (usable by user postfix).
pub fn build_libmilter_action_milter() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(compile_libmilter_action_milter) {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn compile_libmilter_action_milter() -> Result<PathBuf, String> {
    let source = interop_dir().join("libmilter").join("action_milter.c");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libmilter");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let target = out_dir.join("action_milter");
    let tmp = out_dir.join(format!("action_milter.{}.tmp", std::process::id()));
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-O2", "-o"])
        .arg(&tmp)
        .arg(&source)
        .args(["-lmilter", "-lpthread"]);
    let out = match try_run_with_timeout(&mut cmd, Duration::from_secs(120)) {
        Ok(out) => out,
        Err(e) => {
            return Err(format!(
                "cannot run the C compiler `cc` ({e}); install gcc, and for libmilter {INSTALL_HINT}"
            ));
        }
    };
    if !out.success() {
        let _ = std::fs::remove_file(&tmp);
        let text = format!("{}{}", out.stdout, out.stderr);
        if text.contains("libmilter/mfapi.h") || text.contains("-lmilter") {
            return Err(format!(
                "libmilter is not installed (libmilter/mfapi.h or libmilter.so missing): \
                 {INSTALL_HINT}\n{}",
                out.describe()
            ));
        }
        return Err(format!(
            "compiling {} failed:\n{}",
            source.display(),
            out.describe()
        ));
    }
    if !out.stderr.trim().is_empty() {
        eprintln!("cc warnings for {}:\n{}", source.display(), out.stderr);
    }
    std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(target)
}

/// `target/<profile>/examples/action_milter`. Tests never run `cargo build`
/// themselves: `cargo test` (and so `scripts/test.sh`) builds every example
/// before it runs a test; after `cargo test --test NAME`, which builds only
/// that test, run `cargo build --examples` once.
pub fn rust_action_milter() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(find_rust_action_milter) {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn find_rust_action_milter() -> Result<PathBuf, String> {
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected test binary location")?;
    let bin = profile_dir.join("examples").join("action_milter");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: build the examples first (`cargo build --examples`, \
             or run the tests with a plain `cargo test`, which builds them)",
            bin.display()
        ));
    }
    Ok(bin)
}

/// A milter process listening on a unix socket in its own temporary
/// directory; killed on drop.
pub struct ChildMilter {
    child: std::process::Child,
    socket: PathBuf,
    log: PathBuf,
    // Dropped after the process is gone (fields drop after Drop::drop).
    dir: TempDir,
}

impl ChildMilter {
    /// The Rust action milter (`--listen unix:... --socket-mode 666`) plus `extra` arguments.
    pub fn rust_action_milter(extra: &[&str]) -> ChildMilter {
        let dir = TempDir::new("rs");
        let socket = dir.path().join("milter.sock");
        let mut args = vec![
            "--listen".to_owned(),
            format!("unix:{}", socket.display()),
            "--socket-mode".to_owned(),
            "666".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        ChildMilter::spawn(&rust_action_milter(), &args, dir, socket)
    }

    /// The libmilter action milter (`-p unix:...`) plus `extra` arguments
    /// (`-n`, `-P MS`, `-d LEVEL`).
    pub fn libmilter_action_milter(extra: &[&str]) -> ChildMilter {
        let dir = TempDir::new("lm");
        let socket = dir.path().join("milter.sock");
        let mut args = vec!["-p".to_owned(), format!("unix:{}", socket.display())];
        args.extend(extra.iter().map(|s| s.to_string()));
        ChildMilter::spawn(&build_libmilter_action_milter(), &args, dir, socket)
    }

    /// Starts `program` with `args` (which must make it listen on `socket`,
    /// inside `dir`), logging to `dir/milter.log`; waits up to 20 s for the
    /// socket to appear.
    pub fn spawn(program: &Path, args: &[String], dir: TempDir, socket: PathBuf) -> ChildMilter {
        let log = dir.path().join("milter.log");
        let out = File::create(&log).expect("milter log file");
        let err = out.try_clone().expect("milter log file");
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info,minimilter=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let mut m = ChildMilter {
            child,
            socket,
            log,
            dir,
        };
        m.wait_listening(Duration::from_secs(20));
        m
    }

    fn wait_listening(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "milter exited before listening ({status}):\n{}",
                    self.log_text()
                );
            }
            if self.socket.exists() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "milter not listening on {} after {limit:?}:\n{}",
                    self.socket.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:/path/to/milter.sock` (the syntax of miltertest, libmilter and Postfix).
    pub fn socket_spec(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Everything the milter wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the milter with SIGTERM and waits for it (at most `limit`);
    /// `None` if it did not exit in time (it is then killed).
    pub fn terminate(mut self, limit: Duration) -> Option<ExitStatus> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ChildMilter {
    /// SIGKILL: quick, and the temporary directory goes with the socket.
    /// (libmilter takes about 5 s to act on SIGTERM; use
    /// [`ChildMilter::terminate`] for a clean stop.)
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
