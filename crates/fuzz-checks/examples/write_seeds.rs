//! Writes the seed corpus to `fuzz/corpus/<target>/`:
//! `cargo run -p fuzz-checks --example write_seeds [-- --with-gpg]`.
//!
//! The protocol and address seeds come from `fuzz_checks::seeds`. The
//! `pgp_detect` seeds are messages shaped like pgp-milter's test corpus
//! (PGP/MIME, inline armor, a binary attachment, signed-only, a key, plain
//! text) around real GnuPG output, made in a throw-away GNUPGHOME, written
//! only with `--with-gpg` (and left as they are without `gpg`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::io::Write;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, name, bytes) in fuzz_checks::seeds::seeds() {
        write(&root.join(target), name, &bytes)?;
    }
    // New keys give new bytes: only on request, so rerunning the example
    // does not churn the committed pgp seeds.
    if std::env::args().nth(1).as_deref() != Some("--with-gpg") {
        return Ok(());
    }
    match gpg_messages() {
        Some(messages) => {
            for (name, m) in messages {
                // First byte: where the irrelevant header goes.
                let mut v = vec![1];
                v.extend_from_slice(&m);
                write(&root.join("pgp_detect"), name, &v)?;
            }
        }
        None => eprintln!("gpg not found: pgp_detect seeds left as they are"),
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn gpg(home: &Path, args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new("gpg")
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .env("GNUPGHOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

const HEAD: &str = "From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: fuzz seed\r\nMIME-Version: 1.0\r\n";

fn gpg_messages() -> Option<Vec<(&'static str, Vec<u8>)>> {
    let home: PathBuf = std::env::temp_dir().join(format!("fuzz-seeds-gpg-{}", std::process::id()));
    std::fs::create_dir_all(&home).ok()?;
    let result = (|| {
        gpg(
            &home,
            &[
                "--quick-generate-key",
                "Bob <bob@example.org>",
                "future-default",
                "default",
                "never",
            ],
            b"",
        )?;
        let to_bob = ["--trust-model", "always", "--recipient", "bob@example.org"];
        let text = |v: Vec<u8>| String::from_utf8(v).ok();
        let enc = text(gpg(
            &home,
            &[&["--armor", "--encrypt"][..], &to_bob].concat(),
            b"secret\n",
        )?)?;
        let bin = gpg(&home, &[&["--encrypt"][..], &to_bob].concat(), b"secret\n")?;
        let signed = text(gpg(&home, &["--armor", "--sign"], b"signed\n")?)?;
        let clear = text(gpg(&home, &["--clearsign"], b"clear\n")?)?;
        let key = text(gpg(
            &home,
            &["--armor", "--export", "bob@example.org"],
            b"",
        )?)?;
        let crlf = |s: &str| s.replace('\n', "\r\n");
        let pgp_mime = |armored: &str| {
            format!(
                "{HEAD}Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc-b\"\r\n\r\n\
                 This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
                 --enc-b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
                 --enc-b\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n\
                 {}\r\n--enc-b--\r\n",
                crlf(armored)
            )
            .into_bytes()
        };
        let inline = |armored: &str| {
            format!(
                "{HEAD}Content-Type: text/plain; charset=us-ascii\r\n\r\n{}",
                crlf(armored)
            )
            .into_bytes()
        };
        let b64 = base64_lines(&bin);
        let attachment = format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=\"att-b\"\r\n\r\n--att-b\r\n\
             Content-Type: application/octet-stream; name=\"msg.gpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {b64}--att-b--\r\n"
        )
        .into_bytes();
        let mixed_plain = format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain\r\n\r\nplain words\r\n\
             --mix\r\nContent-Type: text/plain\r\n\r\n{}\r\n--mix--\r\n",
            crlf(&enc)
        )
        .into_bytes();
        Some(vec![
            ("pgp-mime-encrypted", pgp_mime(&enc)),
            ("inline-encrypted", inline(&enc)),
            ("attachment-binary", attachment),
            ("pgp-mime-signed-only", pgp_mime(&signed)),
            ("inline-clearsigned", inline(&clear)),
            ("inline-public-key", inline(&key)),
            ("plaintext-next-to-encrypted", mixed_plain),
            (
                "plain",
                format!("{HEAD}Content-Type: text/plain\r\n\r\nJust text.\r\n").into_bytes(),
            ),
        ])
    })();
    let _ = Command::new("gpgconf")
        .args(["--kill", "all"])
        .env("GNUPGHOME", &home)
        .status();
    let _ = std::fs::remove_dir_all(&home);
    result
}

/// Base64 in 76-character lines, CRLF-terminated (no base64 crate needed here).
fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &b)| a | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    let mut out = String::new();
    for line in s.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push_str("\r\n");
    }
    out
}
