//! pgp-milter as a running daemon: SIGHUP puts a changed policy in force
//! (shown by a message before and after), a broken file keeps the old
//! policy with one log line, `--check-backend` says there is no backend,
//! its own counters count what was sent, and its whole command line is
//! public for manual pages.

#[path = "../../minimilter/tests/daemon_contract/mod.rs"]
mod daemon_contract;

use daemon_contract::{Binary, Scratch, free_port, hup, sample, send_one};
use minimilter::{MessageSpec, Outcome};

fn pgp_milter() -> Binary {
    Binary {
        name: "pgp-milter",
        path: env!("CARGO_BIN_EXE_pgp-milter").into(),
        base: Vec::new(),
    }
}

fn plain() -> MessageSpec {
    MessageSpec {
        from: "alice@client.example".into(),
        rcpts: vec!["bob@example.org".into()],
        message: "From: alice@client.example\r\nSubject: hello\r\n\r\nplain text\r\n".into(),
        ..MessageSpec::default()
    }
}

fn rejected(o: &Outcome) -> bool {
    matches!(o, Outcome::Rejected { .. })
}

#[test]
fn hup_puts_a_changed_policy_in_force_and_a_broken_file_changes_nothing() {
    let s = Scratch::new("pgp-hup");
    let file = s.path().join("pgp.toml");
    let inet = format!("inet:127.0.0.1:{}", free_port());
    let server = format!("[server]\nlisten = \"{inet}\"\n");
    std::fs::write(&file, format!("require = \"encrypted\"\n{server}")).unwrap();
    let mut d = pgp_milter().spawn(
        &["--config", file.to_str().unwrap()],
        &[],
        &s.path().join("log"),
    );
    d.wait_log(&format!("listening on {inet}"));
    assert!(rejected(&send_one(&inet, &plain())), "{}", d.log_text());

    std::fs::write(
        &file,
        format!("require = \"encrypted\"\nexempt_senders = [\"alice@client.example\"]\n{server}"),
    )
    .unwrap();
    let line = hup(&mut d, 1);
    assert!(
        line.contains(&format!(
            "SIGHUP: {}: applied: exempt_senders: (unset) -> [\"alice@client.example\"]",
            file.display()
        )),
        "{line}"
    );
    assert_eq!(
        send_one(&inet, &plain()),
        Outcome::Accepted,
        "{}",
        d.log_text()
    );

    // A file that no longer loads: one error line, the exemption stays.
    std::fs::write(&file, format!("require = \"bogus\"\n{server}")).unwrap();
    let line = hup(&mut d, 2);
    assert!(line.contains(" ERROR "), "{line}");
    assert!(
        line.ends_with("; the previous state stays in force"),
        "{line}"
    );
    assert!(line.contains("bogus"), "{line}");
    assert_eq!(
        send_one(&inet, &plain()),
        Outcome::Accepted,
        "{}",
        d.log_text()
    );

    // Back to the first policy: refused again.
    std::fs::write(&file, format!("require = \"encrypted\"\n{server}")).unwrap();
    let line = hup(&mut d, 3);
    assert!(line.contains("applied: exempt_senders"), "{line}");
    assert!(rejected(&send_one(&inet, &plain())), "{}", d.log_text());
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log_text());
}

#[test]
fn check_backend_says_there_is_none() {
    let o = pgp_milter().run(&["--check-config", "--check-backend"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("# backend: none (pgp-milter asks no service; the keyring is local)\n"),
        "{out}"
    );
    assert!(out.ends_with("configuration OK\n"), "{out}");
}

/// Sends `sends` plain messages to a daemon serving metrics; the
/// exposition after them, and the bytes of one message as judged.
fn metrics_after(sends: usize) -> (String, usize) {
    let s = Scratch::new("pgp-metrics");
    let (mut d, inet, mport) = pgp_milter().spawn_with_metrics(&[], &s.path().join("log"));
    let m = plain();
    for _ in 0..sends {
        assert!(rejected(&send_one(&inet, &m)));
    }
    // What the filter is handed: each header line as `Name: value\r\n`,
    // the blank line is not a header, then the body.
    let text = String::from_utf8(m.message.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let per_message = head.lines().map(|l| l.len() + 2).sum::<usize>() + body.len();
    let metrics = daemon_contract::scrape_settled(mport);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    (metrics, per_message)
}

#[test]
fn counters_count_the_bytes_judged_and_classes_of_refusal() {
    let sends = 3;
    let (metrics, per_message) = metrics_after(sends);
    assert_eq!(
        sample(&metrics, "pgp_milter_judged_bytes_total"),
        Some((sends * per_message) as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "milter_messages_total{verdict=\"reject\",reason=\"plaintext\"}"
        ),
        Some(sends as f64),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs promtool"]
fn promtool_accepts_the_exposition_with_pgp_milters_counters() {
    let (metrics, _) = metrics_after(2);
    assert!(metrics.contains("# TYPE pgp_milter_judged_bytes_total counter"));
    daemon_contract::promtool_accepts(&metrics);
}

#[test]
#[ignore = "needs the minimilter binary (cargo build -p minimilter-cli)"]
fn counters_equal_what_a_bench_run_sent() {
    let s = Scratch::new("pgp-bench");
    let (mut d, inet, mport) = pgp_milter().spawn_with_metrics(&[], &s.path().join("log"));
    let m = plain();
    let file = s.path().join("plain.eml");
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
            "--expect",
            "reject",
        ],
    );
    let sent = daemon_contract::json_number(&report, "messages");
    assert_eq!(sent, 21.0, "{report}");
    let text = String::from_utf8(m.message.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let per_message = head.lines().map(|l| l.len() + 2).sum::<usize>() + body.len();
    let metrics = daemon_contract::scrape_settled(mport);
    assert_eq!(
        sample(&metrics, "pgp_milter_judged_bytes_total"),
        Some(sent * per_message as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "milter_messages_total{verdict=\"reject\",reason=\"plaintext\"}"
        ),
        Some(daemon_contract::json_number(&report, "reject")),
        "{report}\n{metrics}"
    );
    assert_eq!(
        sample(&metrics, "milter_connections_total"),
        Some(daemon_contract::json_number(&report, "negotiations")),
        "{report}\n{metrics}"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
}

#[test]
fn the_whole_command_line_is_public() {
    let c = pgp_milter::cli::command();
    c.clone().debug_assert();
    assert_eq!(c.get_name(), "pgp-milter");
    for long in [
        "listen",
        "config",
        "check-config",
        "check-backend",
        "metrics",
    ] {
        assert!(
            c.get_arguments().any(|a| a.get_long() == Some(long)),
            "--{long}"
        );
    }
}
