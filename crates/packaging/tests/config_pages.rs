//! The section-5 pages (`crates/*/dist/man/*.5`, written by hand) describe
//! every key the configuration structs accept, with a default: the keys
//! are asked of the parsers themselves (an unknown key makes serde list
//! the ones it expects), so a key added to a struct and not to its page
//! fails here.

use std::path::{Path, PathBuf};

fn page(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys serde expected, from the error an unknown key gives:
/// "unknown field `zz_unknown`, expected one of `a`, `b`, ...".
fn expected_keys(error: &str) -> Vec<String> {
    let at = error
        .find("expected one of ")
        .or_else(|| error.find("expected `"))
        .unwrap_or_else(|| panic!("no expected keys in: {error}"));
    let keys: Vec<String> = error[at..]
        .lines()
        .next()
        .unwrap()
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "no keys in: {error}");
    keys
}

/// Every key is described as a term of its own: `\fBkey\fR = default`.
fn assert_documented(page_name: &str, text: &str, keys: &[String]) {
    for key in keys {
        let term = format!("\\fB{key}\\fR = ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&term))
            .unwrap_or_else(|| panic!("{page_name}: no `.TP` term `{term}...` for key `{key}`"));
        assert!(
            line.len() > term.len(),
            "{page_name}: key `{key}` has no default: {line}"
        );
    }
}

fn mailman_config_keys(toml: &str) -> Vec<String> {
    let e = mailman_milter::config::Config::parse(toml, &PathBuf::from("t.toml"))
        .expect_err("an unknown key is refused");
    expected_keys(&e.to_string())
}

fn lists_keys(toml: &str) -> Vec<String> {
    let e = mailman_milter::ListsData::parse(toml, "lists.toml")
        .expect_err("an unknown key is refused");
    expected_keys(&e.to_string())
}

#[test]
fn pgp_milter_toml_describes_every_key() {
    let text = page("pgp-milter/dist/man/pgp-milter.toml.5");
    let e = pgp_milter::Config::parse("zz_unknown = 1\n", Path::new("t.toml"))
        .expect_err("an unknown key is refused");
    let mut keys = expected_keys(&e.to_string());
    assert!(keys.contains(&"require".to_owned()), "{keys:?}");
    // `server` is the [server] table; its keys come next.
    keys.retain(|k| k != "server");
    keys.extend(minimilter::daemon::SERVER_KEYS.map(str::to_owned));
    assert_documented("pgp-milter.toml(5)", &text, &keys);
    assert!(text.contains(".SH [server]"));
}

#[test]
fn mailman_milter_toml_describes_every_key() {
    let text = page("mailman-milter/dist/man/mailman-milter.toml.5");
    let mut keys = mailman_config_keys("zz_unknown = 1\n");
    assert!(keys.contains(&"backend".to_owned()), "{keys:?}");
    // Tables with sections of their own; the top-level socket keys of older
    // files are described under [server], where they belong now.
    keys.retain(|k| {
        !["server", "mailman", "socket_mode", "socket_group", "listen"].contains(&k.as_str())
    });
    keys.extend(mailman_config_keys("[mailman]\nzz_unknown = 1\n"));
    keys.extend(mailman_config_keys(
        "[list_overrides.\"a@lists.example.org\"]\nzz_unknown = 1\n",
    ));
    keys.extend(minimilter::daemon::SERVER_KEYS.map(str::to_owned));
    // list_overrides' own keys are described in its paragraph.
    let overrides = ["refuse_hold", "reject_text"];
    keys.retain(|k| !overrides.contains(&k.as_str()));
    assert_documented("mailman-milter.toml(5)", &text, &keys);
    assert_documented(
        "mailman-milter.toml(5)",
        &text,
        &overrides.map(str::to_owned),
    );
    for section in [".SH [mailman]", ".SH [server]"] {
        assert!(text.contains(section), "{section}");
    }
}

#[test]
fn mailman_milter_lists_toml_describes_every_key() {
    let text = page("mailman-milter/dist/man/mailman-milter-lists.toml.5");
    let top = lists_keys("zz_unknown = 1\n");
    assert_eq!(top, ["list", "user"], "the page has a section for each");
    for section in [".SH [[list]]", ".SH [[user]]"] {
        assert!(text.contains(section), "{section}");
    }
    let mut keys = lists_keys("[[list]]\naddress = \"a@lists.example.org\"\nzz_unknown = 1\n");
    keys.extend(lists_keys("[[user]]\naddresses = []\nzz_unknown = 1\n"));
    assert_documented("mailman-milter-lists.toml(5)", &text, &keys);
    // The header_matches tables' keys are described in its paragraph.
    for key in lists_keys(
        "[[list]]\naddress = \"a@lists.example.org\"\n[[list.header_matches]]\nheader = \"x\"\npattern = \"y\"\nzz_unknown = 1\n",
    ) {
        assert!(
            text.contains(&format!("\\fB{key}\\fR")),
            "header_matches key {key}"
        );
    }
}

/// The configuration file a package puts in /etc says every key is
/// optional and shows the defaults as comments: each key the parser accepts
/// appears there, set or commented out (`key = ` or `# key = `), so an
/// administrator reading the file, not the page, still sees every setting.
fn assert_shown(file_name: &str, text: &str, keys: &[String]) {
    for key in keys {
        let shown = text.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("[{key}"))
        });
        assert!(shown, "{file_name}: key `{key}` is not shown");
    }
    // [server] is the last table, and the file says why: whatever an
    // administrator appends lands in it.
    let last_table = text.lines().rfind(|l| l.starts_with('['));
    assert_eq!(last_table, Some("[server]"), "{file_name}");
    assert!(text.contains("# [server] stays last"), "{file_name}");
}

#[test]
fn packaged_pgp_milter_config_shows_every_key() {
    let text = page("pgp-milter/dist/debian/config.toml");
    let e = pgp_milter::Config::parse("zz_unknown = 1\n", Path::new("t.toml"))
        .expect_err("an unknown key is refused");
    let mut keys = expected_keys(&e.to_string());
    // The top-level socket keys of older files belong in [server].
    keys.retain(|k| {
        !["listen", "socket_mode", "socket_group", "max_connections"].contains(&k.as_str())
    });
    keys.extend(minimilter::daemon::SERVER_KEYS.map(str::to_owned));
    assert_shown("pgp-milter/dist/debian/config.toml", &text, &keys);
    // The packaged file is the daemon's real configuration: it loads.
    pgp_milter::Config::parse(&text, Path::new("config.toml")).expect("it loads");
}

#[test]
fn packaged_mailman_milter_config_shows_every_key() {
    let text = page("mailman-milter/dist/debian/config.toml");
    let mut keys = mailman_config_keys("zz_unknown = 1\n");
    keys.retain(|k| !["listen", "socket_mode", "socket_group"].contains(&k.as_str()));
    keys.extend(mailman_config_keys("[mailman]\nzz_unknown = 1\n"));
    keys.extend(mailman_config_keys(
        "[list_overrides.\"a@lists.example.org\"]\nzz_unknown = 1\n",
    ));
    keys.extend(minimilter::daemon::SERVER_KEYS.map(str::to_owned));
    assert_shown("mailman-milter/dist/debian/config.toml", &text, &keys);
}

/// The docs name the milters' sockets as the packages make them: a README
/// path under `/var/spool/postfix/<name>/` (the packaged socket directory)
/// or a chrooted `unix:<name>/...` is the packaged socket, which the
/// packaged config.toml listens on. An administrator of the packaged
/// service copies these lines into main.cf; a different file name there
/// means 451 for every message.
#[test]
fn the_readmes_name_the_packaged_sockets() {
    let docs = [
        "README.md",
        "crates/pgp-milter/README.md",
        "crates/mailman-milter/README.md",
    ];
    for name in ["pgp-milter", "mailman-milter"] {
        let packaged = format!("/var/spool/postfix/{name}/{name}.sock");
        let config = page(&format!("{name}/dist/debian/config.toml"));
        assert!(
            config.contains(&format!("listen = \"unix:{packaged}\"")),
            "{name}: the packaged config listens on {packaged}"
        );
        let mut seen = 0;
        for doc in docs {
            let text = page(&format!("../{doc}"));
            for prefix in [
                format!("/var/spool/postfix/{name}/"),
                format!("unix:{name}/"),
            ] {
                for (at, _) in text.match_indices(&prefix) {
                    let path: String = text[at + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || "._-/".contains(*c))
                        .collect();
                    // The directory alone (`install -d`, the package table).
                    if !path.is_empty() {
                        assert_eq!(path, format!("{name}.sock"), "{doc}: {prefix}{path}");
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen >= 2, "{name}: the READMEs show its socket");
    }
}
