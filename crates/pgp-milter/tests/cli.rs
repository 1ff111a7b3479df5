//! The `pgp-milter` command line: `--check-config` and configuration errors.

mod support;

use support::pgp_milter;

#[test]
fn check_config_with_the_embedded_defaults() {
    let (ok, out, err) = pgp_milter(&["--check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(
        out.contains("listen = [\"inet:127.0.0.1:8894\"]\n"),
        "{out}"
    );
    // Settings print as they are spelled in the file.
    assert!(out.contains("require = \"encrypted\"\n"), "{out}");
    assert!(out.contains("bounces = \"refuse\"\n"), "{out}");
    assert!(out.contains("recipient_key_scope = \"any\"\n"), "{out}");
    assert!(out.contains("hidden_recipients = \"reject\"\n"), "{out}");
    assert!(out.contains("unknown_recipient = \"reject\"\n"), "{out}");
    assert!(out.contains("recipient_delimiter = \"+\"\n"), "{out}");
    assert!(out.contains("max_bounce_bytes = 131072\n"), "{out}");
}

#[test]
fn check_config_reads_the_file_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgp-milter.toml");
    std::fs::write(
        &file,
        "listen = [\"inet:127.0.0.1:9999\"]\nrequire = \"encrypted-or-signed\"\n\
         enforce_domains = [\"example.org\"]\nbounces = \"accept-reports\"\n\
         max_bounce_bytes = 65536\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (ok, out, err) = pgp_milter(&["--config", f, "--check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("listen = [\"inet:127.0.0.1:9999\"]"), "{out}");
    assert!(out.contains("require = \"encrypted-or-signed\"\n"), "{out}");
    assert!(out.contains("bounces = \"accept-reports\"\n"), "{out}");
    assert!(out.contains("max_bounce_bytes = 65536\n"), "{out}");
    let (ok, out, err) = pgp_milter(&[
        "--config",
        f,
        "--listen",
        "unix:/tmp/x.sock",
        "--check-config",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("listen = [\"unix:/tmp/x.sock\"]"), "{out}");
}

#[test]
fn bad_configuration_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let f = file.to_str().unwrap();
    for (text, needle) in [
        ("max_body = 5\n", "unknown field `max_body`"),
        ("require = \"maybe\"\n", "maybe"),
        ("bounces = \"accept\"\n", "bounces"),
        ("max_bounce_bytes = 100\n", "key `max_bounce_bytes`"),
        ("reject_reply = \"250 ok\"\n", "key `reject_reply`"),
        (
            "exempt_recipients = [\"x\"]\n",
            "key `exempt_recipients[0]`",
        ),
        // An empty list is not silently the default socket.
        ("listen = []\n", "key `listen`: is empty"),
        // Caught by --check-config, not only when the daemon starts.
        (
            "socket_group = \"pgp-milter-no-such-group\"\n",
            "key `socket_group`",
        ),
        ("recipient_delimiter = \"@\"\n", "key `recipient_delimiter`"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (ok, _, err) = pgp_milter(&["--config", f, "--check-config"]);
        assert!(!ok, "{text} must be refused");
        assert!(err.contains(f), "{text}: file not named: {err}");
        assert!(err.contains(needle), "{text}: {err}");
    }
    let (ok, _, err) = pgp_milter(&["--config", "/nonexistent/pgp.toml", "--check-config"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/pgp.toml"), "{err}");
    let (ok, _, err) = pgp_milter(&[
        "--socket-group",
        "pgp-milter-no-such-group",
        "--check-config",
    ]);
    assert!(!ok);
    assert_eq!(
        err,
        "pgp-milter: --socket-group pgp-milter-no-such-group: no such group\n"
    );
    let (ok, _, err) = pgp_milter(&["--listen", "tcp:1", "--check-config"]);
    assert!(!ok);
    assert!(err.contains("--listen tcp:1"), "{err}");
}

/// The IPv6 syntax `--help` and the README show is the one the socket
/// parser accepts.
#[test]
fn the_documented_ipv6_listen_syntax_is_accepted() {
    let (ok, help, err) = pgp_milter(&["--help"]);
    assert!(ok, "{err}");
    assert!(help.contains("inet6:[::1]:8894"), "{help}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("`inet6:[::1]:8894`"), "README");
    let (ok, out, err) = pgp_milter(&["--listen", "inet6:[::1]:8894", "--check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("listen = [\"inet6:8894@::1\"]\n"), "{out}");
    let (ok, out, err) = pgp_milter(&["--listen", "inet6:8894@::1", "--check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("listen = [\"inet6:"), "{out}");
}

#[test]
fn check_config_warns_about_settings_that_do_nothing_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let file = dir.path().join("pgp-milter.toml");
    let f = file.to_str().unwrap();
    // A string for `listen`, as mailman-milter's README shows it.
    std::fs::write(
        &file,
        "listen = \"inet:127.0.0.1:9998\"\nrecipient_key_scope = \"every\"\n\
         bounces = \"accept-reports\"\nmax_body_bytes = 65536\n",
    )
    .unwrap();
    let (ok, out, err) = pgp_milter(&["--config", f, "--check-config"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("listen = [\"inet:127.0.0.1:9998\"]\n"),
        "{out}"
    );
    assert!(
        err.contains(
            "pgp-milter: warning: `recipient_key_scope` has no effect without \
             `require_recipient_key = true`"
        ),
        "{err}"
    );
    // Reports stream and are never kept whole, so max_body_bytes below
    // max_bounce_bytes is no conflict: no warning about it.
    assert!(!err.contains("max_bounce_bytes"), "{err}");
    // An empty keyring with require_recipient_key: usable, but loudly.
    std::fs::write(
        &file,
        "keyring_dir = \"keys\"\nrequire_recipient_key = true\n",
    )
    .unwrap();
    let (ok, _, err) = pgp_milter(&["--config", f, "--check-config"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("EVERY message to an enforced recipient will be refused"),
        "{err}"
    );
    // No warnings for the defaults.
    let (ok, _, err) = pgp_milter(&["--check-config"]);
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "{err}");
}
