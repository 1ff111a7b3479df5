//! OpenDKIM's miltertest (a scripted MTA) against the action milter, in
//! three variants: our Rust server (`examples/action_milter.rs`), and its twin
//! written against Sendmail's libmilter, with and without no-reply steps.
//!
//! The Lua scripts in `tests/interop/miltertest/` cover negotiation, every
//! protocol step and every end-of-message action. libmilter is the reference:
//! a script passing against it checks what the script expects; the same
//! script passing against the Rust server shows both say the same on the wire.
//!
//! Needs `miltertest`, `libmilter-dev` and a C compiler (Debian packages;
//! `scripts/install-test-deps.sh`). Without them the tests fail with
//! instructions rather than pass silently.

mod interop;

use std::process::Command;
use std::time::Duration;

use interop::{ChildMilter, INSTALL_HINT, miltertest_dir, run_with_timeout, try_run_with_timeout};

/// Every script, each run by the tests generated below.
const SCRIPTS: &[&str] = &[
    "negotiate",
    "steps",
    "headers",
    "recipients",
    "body",
    "verdicts",
];

/// Longest a script may run (the slowest takes about 3 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Progress packets every 200 ms: `steps.lua` lets end of message take 2.5 s
/// with a one-second read timeout.
const PROGRESS_MS: &str = "200";

#[derive(Debug, Clone, Copy)]
enum Target {
    /// `examples/action_milter.rs` on minimilter.
    Rust,
    /// `interop/libmilter/action_milter.c`.
    Libmilter,
    /// The same with `-n`: no reply at connect, HELO, MAIL, DATA, unknown,
    /// header, end of header.
    LibmilterNoReply,
}

impl Target {
    fn start(self) -> ChildMilter {
        match self {
            Target::Rust => ChildMilter::rust_action_milter(&["--progress-ms", PROGRESS_MS]),
            Target::Libmilter => ChildMilter::libmilter_action_milter(&["-P", PROGRESS_MS]),
            Target::LibmilterNoReply => {
                ChildMilter::libmilter_action_milter(&["-n", "-P", PROGRESS_MS])
            }
        }
    }

    /// Steps the milter declines (`SMFIP_NO*`) when offered everything, for
    /// `negotiate.lua`. The Rust filter asks only for what it implements
    /// (headers and body); the libmilter one registers every callback.
    fn expect_declined(self) -> &'static str {
        match self {
            Target::Rust => "connect,helo,mail,rcpt,data,eoh,unknown",
            Target::Libmilter | Target::LibmilterNoReply => "",
        }
    }

    /// Steps the milter asks not to answer (`SMFIP_NR_*`).
    fn expect_noreply(self) -> &'static str {
        match self {
            Target::Rust | Target::Libmilter => "",
            Target::LibmilterNoReply => "connect,helo,mail,data,unknown,header,eoh",
        }
    }
}

fn miltertest_present() {
    let mut cmd = Command::new("miltertest");
    cmd.arg("-V");
    match try_run_with_timeout(&mut cmd, Duration::from_secs(10)) {
        Ok(out) if out.success() => {}
        Ok(out) => panic!("miltertest -V failed:\n{}", out.describe()),
        Err(e) => panic!("miltertest not found ({e}): {INSTALL_HINT}"),
    }
}

/// Runs `<script>.lua` against a fresh milter of kind `target`.
fn run(script: &str, target: Target) {
    miltertest_present();
    let milter = target.start();
    let mut cmd = Command::new("miltertest");
    cmd.current_dir(miltertest_dir())
        .arg("-s")
        .arg(format!("{script}.lua"))
        .arg("-D")
        .arg(format!("sock={}", milter.socket_spec()))
        .arg("-D")
        .arg(format!("expect_declined={}", target.expect_declined()))
        .arg("-D")
        .arg(format!("expect_noreply={}", target.expect_noreply()));
    let out = run_with_timeout(&mut cmd, SCRIPT_LIMIT);
    if !out.success() {
        panic!(
            "miltertest {script}.lua against the {target:?} milter failed\n{}\n--- milter log ---\n{}",
            out.describe(),
            milter.log_text().trim_end()
        );
    }
    println!(
        "{script}.lua against {target:?}: ok in {:.2?}\n{}",
        out.elapsed,
        out.stdout.trim_end()
    );
}

macro_rules! script_tests {
    ($($script:ident),* $(,)?) => {
        $(
            mod $script {
                use super::{Target, run};

                #[test]
                #[ignore = "needs miltertest"]
                fn rust() {
                    run(stringify!($script), Target::Rust);
                }

                #[test]
                #[ignore = "needs miltertest and libmilter"]
                fn libmilter() {
                    run(stringify!($script), Target::Libmilter);
                }

                #[test]
                #[ignore = "needs miltertest and libmilter"]
                fn libmilter_no_reply() {
                    run(stringify!($script), Target::LibmilterNoReply);
                }
            }
        )*

        #[test]
        fn every_script_has_tests() {
            let generated = [$(stringify!($script)),*];
            assert_eq!(generated, SCRIPTS);
            let mut on_disk: Vec<String> = std::fs::read_dir(miltertest_dir())
                .expect("miltertest script directory")
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    let stem = name.strip_suffix(".lua")?.to_owned();
                    (stem != "common").then_some(stem)
                })
                .collect();
            on_disk.sort();
            let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(on_disk, listed, "every script in tests/interop/miltertest must be run");
        }
    };
}

script_tests!(negotiate, steps, headers, recipients, body, verdicts);

/// The libmilter build helper (shared with other interop tests) produces a
/// working program: without arguments it prints its usage and exits 2.
#[test]
#[ignore = "needs libmilter"]
fn libmilter_action_milter_builds() {
    let bin = interop::build_libmilter_action_milter();
    let out = run_with_timeout(&mut Command::new(&bin), Duration::from_secs(10));
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("usage: action_milter"),
        "{}",
        out.describe()
    );
}
