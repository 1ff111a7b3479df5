//! mailman-milter as a running daemon: SIGHUP reloads the lists file and
//! puts a changed policy in force (shown by a message before and after);
//! a broken file keeps the old state with one log line; `--check-backend`
//! asks a (fake) REST API once; the backend counters count what was sent;
//! `export` is a command of the shell; the whole command line is public.

#[path = "../../minimilter/tests/daemon_contract/mod.rs"]
mod daemon_contract;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use daemon_contract::{Binary, Scratch, free_port, hup, sample, send_one};
use minimilter::{MessageSpec, Outcome};

fn mailman_milter() -> Binary {
    Binary {
        name: "mailman-milter",
        path: env!("CARGO_BIN_EXE_mailman-milter").into(),
        base: Vec::new(),
    }
}

const LIST: &str = "team@lists.example.org";

fn lists(members: &[&str]) -> String {
    let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[list]]\naddress = \"{LIST}\"\nnonmember_action = \"reject\"\nmembers = [{}]\n",
        members.join(", ")
    )
}

fn post(from: &str, to: &str) -> MessageSpec {
    MessageSpec {
        from: from.into(),
        rcpts: vec![to.into()],
        message: format!("From: {from}\r\nTo: {to}\r\nSubject: hi\r\n\r\nhello\r\n").into(),
        ..MessageSpec::default()
    }
}

fn reply(o: &Outcome) -> String {
    match o {
        Outcome::Rejected { reply, .. } => reply.clone().unwrap_or_default(),
        other => panic!("not rejected: {other:?}"),
    }
}

fn config(lists_file: &Path, inet: &str, text: &str) -> String {
    format!(
        "lists = \"{}\"\nreload_interval = 0\nreject_text = \"<{{list}}>: {text}\"\n[server]\nlisten = \"{inet}\"\n",
        lists_file.display()
    )
}

#[test]
fn hup_reloads_the_lists_and_the_policy_and_a_broken_file_changes_nothing() {
    let s = Scratch::new("mm-hup");
    let (file, lists_file) = (s.path().join("mm.toml"), s.path().join("lists.toml"));
    let inet = format!("inet:127.0.0.1:{}", free_port());
    std::fs::write(&lists_file, lists(&["alice@example.org"])).unwrap();
    std::fs::write(&file, config(&lists_file, &inet, "old text")).unwrap();
    let mut d = mailman_milter().spawn(
        &["--config", file.to_str().unwrap()],
        &[],
        &s.path().join("log"),
    );
    d.wait_log(&format!("listening on {inet}"));
    let bob = post("bob@example.org", LIST);
    assert!(reply(&send_one(&inet, &bob)).ends_with(": old text"));

    // The policy part: a new refusal text, applied at once.
    std::fs::write(&file, config(&lists_file, &inet, "new text")).unwrap();
    let line = hup(&mut d, 1);
    assert!(
        line.contains(&format!(
            "SIGHUP: {}: applied: reject_text: \"<{{list}}>: old text\" -> \"<{{list}}>: new text\"; lists file",
            file.display()
        )),
        "{line}"
    );
    assert!(reply(&send_one(&inet, &bob)).ends_with(": new text"));

    // `senders` changes the steps negotiated with the MTA: named, for a
    // restart, and nothing else changes.
    std::fs::write(
        &file,
        format!(
            "senders = \"envelope\"\n{}",
            config(&lists_file, &inet, "new text")
        ),
    )
    .unwrap();
    let line = hup(&mut d, 2);
    assert!(
        line.contains(&format!(
            "SIGHUP: {}: changed, applying after a restart: senders: \"mailman\" -> \"envelope\"",
            file.display()
        )),
        "{line}"
    );
    assert!(reply(&send_one(&inet, &bob)).ends_with(": new text"));
    std::fs::write(&file, config(&lists_file, &inet, "new text")).unwrap();
    let line = hup(&mut d, 3);
    assert!(line.contains("no setting changed"), "{line}");

    // The lists: bob becomes a member.
    std::fs::write(
        &lists_file,
        lists(&["alice@example.org", "bob@example.org"]),
    )
    .unwrap();
    let line = hup(&mut d, 4);
    assert!(
        line.contains("lists file") && line.contains("reloaded"),
        "{line}"
    );
    assert_eq!(send_one(&inet, &bob), Outcome::Accepted, "{}", d.log_text());

    // A broken lists file: one error line, bob stays a member.
    std::fs::write(&lists_file, "[[list]\n").unwrap();
    let line = hup(&mut d, 5);
    assert!(line.contains(" ERROR "), "{line}");
    assert!(line.contains("lists file reload failed"), "{line}");
    assert!(
        line.ends_with("; the previous data stays in force"),
        "{line}"
    );
    assert_eq!(send_one(&inet, &bob), Outcome::Accepted, "{}", d.log_text());

    // A broken configuration: one error line, the text stays.
    std::fs::write(&lists_file, lists(&["alice@example.org"])).unwrap();
    std::fs::write(&file, "senders = \"nobody\"\n").unwrap();
    let line = hup(&mut d, 6);
    assert!(line.contains(" ERROR "), "{line}");
    assert!(
        line.ends_with("; the previous state stays in force"),
        "{line}"
    );
    // The old lists (bob a member) too: a refused reload changes nothing.
    assert_eq!(send_one(&inet, &bob), Outcome::Accepted, "{}", d.log_text());
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

/// A fake Mailman REST API on 127.0.0.1 answering every request with
/// `status`; counts the requests and records their first lines and
/// Authorization headers.
struct FakeApi {
    port: u16,
    requests: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeApi {
    fn start(status: &'static str) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, s) = (requests.clone(), seen.clone());
        std::thread::spawn(move || {
            // Bounded: a test makes a few requests at most.
            for stream in listener.incoming().take(50) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_owned());
                }
                r.fetch_add(1, Ordering::SeqCst);
                s.lock().unwrap().extend(
                    head.iter()
                        .filter(|l| {
                            l.starts_with("GET ")
                                || l.to_ascii_lowercase().starts_with("authorization:")
                        })
                        .cloned(),
                );
                let body = "{\"start\": 0, \"total_size\": 0, \"entries\": []}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeApi {
            port,
            requests,
            seen,
        }
    }
}

fn rest_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let file = dir.join("rest.toml");
    std::fs::write(
        &file,
        format!(
            "backend = \"mailman\"\n[mailman]\nurl = \"http://127.0.0.1:{port}/3.1\"\nuser = \"restadmin\"\n\
             password = \"secret\"\ntimeout = 5\nlist_domains = [\"lists.example.org\"]\n"
        ),
    )
    .unwrap();
    file
}

fn check_backend(config: &Path) -> std::process::Output {
    mailman_milter().run(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("inet:127.0.0.1:{}", free_port()),
            "--check-config",
            "--check-backend",
        ],
        &[],
    )
}

#[test]
fn check_backend_asks_the_api_once_with_the_credentials() {
    let s = Scratch::new("mm-probe");
    let api = FakeApi::start("200 OK");
    let config = rest_config(s.path(), api.port);
    let o = check_backend(&config);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(&format!(
            "# backend: the Mailman REST API at http://127.0.0.1:{}/3.1 answers (HTTP 200, ",
            api.port
        )),
        "{out}"
    );
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(
        seen[0], "GET /3.1/domains?count=1&page=1 HTTP/1.1",
        "{seen:?}"
    );
    // restadmin:secret
    let (name, value) = seen[1].split_once(':').unwrap();
    assert_eq!(name.to_ascii_lowercase(), "authorization");
    assert_eq!(value.trim(), "Basic cmVzdGFkbWluOnNlY3JldA==", "{seen:?}");
}

#[test]
fn check_backend_reports_refused_credentials_in_one_line() {
    let s = Scratch::new("mm-probe401");
    let api = FakeApi::start("401 Unauthorized");
    let config = rest_config(s.path(), api.port);
    let o = check_backend(&config);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "mailman-milter: backend: http://127.0.0.1:{}/3.1/domains?count=1&page=1: HTTP 401: \
             the API refuses user `restadmin` (check [mailman] user and password)\n",
            api.port
        )
    );
    // Asked once; the lists are not read after a failed check.
    assert_eq!(api.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn check_backend_reports_an_api_that_is_down_in_one_line() {
    let s = Scratch::new("mm-probedown");
    let port = free_port();
    let config = rest_config(s.path(), port);
    let o = check_backend(&config);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "mailman-milter: backend: http://127.0.0.1:{port}/3.1/domains?count=1&page=1: \
             Connection refused (os error 111)\n"
        )
    );
}

#[test]
fn check_backend_with_a_lists_file_says_there_is_no_service() {
    let s = Scratch::new("mm-probefile");
    let lists_file = s.path().join("lists.toml");
    std::fs::write(&lists_file, lists(&[])).unwrap();
    let o = mailman_milter().run(
        &[
            "--lists",
            lists_file.to_str().unwrap(),
            "--check-config",
            "--check-backend",
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "# backend: the lists file {} (no service to ask)\n",
            lists_file.display()
        )),
        "{out}"
    );
}

/// Sends `list_posts` posts to the list (every other one from a member)
/// and `other` messages for no list to a daemon serving metrics; the
/// exposition after them.
fn metrics_after(list_posts: usize, other: usize) -> String {
    let s = Scratch::new("mm-metrics");
    let lists_file = s.path().join("lists.toml");
    std::fs::write(&lists_file, lists(&["alice@example.org"])).unwrap();
    let (mut d, inet, mport) = mailman_milter().spawn_with_metrics(
        &["--lists", lists_file.to_str().unwrap()],
        &s.path().join("log"),
    );
    for i in 0..list_posts {
        let from = if i % 2 == 0 {
            "alice@example.org"
        } else {
            "bob@example.org"
        };
        send_one(&inet, &post(from, LIST));
    }
    for _ in 0..other {
        assert_eq!(
            send_one(&inet, &post("bob@example.org", "carol@example.org")),
            Outcome::Accepted
        );
    }
    let m = daemon_contract::scrape_settled(mport);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    m
}

#[test]
fn backend_counters_count_the_calls_of_what_was_sent() {
    let (list_posts, other) = (4, 3);
    let m = metrics_after(list_posts, other);
    // The list data: once at start (overrides are checked against it),
    // then once per recipient; sender status once per list post.
    assert_eq!(
        sample(&m, "mailman_milter_backend_requests_total{call=\"lists\"}"),
        Some((1 + list_posts + other) as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "mailman_milter_backend_requests_total{call=\"senders\"}"
        ),
        Some(list_posts as f64),
        "{m}"
    );
    assert!(!m.contains("mailman_milter_backend_errors_total{"), "{m}");
    assert_eq!(
        sample(
            &m,
            "milter_messages_total{verdict=\"reject\",reason=\"nonmember\"}"
        ),
        Some((list_posts / 2) as f64),
        "{m}"
    );
}

#[test]
#[ignore = "needs promtool"]
fn promtool_accepts_the_exposition_with_mailman_milters_counters() {
    let m = metrics_after(2, 1);
    assert!(m.contains("# TYPE mailman_milter_backend_requests_total counter"));
    daemon_contract::promtool_accepts(&m);
}

#[test]
fn backend_errors_are_counted() {
    let s = Scratch::new("mm-errors");
    let lists_file = s.path().join("lists.toml");
    std::fs::write(&lists_file, "[[list]\n").unwrap();
    let (mut d, inet, mport) = mailman_milter().spawn_with_metrics(
        &["--lists", lists_file.to_str().unwrap()],
        &s.path().join("log"),
    );
    let sends = 3;
    for _ in 0..sends {
        let o = send_one(&inet, &post("bob@example.org", LIST));
        assert!(matches!(o, Outcome::Tempfailed { .. }), "{o:?}");
    }
    let m = daemon_contract::scrape_settled(mport);
    // Once at start, once per recipient.
    assert_eq!(
        sample(&m, "mailman_milter_backend_errors_total{call=\"lists\"}"),
        Some((1 + sends) as f64),
        "{m}"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
}

#[test]
#[ignore = "needs the minimilter binary (cargo build -p minimilter-cli)"]
fn backend_counters_equal_what_a_bench_run_sent() {
    let s = Scratch::new("mm-bench");
    let lists_file = s.path().join("lists.toml");
    std::fs::write(&lists_file, lists(&["alice@example.org"])).unwrap();
    let (mut d, inet, mport) = mailman_milter().spawn_with_metrics(
        &["--lists", lists_file.to_str().unwrap()],
        &s.path().join("log"),
    );
    let m = post("bob@example.org", LIST);
    let file = s.path().join("post.eml");
    std::fs::write(&file, &m.message).unwrap();
    let report = daemon_contract::bench(
        &inet,
        &[
            "--conns",
            "3",
            "--messages",
            "7",
            "--message",
            file.to_str().unwrap(),
            "--from",
            "bob@example.org",
            "--rcpt",
            LIST,
            "--expect",
            "reject",
        ],
    );
    let sent = daemon_contract::json_number(&report, "messages");
    assert_eq!(sent, 21.0, "{report}");
    let metrics = daemon_contract::scrape_settled(mport);
    // The list data once at start and once per recipient; sender status
    // once per post.
    assert_eq!(
        sample(
            &metrics,
            "mailman_milter_backend_requests_total{call=\"lists\"}"
        ),
        Some(1.0 + sent),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "mailman_milter_backend_requests_total{call=\"senders\"}"
        ),
        Some(sent),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "milter_messages_total{verdict=\"reject\",reason=\"nonmember\"}"
        ),
        Some(daemon_contract::json_number(&report, "reject")),
        "{report}\n{metrics}"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
}

#[test]
fn export_is_a_command_of_the_shell() {
    let o = mailman_milter().run(&["--help"], &[]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Commands:\n  export  Write a lists file"),
        "{help}"
    );
    // `--config` before or after the command's name.
    for args in [
        ["export", "--config", "/nonexistent/m.toml"],
        ["--config", "/nonexistent/m.toml", "export"],
    ] {
        let o = mailman_milter().run(&args, &[]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "mailman-milter export: /nonexistent/m.toml: cannot read: No such file or directory (os error 2)\n"
        );
    }
    // A daemon option is not silently dropped in front of the command.
    let o = mailman_milter().run(&["--lists", "x.toml", "export"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "mailman-milter: --lists cannot be used with the command `export` (see --help)\n"
    );
    // `export` as the value of an option is that value, not the command.
    let o = mailman_milter().run(&["--lists", "export", "--check-config"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("export"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_whole_command_line_is_public() {
    let c = mailman_milter::cli::command();
    c.clone().debug_assert();
    assert_eq!(c.get_name(), "mailman-milter");
    assert!(c.get_subcommands().any(|s| s.get_name() == "export"));
    for long in ["lists", "senders", "listen", "config", "check-backend"] {
        assert!(
            c.get_arguments().any(|a| a.get_long() == Some(long)),
            "--{long}"
        );
    }
}
