//! The contract of the daemon shell (`minimilter::daemon`), run against
//! every milter binary with the same flags, the same bad inputs and the
//! same signals: `keyword_milter` (tests/daemon_shell.rs here),
//! `pgp-milter` and `mailman-milter` (their tests/daemon_shell.rs include
//! this file). Each bad input must give exit status 1 and exactly one line,
//! `NAME: what`, the same at start-up and under `--check-config`, with or
//! without `RUST_BACKTRACE`.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A milter program and the arguments it needs to start at all (the
/// lists file of mailman-milter).
pub struct Binary {
    /// Program name, the prefix of its error lines.
    pub name: &'static str,
    /// The executable.
    pub path: PathBuf,
    /// Arguments before the test's own.
    pub base: Vec<String>,
}

/// A directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("mm-contract-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free a moment ago, and handed to no other test (see
/// `testkit::free_port`).
pub fn free_port() -> u16 {
    testkit::free_port()
}

impl Binary {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.path);
        c.args(&self.base).args(args).stdin(Stdio::null());
        c.env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        c
    }

    /// Runs to its end (killed after 20 s: a daemon that started serving
    /// where it should have refused fails the test on its status).
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let scratch = Scratch::new("out");
        let (o, e) = (scratch.path().join("o"), scratch.path().join("e"));
        let mut c = self.command(args);
        c.envs(env.iter().copied())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let mut child = c.spawn().unwrap();
        let status = wait_bounded(&mut child, Duration::from_secs(20));
        Output {
            status,
            stdout: std::fs::read(&o).unwrap(),
            stderr: std::fs::read(&e).unwrap(),
        }
    }

    /// Starts the daemon, logging to `log`.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        let mut c = self.command(args);
        c.envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        Daemon {
            child: c.spawn().unwrap(),
            log: log.to_owned(),
        }
    }

    /// Starts the daemon with `extra` arguments, a milter socket on a free
    /// loopback port and `--metrics` on another, logging to `log`; returns
    /// once it says "metrics at http://", with the milter socket's
    /// `inet:127.0.0.1:PORT` and the metrics port.
    pub fn spawn_with_metrics(&self, extra: &[&str], log: &Path) -> (Daemon, String, u16) {
        let inet = format!("inet:127.0.0.1:{}", free_port());
        let mport = free_port();
        let metrics = format!("inet:127.0.0.1:{mport}");
        let mut args = extra.to_vec();
        args.extend(["--listen", &inet, "--metrics", &metrics]);
        let mut d = self.spawn(&args, &[], log);
        d.wait_log("metrics at http://");
        (d, inet, mport)
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, s: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), s).unwrap();
    }

    /// Waits until the log holds `needle`.
    pub fn wait_log(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log_text().contains(needle) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({s}) before logging {needle:?}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit (20 s at most).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_bounded(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `args` fails with exit 1 and exactly `NAME: expected` on standard error,
/// at start-up and with `--check-config`, with and without RUST_BACKTRACE.
pub fn assert_refused(b: &Binary, args: &[&str], expected: &str) {
    let want = format!("{}: {expected}\n", b.name);
    for check in [false, true] {
        let mut all = args.to_vec();
        if check {
            all.push("--check-config");
        }
        for bt in ["0", "1", "full"] {
            let o = b.run(
                &all,
                &[
                    ("RUST_BACKTRACE", bt),
                    ("RUST_LIB_BACKTRACE", bt),
                    ("RUST_LOG", "info"),
                ],
            );
            assert_eq!(
                o.status.code(),
                Some(1),
                "{all:?} RUST_BACKTRACE={bt}: {}",
                text(&o.stderr)
            );
            assert_eq!(text(&o.stderr), want, "{all:?} RUST_BACKTRACE={bt}");
        }
    }
}

pub fn usage_and_version(b: &Binary) {
    let o = b.run(&["--version"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o.stdout),
        format!("{} {}\n", b.name, env!("CARGO_PKG_VERSION"))
    );
    for bt in ["0", "1"] {
        let o = b.run(&["--no-such-option"], &[("RUST_BACKTRACE", bt)]);
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(
            text(&o.stderr),
            format!(
                "{}: unexpected argument '--no-such-option' found (see --help)\n",
                b.name
            )
        );
    }
    let o = b.run(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    for needle in [
        "--listen <SOCKET>",
        "--config <FILE>",
        "--check-config",
        "--socket-mode <MODE>",
        "--socket-group <GROUP>",
        "--max-connections <N>",
        "--log-format <FORMAT>",
        "a command-line option wins over the same key in the [server]",
    ] {
        assert!(help.contains(needle), "{needle:?} not in --help:\n{help}");
    }
}

/// A socket whose directory is missing is refused naming where it was
/// given: the option, or the file, `[server]` and the key as written.
pub fn missing_socket_directory(b: &Binary) {
    let s = Scratch::new("nodir");
    let dir = s.path().join("no-such-dir");
    let sock = dir.join("m.sock");
    let why = format!("directory {} does not exist", dir.display());
    assert_refused(
        b,
        &["--listen", &format!("unix:{}", sock.display())],
        &format!("--listen unix:{}: {why}", sock.display()),
    );
    let file = s.path().join("m.toml");
    std::fs::write(
        &file,
        format!("[server]\nlisten = \"unix:{}\"\n", sock.display()),
    )
    .unwrap();
    assert_refused(
        b,
        &["--config", file.to_str().unwrap()],
        &format!(
            "{}: [server] listen = \"unix:{}\": {why}",
            file.display(),
            sock.display()
        ),
    );
    let port = free_port();
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = [\"inet:127.0.0.1:{port}\", \"unix:{}\"]\n",
            sock.display()
        ),
    )
    .unwrap();
    assert_refused(
        b,
        &["--config", file.to_str().unwrap()],
        &format!(
            "{}: [server] listen[1] = \"unix:{}\": {why}",
            file.display(),
            sock.display()
        ),
    );
}

pub fn unknown_group(b: &Binary) {
    assert_refused(
        b,
        &["--socket-group", "minimilter-no-such-group"],
        "--socket-group minimilter-no-such-group: no such group",
    );
}

pub fn bad_server_key(b: &Binary) {
    let s = Scratch::new("key");
    let file = s.path().join("m.toml");
    std::fs::write(&file, "[server]\nlisten_on = \"inet:127.0.0.1:1\"\n").unwrap();
    assert_refused(
        b,
        &["--config", file.to_str().unwrap()],
        &format!(
            "{}: line 2, column 1 in [server] (`listen_on = \"inet:127.0.0.1:1\"`): unknown key \
             `listen_on` (the keys of [server] are listen, \
             socket_mode, socket_group, socket_owner, max_connections, log_format, \
             metrics_listen; every key below a [server] line belongs to [server], so the \
             milter's own keys go above it)",
            file.display()
        ),
    );
}

/// A metrics address that is taken is named by the option that gave it.
pub fn metrics_address_in_use(b: &Binary) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("inet:127.0.0.1:{}", taken.local_addr().unwrap().port());
    let listen = format!("inet:127.0.0.1:{}", free_port());
    assert_refused(
        b,
        &["--listen", &listen, "--metrics", &spec],
        &format!("--metrics {spec}: cannot bind: Address already in use (os error 98)"),
    );
}

pub fn same_socket_twice(b: &Binary) {
    let spec = format!("inet:127.0.0.1:{}", free_port());
    assert_refused(
        b,
        &["--listen", &spec, "--listen", &spec],
        &format!("--listen {spec}: the same socket is given twice"),
    );
}

pub fn live_instance_on_the_socket(b: &Binary) {
    let s = Scratch::new("live");
    let sock = s.path().join("m.sock");
    let _holder = UnixListener::bind(&sock).unwrap();
    assert_refused(
        b,
        &["--listen", &format!("unix:{}", sock.display())],
        &format!(
            "--listen unix:{}: another milter is already listening on this socket",
            sock.display()
        ),
    );
}

/// Two sockets; SIGHUP is answered in the log and the daemon goes on;
/// SIGTERM drains and exits 0 at once, removing its unix socket; the log
/// in a file has no colour codes.
pub fn two_sockets_hup_and_term(b: &Binary) {
    let s = Scratch::new("serve");
    let sock = s.path().join("m.sock");
    let port = free_port();
    let unix = format!("unix:{}", sock.display());
    let inet = format!("inet:127.0.0.1:{port}");
    let mut d = b.spawn(
        &["--listen", &unix, "--listen", &inet],
        &[],
        &s.path().join("log"),
    );
    d.wait_log(&format!("listening on {inet}"));
    d.wait_log(&format!("listening on {unix}"));
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("SIGHUP: ");
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log_text());
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.wait_exit();
    let log = d.log_text();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("SIGTERM received, shutting down"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    assert!(!sock.exists(), "the socket file is left behind");
}

/// `--log-format json`: every log line is one JSON object.
pub fn json_logs(b: &Binary) {
    let s = Scratch::new("json");
    let inet = format!("inet:127.0.0.1:{}", free_port());
    let mut d = b.spawn(
        &["--listen", &inet, "--log-format", "json"],
        &[],
        &s.path().join("log"),
    );
    d.wait_log("listening on");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    let log = d.log_text();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with("{\"") && line.ends_with('}'),
            "not JSON: {line}"
        );
        assert!(line.contains("\"level\":"), "{line}");
    }
}

/// Reads datagrams until one holds `needle` (20 s at most).
fn expect_notify(socket: &UnixDatagram, needle: &str, seen: &mut String) {
    assert!(
        wait_notify(socket, needle, seen),
        "no {needle:?} in notifications: {seen:?}"
    );
}

/// Reads notifications into `seen` until one holds `needle` (true) or 20 s
/// pass (false).
fn wait_notify(socket: &UnixDatagram, needle: &str, seen: &mut String) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        if Instant::now() >= deadline {
            return false;
        }
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    true
}

/// With NOTIFY_SOCKET set (as systemd sets it for Type=notify), the daemon
/// sends READY=1 once it serves and STOPPING=1 when SIGTERM starts the drain.
pub fn notify_ready_and_stopping(b: &Binary) {
    let s = Scratch::new("notify");
    let path = s.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // A unix socket of its own: a free inet port can be taken by another
    // test between free_port() and the daemon's bind, and a daemon that
    // cannot bind never gets ready.
    let listen = format!("unix:{}", s.path().join("m.sock").display());
    let mut d = b.spawn(
        &["--listen", &listen],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
        &s.path().join("log"),
    );
    let mut seen = String::new();
    if !wait_notify(&socket, "READY=1", &mut seen) {
        panic!(
            "no READY=1 in notifications {seen:?}; log:\n{}",
            d.log_text()
        );
    }
    assert!(
        seen.contains(&format!(
            "STATUS={} serving: 0 connections open, 0 messages",
            b.name
        )),
        "{seen:?}"
    );
    assert!(!seen.contains("STOPPING=1"), "{seen:?}");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    expect_notify(&socket, "STOPPING=1", &mut seen);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

/// A listening socket made by the test and handed over as systemd does
/// (descriptor 3, LISTEN_FDS=1, LISTEN_PID = the daemon's pid): the daemon
/// serves on it with no --listen, and answers a milter negotiation there.
pub fn socket_activation(b: &Binary) {
    let s = Scratch::new("activate");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut d = spawn_with_passed_socket(b, listener, &s.path().join("log"));
    d.wait_log(&format!("listening on inet:127.0.0.1:{port}"));
    // The milter's first answer to an option negotiation is its own.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut optneg = vec![0, 0, 0, 13, b'O'];
    optneg.extend_from_slice(&6u32.to_be_bytes());
    optneg.extend_from_slice(&0x1ffu32.to_be_bytes());
    optneg.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
    std::io::Write::write_all(&mut stream, &optneg).unwrap();
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[4], b'O', "{}", d.log_text());
    drop(stream);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

/// Starts `b` as systemd's socket activation does: `socket` (listening)
/// becomes descriptor 3, LISTEN_FDS=1, LISTEN_PID the daemon's pid; no
/// `--listen`.
pub fn spawn_with_passed_socket(
    b: &Binary,
    socket: impl std::os::fd::AsFd + std::os::fd::AsRawFd,
    log: &Path,
) -> Daemon {
    let fd = socket.as_raw_fd();
    // Inherited by the shell below, which moves it to descriptor 3 and
    // sets LISTEN_PID to its own pid, which `exec` keeps.
    nix::fcntl::fcntl(
        &socket,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let moved = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let script = format!("{moved}LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"");
    // bash, not sh: Debian's sh (dash) takes only one-digit descriptors in
    // a redirection, and with tests running in parallel `fd` is often 10
    // or more ("Bad fd number").
    let mut c = Command::new("/bin/bash");
    c.arg("-c")
        .arg(&script)
        .arg("sh")
        .arg(&b.path)
        .args(&b.base);
    c.env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    let child = c.spawn().unwrap();
    drop(socket);
    Daemon {
        child,
        log: log.to_owned(),
    }
}

/// One `#[test]` per contract clause for the binary `$make()` returns.
#[macro_export]
macro_rules! daemon_contract_tests {
    ($make:expr) => {
        #[test]
        fn usage_and_version() {
            daemon_contract::usage_and_version(&$make);
        }
        #[test]
        fn missing_socket_directory() {
            daemon_contract::missing_socket_directory(&$make);
        }
        #[test]
        fn unknown_group() {
            daemon_contract::unknown_group(&$make);
        }
        #[test]
        fn bad_server_key() {
            daemon_contract::bad_server_key(&$make);
        }
        #[test]
        fn metrics_address_in_use() {
            daemon_contract::metrics_address_in_use(&$make);
        }
        #[test]
        fn same_socket_twice() {
            daemon_contract::same_socket_twice(&$make);
        }
        #[test]
        fn live_instance_on_the_socket() {
            daemon_contract::live_instance_on_the_socket(&$make);
        }
        #[test]
        fn two_sockets_hup_and_term() {
            daemon_contract::two_sockets_hup_and_term(&$make);
        }
        #[test]
        fn json_logs() {
            daemon_contract::json_logs(&$make);
        }
        #[test]
        fn notify_ready_and_stopping() {
            daemon_contract::notify_ready_and_stopping(&$make);
        }
        #[test]
        fn one_line_per_message() {
            daemon_contract::one_line_per_message(&$make);
        }
        #[test]
        fn metrics_count_what_was_sent() {
            daemon_contract::metrics_count_what_was_sent(&$make, 7);
        }
        #[test]
        fn hup_rereads_the_configuration() {
            daemon_contract::hup_rereads_the_configuration(&$make);
        }
        #[test]
        fn socket_activation() {
            daemon_contract::socket_activation(&$make);
        }
    };
}

/// The shipped systemd unit: `systemd-analyze verify` accepts it (and the
/// `.socket` beside it), and its own command lines work as systemd runs
/// them: ExecStartPre (`--check-config`) exits 0, ExecStart with
/// NOTIFY_SOCKET sends READY=1, and SIGTERM (systemctl stop) STOPPING=1
/// and exit 0. `config` is the configuration file's text; the unit's
/// binary and `--config` paths are replaced by the built binary and it.
pub fn systemd_unit(b: &Binary, unit: &Path, config: &str) {
    let s = Scratch::new("unit");
    let config_path = s.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let text = std::fs::read_to_string(unit).unwrap();
    // Where the Debian package installs the daemons (scripts/package.sh).
    let installed = format!("/usr/sbin/{}", b.name);
    let built = b.path.display().to_string();
    // Verify the unit and its socket with the binary where it is.
    for u in [unit.to_owned(), unit.with_extension("socket")] {
        let copy = s.path().join(u.file_name().unwrap());
        std::fs::write(
            &copy,
            std::fs::read_to_string(&u)
                .unwrap()
                .replace(&installed, &built),
        )
        .unwrap();
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(s.path().join(unit.file_name().unwrap()))
        .arg(
            s.path()
                .join(unit.with_extension("socket").file_name().unwrap()),
        )
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text_of(&o));
    let command = |key: &str| -> Vec<String> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {}", unit.display()));
        let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words[0], installed, "{key}");
        words.remove(0);
        let i = words
            .iter()
            .position(|w| w == "--config")
            .expect("--config");
        words[i + 1] = config_path.display().to_string();
        words
    };
    let pre = command("ExecStartPre");
    let pre: Vec<&str> = pre.iter().map(String::as_str).collect();
    let o = b.run(&pre, &[("RUST_LOG", "off")]);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o));
    let start = command("ExecStart");
    let start: Vec<&str> = start.iter().map(String::as_str).collect();
    let notify = s.path().join("notify");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut d = b.spawn(
        &start,
        &[("NOTIFY_SOCKET", notify.to_str().unwrap())],
        &s.path().join("log"),
    );
    let mut seen = String::new();
    expect_notify(&socket, "READY=1", &mut seen);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    expect_notify(&socket, "STOPPING=1", &mut seen);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

fn text_of(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// One message, sent the way Postfix sends it, gets exactly one log line
/// with the same fields in every milter, including a milter that leaves it
/// alone.
pub fn one_line_per_message(b: &Binary) {
    use minimilter::{ClientConfig, MessageSpec, MilterClient, SocketSpec, run_message};
    let s = Scratch::new("msg");
    let inet = format!("inet:127.0.0.1:{}", free_port());
    let mut d = b.spawn(&["--listen", &inet], &[], &s.path().join("log"));
    d.wait_log("listening on");
    let spec: SocketSpec = inet.parse().unwrap();
    let message = MessageSpec {
        client_name: "mail.client.example".into(),
        client_addr: Some("192.0.2.7".parse().unwrap()),
        from: "alice@client.example".into(),
        rcpts: vec!["bob@elsewhere.example".into(), "carol@elsewhere.example".into()],
        queue_id: "4XyZ1Q2w3e".into(),
        message: "From: alice@client.example\r\nTo: bob@elsewhere.example\r\nSubject: hello\r\n\r\nhi\r\n"
            .into(),
        ..MessageSpec::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = MilterClient::connect(&spec, ClientConfig::default())
            .await
            .unwrap();
        run_message(&mut c, &message).await.unwrap();
        c.quit().await.unwrap();
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
    let log = d.log_text();
    // Exactly one line names the message: the milter adds none of its own.
    let naming: Vec<&str> = log.lines().filter(|l| l.contains("4XyZ1Q2w3e")).collect();
    assert_eq!(naming.len(), 1, "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("minimilter::message"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    for field in [
        "queue_id=4XyZ1Q2w3e ",
        "client=mail.client.example [192.0.2.7] ",
        "from=<alice@client.example> ",
        "to=<bob@elsewhere.example>,<carol@elsewhere.example> ",
        " verdict=",
        " reason=",
        " ms=",
    ] {
        assert!(line.contains(field), "{field:?} not in {line}");
    }
}

/// `GET /metrics` on the `--metrics` socket (HTTP/1.1, `Connection:
/// close`), asking for OpenMetrics or not: the status line and the body.
pub fn scrape_as(port: u16, openmetrics: bool) -> (String, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = match openmetrics {
        true => "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
        false => "",
    };
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}\r\n"
    )
    .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// `GET /metrics` in the classic Prometheus text format.
pub fn scrape(port: u16) -> (String, String) {
    scrape_as(port, false)
}

/// The value of the sample named exactly `series` (name and labels).
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `--metrics`: the runtime's counters after `messages` messages on one
/// connection, as the client sent them.
pub fn metrics_count_what_was_sent(b: &Binary, messages: usize) {
    use minimilter::{ClientConfig, MessageSpec, MilterClient, SocketSpec, run_message};
    let s = Scratch::new("metrics");
    let (mut d, inet, mport) = b.spawn_with_metrics(&[], &s.path().join("log"));
    let spec: SocketSpec = inet.parse().unwrap();
    let message = MessageSpec {
        from: "alice@client.example".into(),
        rcpts: vec!["bob@elsewhere.example".into()],
        message: "From: alice@client.example\r\nSubject: hello\r\n\r\nhi\r\n".into(),
        ..MessageSpec::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verdict = runtime.block_on(async {
        let mut c = MilterClient::connect(&spec, ClientConfig::default())
            .await
            .unwrap();
        let mut last = None;
        for _ in 0..messages {
            last = Some(run_message(&mut c, &message).await.unwrap().outcome);
        }
        c.quit().await.unwrap();
        last.unwrap()
    });
    // The connection's end is counted when the server sees the QUIT.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = scrape(mport);
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        if sample(&body, "milter_connections_open") == Some(0.0) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total: f64 = body
        .lines()
        .filter(|l| l.starts_with("milter_messages_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, messages as f64, "{verdict:?}\n{body}");
    assert_eq!(
        sample(&body, "milter_connections_total"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "milter_connections_open"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "milter_fail_safe_replies_total"),
        Some(0.0),
        "{body}"
    );
    // Every step the filter answered was timed (a milter that accepts at
    // RCPT never sees end of message).
    let timed: f64 = body
        .lines()
        .filter(|l| l.starts_with("milter_step_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(timed >= messages as f64, "{body}");
    assert!(!body.contains("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE milter_messages_total counter\n"),
        "{body}"
    );
    // Prometheus itself asks for OpenMetrics.
    let (status, om) = scrape_as(mport, true);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(om.contains("# TYPE milter_messages counter\n"), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

/// SIGHUP re-reads the configuration file: a changed setting is named
/// (it applies after a restart), a file that no longer loads is reported
/// and the daemon goes on with what it has.
pub fn hup_rereads_the_configuration(b: &Binary) {
    let s = Scratch::new("hupcfg");
    let file = s.path().join("m.toml");
    let inet = format!("inet:127.0.0.1:{}", free_port());
    std::fs::write(&file, format!("[server]\nlisten = \"{inet}\"\n")).unwrap();
    let mut d = b.spawn(
        &["--config", file.to_str().unwrap()],
        &[],
        &s.path().join("log"),
    );
    d.wait_log(&format!("listening on {inet}"));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log(&format!("SIGHUP: {}: no setting changed", file.display()));
    std::fs::write(
        &file,
        format!("[server]\nlisten = \"{inet}\"\nmax_connections = 5\n"),
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log(&format!(
        "SIGHUP: {}: changed, applying after a restart: server.max_connections: 1024 -> 5",
        file.display()
    ));
    std::fs::write(&file, "[server]\nmax_connections = 0\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log(&format!(
        "SIGHUP: {}: key `server.max_connections`: must be at least 1; the previous state stays in force",
        file.display()
    ));
    std::net::TcpStream::connect(inet.strip_prefix("inet:").unwrap()).unwrap();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

/// Runs `message` through the milter at `inet` on a connection of its own
/// (a reload applies from the next connection) and returns the outcome.
pub fn send_one(inet: &str, message: &minimilter::MessageSpec) -> minimilter::Outcome {
    use minimilter::{ClientConfig, MilterClient, SocketSpec, run_message};
    let spec: SocketSpec = inet.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = MilterClient::connect(&spec, ClientConfig::default())
            .await
            .unwrap();
        let outcome = run_message(&mut c, message).await.unwrap().outcome;
        c.quit().await.unwrap();
        outcome
    })
}

/// Sends SIGHUP and waits for the reload's log line (the `n`-th line
/// starting `SIGHUP: `); returns it. Exactly one line per SIGHUP.
pub fn hup(d: &mut Daemon, n: usize) -> String {
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = d.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("SIGHUP: ")).collect();
        if lines.len() >= n {
            // A second line would come right after the first.
            std::thread::sleep(Duration::from_millis(300));
            let again = d.log_text();
            let count = again.lines().filter(|l| l.contains("SIGHUP: ")).count();
            assert_eq!(count, n, "more than one line for a SIGHUP:\n{again}");
            return lines[n - 1].to_owned();
        }
        assert!(Instant::now() < deadline, "no reload line in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `promtool check metrics` (Debian package prometheus) accepts `body`
/// with nothing to say.
pub fn promtool_accepts(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
}

/// Runs `minimilter bench` (the workspace's CLI, built beside this test)
/// against `inet` with `args`, expecting exit 0; its JSON report.
pub fn bench(inet: &str, args: &[&str]) -> String {
    // <target>/<profile>/deps/<this test> -> <target>/<profile>/minimilter
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("minimilter");
    assert!(
        path.exists(),
        "{} missing: build it with `cargo build -p minimilter-cli` (cargo test --workspace does)",
        path.display()
    );
    let o = Command::new(&path)
        .args(["bench", inet, "--json", "--quiet"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o));
    text(&o.stdout)
}

/// The number after `"key":` in a flat JSON text (bench's report).
pub fn json_number(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 3..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {json}"))
}

/// `GET /metrics` once the daemon has seen every connection end (the
/// counters of a message are final before its connection's end is).
pub fn scrape_settled(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = scrape(port);
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        if sample(&body, "milter_connections_open") == Some(0.0) {
            return body;
        }
        assert!(Instant::now() < deadline, "connections stay open:\n{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
