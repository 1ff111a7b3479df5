//! OpenPGP.js output through the streaming payload reader: v4 and v6 keys
//! (X25519, X448, RSA, legacy Curve25519), SEIPD v1 and v2 (AEAD),
//! passwords, hidden recipients, compression, armored and binary — all
//! accepted as what they are.
//!
//! Needs `node` and OpenPGP.js 6 (`scripts/install-test-deps.sh` installs it
//! with npm under /opt/minimilter-test/openpgpjs; `OPENPGPJS_DIR` points
//! elsewhere). The messages are written by `payload_openpgpjs.mjs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgp_milter::packets::KeyTarget;
use pgp_milter::payload::{
    Encoding, Payload, PayloadError, PayloadKind, PayloadLimits, PayloadReader,
};

fn read(data: &[u8], chunk: usize) -> Result<Payload, PayloadError> {
    let mut r = PayloadReader::new(Encoding::Auto, &PayloadLimits::default());
    for c in data.chunks(chunk.max(1)) {
        r.feed(c)?;
    }
    r.finish()
}

fn generate(dir: &Path, count: usize) {
    let modules = std::env::var("OPENPGPJS_DIR")
        .unwrap_or_else(|_| "/opt/minimilter-test/openpgpjs/node_modules".into());
    assert!(
        Path::new(&modules).join("openpgp").is_dir(),
        "OpenPGP.js not found in {modules} (run scripts/install-test-deps.sh)"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/payload_openpgpjs.mjs");
    let out = Command::new("node")
        .env("OPENPGPJS_DIR", &modules)
        .arg(script)
        .arg(dir)
        .arg(count.to_string())
        .output()
        .expect("node must be installed");
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .rev()
            .take(2000)
            .collect::<String>()
    );
}

#[test]
#[ignore = "needs node and OpenPGP.js"]
fn openpgpjs_messages_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let count: usize = std::env::var("PAYLOAD_OPENPGPJS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    generate(dir.path(), count);
    let manifest = std::fs::read_to_string(dir.path().join("manifest.txt")).unwrap();
    let mut failures = Vec::new();
    let (mut v6, mut seen) = (0, 0);
    let mut kinds = std::collections::BTreeSet::new();
    for (i, line) in manifest.lines().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        let (name, recipients, wildcard) = (f[0], f[1].parse::<usize>().unwrap(), f[2] == "1");
        let data = std::fs::read(dir.path().join(name)).unwrap();
        match read(&data, [1, 7, 500, 65536][i % 4]) {
            Ok(p) if p.kind == PayloadKind::Encrypted && p.recipients.len() == recipients => {
                seen += 1;
                if wildcard {
                    assert!(
                        p.recipients.iter().all(|r| *r == KeyTarget::Wildcard),
                        "{name}"
                    );
                }
                kinds.extend(
                    p.recipients
                        .iter()
                        .map(|r| format!("{r:?}").chars().take(30).collect::<String>()),
                );
                v6 += p
                    .recipients
                    .iter()
                    .filter(|r| matches!(r, KeyTarget::Fingerprint { version: 6, .. }))
                    .count();
            }
            other => failures.push(format!("{name} ({line}): {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(seen, count);
    assert!(v6 > 0, "no v6 recipient in the corpus: {kinds:?}");
    for (name, kind) in [
        ("signed.asc", PayloadKind::SignedMessage),
        ("detached.asc", PayloadKind::Signature),
        ("cleartext.asc", PayloadKind::CleartextSigned),
        ("key4.asc", PayloadKind::Key),
        ("key6.asc", PayloadKind::Key),
    ] {
        let data = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(read(&data, 3).map(|p| p.kind), Ok(kind), "{name}");
    }
}
