//! What the tests against a real Mailman 3 core share: the core itself
//! (Debian's `mailman3`, private config and var dir, free loopback ports),
//! a small REST client, and an SMTP sink standing in for the MTA Mailman
//! delivers to, so a test can see what Mailman sent.
//!
//! Everything is bounded in time; nothing listens beyond 127.0.0.1.

#![allow(dead_code)] // Each test file uses a different part.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub const MAILMAN: &str = "/usr/bin/mailman";
pub const RUNNERS: &str = "/usr/lib/mailman3/bin";

/// One HTTP/1.1 request to Mailman's REST API on 127.0.0.1:`port` (path
/// below `/3.1`) with basic auth; (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect();
    let body = body.join("&");
    let auth = base64::engine::general_purpose::STANDARD.encode("restadmin:restpass");
    let request = format!(
        "{method} /3.1{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    s.take(4 << 20).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A REST call that must succeed (2xx); its body.
pub fn rest(port: u16, method: &str, path: &str, form: &[(&str, &str)]) -> String {
    let (status, body) =
        http(port, method, path, form).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: HTTP {status}: {body}"
    );
    body
}

/// Subscribes `email` to `list_id` with `role` and sets its own
/// `moderation_action` (PATCH on the member resource Mailman links to).
pub fn set_moderation(port: u16, list_id: &str, email: &str, role: &str, action: &str) {
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", list_id),
            ("subscriber", email),
            ("role", role),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    let body = rest(
        port,
        "GET",
        &format!("/lists/{list_id}/{role}/{email}"),
        &[],
    );
    let member: serde_json::Value = serde_json::from_str(&body).unwrap();
    let link = member["self_link"].as_str().unwrap();
    let path = &link[link.find("/3.1/").unwrap() + 4..];
    rest(port, "PATCH", path, &[("moderation_action", action)]);
    let body = rest(port, "GET", path, &[]);
    assert!(
        body.contains(&format!("\"moderation_action\": \"{action}\"")),
        "{body}"
    );
}

/// Creates a user owning `addresses` (the first one creates it) and
/// returns its id.
pub fn create_user(port: u16, addresses: &[&str]) -> String {
    rest(port, "POST", "/users", &[("email", addresses[0])]);
    let body = rest(port, "GET", &format!("/users/{}", addresses[0]), &[]);
    let user: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = match &user["user_id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for a in &addresses[1..] {
        rest(
            port,
            "POST",
            &format!("/users/{id}/addresses"),
            &[("email", a)],
        );
    }
    id
}

fn is_listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A private Mailman 3 core; stopped on drop.
pub struct Mailman {
    dir: tempfile::TempDir,
    config: PathBuf,
    pub rest_port: u16,
    pub lmtp_port: u16,
    pub smtp_port: u16,
    running: bool,
}

impl Mailman {
    /// Starts a core delivering its outgoing mail to 127.0.0.1:`smtp_port`
    /// (a free, unused port if None) and waits until REST answers and LMTP
    /// listens.
    pub fn start(smtp_port: Option<u16>) -> Mailman {
        assert!(
            Path::new(MAILMAN).exists() && Path::new(RUNNERS).join("master").exists(),
            "Debian's mailman3 is not installed ({MAILMAN}, {RUNNERS}/master missing): \
             run scripts/install-test-deps.sh as root"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs Mailman as user `list` and must run as root (see scripts/install-test-deps.sh)"
        );
        let list = nix::unistd::User::from_name("list").ok().flatten().expect(
            "user `list` (created by the mailman3 package): run scripts/install-test-deps.sh",
        );
        let dir = tempfile::tempdir().unwrap();
        let var = dir.path().join("var");
        std::fs::create_dir(&var).unwrap();
        let (rest_port, lmtp_port) = (testkit::free_port(), testkit::free_port());
        let smtp_port = smtp_port.unwrap_or_else(testkit::free_port);
        let config = dir.path().join("mailman.cfg");
        std::fs::write(
            &config,
            format!(
                "[mailman]\nsite_owner: postmaster@example.org\nlayout: test\n\n\
                 [paths.test]\nvar_dir: {var}\nbin_dir: {RUNNERS}\n\n\
                 [database]\nclass: mailman.database.sqlite.SQLiteDatabase\nurl: sqlite:///$DATA_DIR/mailman.db\n\n\
                 [webservice]\nhostname: 127.0.0.1\nport: {rest_port}\nadmin_user: restadmin\nadmin_pass: restpass\n\n\
                 [mta]\nincoming: mailman.mta.null.NullMTA\nlmtp_host: 127.0.0.1\nlmtp_port: {lmtp_port}\n\
                 smtp_host: 127.0.0.1\nsmtp_port: {smtp_port}\n\n\
                 [archiver.prototype]\nenable: no\n",
                var = var.display()
            ),
        )
        .unwrap();
        for p in [dir.path(), &var, &config] {
            chown(p, Some(list.uid.as_raw()), Some(list.gid.as_raw())).unwrap();
        }
        let m = Mailman {
            dir,
            config,
            rest_port,
            lmtp_port,
            smtp_port,
            running: true,
        };
        m.mailman("start", &["--force"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = http(rest_port, "GET", "/system/versions", &[])
                && is_listening(lmtp_port)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Mailman's REST API (127.0.0.1:{rest_port}) or LMTP (port {lmtp_port}) \
                 not up within 120 s; log:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        m
    }

    /// The var dir (queues under `queue/`, logs under `logs/`).
    pub fn var_dir(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    /// The CLI output and Mailman's own logs.
    pub fn log(&self) -> String {
        let mut out = std::fs::read_to_string(self.dir.path().join("cli.log")).unwrap_or_default();
        for name in ["mailman.log", "smtp.log", "error.log", "vette.log"] {
            let text =
                std::fs::read_to_string(self.var_dir().join("logs").join(name)).unwrap_or_default();
            if !text.is_empty() {
                out.push_str(&format!("--- {name} ---\n{text}"));
            }
        }
        out
    }

    /// `runuser -u list -- mailman -C CONFIG CMD ARGS`, output to cli.log,
    /// bounded to 30 s.
    pub fn mailman(&self, cmd: &str, args: &[&str]) {
        self.mailman_with(&[], cmd, args);
    }

    /// Runs `source`, a Python module defining `run(mlist)`, on the list
    /// `list` inside Mailman (`mailman shell -l LIST -r`), then commits:
    /// for what Mailman stores but its REST API refuses to set (patterns
    /// Python's `re` refuses, as imported from Mailman 2 or written under
    /// an older Python).
    pub fn shell(&self, list: &str, source: &str) {
        let module = self.dir.path().join("matrix_shell.py");
        std::fs::write(
            &module,
            format!("{source}\n\ndef main(mlist):\n    run(mlist)\n    from mailman.config import config\n    config.db.commit()\n"),
        )
        .unwrap();
        let path = format!("PYTHONPATH={}", self.dir.path().display());
        self.mailman_with(&[&path], "shell", &["-l", list, "-r", "matrix_shell.main"]);
    }

    /// [`Mailman::mailman`] with `VAR=value` settings in its environment.
    fn mailman_with(&self, env: &[&str], cmd: &str, args: &[&str]) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("cli.log"))
            .unwrap();
        let mut child = Command::new("runuser")
            .args(["-u", "list", "--", "env"])
            .args(env)
            .args([MAILMAN, "-C"])
            .arg(&self.config)
            .arg(cmd)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("runuser");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "mailman {cmd}: {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mailman {cmd} did not finish within 30 s; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.var_dir().join("master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops Mailman and waits (bounded) until its master is gone and the
    /// REST port refuses connections. Falls back to signalling the master
    /// and its runners by pid.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let master = self.master_pid();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("cli.log"));
        let stopped = log.ok().and_then(|log| {
            Command::new("runuser")
                .args(["-u", "list", "--", MAILMAN, "-C"])
                .arg(&self.config)
                .arg("stop")
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().ok()?)
                .stderr(log)
                .status()
                .ok()
        });
        let gone = |deadline: Instant| loop {
            let alive = master.is_some_and(alive);
            if !alive && !is_listening(self.rest_port) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if stopped.is_some_and(|s| s.success()) && gone(Instant::now() + Duration::from_secs(20)) {
            return;
        }
        if let Some(pid) = master {
            for p in children(pid).into_iter().chain([pid]) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            gone(Instant::now() + Duration::from_secs(5));
        }
    }
}

impl Drop for Mailman {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- Mailman ---\n{}", self.log());
        }
        self.stop();
    }
}

/// A live, non-zombie process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Direct children of `pid` (Mailman's runners of its master).
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// One message an [`SmtpSink`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1 that accepts everything and keeps it:
/// the MTA Mailman hands its outgoing mail to. Stops on drop.
pub struct SmtpSink {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

/// Bounds for one sink session.
const SINK_LINE: usize = 64 * 1024;
const SINK_MESSAGE: usize = 16 << 20;
const SINK_IDLE: Duration = Duration::from_secs(30);

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let g = g.clone();
                        std::thread::spawn(move || {
                            let _ = sink_session(conn, &g);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SmtpSink { port, got, stop }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.got
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Messages whose text contains `needle`.
    pub fn with(&self, needle: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|m| m.data.contains(needle))
            .collect()
    }

    /// Waits (bounded) for a message containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.with(needle).into_iter().next() {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sink_session(conn: TcpStream, got: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(SINK_IDLE))?;
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    let mut read_line = |line: &mut String| -> std::io::Result<bool> {
        line.clear();
        let n = (&mut lines).take(SINK_LINE as u64).read_line(line)?;
        Ok(n > 0)
    };
    out.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut current = Received {
        mail_from: String::new(),
        rcpts: Vec::new(),
        data: String::new(),
    };
    while read_line(&mut line)? {
        let cmd = line.trim_end().to_owned();
        let verb = cmd
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => out.write_all(b"250 sink.test\r\n")?,
            "MAIL" => {
                current.mail_from = cmd[cmd.find(':').map_or(cmd.len(), |i| i + 1)..]
                    .trim()
                    .to_owned();
                out.write_all(b"250 OK\r\n")?;
            }
            "RCPT" => {
                let to = cmd[cmd.find(':').map_or(cmd.len(), |i| i + 1)..].trim();
                current
                    .rcpts
                    .push(to.trim_matches(['<', '>']).to_lowercase());
                out.write_all(b"250 OK\r\n")?;
            }
            "DATA" => {
                out.write_all(b"354 go on\r\n")?;
                let mut data = String::new();
                loop {
                    if !read_line(&mut line)? {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    if data.len() < SINK_MESSAGE {
                        data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    }
                }
                current.data = data;
                got.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(std::mem::replace(
                        &mut current,
                        Received {
                            mail_from: String::new(),
                            rcpts: Vec::new(),
                            data: String::new(),
                        },
                    ));
                out.write_all(b"250 queued\r\n")?;
            }
            "RSET" => {
                current.rcpts.clear();
                out.write_all(b"250 OK\r\n")?;
            }
            "NOOP" => out.write_all(b"250 OK\r\n")?,
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"502 not here\r\n")?,
        }
    }
    Ok(())
}
