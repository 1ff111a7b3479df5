//! Sequoia's `sq` output through the streaming payload reader: another
//! implementation's ciphertext, padding and armor are accepted as what
//! they are. Needs `sq` (Debian's `sq` package; 0.27 writes v4 keys and
//! messages, with its default `pad` compression).

mod tools;

use tools::random_bytes;

use std::path::Path;
use std::process::Command;

use pgp_milter::packets::KeyTarget;
use pgp_milter::payload::{
    Encoding, Payload, PayloadError, PayloadKind, PayloadLimits, PayloadReader,
};

fn sq(dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    tools::output(Command::new("sq").current_dir(dir).args(args), input)
}

fn read(data: &[u8], chunk: usize) -> Result<Payload, PayloadError> {
    let mut r = PayloadReader::new(Encoding::Auto, &PayloadLimits::default());
    for c in data.chunks(chunk.max(1)) {
        r.feed(c)?;
    }
    r.finish()
}

#[test]
#[ignore = "needs sq"]
fn sequoia_messages_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, suite) in [("c", "cv25519"), ("r", "rsa3k")] {
        sq(
            d,
            &[
                "key",
                "generate",
                "--userid",
                &format!("<{name}@example.org>"),
                "-c",
                suite,
                "--export",
                &format!("{name}.key"),
            ],
            b"",
        );
        let cert = sq(d, &["key", "extract-cert", &format!("{name}.key")], b"");
        std::fs::write(d.join(format!("{name}.cert")), cert).unwrap();
    }
    let count: usize = std::env::var("PAYLOAD_SQ_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let mut failures = Vec::new();
    for i in 0..count {
        let size = [0, 10, 300, 5000, 70_000][i % 5] + i % 13;
        let plain = if i % 2 == 0 {
            random_bytes(i as u64 + 1, size)
        } else {
            b"attack at dawn "
                .iter()
                .cycle()
                .take(size)
                .cloned()
                .collect()
        };
        let mut args = vec![
            "encrypt",
            "--compression",
            ["pad", "none", "zip", "zlib", "bzip2"][(i / 5) % 5],
        ];
        let recipients = match i % 3 {
            0 => {
                args.extend(["--recipient-cert", "c.cert"]);
                1
            }
            1 => {
                args.extend(["--recipient-cert", "r.cert"]);
                1
            }
            _ => {
                args.extend(["--recipient-cert", "c.cert", "--recipient-cert", "r.cert"]);
                2
            }
        };
        if i % 4 == 1 {
            args.push("--binary");
        }
        if i % 7 == 2 {
            args.extend(["--signer-key", "c.key"]);
        }
        let out = sq(d, &args, &plain);
        match read(&out, [1, 5, 100, 4096, 65536][i % 5]) {
            Ok(p) if p.kind == PayloadKind::Encrypted => {
                assert_eq!(p.recipients.len(), recipients);
                assert!(
                    p.recipients
                        .iter()
                        .all(|r| matches!(r, KeyTarget::KeyId(_)))
                );
            }
            other => failures.push(format!("message {i} {args:?} size {size}: {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Signatures and certificates.
    let signed = sq(d, &["sign", "--signer-key", "c.key"], b"hello\n");
    assert_eq!(
        read(&signed, 9).map(|p| p.kind),
        Ok(PayloadKind::SignedMessage)
    );
    let clear = sq(
        d,
        &["sign", "--cleartext-signature", "--signer-key", "c.key"],
        b"hello\n",
    );
    assert_eq!(
        read(&clear, 9).map(|p| p.kind),
        Ok(PayloadKind::CleartextSigned)
    );
    let detached = sq(
        d,
        &["sign", "--detached", "--signer-key", "r.key"],
        b"hello\n",
    );
    assert_eq!(
        read(&detached, 9).map(|p| p.kind),
        Ok(PayloadKind::Signature)
    );
    let cert = std::fs::read(d.join("c.cert")).unwrap();
    assert_eq!(read(&cert, 9).map(|p| p.kind), Ok(PayloadKind::Key));
}
