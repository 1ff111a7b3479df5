//! The binary's start-up: `--check-config`, and errors that name the file
//! and the key.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_config_summarises_the_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lists.toml"),
        "[[list]]\naddress = \"team@lists.example.org\"\nnonmember_action = \"reject\"\naccept_nonmembers = [\"^(?!x)y@\", \"^[[:alpha:]]y@\"]\nbanned = [\"^a(\"]\n\n[[list]]\naddress = \"open@lists.example.org\"\n",
    )
    .unwrap();
    let config = dir.path().join("mailman-milter.toml");
    std::fs::write(&config, "lists = \"lists.toml\"\nsenders = \"mailman\"\n").unwrap();
    let o = run(&["--config", config.to_str().unwrap(), "--check-config"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("2 lists"), "{out}");
    assert!(
        out.contains("team@lists.example.org: non-members reject; guarded"),
        "{out}"
    );
    assert!(
        out.contains("open@lists.example.org: non-members hold; left to Mailman"),
        "{out}"
    );
    // Look-ahead is evaluated; a class Python reads differently and a
    // pattern no engine compiles are not, and are listed on one line.
    let warning: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("cannot be evaluated"))
        .collect();
    assert_eq!(warning.len(), 1, "{out}");
    assert!(
        warning[0].contains("warning: 2 pattern(s) cannot be evaluated"),
        "{out}"
    );
    assert!(
        warning[0].contains(r#"team@lists.example.org accept_these_nonmembers "^[[:alpha:]]y@""#),
        "{out}"
    );
    assert!(
        warning[0].contains(r#"team@lists.example.org banned "^a(""#),
        "{out}"
    );
    assert!(!out.contains("(?!x)"), "{out}");
}

#[test]
fn a_bad_configuration_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "lists = \"l.toml\"\non_backend_eror = \"accept\"\n",
    )
    .unwrap();
    let o = run(&["--config", config.to_str().unwrap(), "--check-config"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains(config.to_str().unwrap()), "{out}");
    assert!(out.contains("on_backend_eror"), "{out}");

    let lists = dir.path().join("lists.toml");
    std::fs::write(
        &lists,
        "[[list]]\naddress = \"team@x.example\"\nmembers = [\"nobody\"]\n",
    )
    .unwrap();
    let o = run(&["--lists", lists.to_str().unwrap(), "--check-config"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("lists.toml: list[0].members[0]"), "{out}");
}

#[test]
fn a_lists_file_is_required_and_bad_options_are_named() {
    let o = run(&["--check-config"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no lists file"), "{}", text(&o));
    let o = run(&[
        "--lists",
        "/dev/null",
        "--listen",
        "tcp:nowhere",
        "--check-config",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).starts_with("mailman-milter: --listen tcp:nowhere: invalid socket"),
        "{}",
        text(&o)
    );
    let o = run(&[
        "--lists",
        "/dev/null",
        "--socket-mode",
        "8",
        "--check-config",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o),
        "mailman-milter: --socket-mode 8: not an octal mode such as 660\n"
    );
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/config.toml");
    let o = run(&["--config", config, "--check-config"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("2 lists"), "{out}");
    assert!(
        out.contains("announce@lists.example.org: non-members hold (holds refused); guarded"),
        "{out}"
    );
}

/// A TLS setting that cannot work (`ca_file` with an `http://` URL; a
/// `ca_file` that is missing) is refused at start-up, both by
/// `--check-config` and when starting to serve, with the file, the key and
/// the reason; the daemon never starts listening.
#[test]
fn a_tls_setting_that_cannot_work_is_refused_at_start_up_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("m.sock");
    let config = dir.path().join("rest.toml");
    let cases = [
        (
            "http://lists.example.org:8001/3.1",
            "mailman.ca_file: set, but mailman.url \"http://lists.example.org:8001/3.1\" is not https://",
        ),
        (
            "https://lists.example.org:8001/3.1",
            "mailman.ca_file: ca_file ",
        ),
    ];
    for (url, message) in cases {
        std::fs::write(
            &config,
            format!(
                "listen = \"unix:{}\"\nbackend = \"mailman\"\n[mailman]\nurl = \"{url}\"\nca_file = \"missing-ca.pem\"\n",
                socket.display()
            ),
        )
        .unwrap();
        for extra in [&["--check-config"][..], &[]] {
            let mut args = vec!["--config", config.to_str().unwrap()];
            args.extend_from_slice(extra);
            let o = run_bounded(&args);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(1), "{extra:?}: {out}");
            assert!(
                out.contains(&format!("{}: {message}", config.display())),
                "{extra:?}: {out}"
            );
            assert!(!socket.exists());
        }
    }
}

/// Like `run`, but a binary that does not exit within 20 s (a daemon that
/// started serving) is killed, and the test then fails on its status.
fn run_bounded(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// `--check-config | head -2`: stdout closed early is a quiet, successful
/// exit, never a panic ("failed printing to stdout: Broken pipe"). The
/// pipe's read end is closed before the binary starts, so every write fails.
#[test]
fn check_config_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists.toml");
    std::fs::write(
        &lists,
        "[[list]]\naddress = \"team@lists.example.org\"\nnonmember_action = \"reject\"\n",
    )
    .unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--lists", lists.to_str().unwrap(), "--check-config"])
        .env("RUST_LOG", "off")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// The settings are shown spelt as in the file, and an override for a list
/// the data lacks is warned about (not an error: exit 0).
#[test]
fn check_config_shows_toml_settings_and_warns_about_unknown_override_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lists.toml"),
        "[[list]]\naddress = \"team@lists.example.org\"\nnonmember_action = \"reject\"\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "lists = \"lists.toml\"\nlisten = [\"unix:/run/mm.sock\", \"inet6:[::1]:8893\"]\nsenders = \"envelope\"\non_backend_error = \"accept\"\n[list_overrides.\"taem@lists.example.org\"]\nrefuse_hold = true\n[list_overrides.\"team@lists.example.org\"]\nrefuse_hold = true\n",
    )
    .unwrap();
    let o = run(&["--config", config.to_str().unwrap(), "--check-config"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "[server]\nlisten = [\"unix:/run/mm.sock\", \"inet6:8893@::1\"]\n",
        "\nsenders = \"envelope\"\n",
        "\non_backend_error = \"accept\"\n",
        "#   team@lists.example.org: non-members reject (holds refused); guarded\n",
        "mailman-milter: warning: list_overrides.\"taem@lists.example.org\": no such list in the list data; the entry has no effect\n",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(!out.contains("list_overrides.\"team@"), "{out}");
}

/// A lists file with a TOML error is reported on one line naming the file,
/// the line, the key and the reason.
#[test]
fn a_lists_file_syntax_error_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists.toml");
    std::fs::write(
        &lists,
        "[[list]]\naddress = \"a@b.example\"\nbogus=1\n[[list\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--lists", lists.to_str().unwrap(), "--check-config"])
        .env("RUST_LOG", "off")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("lists.toml"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with(&format!("mailman-milter: {}: line ", lists.display())),
        "{err}"
    );
    assert!(line.contains("(`"), "{line}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
}

/// The start-up log's `settings:` line leaves the sockets to the shell's own
/// `listening on` line: with the packaged configuration ([server] listen =
/// a unix socket) it used to say `listen = ["inet:127.0.0.1:8893"]`, the
/// built-in default the daemon was not listening on.
/// What the daemon started with `args` logs (RUST_LOG=info) until it says
/// it listens, exits, or 20 s pass; it is then killed.
fn start_up_log(dir: &std::path::Path, args: &[&str]) -> String {
    let err_path = dir.join("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Bounded: 20 s for the daemon to say it listens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&err_path).unwrap_or_default();
        if log.contains("listening on") || std::time::Instant::now() > deadline {
            break log;
        }
        if child.try_wait().unwrap().is_some() {
            break std::fs::read_to_string(&err_path).unwrap_or_default();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn the_start_up_settings_line_does_not_name_a_socket_the_daemon_is_not_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lists.toml"), "").unwrap();
    let socket = dir.path().join("mm.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "lists = \"lists.toml\"\n[server]\nlisten = \"unix:{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let log = start_up_log(dir.path(), &["--config", config.to_str().unwrap()]);
    assert!(
        log.contains(&format!("listening on unix:{}", socket.display())),
        "{log}"
    );
    let settings = log
        .lines()
        .find(|l| l.contains("settings: "))
        .unwrap_or_else(|| panic!("no settings line: {log}"));
    assert!(settings.contains("backend = \"file\""), "{settings}");
    assert!(!settings.contains("listen"), "{settings}");
    assert!(!settings.contains("8893"), "{settings}");
}

/// `state_dir` must be writable at start-up: a path that cannot become a
/// directory is refused with the key and the file (before, the check passed
/// and the daemon only logged each failed write of its kept state); a
/// directory still to be made under a writable one is fine, and the check
/// leaves nothing behind.
#[test]
fn a_state_dir_that_cannot_be_written_is_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain-file"), "").unwrap();
    let config = dir.path().join("mm.toml");
    let with_state_dir = |state_dir: &str| {
        std::fs::write(
            &config,
            format!(
                "backend = \"mailman\"\n[mailman]\nurl = \"http://127.0.0.1:1/3.1\"\n\
                 list_domains = [\"lists.example.org\"]\nstate_dir = \"{state_dir}\"\n\
                 [server]\nlisten = \"unix:{}\"\n",
                dir.path().join("mm.sock").display()
            ),
        )
        .unwrap();
        run(&["--config", config.to_str().unwrap(), "--check-config"])
    };
    let o = with_state_dir("plain-file/state");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("mailman.state_dir"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(config.to_str().unwrap()), "{line}");
    assert!(line.contains("plain-file is not a directory"), "{line}");

    let o = with_state_dir("state/sub");
    assert!(o.status.success(), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mailman-milter-check"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A lists file that cannot be read is named by where it was given: the
/// option, or the configuration file and its `lists` key.
#[test]
fn an_unreadable_lists_file_is_named_by_its_option_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-lists.toml");
    let o = run(&["--lists", missing.to_str().unwrap(), "--check-config"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "mailman-milter: --lists {}: cannot read: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    // A directory where the file is expected, given in the configuration.
    let config = dir.path().join("mm.toml");
    std::fs::write(&config, "lists = \".\"\n").unwrap();
    let o = run(&["--config", config.to_str().unwrap(), "--check-config"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "mailman-milter: {}: key `lists` ({}): cannot read: Is a directory (os error 21)\n",
            config.display(),
            dir.path().join(".").display()
        )
    );
}

/// At start-up a lists file that cannot be read is not fatal (the daemon
/// answers on_backend_error until it loads), but the error it logs names
/// where the file was given too, as --check-config does.
#[test]
fn the_start_up_log_names_where_an_unreadable_lists_file_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mm.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "lists = \"gone.toml\"\n").unwrap();
    let log = start_up_log(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("unix:{}", socket.display()),
            "--log-format",
            "json",
        ],
    );
    let line = log
        .lines()
        .find(|l| l.contains("cannot read the lists file"))
        .unwrap_or_else(|| panic!("no lists error: {log}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        json["fields"]["given"],
        format!(
            "{}: key `lists` ({})",
            config.display(),
            dir.path().join("gone.toml").display()
        ),
        "{line}"
    );
}
