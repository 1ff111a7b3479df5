//! A private, loopback-only Sendmail instance for integration tests.
//!
//! Debian's `sendmail-bin` conflicts with `postfix`, so Sendmail is not installed:
//! `scripts/install-test-deps.sh` unpacks `sendmail-bin`, `sendmail-base` and
//! `sendmail-cf` with `dpkg -x` into [`SENDMAIL_ROOT`], and this module runs the binary
//! from there with a `.cf` built by m4 from a small generated `.mc`.
//!
//! Sendmail qualifies its own host name (and looks up client names) through the system
//! resolver before it reads its config, and it has no log file of its own, only
//! syslog. So it runs in a **private mount namespace** (`unshare --mount`) where
//!
//! * `/etc/hosts` maps 127.0.0.1 to `HOSTNAME.sendmail.testkit.invalid`,
//!   `/etc/nsswitch.conf` says `hosts: files` and `/etc/resolv.conf` names 127.0.0.1
//!   as the only name server: nothing is ever asked of a DNS server off the machine;
//! * `/dev` is a small tmpfs holding the real `null`, `zero`, `full`, `random` and
//!   `urandom` plus a `log` symlink to a datagram socket in the instance directory,
//!   where a thread of this process collects the syslog lines into `sendmail.log`.
//!
//! Layout of the temporary directory (under `/tmp`):
//!
//! ```text
//! /tmp/testkit-sendmail-XXXXXX/   root 0755
//!     sendmail.mc, sendmail.cf    the configuration (m4 input and output)
//!     etc/                        hosts, nsswitch.conf, resolv.conf for the namespace
//!     dev/                        mount point used while setting up the namespace
//!     queue/                      QueueDirectory (qf*/df* files; hf* when quarantined)
//!     sendmail.pid                PidFile (testkit does not rely on it)
//!     sendmail.log                syslog lines (LogLevel and Milter.LogLevel 14)
//!     transcript.log              SMTP transcript (`sendmail -X`)
//!     commands.log                output of m4 and of the start script
//! ```

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::host::{
    self, effective_uid, find_in_path, is_listening, read_lossy, remaining, set_mode, tail,
    write_file,
};
use crate::{Error, free_port};

/// Where `scripts/install-test-deps.sh` unpacks Sendmail's Debian packages.
pub const SENDMAIL_ROOT: &str = "/opt/minimilter-test/sendmail";

/// Milter timeouts used by [`SendmailBuilder::milter`] (Sendmail's `T=` equate):
/// connect 5 s, sending 10 s, reading a reply 10 s, whole end of message 30 s.
pub const DEFAULT_MILTER_TIMEOUTS: &str = "C:5s;S:10s;R:10s;E:30s";

/// The domain of the instance's own host name (`$j` is `mta.` plus this).
pub const SENDMAIL_DOMAIN: &str = "sendmail.testkit.invalid";

const BINARY: &str = "usr/libexec/sendmail/sendmail";
const CF_M4: &str = "usr/share/sendmail/cf/m4/cf.m4";

const INSTALL_HINT: &str = "install the test dependencies with `scripts/install-test-deps.sh` \
     (from the repository root, as root; it unpacks Sendmail into /opt/minimilter-test/sendmail \
     and installs m4 and libwrap0) and run the tests as root";

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// How long the syslog receiver keeps reading after it is told to stop.
const STOP_DRAIN: Duration = Duration::from_secs(1);
const LOG_TAIL_LINES: usize = 40;
/// Tries with a fresh port when the chosen one turns out to be taken.
const START_ATTEMPTS: u32 = 3;

/// Sets up the namespace and execs Sendmail as a daemon in the foreground (`-bD`).
/// `unshare` without `--fork` execs the shell in its own process, and the shell execs
/// Sendmail, so the child process testkit spawns *is* the daemon: it can be stopped
/// and reaped without trusting a pid file. `$1` = instance directory, `$2` = Sendmail
/// binary, `$3` = config file.
const START_SCRIPT: &str = r#"set -eu
d=$1
mount --bind "$d/etc/hosts" /etc/hosts
mount --bind "$d/etc/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$d/etc/resolv.conf" /etc/resolv.conf
mount --bind /dev "$d/dev"
mount -t tmpfs -o mode=0755,size=64k testkit-dev /dev
for n in null zero full random urandom; do
    : >"/dev/$n"
    mount --bind "$d/dev/$n" "/dev/$n"
done
ln -s "$d/syslog.sock" /dev/log
umount -l "$d/dev"
exec "$2" -C "$3" -bD -q1m -X "$d/transcript.log"
"#;

/// One `INPUT_MAIL_FILTER` of the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MilterDef {
    socket: String,
    flags: String,
    timeouts: String,
}

/// A prepared (not yet started) instance; see [`Sendmail::prepare`].
#[derive(Debug)]
pub struct SendmailBuilder {
    dir: TempDir,
    milters: Vec<MilterDef>,
    smart_host: Option<u16>,
    mc_extra: Vec<String>,
    start_timeout: Duration,
}

impl SendmailBuilder {
    /// The instance's temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a milter with `F=T` (tempfail when it is unreachable or misbehaves) and
    /// [`DEFAULT_MILTER_TIMEOUTS`]. Milters are named `milter0`, `milter1`, ... in the
    /// order added; the log says e.g. `Milter (milter0) add: header: ...`. `socket` is in Sendmail's syntax: `unix:/path` or
    /// `inet:PORT@127.0.0.1`. Sendmail refuses a unix socket whose directory path is
    /// unsafe; world-writable directories with the sticky bit (`/tmp`) and
    /// group-writable ones are allowed here (`DontBlameSendmail`).
    pub fn milter(self, socket: impl Into<String>) -> Self {
        self.milter_with(socket, "T", DEFAULT_MILTER_TIMEOUTS)
    }

    /// Adds a milter with explicit `F=` flags (`R`, `T`, `4` or empty) and `T=`
    /// timeouts (e.g. `C:5s;S:10s;R:2s;E:30s`).
    ///
    /// Sendmail measures these in whole seconds of wall-clock time: a read that
    /// spans a second boundary counts as one second even if its packet arrived after
    /// a few milliseconds, so `R:1s` can fire while a milter sends progress every
    /// 250 ms. Use at least `R:2s`.
    pub fn milter_with(
        mut self,
        socket: impl Into<String>,
        flags: impl Into<String>,
        timeouts: impl Into<String>,
    ) -> Self {
        self.milters.push(MilterDef {
            socket: socket.into(),
            flags: flags.into(),
            timeouts: timeouts.into(),
        });
        self
    }

    /// Relays every accepted non-local message to `127.0.0.1:port` (SMTP), e.g. a
    /// milter-less service of a testkit [`crate::Postfix`], so delivered mail can be
    /// read from its Maildirs. Without a smart host, accepted mail stays in the queue
    /// (it is relayed to port 9 of 127.0.0.1, where nothing is expected to listen).
    pub fn smart_host(mut self, port: u16) -> Self {
        self.smart_host = Some(port);
        self
    }

    /// Appends a line to the generated `.mc` (before the `MAILER` lines), e.g.
    /// ``"define(`confMILTER_MACROS_EOM', `{msg_id}, i')dnl"``.
    pub fn mc(mut self, line: impl Into<String>) -> Self {
        self.mc_extra.push(line.into());
        self
    }

    /// How long `start` may take in total (default 20 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Writes the configuration, builds the `.cf` with m4, starts the daemon in its
    /// private namespace and waits until its port listens.
    pub fn start(self) -> Result<Sendmail, Error> {
        let deadline = Instant::now() + self.start_timeout;
        for m in &self.milters {
            if [&m.socket, &m.flags, &m.timeouts]
                .iter()
                .any(|s| s.contains(['\n', ',', '\'', '`']))
            {
                return Err(Error::new(format!("bad milter definition {m:?}")));
            }
        }
        let root = self.dir.path().to_owned();
        write_file(&root.join("etc/hosts"), &hosts_file(&hostname()))?;
        write_file(
            &root.join("etc/nsswitch.conf"),
            "# testkit: files only, never DNS\nhosts: files\nnetworks: files\npasswd: files\n\
             group: files\nshadow: files\nservices: files\nprotocols: files\n",
        )?;
        write_file(
            &root.join("etc/resolv.conf"),
            "# testkit: no name server off the machine\nnameserver 127.0.0.1\noptions attempts:1 timeout:1\n",
        )?;
        // Sendmail's own service switch (it does not read nsswitch.conf on Linux).
        write_file(&root.join("service.switch"), "hosts files\naliases files\n")?;
        write_file(&root.join("aliases"), "")?;
        write_file(&root.join("statistics"), "")?;
        write_file(&root.join("helpfile"), "")?;

        // The syslog receiver runs before Sendmail so that no line is lost.
        let syslog = SyslogReceiver::start(&root.join("syslog.sock"), &root.join("sendmail.log"))?;
        let mut sendmail = Sendmail {
            dir: Some(self.dir),
            root: root.clone(),
            port: 0,
            child: None,
            syslog: Some(syslog),
        };
        let mut attempt = 1;
        loop {
            sendmail.port = free_port();
            let mc = mc_file(
                &root,
                sendmail.port,
                self.smart_host,
                &self.milters,
                &self.mc_extra,
            );
            write_file(&root.join("sendmail.mc"), &mc)?;
            sendmail.build_cf(remaining(deadline))?;
            sendmail.launch()?;
            match sendmail.wait_listening(deadline) {
                Ok(()) => return Ok(sendmail),
                Err(e) => {
                    let taken = sendmail.log().contains("Address already in use");
                    sendmail.stop_daemon();
                    if !taken || attempt == START_ATTEMPTS || Instant::now() >= deadline {
                        return Err(e);
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// A running private Sendmail; stopped (SIGTERM to the daemon and its children, then
/// SIGKILL if need be) and removed on drop. `TESTKIT_KEEP=1` keeps the
/// directory. If the drop happens while a test panics, the tail of the log is printed.
#[derive(Debug)]
pub struct Sendmail {
    dir: Option<TempDir>,
    root: PathBuf,
    port: u16,
    /// The daemon (`unshare` execs `sh`, which execs `sendmail -bD`).
    child: Option<Child>,
    syslog: Option<SyslogReceiver>,
}

impl Sendmail {
    /// Checks the prerequisites and creates the temporary directory (so it can be used,
    /// e.g. for milter sockets, before starting).
    pub fn prepare() -> Result<SendmailBuilder, Error> {
        check_prerequisites()?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-sendmail-")
            .tempdir_in("/tmp")
            .map_err(|e| Error::io("creating temporary directory in /tmp", e))?;
        set_mode(dir.path(), 0o755)?;
        for name in ["etc", "dev", "queue"] {
            let path = dir.path().join(name);
            fs::create_dir(&path).map_err(|e| Error::io(format!("mkdir {}", path.display()), e))?;
            set_mode(&path, if name == "queue" { 0o700 } else { 0o755 })?;
        }
        Ok(SendmailBuilder {
            dir,
            milters: Vec::new(),
            smart_host: None,
            mc_extra: Vec::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
        })
    }

    /// The SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon's pid (`None` once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The instance's temporary directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The generated `sendmail.cf`.
    pub fn cf_path(&self) -> PathBuf {
        self.root.join("sendmail.cf")
    }

    /// The queue directory.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    /// The syslog file (one line per message, without the `<priority>` prefix).
    pub fn log_path(&self) -> PathBuf {
        self.root.join("sendmail.log")
    }

    /// Everything Sendmail logged so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The SMTP transcript file written by `sendmail -X`.
    pub fn transcript_path(&self) -> PathBuf {
        self.root.join("transcript.log")
    }

    /// The SMTP transcript so far (both directions, every session, incl. relaying).
    pub fn transcript(&self) -> String {
        read_lossy(&self.transcript_path())
    }

    /// Waits until a log line contains `needle` and returns the first such line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String, Error> {
        host::wait_for_line(&self.log_path(), needle, timeout, POLL).ok_or_else(|| {
            self.error_with_log(&format!(
                "no Sendmail log line contains {needle:?} after {timeout:?}"
            ))
        })
    }

    /// The control files in the queue: `(file name, contents)` for every `qf*` (queued)
    /// and `hf*` (quarantined: Sendmail renames the control file) file, sorted by name.
    pub fn queue_files(&self) -> Vec<(String, String)> {
        let Ok(entries) = fs::read_dir(self.queue_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<(String, String)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.starts_with("qf") || name.starts_with("hf"))
                    .then(|| (name, read_lossy(&e.path())))
            })
            .collect();
        files.sort();
        files
    }

    /// Stops the instance now (drop does the same).
    pub fn stop(mut self) -> Result<(), Error> {
        if self.stop_daemon() {
            Ok(())
        } else {
            Err(self.error_with_log("Sendmail did not exit after SIGTERM and SIGKILL"))
        }
    }

    fn build_cf(&self, timeout: Duration) -> Result<(), Error> {
        let cf = self.cf_path();
        let out =
            File::create(&cf).map_err(|e| Error::io(format!("creating {}", cf.display()), e))?;
        let err = self.commands_log()?;
        let mc = self.root.join("sendmail.mc");
        let status = run_bounded(
            Command::new("m4").arg(&mc).stdout(out).stderr(err),
            "m4 sendmail.mc",
            timeout,
        )?;
        if !status.success() {
            return Err(self.error_with_log(&format!(
                "`m4 {}` exited with {status}; see {}",
                mc.display(),
                self.root.join("commands.log").display()
            )));
        }
        set_mode(&cf, 0o644)
    }

    /// Spawns the start script under `unshare`; the child process becomes the daemon.
    fn launch(&mut self) -> Result<(), Error> {
        let binary = Path::new(SENDMAIL_ROOT).join(BINARY);
        let mut log = self.commands_log()?;
        let _ = writeln!(
            log,
            "$ unshare --mount --propagation private sh -c START_SCRIPT sh {} {} {}",
            self.root.display(),
            binary.display(),
            self.cf_path().display()
        );
        let err = log
            .try_clone()
            .map_err(|e| Error::io("dup commands.log", e))?;
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                START_SCRIPT,
                "sh",
            ])
            .arg(&self.root)
            .arg(&binary)
            .arg(self.cf_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io("running `unshare ... sendmail -bD` (util-linux)", e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the port is in LISTEN state (asking `ss`, not connecting: a probe
    /// would be an SMTP session that reaches the milters).
    fn wait_listening(&mut self, deadline: Instant) -> Result<(), Error> {
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                None => Some("was not started".to_owned()),
                Some(Ok(Some(status))) => Some(format!("exited with {status}")),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some(format!("cannot be waited for: {e}")),
            };
            if let Some(why) = exited {
                self.child = None;
                return Err(self.error_with_log(&format!(
                    "Sendmail {why}\n--- commands.log ---\n{}",
                    self.commands_tail()
                )));
            }
            if is_listening(self.port)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error_with_log(&format!(
                    "Sendmail not listening on 127.0.0.1:{} in time\n--- commands.log ---\n{}",
                    self.port,
                    self.commands_tail()
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// SIGTERM to the daemon and its descendants (SMTP sessions, queue runners,
    /// deliveries), SIGKILL after [`STOP_TIMEOUT`]. Returns whether all are gone.
    fn stop_daemon(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        let mut pids = descendants(child.id());
        pids.insert(0, child.id());
        signal(&pids, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            // Reaps the daemon once it exits (is_alive treats a zombie as gone).
            let _ = child.try_wait();
            pids.retain(|p| is_alive(*p));
            if pids.is_empty() {
                let _ = child.wait();
                return true;
            }
            if Instant::now() >= deadline {
                signal(&pids, "KILL");
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(200));
                pids.retain(|p| is_alive(*p));
                return pids.is_empty();
            }
            thread::sleep(POLL);
        }
    }

    fn commands_log(&self) -> Result<File, Error> {
        let path = self.root.join("commands.log");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))
    }

    fn commands_tail(&self) -> String {
        tail(&read_lossy(&self.root.join("commands.log")), LOG_TAIL_LINES)
    }

    /// An error whose message ends with where the instance lives and the log's tail.
    fn error_with_log(&self, what: &str) -> Error {
        host::instance_error(what, &self.root, &self.log_path(), LOG_TAIL_LINES)
    }

    fn log_tail(&self) -> String {
        host::log_tail(&self.log_path(), LOG_TAIL_LINES)
    }
}

impl Drop for Sendmail {
    fn drop(&mut self) {
        if !self.stop_daemon() {
            eprintln!(
                "testkit: Sendmail in {} did not exit after SIGTERM and SIGKILL",
                self.root.display()
            );
        }
        if let Some(syslog) = self.syslog.take() {
            syslog.stop();
        }
        if thread::panicking() {
            eprintln!(
                "testkit: Sendmail in {}\n{}",
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

/// Receives syslog datagrams on a unix socket and appends them, one per line and
/// without the `<priority>` prefix, to a file.
#[derive(Debug)]
struct SyslogReceiver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogReceiver {
    fn start(socket: &Path, file: &Path) -> Result<Self, Error> {
        let sock = UnixDatagram::bind(socket)
            .map_err(|e| Error::io(format!("binding {}", socket.display()), e))?;
        // Sendmail's delivery agents may run as another user.
        set_mode(socket, 0o666)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| Error::io("setting syslog socket timeout", e))?;
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("testkit-syslog".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                // After stop() the thread drains for at most a second.
                let mut stop_at: Option<Instant> = None;
                loop {
                    if flag.load(Ordering::Relaxed) {
                        let at = *stop_at.get_or_insert_with(|| Instant::now() + STOP_DRAIN);
                        if Instant::now() >= at {
                            return;
                        }
                    }
                    match sock.recv(&mut buf) {
                        Ok(n) => {
                            let line = String::from_utf8_lossy(&buf[..n]);
                            let line = strip_priority(line.trim_end_matches(['\n', '\0']));
                            let _ = writeln!(out, "{line}");
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            if flag.load(Ordering::Relaxed) {
                                return;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = writeln!(out, "testkit: syslog receiver failed: {e}");
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawning the syslog thread", e))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops once no datagram has arrived for 100 ms, or after [`STOP_DRAIN`].
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn strip_priority(line: &str) -> &str {
    line.strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .filter(|(prio, _)| !prio.is_empty() && prio.bytes().all(|b| b.is_ascii_digit()))
        .map_or(line, |(_, rest)| rest)
}

/// The `.mc` for an instance in `root` listening on `port`.
fn mc_file(
    root: &Path,
    port: u16,
    smart_host: Option<u16>,
    milters: &[MilterDef],
    extra: &[String],
) -> String {
    let r = root.display();
    let relay_port = smart_host.unwrap_or(9);
    let mut mc = format!(
        "\
divert(-1)
# Generated by testkit: a private, loopback-only Sendmail for tests.
divert(0)dnl
include(`{SENDMAIL_ROOT}/{CF_M4}')dnl
VERSIONID(`testkit')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `mta.{SENDMAIL_DOMAIN}')dnl
dnl Everything not local goes to 127.0.0.1:{relay_port} (no MX lookup: brackets).
define(`SMART_HOST', `esmtp:[127.0.0.1]')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {relay_port}')dnl
dnl Own paths: nothing of the system's /etc/mail or /var/spool is used.
define(`QUEUE_DIR', `{r}/queue')dnl
define(`ALIAS_FILE', `{r}/aliases')dnl
define(`STATUS_FILE', `{r}/statistics')dnl
define(`HELP_FILE', `{r}/helpfile')dnl
define(`confPID_FILE', `{r}/sendmail.pid')dnl
define(`confSERVICE_SWITCH_FILE', `{r}/service.switch')dnl
define(`confCR_FILE', `-o {r}/relay-domains')dnl
define(`confCW_FILE', `-o {r}/local-host-names')dnl
dnl Milter sockets may live under /tmp (sticky) or in group-writable directories.
define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe, TrustStickyBit')dnl
define(`confLOG_LEVEL', `14')dnl
define(`confMILTER_LOG_LEVEL', `14')dnl
dnl No DNS, no ident, no interface probing, no load-average throttling.
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confTO_IDENT', `0')dnl
define(`confREFUSE_LA', `999')dnl
define(`confQUEUE_LA', `999')dnl
define(`confDELAY_LA', `0')dnl
define(`confMIN_FREE_BLOCKS', `10')dnl
define(`confAUTH_MECHANISMS', `')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`accept_unqualified_senders')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA, Addr=127.0.0.1, Port={port}')dnl
"
    );
    for (i, m) in milters.iter().enumerate() {
        let _ = writeln!(
            mc,
            "INPUT_MAIL_FILTER(`milter{i}', `S={}, F={}, T={}')dnl",
            m.socket, m.flags, m.timeouts
        );
    }
    for line in extra {
        let _ = writeln!(mc, "{line}");
    }
    mc.push_str("MAILER(`smtp')dnl\n");
    mc
}

fn hosts_file(hostname: &str) -> String {
    let mut h = String::from("# testkit: the only name resolution Sendmail gets\n");
    if hostname.is_empty() || hostname == "localhost" {
        let _ = writeln!(h, "127.0.0.1 localhost.{SENDMAIL_DOMAIN} localhost");
    } else {
        let _ = writeln!(
            h,
            "127.0.0.1 {hostname}.{SENDMAIL_DOMAIN} {hostname} localhost"
        );
    }
    h.push_str("::1 localhost ip6-localhost ip6-loopback\n");
    h
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_default()
}

fn check_prerequisites() -> Result<(), Error> {
    let missing = |what: &str| {
        Err(Error::new(format!(
            "testkit cannot start a private Sendmail: {what}; {INSTALL_HINT}"
        )))
    };
    let root = Path::new(SENDMAIL_ROOT);
    for rel in [BINARY, CF_M4] {
        if !root.join(rel).is_file() {
            return missing(&format!("{} is missing", root.join(rel).display()));
        }
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return missing(&format!("running as uid {uid}, not root")),
        None => return missing("cannot tell whether this runs as root (no /proc/self/status)"),
    }
    for (program, package) in [
        ("m4", "m4"),
        ("ss", "iproute2"),
        ("unshare", "util-linux"),
        ("mount", "mount"),
        ("kill", "procps"),
    ] {
        if find_in_path(program).is_none() {
            return missing(&format!("`{program}` (package {package}) is missing"));
        }
    }
    if !has_libwrap() {
        return missing(
            "libwrap.so.0 (package libwrap0), which Sendmail links against, is missing",
        );
    }
    Ok(())
}

fn has_libwrap() -> bool {
    ["/lib", "/usr/lib"].iter().any(|base| {
        Path::new(base).join("libwrap.so.0").exists()
            || fs::read_dir(base).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.path().join("libwrap.so.0").exists())
            })
    })
}

/// Runs a command to completion, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, shown: &str, timeout: Duration) -> Result<ExitStatus, Error> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Error::io(format!("running `{shown}`"), e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
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
    }
}

/// Whether `pid` exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

/// Parent pid from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// All descendants of `root` (children first found, any depth).
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<(u32, u32)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            procs
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `kill -SIG PID...` (best effort: a process may already be gone).
fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mc_has_milters_paths_and_smart_host() {
        let milters = [MilterDef {
            socket: "unix:/tmp/m/milter.sock".into(),
            flags: "T".into(),
            timeouts: DEFAULT_MILTER_TIMEOUTS.into(),
        }];
        let mc = mc_file(Path::new("/tmp/x"), 2525, Some(2526), &milters, &[]);
        assert!(mc.contains(
            "INPUT_MAIL_FILTER(`milter0', `S=unix:/tmp/m/milter.sock, F=T, T=C:5s;S:10s;R:10s;E:30s')dnl\n"
        ));
        assert!(mc.contains("define(`ESMTP_MAILER_ARGS', `TCP $h 2526')dnl\n"));
        assert!(mc.contains("Addr=127.0.0.1, Port=2525"));
        assert!(mc.contains("define(`QUEUE_DIR', `/tmp/x/queue')dnl\n"));
        assert!(mc.ends_with("MAILER(`smtp')dnl\n"));
    }

    #[test]
    fn syslog_priority_is_stripped() {
        assert_eq!(strip_priority("<22>Nov 1 x: y"), "Nov 1 x: y");
        assert_eq!(strip_priority("<x>y"), "<x>y");
        assert_eq!(strip_priority("plain"), "plain");
    }

    #[test]
    fn hosts_file_qualifies_the_hostname() {
        assert!(hosts_file("vm").contains("127.0.0.1 vm.sendmail.testkit.invalid vm localhost\n"));
        assert!(
            hosts_file("").contains("127.0.0.1 localhost.sendmail.testkit.invalid localhost\n")
        );
    }
}
