//! A private, loopback-only Postfix instance for integration tests.
//!
//! Layout of the temporary directory (under `/tmp`, see [`Postfix::prepare`]):
//!
//! ```text
//! /tmp/testkit-postfix-XXXXXX/   root 0755
//!     config/                    root 0755   main.cf, master.cf, vmailbox
//!     queue/                     root 0755   queue_directory (Postfix creates its subdirs)
//!     data/                      postfix 0700 data_directory
//!     mail/                      nobody 0755 virtual_mailbox_base: mail/example.org/USER/new/
//!     sockets/                   root 0777   for milter sockets (see socket_dir)
//!     postfix.log                            maillog_file
//!     commands.log                           output of postfix start/stop, postqueue
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use crate::host::{
    self, effective_uid, find_in_path, is_listening, read_lossy, remaining, set_mode, write_file,
};
use crate::{Error, free_port};

/// The domain whose mail the instance delivers to Maildirs.
pub const MAIL_DOMAIN: &str = "example.org";

/// Mailboxes that always exist: `bob@example.org` etc. Add more with
/// [`PostfixBuilder::user`].
pub const DEFAULT_USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTQUEUE: &str = "/usr/sbin/postqueue";

/// Where the hint for a machine without the prerequisites points.
const INSTALL_HINT: &str = "install the test dependencies with `scripts/install-test-deps.sh` \
     (from the repository root, as root) and run the tests as root";

/// uid/gid of `nobody`/`nogroup` on Debian; virtual(8) delivers with these
/// (`virtual_uid_maps = static:65534`), so the mail base directory must be theirs.
const NOBODY: u32 = 65534;

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
const LOG_TAIL_LINES: usize = 40;
/// Tries of `postfix start` when a chosen port turns out to be taken.
const START_ATTEMPTS: u32 = 3;

/// One `smtpd` listener of the instance, on its own port of 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpService {
    /// Name used with [`Postfix::port`], and in the log as `postfix/NAME/smtpd[pid]`.
    /// Letters, digits, `-` and `_` only.
    pub name: String,
    /// Value for `smtpd_milters` (e.g. `unix:/path/milter.sock` or
    /// `inet:127.0.0.1:PORT`, or several, or `{ unix:/p, default_action=accept }`).
    /// Empty means no milter.
    pub milters: String,
    /// Further per-service parameter overrides (what `-o name=value` does in
    /// master.cf). Values may contain spaces.
    pub extra: Vec<(String, String)>,
}

impl SmtpService {
    /// A service without milters.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            milters: String::new(),
            extra: Vec::new(),
        }
    }

    /// Sets `smtpd_milters` for this service.
    pub fn with_milters(mut self, milters: impl Into<String>) -> Self {
        self.milters = milters.into();
        self
    }

    /// Adds a per-service parameter override.
    pub fn with_option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }
}

/// A prepared (not yet started) instance: the temporary directory exists, so paths such
/// as [`PostfixBuilder::socket_dir`] are known and can go into the services' milters.
#[derive(Debug)]
pub struct PostfixBuilder {
    dir: TempDir,
    services: Vec<SmtpService>,
    users: Vec<String>,
    main_cf_extra: Vec<(String, String)>,
    start_timeout: Duration,
}

impl PostfixBuilder {
    /// The instance's temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A world-writable (0777) directory for milter unix sockets. smtpd runs as user
    /// `postfix`, so a socket placed here must itself be writable by it: create it with
    /// mode 0666 (`fs::set_permissions` after binding; a root umask of 022 gives 0755,
    /// and then every message gets `451 4.7.1` with `Permission denied` in the log).
    pub fn socket_dir(&self) -> PathBuf {
        self.path().join("sockets")
    }

    /// `socket_dir().join(name)`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.socket_dir().join(name)
    }

    /// Adds an smtpd service.
    pub fn service(mut self, service: SmtpService) -> Self {
        self.services.push(service);
        self
    }

    /// Adds several smtpd services.
    pub fn services(mut self, services: impl IntoIterator<Item = SmtpService>) -> Self {
        self.services.extend(services);
        self
    }

    /// Adds a mailbox `LOCAL@example.org` besides [`DEFAULT_USERS`].
    pub fn user(mut self, local_part: impl Into<String>) -> Self {
        self.users.push(local_part.into());
        self
    }

    /// Sets a main.cf parameter, replacing testkit's value if it has one, e.g.
    /// `("milter_command_timeout", "5s")`. Values may contain spaces.
    pub fn main_cf(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.main_cf_extra.push((name.into(), value.into()));
        self
    }

    /// How long `start` may take in total (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Writes the configuration, runs `postfix -c DIR start` and waits until every
    /// smtpd port listens.
    pub fn start(self) -> Result<Postfix, Error> {
        let deadline = Instant::now() + self.start_timeout;
        validate(&self.services, &self.users, &self.main_cf_extra)?;
        let root = self.dir.path().to_owned();
        let config = root.join("config");
        let mut users: Vec<String> = DEFAULT_USERS.iter().map(|u| (*u).to_owned()).collect();
        for u in &self.users {
            if !users.contains(u) {
                users.push(u.clone());
            }
        }
        write_file(
            &config.join("main.cf"),
            &main_cf(&root, &self.services, &self.main_cf_extra),
        )?;
        write_file(&config.join("vmailbox"), &vmailbox(&users))?;

        let mut dir = self.dir;
        let mut attempt = 1;
        loop {
            let ports: Vec<(String, u16)> = self
                .services
                .iter()
                .map(|s| (s.name.clone(), free_port()))
                .collect();
            write_file(
                &config.join("master.cf"),
                &master_cf(&self.services, &ports),
            )?;
            // From here on, Drop runs `postfix stop` (if the master runs).
            let mut postfix = Postfix {
                dir: Some(dir),
                root: root.clone(),
                ports,
                running: true,
            };
            let Err(e) = postfix.run_postfix(&["start"], remaining(deadline)) else {
                postfix.wait_listening(deadline)?;
                return Ok(postfix);
            };
            // A port picked by free_port() can be taken by another process before the
            // master binds it. The master's "Address already in use" is logged nowhere
            // (it dies before its logging is set up), so look for the squatter.
            let busy: Vec<u16> = postfix
                .ports
                .iter()
                .map(|(_, p)| *p)
                .filter(|p| is_listening(*p).unwrap_or(false))
                .collect();
            if busy.is_empty() || attempt == START_ATTEMPTS || Instant::now() >= deadline {
                let why = if busy.is_empty() {
                    postfix.diagnose()
                } else {
                    format!("\nport(s) {busy:?} already in use by another process")
                };
                return Err(postfix.error_with_log(&format!("`postfix start` failed: {e}{why}")));
            }
            attempt += 1;
            dir = postfix.dir.take().expect("directory is still owned");
        }
    }
}

/// A running private Postfix instance; stopped (`postfix -c DIR stop`) and removed on
/// drop. Set `TESTKIT_KEEP=1` to keep the directory for inspection.
///
/// If the drop happens while a test panics, the tail of the Postfix log is printed to
/// stderr (which the test harness shows for failed tests).
#[derive(Debug)]
pub struct Postfix {
    dir: Option<TempDir>,
    root: PathBuf,
    ports: Vec<(String, u16)>,
    running: bool,
}

impl Postfix {
    /// Checks the prerequisites and creates the temporary directory, so its paths (e.g.
    /// [`PostfixBuilder::socket_dir`]) can be used in the services before starting.
    ///
    /// The directory is always under `/tmp`, not `$TMPDIR`: Postfix's `postfix check`
    /// wants the config and queue directories and all their parents owned by root, every
    /// parent must be traversable by users `postfix` and `nobody`, and unix socket paths
    /// must stay under 108 bytes. `/tmp` on Debian satisfies all three.
    pub fn prepare() -> Result<PostfixBuilder, Error> {
        check_prerequisites()?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-postfix-")
            .tempdir_in("/tmp")
            .map_err(|e| Error::io("creating temporary directory in /tmp", e))?;
        let root = dir.path();
        set_mode(root, 0o755)?;
        let (postfix_uid, postfix_gid) = postfix_ids()?;
        for (name, mode, owner) in [
            ("config", 0o755, None),
            ("queue", 0o755, None),
            // postfix check: data_directory must be owned by mail_owner.
            ("data", 0o700, Some((postfix_uid, postfix_gid))),
            // virtual(8) creates USER/{tmp,new,cur} as uid/gid 65534 below this.
            ("mail", 0o755, Some((NOBODY, NOBODY))),
            // Milter sockets: anyone may create them, smtpd (user postfix) reaches them.
            ("sockets", 0o777, None),
        ] {
            let path = root.join(name);
            fs::create_dir(&path).map_err(|e| Error::io(format!("mkdir {}", path.display()), e))?;
            set_mode(&path, mode)?;
            if let Some((uid, gid)) = owner {
                chown(&path, Some(uid), Some(gid))
                    .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
            }
        }
        Ok(PostfixBuilder {
            dir,
            services: Vec::new(),
            users: Vec::new(),
            main_cf_extra: Vec::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
        })
    }

    /// Starts an instance with these services and default settings; see
    /// [`Postfix::prepare`] for more control.
    pub fn start(services: &[SmtpService]) -> Result<Postfix, Error> {
        Self::prepare()?.services(services.iter().cloned()).start()
    }

    /// The port of the service called `name`.
    ///
    /// # Panics
    /// If there is no such service.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no smtpd service named {name:?}; have {:?}", self.ports))
    }

    /// All services and their ports, in the order given.
    pub fn ports(&self) -> &[(String, u16)] {
        &self.ports
    }

    /// The instance's temporary directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The config directory (`postconf -c`, `postfix -c`, `postqueue -c`).
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    /// The queue directory.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    /// The directory for milter sockets; see [`PostfixBuilder::socket_dir`].
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sockets")
    }

    /// The Postfix log file.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("postfix.log")
    }

    /// The whole Postfix log so far (empty if there is none yet).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Waits until a log line contains `needle` and returns the first such line.
    /// The whole log is searched, including lines logged before the call.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String, Error> {
        host::wait_for_line(&self.log_path(), needle, timeout, POLL).ok_or_else(|| {
            self.error_with_log(&format!(
                "no Postfix log line contains {needle:?} after {timeout:?}"
            ))
        })
    }

    /// `mail/example.org/USER/new`, where delivered messages appear. `user` is the local
    /// part; a full `USER@example.org` is accepted as well.
    pub fn maildir_new(&self, user: &str) -> PathBuf {
        let local = user
            .strip_suffix(&format!("@{MAIL_DOMAIN}"))
            .unwrap_or(user);
        self.root
            .join("mail")
            .join(MAIL_DOMAIN)
            .join(local)
            .join("new")
    }

    /// The raw text of every message delivered to `user` so far, oldest first.
    pub fn delivered(&self, user: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.maildir_new(user)) else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| {
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (mtime, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Waits until at least `count` messages have been delivered to `user` and returns
    /// all of them (oldest first). Delivery is asynchronous: the SMTP `250` only means
    /// queued.
    pub fn wait_for_delivery(
        &self,
        user: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.delivered(user);
            if delivered.len() >= count {
                return Ok(delivered);
            }
            if Instant::now() >= deadline {
                let queue = self.queue().unwrap_or_else(|e| e.to_string());
                return Err(self.error_with_log(&format!(
                    "{} message(s) delivered to {user} after {timeout:?}, expected {count}\n\
                     --- queue (postqueue -p) ---\n{queue}",
                    delivered.len()
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// The queue listing, `postqueue -c DIR -p`.
    pub fn queue(&self) -> Result<String, Error> {
        self.run_command(POSTQUEUE, &["-p"], Duration::from_secs(10))
    }

    /// Asks Postfix to retry deferred mail now, `postqueue -c DIR -f`.
    pub fn flush(&self) -> Result<(), Error> {
        self.run_command(POSTQUEUE, &["-f"], Duration::from_secs(10))
            .map(drop)
    }

    /// Stops the instance now, reporting failure (drop does the same silently).
    pub fn stop(mut self) -> Result<(), Error> {
        self.running = false;
        if !self.master_running() {
            return Ok(());
        }
        self.run_postfix(&["stop"], STOP_TIMEOUT).map(drop)
    }

    /// Whether this instance's master process is alive, judged by its pid file. Saves a
    /// `postfix stop` after a failed start: a Postfix command that fails sleeps 1 s
    /// before exiting.
    fn master_running(&self) -> bool {
        let pid_file = self.queue_dir().join("pid").join("master.pid");
        let Ok(text) = fs::read_to_string(pid_file) else {
            return false;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return false;
        };
        // /proc/PID/stat is "PID (COMM) STATE ...". A master that failed to start can
        // linger as a zombie until it is reaped; that one is not running.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'));
        matches!(comm, Some((name, rest)) if name == "master" && !rest.trim_start().starts_with('Z'))
    }

    /// Explains a failed `postfix start`. A Postfix command writes its warnings and
    /// fatal errors to stderr only when stderr is a terminal, and errors found while it
    /// reads main.cf happen before it logs to maillog_file, so they would be lost.
    /// `postfix check` under script(1), which provides a terminal, repeats them.
    fn diagnose(&self) -> String {
        if find_in_path("script").is_none() {
            return String::new();
        }
        let check = format!("{POSTFIX} -c '{}' check", self.config_dir().display());
        let out = match self.run_logged(
            "script",
            &["-qec", &check, "/dev/null"],
            Duration::from_secs(10),
        ) {
            Ok((_, out)) => out.replace("\r\n", "\n"),
            Err(e) => e.to_string(),
        };
        let out = out.trim();
        if out.is_empty() {
            String::new()
        } else {
            format!("\n--- {check} (under script(1), for a terminal) ---\n{out}")
        }
    }

    /// Runs `postfix -c DIR ARGS...`.
    fn run_postfix(&self, args: &[&str], timeout: Duration) -> Result<String, Error> {
        self.run_command(POSTFIX, args, timeout)
    }

    /// Runs a Postfix command line tool with `-c DIR`; `Err` unless it exits 0.
    fn run_command(
        &self,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, Error> {
        let config = self.config_dir();
        let config = config.to_string_lossy();
        let mut full = vec!["-c", &config];
        full.extend_from_slice(args);
        let (status, output) = self.run_logged(program, &full, timeout)?;
        if status.success() {
            Ok(output)
        } else {
            let output = output.trim_end();
            Err(Error::new(format!(
                "`{program} {}` exited with {status}{}{output}",
                full.join(" "),
                if output.is_empty() { "" } else { ":\n" }
            )))
        }
    }

    /// Runs a command with its stdout and stderr appended to `commands.log` and returns
    /// its exit status and output. A file, not a pipe: the master daemon that
    /// `postfix start` leaves behind could inherit a pipe and keep it open, and reading
    /// it to EOF would hang.
    fn run_logged(
        &self,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<(ExitStatus, String), Error> {
        let out_path = self.root.join("commands.log");
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(|e| Error::io(format!("opening {}", out_path.display()), e))?;
        let shown = format!("{program} {}", args.join(" "));
        let _ = writeln!(out, "$ {shown}");
        let start = out.metadata().map(|m| m.len()).unwrap_or(0);
        let err = out
            .try_clone()
            .map_err(|e| Error::io("dup output file", e))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(format!("running `{shown}`"), e))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::new(format!(
                        "`{shown}` did not finish within {timeout:?}"
                    )));
                }
                Err(e) => return Err(Error::io(format!("waiting for `{shown}`"), e)),
            }
        };
        let output = fs::read(&out_path)
            .map(|b| {
                String::from_utf8_lossy(b.get(start as usize..).unwrap_or_default()).into_owned()
            })
            .unwrap_or_default();
        Ok((status, output))
    }

    /// Waits until every smtpd port is in LISTEN state, asking `ss` rather than
    /// connecting: a probe connection would make smtpd contact the milters.
    fn wait_listening(&self, deadline: Instant) -> Result<(), Error> {
        let mut pending: Vec<u16> = self.ports.iter().map(|(_, p)| *p).collect();
        loop {
            let mut still = Vec::new();
            for port in pending {
                if !is_listening(port)? {
                    still.push(port);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error_with_log(&format!(
                    "Postfix smtpd not listening on 127.0.0.1 port(s) {pending:?} in time"
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// An error whose message ends with where the instance lives and the log's tail.
    fn error_with_log(&self, what: &str) -> Error {
        host::instance_error(what, &self.root, &self.log_path(), LOG_TAIL_LINES)
    }

    fn log_tail(&self) -> String {
        host::log_tail(&self.log_path(), LOG_TAIL_LINES)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.running && self.master_running() {
            self.running = false;
            if let Err(e) = self.run_postfix(&["stop"], STOP_TIMEOUT) {
                eprintln!("testkit: stopping Postfix in {}: {e}", self.root.display());
            }
        }
        if thread::panicking() {
            eprintln!(
                "testkit: Postfix in {}\n{}",
                self.root.display(),
                self.log_tail()
            );
        }
        if let Some(dir) = self.dir.take()
            && std::env::var_os("TESTKIT_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
        {
            eprintln!("testkit: keeping {}", dir.keep().display());
        }
    }
}

fn check_prerequisites() -> Result<(), Error> {
    let missing = |what: &str| {
        Err(Error::new(format!(
            "testkit cannot start a private Postfix: {what}; {INSTALL_HINT}"
        )))
    };
    if !Path::new(POSTFIX).exists() {
        return missing(&format!("{POSTFIX} is missing"));
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return missing(&format!("running as uid {uid}, not root")),
        None => return missing("cannot tell whether this runs as root (no /proc/self/status)"),
    }
    if find_in_path("ss").is_none() {
        return missing("`ss` (package iproute2) is missing");
    }
    Ok(())
}

/// uid and gid of the `postfix` user (Postfix's default `mail_owner`).
fn postfix_ids() -> Result<(u32, u32), Error> {
    let id = |flag: &str| -> Result<u32, Error> {
        let out = Command::new("id")
            .args([flag, "postfix"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running `id`", e))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                Error::new(format!(
                    "user `postfix` not found (`id {flag} postfix`: {}); {INSTALL_HINT}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            })
    };
    Ok((id("-u")?, id("-g")?))
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn validate(
    services: &[SmtpService],
    users: &[String],
    main_cf_extra: &[(String, String)],
) -> Result<(), Error> {
    let mut names = HashSet::new();
    for s in services {
        let ok = !s.name.is_empty()
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::new(format!(
                "smtpd service name {:?}: use letters, digits, '-' and '_'",
                s.name
            )));
        }
        if !names.insert(s.name.as_str()) {
            return Err(Error::new(format!(
                "duplicate smtpd service name {:?}",
                s.name
            )));
        }
        if s.milters.contains('\n') {
            return Err(Error::new(format!(
                "milters of {:?} contain a newline",
                s.name
            )));
        }
        for (k, v) in &s.extra {
            if !is_param_name(k) || v.contains('\n') {
                return Err(Error::new(format!(
                    "bad option {k:?} = {v:?} for {:?}",
                    s.name
                )));
            }
        }
    }
    for u in users {
        let ok = !u.is_empty()
            && !u.starts_with('.')
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if !ok {
            return Err(Error::new(format!(
                "mailbox {u:?}: use a plain local part (letters, digits, '.', '_', '+', '-')"
            )));
        }
    }
    for (k, v) in main_cf_extra {
        if !is_param_name(k) || v.contains('\n') {
            return Err(Error::new(format!("bad main.cf parameter {k:?} = {v:?}")));
        }
    }
    Ok(())
}

/// The main.cf parameter holding service `index`'s value for `param`. master.cf `-o`
/// values cannot contain spaces, so the value lives in main.cf and `-o` refers to it.
fn service_param(index: usize, param: &str) -> String {
    format!("testkit_service{index}_{param}")
}

fn main_cf(root: &Path, services: &[SmtpService], extra: &[(String, String)]) -> String {
    let root = root.display();
    let mut cf = format!(
        "\
# Generated by testkit: a private, loopback-only Postfix for tests.

# Silences the backwards-compatibility warnings of an unset compatibility_level.
compatibility_level = 3.6

# Everything lives in the temporary directory, so instances never share state.
queue_directory = {root}/queue
data_directory = {root}/data

# No syslogd here: postlogd (the postlog service in master.cf) writes this file.
# Postfix only accepts a maillog_file under one of maillog_file_prefixes.
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}

# The container's hostname may be unqualified, which Postfix refuses as myhostname.
myhostname = mx.testkit.invalid

# Loopback only.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Lets a test choose the client address/name the milter sees (SMTP XCLIENT).
smtpd_authorized_xclient_hosts = 127.0.0.0/8

# Nothing leaves the box: no local delivery, no aliases, no relaying, no DNS.
# Non-example.org mail (including bounces) fails in the queue instead.
mydestination =
alias_maps =
alias_database =
relay_domains =
local_transport = error:local delivery is disabled in testkit
default_transport = error:outbound mail is disabled in testkit
relay_transport = $default_transport
smtp_dns_support_level = disabled
biff = no

# Observable delivery: example.org users get Maildirs (trailing / in vmailbox),
# written as nobody:nogroup by virtual(8).
virtual_mailbox_domains = {MAIL_DOMAIN}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/config/vmailbox
virtual_uid_maps = static:{NOBODY}
virtual_gid_maps = static:{NOBODY}

# Milters: the full protocol; a milter that is down or misbehaves makes Postfix
# answer 4xx rather than silently accept (the default action is tempfail anyway,
# stated here because tests rely on it). Milter timeouts stay at Postfix defaults.
milter_protocol = 6
milter_default_action = tempfail
# smtpd_milters is set per smtpd service in master.cf. Mail injected locally
# (pickup) bypasses milters, so a bounce or a sendmail(1) message never needs one.
smtpd_milters =
non_smtpd_milters =

# Fast feedback: no 1 s pause after each rejected command, no throttling of
# bursts, quick retries of deferred mail (e.g. after a milter tempfail).
smtpd_error_sleep_time = 0s
in_flow_delay = 0s
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 20s
"
    );
    let mut per_service = String::new();
    for (i, s) in services.iter().enumerate() {
        let _ = writeln!(per_service, "# smtpd service {:?}", s.name);
        let _ = writeln!(
            per_service,
            "{} = {}",
            service_param(i, "smtpd_milters"),
            s.milters
        );
        for (k, v) in &s.extra {
            let _ = writeln!(per_service, "{} = {v}", service_param(i, k));
        }
    }
    if !per_service.is_empty() {
        cf.push_str("\n# Per-service values, referenced by -o in master.cf.\n");
        cf.push_str(&per_service);
    }
    with_overrides(&cf, extra)
}

/// Applies the caller's main.cf settings: a parameter already defined is replaced in
/// place (Postfix warns "overriding earlier entry" about a second definition), others
/// are appended.
fn with_overrides(cf: &str, extra: &[(String, String)]) -> String {
    let mut lines: Vec<String> = cf.lines().map(str::to_owned).collect();
    let mut header = false;
    for (k, v) in extra {
        let prefix = format!("{k} =");
        let setting = format!("{k} = {v}");
        if let Some(line) = lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            *line = setting;
        } else {
            if !header {
                lines.push(String::new());
                lines.push("# Caller's settings.".to_owned());
                header = true;
            }
            lines.push(setting);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn master_cf(services: &[SmtpService], ports: &[(String, u16)]) -> String {
    // chroot is off ('n' in the 5th column) everywhere: a chrooted smtpd would
    // resolve unix: milter paths inside the queue directory. Only the services this
    // setup uses are defined (no smtp client, no local, no TLS manager); the lmtp
    // client is there for a test that delivers to a private Dovecot
    // (`virtual_transport = lmtp:inet:…`).
    let mut cf = String::from(
        "\
# Generated by testkit.
# service  type  private unpriv chroot wakeup maxproc command
pickup     unix  n       -      n      60     1       pickup
cleanup    unix  n       -      n      -      0       cleanup
qmgr       unix  n       -      n      300    1       qmgr
rewrite    unix  -       -      n      -      -       trivial-rewrite
bounce     unix  -       -      n      -      0       bounce
defer      unix  -       -      n      -      0       bounce
trace      unix  -       -      n      -      0       bounce
verify     unix  -       -      n      -      1       verify
flush      unix  n       -      n      1000?  0       flush
proxymap   unix  -       -      n      -      -       proxymap
proxywrite unix  -       -      n      -      1       proxymap
showq      unix  n       -      n      -      -       showq
error      unix  -       -      n      -      -       error
retry      unix  -       -      n      -      -       error
discard    unix  -       -      n      -      -       discard
virtual    unix  -       n      n      -      -       virtual
lmtp       unix  -       -      n      -      -       lmtp
anvil      unix  -       -      n      -      1       anvil
scache     unix  -       -      n      -      1       scache
postlog    unix-dgram n  -      n      -      1       postlogd
",
    );
    for (i, (s, (_, port))) in services.iter().zip(ports).enumerate() {
        let _ = writeln!(cf, "# smtpd service {:?}", s.name);
        let _ = writeln!(cf, "127.0.0.1:{port} inet n - n - - smtpd");
        let _ = writeln!(cf, "  -o syslog_name=postfix/{}", s.name);
        let _ = writeln!(
            cf,
            "  -o smtpd_milters=${}",
            service_param(i, "smtpd_milters")
        );
        for (k, _) in &s.extra {
            let _ = writeln!(cf, "  -o {k}=${}", service_param(i, k));
        }
    }
    cf
}

fn vmailbox(users: &[String]) -> String {
    users
        .iter()
        .map(|u| format!("{u}@{MAIL_DOMAIN} {MAIL_DOMAIN}/{u}/\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milters_with_spaces_go_through_main_cf() {
        let services = [
            SmtpService::new("plain"),
            SmtpService::new("filtered")
                .with_milters("{ unix:/s/m.sock, default_action=accept } inet:127.0.0.1:9")
                .with_option("smtpd_recipient_restrictions", "permit_mynetworks, reject"),
        ];
        let ports = [("plain".to_owned(), 2500), ("filtered".to_owned(), 2501)];
        let main = main_cf(Path::new("/tmp/x"), &services, &[]);
        assert!(main.contains(
            "testkit_service1_smtpd_milters = { unix:/s/m.sock, default_action=accept } inet:127.0.0.1:9\n"
        ));
        assert!(main.contains("testkit_service0_smtpd_milters = \n"));
        let master = master_cf(&services, &ports);
        assert!(master.contains("127.0.0.1:2501 inet n - n - - smtpd\n"));
        assert!(master.contains("  -o smtpd_milters=$testkit_service1_smtpd_milters\n"));
        assert!(master.contains(
            "  -o smtpd_recipient_restrictions=$testkit_service1_smtpd_recipient_restrictions\n"
        ));
        for line in master.lines().filter(|l| l.starts_with("  -o")) {
            assert!(
                !line.trim_start().trim_start_matches("-o ").contains(' '),
                "{line}"
            );
        }
    }

    #[test]
    fn validation_rejects_bad_names() {
        assert!(validate(&[SmtpService::new("a b")], &[], &[]).is_err());
        assert!(validate(&[SmtpService::new("a"), SmtpService::new("a")], &[], &[]).is_err());
        assert!(validate(&[], &["../x".to_owned()], &[]).is_err());
        assert!(validate(&[], &[], &[("a-b".to_owned(), "x".to_owned())]).is_err());
        assert!(validate(&[SmtpService::new("ok-1")], &["eve".to_owned()], &[]).is_ok());
    }

    #[test]
    fn caller_settings_replace_defaults_in_place() {
        let extra = [
            ("queue_run_delay".to_owned(), "1s".to_owned()),
            ("milter_command_timeout".to_owned(), "5s".to_owned()),
        ];
        let main = main_cf(Path::new("/tmp/x"), &[], &extra);
        assert_eq!(main.matches("queue_run_delay =").count(), 1, "{main}");
        assert!(main.contains("\nqueue_run_delay = 1s\n"));
        assert!(main.ends_with("\nmilter_command_timeout = 5s\n"), "{main}");
        // A parameter whose name starts like another is not mistaken for it.
        let main = main_cf(
            Path::new("/tmp/x"),
            &[],
            &[("smtpd_milter".to_owned(), "x".to_owned())],
        );
        assert!(main.contains("\nsmtpd_milters =\n") && main.ends_with("\nsmtpd_milter = x\n"));
    }

    #[test]
    fn vmailbox_lines_are_maildirs() {
        assert_eq!(
            vmailbox(&["bob".to_owned()]),
            "bob@example.org example.org/bob/\n"
        );
    }
}
