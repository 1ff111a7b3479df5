//! The REST backend against a real Mailman 3 core (Debian's `mailman3`),
//! started here with its own configuration and var dir, REST on a free
//! 127.0.0.1 port. Lists, members, the non-member action, an accept pattern
//! and a ban are set over REST; the milter is then driven in process by
//! minimilter's `MilterClient`. Mailman's REST is stopped at the end: the
//! next decision must be 451, never 5xx.
//!
//! Needs root (Mailman runs as user `list`) and the `mailman3` package:
//! without them it fails, naming scripts/install-test-deps.sh.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use mailman_milter::{MailmanMilter, RestBackend, RestConfig, Settings};
use minimilter::proto::Step;
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, Transcript,
    run_message,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const MAILMAN: &str = "/usr/bin/mailman";
const RUNNERS: &str = "/usr/lib/mailman3/bin";
const REFUSAL: &str =
    "550 5.7.1 <team@lists.example.org>: you are not allowed to post to this list";
const UNAVAILABLE: &str = "451 4.3.0 Mailing list data temporarily unavailable; try again later";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with basic auth; (status, body).
fn http(
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

fn rest(port: u16, method: &str, path: &str, form: &[(&str, &str)]) {
    let (status, body) =
        http(port, method, path, form).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: HTTP {status}: {body}"
    );
}

/// A private Mailman 3 core; stopped on drop.
struct Mailman {
    dir: tempfile::TempDir,
    config: PathBuf,
    rest_port: u16,
    running: bool,
}

impl Mailman {
    fn start() -> Mailman {
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
        let (rest_port, lmtp_port, smtp_port) = (free_port(), free_port(), free_port());
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
            running: true,
        };
        m.mailman("start", &["--force"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(rest_port, "GET", "/system/versions", &[]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Mailman's REST API did not answer on 127.0.0.1:{rest_port} within 30 s; log:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        m
    }

    fn log(&self) -> String {
        let mut out = std::fs::read_to_string(self.dir.path().join("cli.log")).unwrap_or_default();
        out.push_str(
            &std::fs::read_to_string(self.dir.path().join("var/logs/mailman.log"))
                .unwrap_or_default(),
        );
        out
    }

    /// `runuser -u list -- mailman -C CONFIG CMD ARGS`, output to cli.log,
    /// bounded to 30 s.
    fn mailman(&self, cmd: &str, args: &[&str]) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("cli.log"))
            .unwrap();
        let mut child = Command::new("runuser")
            .args(["-u", "list", "--", MAILMAN, "-C"])
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
        std::fs::read_to_string(self.dir.path().join("var/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops Mailman and waits (bounded) until its master is gone and the
    /// REST port refuses connections. Falls back to signalling the master
    /// and its runners by pid.
    fn stop(&mut self) {
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
            let port_open = TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, self.rest_port)),
                Duration::from_millis(200),
            )
            .is_ok();
            if !alive && !port_open {
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

async fn post(backend: &Arc<RestBackend>, from: &str, rcpt: &str) -> Transcript {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(
        MailmanMilter::new(backend.clone(), Settings::default()),
        ServerConfig::default(),
    );
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let mut c = MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .unwrap();
    let spec = MessageSpec {
        from: from.into(),
        rcpts: vec![rcpt.into()],
        message: Bytes::from(format!(
            "From: {from}\r\nTo: {rcpt}\r\nSubject: hello\r\n\r\nBody.\r\n"
        )),
        ..MessageSpec::default()
    };
    tokio::time::timeout(Duration::from_secs(20), run_message(&mut c, &spec))
        .await
        .expect("the milter answers in time")
        .unwrap()
}

fn refused_with(t: &Transcript) -> String {
    match &t.outcome {
        Outcome::Rejected {
            at: Step::EndOfMessage,
            reply,
        } => reply.clone().unwrap_or_default(),
        other => panic!("expected a refusal at end of message, got {other:?}"),
    }
}

fn tempfailed_at(t: &Transcript) -> Step {
    match &t.outcome {
        Outcome::Tempfailed { at, reply } => {
            assert_eq!(reply.as_deref(), Some(UNAVAILABLE));
            *at
        }
        other => panic!("expected 451 4.3.0, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_from_a_real_mailman_3_core_and_451_once_it_is_stopped() {
    let started = Instant::now();
    let mut mailman = tokio::task::spawn_blocking(Mailman::start).await.unwrap();
    let port = mailman.rest_port;
    eprintln!("Mailman started in {:?}", started.elapsed());
    tokio::task::spawn_blocking(move || {
        let list = "team.lists.example.org";
        rest(
            port,
            "POST",
            "/domains",
            &[("mail_host", "lists.example.org")],
        );
        rest(
            port,
            "POST",
            "/lists",
            &[("fqdn_listname", "team@lists.example.org")],
        );
        rest(
            port,
            "POST",
            "/members",
            &[
                ("list_id", list),
                ("subscriber", "Alice@Example.org"),
                ("pre_verified", "true"),
                ("pre_confirmed", "true"),
                ("pre_approved", "true"),
            ],
        );
        rest(
            port,
            "PATCH",
            &format!("/lists/{list}/config"),
            &[
                ("default_nonmember_action", "reject"),
                ("accept_these_nonmembers", "^.*@partner\\.example$"),
            ],
        );
        rest(
            port,
            "POST",
            &format!("/lists/{list}/bans"),
            &[("email", "spam@evil.example")],
        );
    })
    .await
    .unwrap();

    let config = |ttl| RestConfig {
        url: format!("http://127.0.0.1:{port}/3.1"),
        timeout: Duration::from_secs(3),
        cache_ttl: ttl,
        ..RestConfig::default()
    };
    let backend = Arc::new(RestBackend::new(&config(Duration::from_secs(60))).unwrap());
    let uncached = Arc::new(RestBackend::new(&config(Duration::ZERO)).unwrap());
    let team = "team@lists.example.org";

    for b in [&backend, &uncached] {
        assert_eq!(
            post(b, "alice@example.org", team).await.outcome,
            Outcome::Accepted
        );
        assert_eq!(
            refused_with(&post(b, "stranger@example.com", team).await),
            REFUSAL
        );
        assert_eq!(
            post(b, "x@partner.example", team).await.outcome,
            Outcome::Accepted
        );
        assert_eq!(
            refused_with(&post(b, "spam@evil.example", team).await),
            REFUSAL
        );
        // Mailman would answer a lookup of this one with alice (LIKE search).
        assert_eq!(refused_with(&post(b, "*@example.org", team).await), REFUSAL);
        assert_eq!(
            post(b, "stranger@example.com", "team-request@lists.example.org")
                .await
                .outcome,
            Outcome::Accepted
        );
    }

    eprintln!("decisions done at {:?}", started.elapsed());
    tokio::task::spawn_blocking(move || {
        mailman.stop();
        mailman
    })
    .await
    .unwrap();
    eprintln!("Mailman stopped at {:?}", started.elapsed());
    assert!(
        http(port, "GET", "/system/versions", &[]).is_err(),
        "Mailman's REST still answers after stop"
    );
    // Lists cached: the member lookup fails after the headers.
    assert_eq!(
        tempfailed_at(&post(&backend, "late@example.com", team).await),
        Step::EndOfHeaders
    );
    // Nothing cached: the list lookup fails at RCPT.
    assert_eq!(
        tempfailed_at(&post(&uncached, "alice@example.org", team).await),
        Step::Rcpt
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("real Mailman 3 test took {took:?}");
}
