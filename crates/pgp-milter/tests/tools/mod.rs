//! Small helpers of the tests that drive OpenPGP programs (`gpg`, `sq`)
//! and make stand-in ciphertext.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `cmd` with `input` on its stdin (written from another thread, so
/// a program that answers before it has read everything cannot block
/// us); its stdout. A program that is missing or fails fails the test
/// with its name, arguments and stderr.
pub fn output(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (scripts/install-test-deps.sh): {e}")
        });
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Fixed-seed bytes, a stand-in for ciphertext.
#[allow(unused_imports)] // not every test binary that includes this module uses it
pub use testkit::random::random_bytes;
