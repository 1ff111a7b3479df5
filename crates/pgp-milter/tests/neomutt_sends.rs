//! Mail as a real client writes it: NeoMutt (Debian's `neomutt`, with the
//! GnuPG commands Debian ships in `/etc/neomuttrc.d/gpg.rc`) composes and
//! sends each message itself, through a `sendmail` that keeps it; then the
//! messages go through pgp-milter as Postfix plays it. PGP/MIME, PGP/MIME
//! signed and encrypted, with an attachment, and NeoMutt's inline
//! ("traditional") PGP, with a UTF-8 body, must all be accepted; what
//! NeoMutt signs without encrypting (PGP/MIME signed, a cleartext
//! signature) is refused under `require = "encrypted"` and accepted under
//! `"encrypted-or-signed"`.
//!
//! NeoMutt sends nothing signed or encrypted in batch mode, so it runs in
//! its compose menu, under util-linux `script` for a terminal: the test
//! waits until the menu shows the `Security:` line and types `y` (send).
//! Needs `neomutt`, `script` and `gpg` (scripts/install-test-deps.sh).

mod support;
mod through_milter;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use minimilter::transaction::Outcome;
use pgp_milter::{Policy, Require};

/// Runs gpg in `home` (no passphrases).
fn gpg(home: &Path, args: &[&str]) {
    let out = Command::new("gpg")
        .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
        .args(["--passphrase", ""])
        .args(args)
        .env("GNUPGHOME", home)
        .output()
        .expect("gpg must be installed (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One message NeoMutt composes from `draft` (`-H`), with `settings`
/// added to its configuration and `attach` attached: the bytes it hands to
/// `sendmail`.
fn neomutt_sends(dir: &Path, name: &str, settings: &str, attach: Option<&Path>) -> Vec<u8> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let out = d.join("sent.eml");
    std::fs::write(d.join("mbox"), "").unwrap();
    let sendmail = d.join("sendmail");
    std::fs::write(&sendmail, format!("#!/bin/sh\ncat > '{}'\n", out.display())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        d.join("rc"),
        format!(
            "set crypt_use_gpgme=no\nsource /etc/neomuttrc.d/gpg.rc\n\
             set sendmail=\"{0}\"\nset from=\"alice@client.example\"\nset realname=\"Alice\"\n\
             set use_from=yes\nset charset=\"utf-8\"\nset send_charset=\"us-ascii:utf-8\"\n\
             set editor=\"true\"\nset fast_reply=yes\nset postpone=no\nset record=\"\"\n\
             set pgp_self_encrypt=no\nset pgp_default_key=\"alice@client.example\"\n\
             set crypt_autoencrypt=yes\nset crypt_autosign=no\nset pgp_autoinline=no\n\
             set crypt_opportunistic_encrypt=no\nset header_cache=\"\"\n\
             set folder=\"{1}\"\nset spoolfile=\"{1}/mbox\"\nset mbox=\"{1}/mbox\"\n{settings}\n",
            sendmail.display(),
            d.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("draft"),
        "From: Alice <alice@client.example>\nTo: bob@example.org\nSubject: plan\n\n\
         Grüße Bob,\n\nthe plan stands — bring the contract.\n-- \nAlice\n",
    )
    .unwrap();
    let mut cmd = format!("neomutt -n -F {0}/rc -H {0}/draft", d.display());
    if let Some(a) = attach {
        cmd.push_str(&format!(" -a {}", a.display()));
    }
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", &d)
        .env("GNUPGHOME", dir.join("gnupg"))
        .env("TERM", "xterm")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("`script` (util-linux) and neomutt must be installed");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Bounds, not timed assertions: NeoMutt waiting for a key would hang
    // the run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = Vec::new();
    let mut stdin = child.stdin.take();
    let status = loop {
        while let Ok(chunk) = rx.try_recv() {
            screen.extend_from_slice(&chunk);
        }
        if let Some(input) = stdin.as_mut()
            && String::from_utf8_lossy(&screen).contains("Security:")
        {
            input.write_all(b"y").unwrap();
            input.flush().unwrap();
            stdin = None;
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{name}: neomutt did not finish within 60 s: {}",
                String::from_utf8_lossy(&screen)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let _ = reader.join();
    assert!(status.success(), "{name}: neomutt exited with {status}");
    std::fs::read(&out).unwrap_or_else(|e| {
        panic!(
            "{name}: neomutt sent nothing ({e}): {}",
            String::from_utf8_lossy(&screen)
        )
    })
}

#[tokio::test]
#[ignore = "needs neomutt, script and gpg"]
async fn what_neomutt_encrypts_passes_and_what_it_only_signs_does_not() {
    let dir = tempfile::Builder::new()
        .prefix("neomutt-sends-")
        .tempdir_in("/tmp")
        .unwrap();
    let home = dir.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for uid in ["Bob <bob@example.org>", "Alice <alice@client.example>"] {
        gpg(
            &home,
            &[
                "--quick-generate-key",
                uid,
                "future-default",
                "default",
                "never",
            ],
        );
    }
    let attachment = dir.path().join("minutes.txt");
    std::fs::write(&attachment, "Minutes: the contract is signed.\n").unwrap();

    let encrypted = [
        ("pgp-mime", "", None),
        ("pgp-mime-signed", "set crypt_autosign=yes", None),
        ("pgp-mime-attachment", "", Some(attachment.as_path())),
        ("inline", "set pgp_autoinline=yes", None),
        (
            "inline-signed",
            "set pgp_autoinline=yes\nset crypt_autosign=yes",
            None,
        ),
    ];
    let signed_only = [
        (
            "signed-pgp-mime",
            "set crypt_autoencrypt=no\nset crypt_autosign=yes",
            None,
        ),
        (
            "signed-inline",
            "set crypt_autoencrypt=no\nset crypt_autosign=yes\nset pgp_autoinline=yes",
            None,
        ),
    ];
    let send = |list: &[(&str, &str, Option<&Path>)]| -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(name, settings, attach)| {
                let m = neomutt_sends(dir.path(), name, settings, *attach);
                // NeoMutt did what the case says (an oracle outside our
                // reader: its own header fields).
                let text = String::from_utf8_lossy(&m).into_owned();
                let want = match *name {
                    n if n.starts_with("inline") => "x-action=pgp-encrypted",
                    "signed-inline" => "x-action=pgp-signed",
                    n if n.starts_with("signed") => "multipart/signed",
                    _ => "multipart/encrypted",
                };
                assert!(text.contains(want), "{name}: no {want}:\n{text}");
                assert!(!text.contains("the plan stands") || name.starts_with("signed"));
                (name.to_string(), m)
            })
            .collect()
    };
    let encrypted = send(&encrypted);
    let signed_only = send(&signed_only);
    let _ = Command::new("gpgconf")
        .args(["--kill", "all"])
        .env("GNUPGHOME", &home)
        .status();

    let all: Vec<&[u8]> = encrypted
        .iter()
        .chain(&signed_only)
        .map(|(_, m)| m.as_slice())
        .collect();
    let strict = through_milter::judged(Policy::default(), "alice@client.example", &all).await;
    let lenient = Policy {
        require: Require::EncryptedOrSigned,
        ..Policy::default()
    };
    let signed_ok = through_milter::judged(lenient, "alice@client.example", &all).await;
    for (i, (name, m)) in encrypted.iter().chain(&signed_only).enumerate() {
        let is_encrypted = i < encrypted.len();
        let (strict, _) = &strict[i];
        if is_encrypted {
            assert_eq!(
                *strict,
                Outcome::Accepted,
                "{name}:\n{}",
                String::from_utf8_lossy(m)
            );
        } else {
            assert!(
                matches!(strict, Outcome::Rejected { .. }),
                "{name}: {strict:?}"
            );
        }
        assert_eq!(
            signed_ok[i].0,
            Outcome::Accepted,
            "{name} (encrypted-or-signed)"
        );
    }
}
