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
        "[[list]]\naddress = \"team@lists.example.org\"\nnonmember_action = \"reject\"\naccept_nonmembers = [\"^(?!x)y@\"]\n\n[[list]]\naddress = \"open@lists.example.org\"\n",
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
    assert!(
        out.contains("warning: team@lists.example.org: accept pattern ^(?!x)y@"),
        "{out}"
    );
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
    assert!(text(&o).contains("option --listen: "), "{}", text(&o));
    let o = run(&[
        "--lists",
        "/dev/null",
        "--socket-mode",
        "8",
        "--check-config",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("option --socket-mode: "), "{}", text(&o));
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
