//! The Debian packages, installed into this machine as an administrator
//! would (`apt-get install ./*.deb`), consumed from `target/debian/` where
//! `scripts/package.sh` (run by `scripts/test.sh` just before the tests)
//! builds them. This test never builds anything.
//!
//! 1. the packages exist (built by package.sh) and 2. pass lintian with no
//!    error and no warning that is not overridden with its reason;
//! 3. `apt-get install ./*.deb`;
//! 4. the binaries are on PATH, `man -w` finds every page, the conffiles,
//!    completions, users and socket directories are in place, and
//!    `systemd-analyze verify` accepts the units;
//! 5. each daemon starts from its unit's own `ExecStartPre`/`ExecStart`
//!    lines, as the unit's `User=`/`Group=` (no init system needed), and
//!    the check run again while it serves fails on the socket in use alone
//!    (as the packaged config.toml says);
//! 6. a real Postfix reaches them at the packaged socket paths and
//!    delivers what they pass and refuses what they refuse;
//! 7. `apt-get remove` keeps the configuration, `apt-get purge` removes it
//!    and the socket directories, and keeps the system users.
//!
//! And an upgrade from version N to N+1 (the same package repacked with a
//! higher version and a changed conffile) keeps an administrator's change
//! to a conffile.
//!
//! The Postfix is a private instance (testkit, non-chroot smtpd) whose
//! `smtpd_milters` name the packaged sockets by their absolute paths,
//! `unix:/var/spool/postfix/<name>/<name>.sock`: the very files a
//! chrooted smtpd of the system instance reaches as
//! `unix:<name>/<name>.sock` (the chroot is /var/spool/postfix), reached
//! with the same credentials (user and group postfix). The system
//! instance itself is left alone: it is not configured on a test machine
//! and must not be started by tests.
//!
//! The machine is changed: packages are installed and purged (the system
//! users pgp-milter and mailman-milter stay, as Debian policy says). Each
//! test purges first, so a run after a failed one starts clean. A
//! policy-rc.d forbidding service starts is in place while packages are
//! installed (and removed again if this test created it), so that a
//! machine running systemd does not start the services under the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use testkit::{MilterProcess, Postfix, SmtpClient, SmtpService};

/// The packages, by package name.
const PACKAGES: [&str; 3] = ["pgp-milter", "mailman-milter", "minimilter"];
/// The daemons: package, binary, unit and system user share the name.
const DAEMONS: [&str; 2] = ["pgp-milter", "mailman-milter"];

/// Both tests install into the one machine: one at a time.
static MACHINE: Mutex<()> = Mutex::new(());

fn machine() -> MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|e| e.into_inner())
}

fn socket_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/spool/postfix/{name}/{name}.sock"))
}

/// The .deb of each package in target/debian/ (exactly one each).
fn debs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debian");
    let entries: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the packages first with scripts/package.sh",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    PACKAGES
        .iter()
        .map(|pkg| {
            let found: Vec<&PathBuf> = entries
                .iter()
                .filter(|p| {
                    let f = p.file_name().unwrap().to_string_lossy();
                    f.strip_prefix(pkg)
                        .is_some_and(|rest| rest.starts_with('_'))
                })
                .collect();
            assert_eq!(
                found.len(),
                1,
                "one {pkg}_*.deb in {} (scripts/package.sh builds them): {found:?}",
                dir.display()
            );
            fs::canonicalize(found[0]).unwrap()
        })
        .collect()
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/install-test-deps.sh)"))
}

/// Runs `cmd`, asserts it succeeds, returns its standard output.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(script: &str) -> String {
    run(Command::new("sh").arg("-c").arg(script))
}

fn apt_get(args: &[&str]) -> String {
    run(Command::new("apt-get")
        .args(["-y", "-q", "--no-install-recommends"])
        // What an unattended upgrade does with a conffile both sides
        // changed: keep the administrator's, write the new one as
        // .dpkg-dist.
        .args([
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `ii`, `rc`, ... or "" for a package dpkg does not know.
fn status(pkg: &str) -> String {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", pkg]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn version(pkg: &str) -> String {
    run(Command::new("dpkg-query").args(["-W", "-f=${Version}", pkg]))
}

/// Purges whatever of the packages dpkg knows (a clean start).
fn purge_all() {
    let known: Vec<&str> = PACKAGES
        .into_iter()
        .filter(|p| !status(p).is_empty() && !status(p).starts_with("un"))
        .collect();
    if !known.is_empty() {
        let mut args = vec!["purge"];
        args.extend(known);
        apt_get(&args);
    }
    for pkg in PACKAGES {
        let s = status(pkg);
        assert!(s.is_empty() || s.starts_with("un"), "{pkg} left as {s:?}");
    }
}

/// /usr/sbin/policy-rc.d answering 101 (action forbidden) while it lives,
/// unless one is already there.
struct NoServiceStarts(bool);

impl NoServiceStarts {
    fn new() -> Self {
        let path = Path::new("/usr/sbin/policy-rc.d");
        if path.exists() {
            return NoServiceStarts(false);
        }
        fs::write(path, "#!/bin/sh\nexit 101\n").unwrap();
        sh("chmod 0755 /usr/sbin/policy-rc.d");
        NoServiceStarts(true)
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.0 {
            let _ = fs::remove_file("/usr/sbin/policy-rc.d");
        }
    }
}

/// Purges the packages when dropped, so a failing test leaves the machine
/// as it found it (a passing one has purged already: then a no-op).
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("apt-get")
                .args(["-y", "-q", "purge"])
                .args(PACKAGES.into_iter().filter(|p| {
                    let s = status(p);
                    !s.is_empty() && !s.starts_with("un")
                }))
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
    }
}

/// What each test holds while it changes the machine: the machine itself
/// (one test at a time), a policy-rc.d forbidding service starts, and a
/// purge should the test fail. Taking it purges what an earlier run left.
struct CleanMachine {
    debs: Vec<PathBuf>,
    // Dropped in this order: the purge (on failure), then the policy-rc.d,
    // then the machine's lock.
    _purge_on_failure: PurgeOnDrop,
    _no_starts: NoServiceStarts,
    _machine: MutexGuard<'static, ()>,
}

impl CleanMachine {
    fn take() -> CleanMachine {
        let machine = machine();
        let debs = debs();
        let no_starts = NoServiceStarts::new();
        purge_all();
        CleanMachine {
            debs,
            _purge_on_failure: PurgeOnDrop,
            _no_starts: no_starts,
            _machine: machine,
        }
    }
}

/// Names step `n` of the module's list on standard error (shown with a
/// failure), so a failing run says how far it got.
fn step(n: u32, what: &str) {
    eprintln!("== step {n}: {what}");
}

/// The value of `key=` in a unit file (the first such line).
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    unit.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
        .to_owned()
}

fn installed_unit(name: &str) -> (PathBuf, String) {
    let list = run(Command::new("dpkg").args(["-L", name]));
    let path = list
        .lines()
        .find(|l| l.ends_with(&format!("/systemd/system/{name}.service")))
        .unwrap_or_else(|| panic!("{name} installs no {name}.service:\n{list}"));
    (PathBuf::from(path), fs::read_to_string(path).unwrap())
}

/// `command line` of the unit run as its `User=` and `Group=`
/// (setpriv from util-linux; no supplementary groups, as systemd gives).
fn as_unit_user(unit: &str, command_line: &str) -> Command {
    let user = unit_value(unit, "User");
    let group = unit_value(unit, "Group");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--clear-groups")
        .arg("--");
    // The packaged units' command lines have no quoting or variables.
    assert!(
        !command_line.contains(['"', '\'', '$', '%']),
        "{command_line}"
    );
    cmd.args(command_line.split_whitespace());
    cmd.env_clear().env("RUST_LOG", "info");
    cmd
}

/// `ls -l`-like: owner, group and octal mode.
fn owner_group_mode(path: &Path) -> String {
    sh(&format!("stat -c '%U %G %a' '{}'", path.display()))
        .trim()
        .to_owned()
}

fn assert_installed_layout() {
    // The programs are on PATH.
    for (program, path) in [
        ("pgp-milter", "/usr/sbin/pgp-milter"),
        ("mailman-milter", "/usr/sbin/mailman-milter"),
        ("minimilter", "/usr/bin/minimilter"),
    ] {
        let found = sh(&format!(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v {program}"
        ));
        assert_eq!(found.trim(), path);
        let v = run(Command::new(path).arg("--version"));
        assert!(
            v.contains(env!("CARGO_PKG_VERSION")),
            "{program} --version: {v}"
        );
    }
    // Every man page is found by man.
    for (section, page) in [
        ("8", "pgp-milter"),
        ("5", "pgp-milter.toml"),
        ("8", "mailman-milter"),
        ("5", "mailman-milter.toml"),
        ("5", "mailman-milter-lists.toml"),
        ("8", "mailman-milter-export"),
        ("1", "minimilter"),
        ("1", "minimilter-check"),
        ("1", "minimilter-bench"),
        ("1", "minimilter-record"),
        ("1", "minimilter-replay"),
    ] {
        let path = run(Command::new("man").args(["-w", section, page]));
        assert_eq!(
            path.trim(),
            format!("/usr/share/man/man{section}/{page}.{section}.gz")
        );
    }
    let path = run(Command::new("man").args(["-w", "pgp-milter"]));
    assert_eq!(path.trim(), "/usr/share/man/man8/pgp-milter.8.gz");
    // The page renders, with the options from the clap definition.
    let page = run(Command::new("man")
        .args(["-P", "cat", "8", "pgp-milter"])
        .env("MANWIDTH", "80"));
    assert!(page.contains("--check-config"), "{page}");

    // Conffiles, registered as such and in place.
    for (pkg, files) in [
        ("pgp-milter", &["/etc/pgp-milter/config.toml"][..]),
        (
            "mailman-milter",
            &[
                "/etc/mailman-milter/config.toml",
                "/etc/mailman-milter/lists.toml",
            ][..],
        ),
    ] {
        let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}\n", pkg]));
        for f in files {
            assert!(
                conffiles
                    .lines()
                    .any(|l| l.trim().starts_with(&format!("{f} "))),
                "{pkg}: {f} is not a conffile: {conffiles}"
            );
            assert!(Path::new(f).is_file(), "{f}");
        }
    }
    // Completions, copyright and changelog of each package.
    for pkg in PACKAGES {
        let program = pkg;
        for f in [
            format!("/usr/share/bash-completion/completions/{program}"),
            format!("/usr/share/zsh/vendor-completions/_{program}"),
            format!("/usr/share/fish/vendor_completions.d/{program}.fish"),
            format!("/usr/share/doc/{pkg}/copyright"),
            format!("/usr/share/doc/{pkg}/changelog.Debian.gz"),
        ] {
            assert!(Path::new(&f).is_file(), "{pkg}: {f} missing");
        }
    }
    // The transcript format record's man page points to.
    let format = sh("zcat /usr/share/doc/minimilter/transcript.md.gz");
    assert!(format.contains("JSON Lines"), "{format}");
    let page = sh("zcat /usr/share/man/man1/minimilter-record.1.gz");
    assert!(
        page.contains("/usr/share/doc/minimilter/transcript.md.gz"),
        "{page}"
    );
    let bash = fs::read_to_string("/usr/share/bash-completion/completions/pgp-milter").unwrap();
    assert!(bash.contains("--check-config"), "{bash}");

    for name in DAEMONS {
        // The system user, and the socket directory in Postfix's chroot.
        let passwd = sh(&format!("getent passwd {name}"));
        assert!(passwd.starts_with(&format!("{name}:")), "{passwd}");
        let dir = socket_path(name).parent().unwrap().to_owned();
        assert_eq!(owner_group_mode(&dir), format!("{name} postfix 750"));
        // The unit: enabled by the package (the symlink is made even
        // without a running systemd), accepted by systemd-analyze.
        let (path, unit) = installed_unit(name);
        assert!(
            Path::new(&format!(
                "/etc/systemd/system/multi-user.target.wants/{name}.service"
            ))
            .exists(),
            "{name}.service is not enabled"
        );
        assert_eq!(unit_value(&unit, "User"), name);
        // Started through deb-systemd-invoke (which asks policy-rc.d) on
        // install, restarted on upgrade; only where systemd runs.
        let postinst = fs::read_to_string(format!("/var/lib/dpkg/info/{name}.postinst")).unwrap();
        for needle in [
            format!("deb-systemd-helper enable {name}.service"),
            "_dh_action=restart".to_owned(),
            format!("deb-systemd-invoke $_dh_action {name}.service"),
        ] {
            assert!(postinst.contains(&needle), "{name}.postinst: no {needle}");
        }
        assert!(unit_value(&unit, "ExecStartPre").ends_with("--check-config"));
        let verify = output(Command::new("systemd-analyze").arg("verify").arg(&path));
        assert!(
            verify.status.success(),
            "systemd-analyze verify {}: {}",
            path.display(),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}

/// The daemons started from their units, as their users.
fn start_daemons(logs: &Path) -> Vec<MilterProcess> {
    DAEMONS
        .iter()
        .map(|name| {
            let (_, unit) = installed_unit(name);
            // ExecStartPre: the configuration check, as shipped.
            let check = run(&mut as_unit_user(&unit, &unit_value(&unit, "ExecStartPre")));
            assert!(check.contains("configuration OK"), "{name}: {check}");
            let socket = socket_path(name);
            let daemon = MilterProcess::start(
                as_unit_user(&unit, &unit_value(&unit, "ExecStart")),
                &socket,
                logs.join(format!("{name}.log")),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                owner_group_mode(&socket),
                format!("{name} postfix 660"),
                "{name}'s socket"
            );
            daemon
        })
        .collect()
}

/// An OpenPGP message encrypted to a fresh key of bob@example.org, armored.
fn encrypted_for_bob(dir: &Path) -> String {
    let home = dir.join("gnupg");
    fs::create_dir_all(&home).unwrap();
    sh(&format!("chmod 700 '{}'", home.display()));
    let gpg = |args: &[&str]| {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &home)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args);
        c
    };
    run(&mut gpg(&[
        "--quick-gen-key",
        "Bob <bob@example.org>",
        "future-default",
        "default",
        "never",
    ]));
    let plain = dir.join("plain.txt");
    fs::write(&plain, "Hello Bob, this is secret.\n").unwrap();
    run(&mut gpg(&[
        "--trust-model",
        "always",
        "--armor",
        "--encrypt",
        "--recipient",
        "bob@example.org",
        "--output",
        "-",
        plain.to_str().unwrap(),
    ]))
}

fn message(from: &str, to: &str, subject: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    let text = format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\nMessage-ID: <{subject}@client.example>\n\
         {extra_headers}\n{body}"
    );
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Sends one message (see [`message`]) in a session of its own; the first
/// refusal, or the DATA reply.
fn send(
    port: u16,
    from: &str,
    to: &str,
    subject: &str,
    extra_headers: &str,
    body: &str,
) -> testkit::Reply {
    let message = message(from, to, subject, extra_headers, body);
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let r = c.mail(&format!("<{from}>")).unwrap();
    if !r.is_positive() {
        return r;
    }
    let r = c.rcpt(&format!("<{to}>")).unwrap();
    if !r.is_positive() {
        return r;
    }
    let r = c.data(&message).unwrap();
    let _ = c.quit();
    r
}

fn behind_postfix(work: &Path, daemons: &[MilterProcess]) {
    let logs = || {
        daemons
            .iter()
            .map(|d| d.log_text())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let pf = Postfix::prepare()
        .unwrap()
        .user("team")
        .service(
            SmtpService::new("pgp")
                .with_milters(format!("unix:{}", socket_path("pgp-milter").display())),
        )
        .service(
            SmtpService::new("mailman")
                .with_milters(format!("unix:{}", socket_path("mailman-milter").display())),
        )
        .start()
        .unwrap();

    // pgp-milter: plain text refused, OpenPGP delivered.
    let armored = encrypted_for_bob(work);
    let r = send(
        pf.port("pgp"),
        "alice@client.example",
        "bob@example.org",
        "plain-1",
        "",
        "Hello in the clear.\n",
    );
    assert_eq!(r.code, 550, "plain text: {r:?}\n{}", logs());
    assert!(
        r.text().contains("5.7.1 Only OpenPGP-encrypted mail"),
        "{r:?}"
    );
    let r = send(
        pf.port("pgp"),
        "alice@client.example",
        "bob@example.org",
        "encrypted-1",
        "MIME-Version: 1.0\nContent-Type: multipart/encrypted; \
         protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\n",
        &format!(
            "--b1\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n\
             --b1\nContent-Type: application/octet-stream\n\n{armored}\n--b1--\n"
        ),
    );
    assert_eq!(r.code, 250, "PGP/MIME: {r:?}\n{}", logs());

    // mailman-milter: a member's post delivered, a non-member's refused.
    let r = send(
        pf.port("mailman"),
        "alice@example.org",
        "team@example.org",
        "member-1",
        "",
        "From a member.\n",
    );
    assert_eq!(r.code, 250, "member: {r:?}\n{}", logs());
    let r = send(
        pf.port("mailman"),
        "mallory@stranger.example",
        "team@example.org",
        "stranger-1",
        "",
        "From a non-member.\n",
    );
    assert_eq!(r.code, 550, "non-member: {r:?}\n{}", logs());
    assert!(r.text().contains("not allowed to post"), "{r:?}");

    let bob = pf
        .wait_for_delivery("bob", 1, Duration::from_secs(30))
        .unwrap();
    assert!(bob.iter().any(|m| m.contains("encrypted-1")), "{bob:?}");
    assert!(!bob.iter().any(|m| m.contains("plain-1")));
    let team = pf
        .wait_for_delivery("team", 1, Duration::from_secs(30))
        .unwrap();
    assert!(team.iter().any(|m| m.contains("member-1")), "{team:?}");
    assert!(!team.iter().any(|m| m.contains("stranger-1")));
    pf.stop().unwrap();
}

#[test]
#[ignore = "needs root, dpkg, apt-get, lintian, postfix, systemd-analyze, gpg, setpriv and the .debs of scripts/package.sh"]
fn packages_pass_lintian_install_serve_postfix_and_purge() {
    step(1, "the packages exist (scripts/package.sh built them)");
    let clean = CleanMachine::take();
    let debs = &clean.debs;

    step(2, "lintian: no error, no warning without an override");
    let lintian = output(
        Command::new("lintian")
            .args(["--fail-on", "error,warning", "--info"])
            .args(debs),
    );
    assert!(
        lintian.status.success(),
        "lintian:\n{}{}",
        String::from_utf8_lossy(&lintian.stdout),
        String::from_utf8_lossy(&lintian.stderr)
    );

    step(3, "install as an administrator would");
    let mut args = vec!["install".to_owned()];
    args.extend(debs.iter().map(|d| d.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    apt_get(&args);
    for pkg in PACKAGES {
        assert_eq!(status(pkg), "ii", "{pkg}");
    }

    step(4, "what is installed");
    assert_installed_layout();

    step(
        5,
        "each daemon from its unit's own command lines, as its user",
    );
    // The list the mailman-milter test uses goes into the shipped lists file.
    let lists = "/etc/mailman-milter/lists.toml";
    let mut text = fs::read_to_string(lists).unwrap();
    text.push_str(
        "\n[[list]]\naddress = \"team@example.org\"\nnonmember_action = \"reject\"\n\
         members = [\"alice@example.org\"]\n",
    );
    fs::write(lists, text).unwrap();
    let work = tempfile::tempdir().unwrap();
    let daemons = start_daemons(work.path());
    // What the packaged config.toml and the section-5 pages tell an
    // administrator about checking a change while the service runs: the
    // check as the unit's user exits 1, and its only error is the socket
    // in use.
    for name in DAEMONS {
        let (_, unit) = installed_unit(name);
        let check = output(&mut as_unit_user(&unit, &unit_value(&unit, "ExecStartPre")));
        let stderr = String::from_utf8_lossy(&check.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains(": warning: "))
            .collect();
        assert_eq!(check.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(
            errors,
            [format!(
                "{name}: /etc/{name}/config.toml: [server] listen = \"unix:{}\": another milter \
                 is already listening on this socket",
                socket_path(name).display()
            )],
            "{name}"
        );
    }

    step(6, "a real Postfix at the packaged sockets");
    behind_postfix(work.path(), &daemons);
    drop(daemons);

    step(
        7,
        "remove keeps the configuration; purge removes it, keeps the users",
    );
    apt_get(&["remove", "pgp-milter", "mailman-milter", "minimilter"]);
    for name in DAEMONS {
        assert_eq!(status(name), "rc", "{name} removed, config kept");
        assert!(!Path::new(&format!("/usr/sbin/{name}")).exists());
        assert!(Path::new(&format!("/etc/{name}/config.toml")).is_file());
    }
    assert!(
        fs::read_to_string(lists)
            .unwrap()
            .contains("team@example.org")
    );
    assert!(!Path::new("/usr/bin/minimilter").exists());
    // (minimilter has no conffiles: remove left nothing of it to purge.)
    purge_all();
    for name in DAEMONS {
        let s = status(name);
        assert!(s.is_empty() || s.starts_with("un"), "{name}: {s}");
        assert!(!Path::new(&format!("/etc/{name}")).exists(), "/etc/{name}");
        assert!(!socket_path(name).parent().unwrap().exists());
        let passwd = sh(&format!("getent passwd {name} || true"));
        assert!(passwd.starts_with(&format!("{name}:")), "user {name} kept");
    }
}

/// `deb` repacked as version `new_version`, with `edit` applied to its
/// file tree (md5sums rewritten): version N+1 of the same package.
fn repack(deb: &Path, new_version: &str, dir: &Path, edit: impl Fn(&Path)) -> PathBuf {
    let tree = dir.join("tree");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(dir).unwrap();
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let old = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_owned();
    fs::write(
        &control,
        text.replace(
            &format!("Version: {old}"),
            &format!("Version: {new_version}"),
        ),
    )
    .unwrap();
    edit(&tree);
    sh(&format!(
        "cd '{}' && find . -type f ! -path './DEBIAN/*' -printf '%P\\0' | sort -z \
         | xargs -0 md5sum > DEBIAN/md5sums",
        tree.display()
    ));
    let out = dir.join(format!(
        "{}-{new_version}.deb",
        deb.file_stem().unwrap().to_string_lossy()
    ));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out));
    out
}

#[test]
#[ignore = "needs root, dpkg, apt-get and the .debs of scripts/package.sh"]
fn upgrade_keeps_a_locally_modified_conffile() {
    let clean = CleanMachine::take();
    let work = tempfile::tempdir().unwrap();

    let pgp = &clean.debs[0];
    let mailman = &clean.debs[1];
    step(1, "install version N");
    apt_get(&["install", pgp.to_str().unwrap(), mailman.to_str().unwrap()]);
    let n = version("pgp-milter");

    // The administrator's changes: a setting in pgp-milter's configuration
    // (which N+1 changes too) and a list in mailman-milter's lists file
    // (which N+1 leaves as it was).
    let config = "/etc/pgp-milter/config.toml";
    let local = fs::read_to_string(config)
        .unwrap()
        .replace("# max_connections = 1024", "max_connections = 64");
    assert!(local.contains("\nmax_connections = 64"));
    fs::write(config, &local).unwrap();
    let lists = "/etc/mailman-milter/lists.toml";
    let local_lists = format!(
        "{}\n[[list]]\naddress = \"team@lists.example.org\"\n",
        fs::read_to_string(lists).unwrap()
    );
    fs::write(lists, &local_lists).unwrap();

    step(2, "upgrade to N+1, whose conffile changed too");
    let next = format!("{n}+upgrade1");
    let upstream_note = "# (a comment version N+1 adds)\n";
    let pgp_next = repack(pgp, &next, &work.path().join("pgp"), |tree| {
        let f = tree.join("etc/pgp-milter/config.toml");
        let mut text = fs::read_to_string(&f).unwrap();
        text.push_str(upstream_note);
        fs::write(f, text).unwrap();
    });
    let mailman_next = repack(mailman, &next, &work.path().join("mailman"), |_| {});
    apt_get(&[
        "install",
        pgp_next.to_str().unwrap(),
        mailman_next.to_str().unwrap(),
    ]);
    assert_eq!(version("pgp-milter"), next);
    assert_eq!(version("mailman-milter"), next);

    step(
        3,
        "the administrator's files are kept, the new one is beside",
    );
    // Kept: the administrator's file, byte for byte; the new one beside it.
    assert_eq!(fs::read_to_string(config).unwrap(), local);
    let dist = fs::read_to_string(format!("{config}.dpkg-dist")).unwrap();
    assert!(dist.ends_with(upstream_note), "{dist}");
    assert_eq!(fs::read_to_string(lists).unwrap(), local_lists);
    assert!(!Path::new(&format!("{lists}.dpkg-dist")).exists());
    // And the upgraded daemon accepts it.
    let check =
        run(Command::new("/usr/sbin/pgp-milter").args(["--config", config, "--check-config"]));
    assert!(check.contains("max_connections = 64"), "{check}");

    purge_all();
    assert!(!Path::new("/etc/pgp-milter").exists());
}
