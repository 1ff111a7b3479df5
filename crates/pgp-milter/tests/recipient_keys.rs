//! `require_recipient_key`: a keyring of GnuPG-exported keys, messages
//! GnuPG encrypted to the right key, the wrong key, both, hidden recipients
//! and a passphrase, run through the milter protocol with our client.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use minimilter::proto::Offer;
use minimilter::transaction::{Outcome, run_next_message};
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, run_message,
};
use pgp_milter::keyring::{Keyring, SharedKeyring, key_id_hex};
use pgp_milter::packets::{KeyTarget, hex};
use pgp_milter::policy::{HiddenRecipients, RecipientKeyScope, UnknownRecipient};
use pgp_milter::{Config, PgpMilter, Policy};
use support::{
    CAROL, Cte, MALLORY, RECIPIENT, attachment, colon_keys, inline, keyed, keyring_dir, mixed,
    pgp_milter, pgp_mime,
};

fn keyring() -> Arc<Keyring> {
    let dir = keyring_dir(&[]);
    Arc::new(Keyring::load_dir(dir.path()).expect("the exported keys load"))
}

fn policy(hidden: HiddenRecipients, unknown: UnknownRecipient) -> Policy {
    Policy {
        require_recipient_key: true,
        keyring: Some(Arc::new(SharedKeyring::fixed(Keyring::clone(&keyring())))),
        hidden_recipients: hidden,
        unknown_recipient: unknown,
        ..Policy::default()
    }
}

async fn client(policy: Policy) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(PgpMilter::new(policy), ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    MilterClient::negotiate(Box::new(a), cfg).await.unwrap()
}

fn spec(message: Vec<u8>, rcpts: &[&str]) -> MessageSpec {
    MessageSpec {
        from: "alice@client.example".into(),
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        message: Bytes::from(message),
        ..MessageSpec::default()
    }
}

#[ignore = "needs gpg"]
#[test]
fn fingerprints_and_key_ids_match_gpg_with_colons() {
    let k = keyed();
    let ring = keyring();
    let listed = colon_keys(&k.colons);
    let ours: Vec<_> = ring.certs().iter().flat_map(|c| &c.keys).collect();
    // Bob's and Carol's certificates: primary key and one subkey each.
    assert_eq!(ring.len(), 2);
    assert_eq!(ours.len(), 4);
    for key in &ours {
        let fpr = hex(&key.packet.fingerprint);
        let gpg = listed
            .iter()
            .find(|l| l.fingerprint == fpr)
            .unwrap_or_else(|| panic!("fingerprint {fpr} not listed by gpg:\n{}", k.colons));
        assert_eq!(key_id_hex(key), gpg.key_id, "{fpr}");
        assert_eq!(key.subkey, gpg.kind == "sub", "{fpr}");
        assert_eq!(
            key.can_encrypt,
            gpg.capabilities.contains('e'),
            "{fpr}: capabilities {}",
            gpg.capabilities
        );
    }
    // Each address maps to exactly its certificate's encryption subkey.
    for (address, uid_part) in [(RECIPIENT, "bob@example.org"), (CAROL, "Carol@Example.NET")] {
        let pub_idx = listed
            .iter()
            .position(|l| l.kind == "pub" && l.uids.iter().any(|u| u.contains(uid_part)))
            .unwrap();
        let sub = &listed[pub_idx + 1];
        assert_eq!((sub.kind.as_str(), sub.capabilities.as_str()), ("sub", "e"));
        let keys = ring.keys_for(address);
        assert_eq!(keys.len(), 1, "{address}");
        assert_eq!(key_id_hex(&keys[0].key), sub.key_id, "{address}");
        assert_eq!(
            hex(&keys[0].primary_fingerprint),
            listed[pub_idx].fingerprint
        );
    }
    assert!(ring.keys_for(MALLORY).is_empty());
    assert_eq!(ring.keys_for("CAROL@example.net").len(), 1);
    assert_eq!(ring.address_count(), 2);
}

#[ignore = "needs gpg"]
#[test]
fn pkesk_key_ids_of_gnupg_messages() {
    let k = keyed();
    let ring = keyring();
    let bob = KeyTarget::KeyId(ring.keys_for(RECIPIENT)[0].key.packet.key_id);
    let carol = KeyTarget::KeyId(ring.keys_for(CAROL)[0].key.packet.key_id);
    let targets =
        |armored: &str| pgp_milter::detect::encrypted_to(&pgp_mime("t", armored)).unwrap();
    assert_eq!(targets(&k.to_bob), vec![vec![bob.clone()]]);
    let both = &targets(&k.to_bob_and_carol)[0];
    assert_eq!(both.len(), 2);
    assert!(both.contains(&bob) && both.contains(&carol), "{both:?}");
    assert_eq!(targets(&k.hidden_bob), vec![vec![KeyTarget::Wildcard]]);
    assert_eq!(
        targets(&k.throw_keyids_bob),
        vec![vec![KeyTarget::Wildcard]]
    );
    let mixed_hidden = &targets(&k.bob_and_hidden_carol)[0];
    assert!(mixed_hidden.contains(&bob) && mixed_hidden.contains(&KeyTarget::Wildcard));
    assert_eq!(targets(&k.symmetric), vec![Vec::<KeyTarget>::new()]);
    // Inline, and a binary .pgp attachment next to it: two blocks.
    let two = mixed(
        "two",
        &[
            format!("Content-Type: text/plain\r\n\r\n{}", k.to_carol),
            attachment("application/octet-stream", "a.pgp", &k.to_bob_binary),
        ],
    );
    assert_eq!(
        pgp_milter::detect::encrypted_to(&two).unwrap(),
        vec![vec![carol], vec![bob]]
    );
}

/// One message, its envelope recipients, the expected verdict per policy
/// and, for refusals, text the reply must contain.
struct KeyCase {
    name: &'static str,
    message: Vec<u8>,
    rcpts: Vec<&'static str>,
    /// Accepted with the defaults (hidden and unknown: reject).
    strict: Result<(), &'static str>,
    /// Accepted with hidden_recipients = accept and unknown_recipient = accept.
    lax: Result<(), &'static str>,
}

fn key_cases() -> Vec<KeyCase> {
    let k = keyed();
    let case = |name, message, rcpts: &[&'static str], strict, lax| KeyCase {
        name,
        message,
        rcpts: rcpts.to_vec(),
        strict,
        lax,
    };
    let wrong = "not encrypted to a key of bob@example.org (encrypted to ";
    let hidden = "encrypted to hidden recipients only (wildcard key IDs)";
    let passphrase = "encrypted with a passphrase only (symmetric), not to a recipient";
    vec![
        case(
            "to bob",
            pgp_mime("k1", &k.to_bob),
            &[RECIPIENT],
            Ok(()),
            Ok(()),
        ),
        case(
            "to bob, inline base64",
            inline("k2", &k.to_bob, Cte::Base64, false),
            &[RECIPIENT],
            Ok(()),
            Ok(()),
        ),
        case(
            "to bob, recipient in upper case",
            pgp_mime("k3", &k.to_bob),
            &["BOB@Example.ORG"],
            Ok(()),
            Ok(()),
        ),
        case(
            "to carol, for bob",
            pgp_mime("k4", &k.to_carol),
            &[RECIPIENT],
            Err(wrong),
            Err(wrong),
        ),
        case(
            "to mallory, for bob",
            pgp_mime("k5", &k.to_mallory),
            &[RECIPIENT],
            Err(wrong),
            Err(wrong),
        ),
        case(
            "to bob and carol, for bob",
            pgp_mime("k6", &k.to_bob_and_carol),
            &[RECIPIENT],
            Ok(()),
            Ok(()),
        ),
        case(
            "to bob and carol, for carol",
            pgp_mime("k7", &k.to_bob_and_carol),
            &[CAROL],
            Ok(()),
            Ok(()),
        ),
        case(
            "to carol, for bob and carol (one recipient is enough)",
            pgp_mime("k8", &k.to_carol),
            &[RECIPIENT, CAROL],
            Ok(()),
            Ok(()),
        ),
        case(
            "hidden bob",
            pgp_mime("k9", &k.hidden_bob),
            &[RECIPIENT],
            Err(hidden),
            Ok(()),
        ),
        case(
            "throw-keyids bob",
            pgp_mime("k10", &k.throw_keyids_bob),
            &[RECIPIENT],
            Err(hidden),
            Ok(()),
        ),
        case(
            "bob plus hidden carol, for bob",
            pgp_mime("k11", &k.bob_and_hidden_carol),
            &[RECIPIENT],
            Ok(()),
            Ok(()),
        ),
        case(
            "symmetric",
            pgp_mime("k12", &k.symmetric),
            &[RECIPIENT],
            Err(passphrase),
            Err(passphrase),
        ),
        case(
            "recipient without a key",
            pgp_mime("k13", &k.to_mallory),
            &[MALLORY],
            Err("no key for mallory@example.com in the keyring"),
            Ok(()),
        ),
        case(
            "postmaster is never checked",
            pgp_mime("k14", &k.to_mallory),
            &["postmaster@example.org"],
            Ok(()),
            Ok(()),
        ),
        case(
            "plaintext is still refused",
            support::plain("k15", "hello\n"),
            &[RECIPIENT],
            Err("unencrypted content"),
            Err("unencrypted content"),
        ),
    ]
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn recipient_keys_through_the_milter_protocol() {
    for (label, hidden, unknown) in [
        ("strict", HiddenRecipients::Reject, UnknownRecipient::Reject),
        ("lax", HiddenRecipients::Accept, UnknownRecipient::Accept),
    ] {
        let mut c = client(policy(hidden, unknown)).await;
        // Twice, all on one connection: nothing leaks between messages.
        for round in 0..2 {
            for (i, case) in key_cases().into_iter().enumerate() {
                let s = spec(case.message, &case.rcpts);
                let t = if round == 0 && i == 0 {
                    run_message(&mut c, &s).await.unwrap()
                } else {
                    run_next_message(&mut c, &s).await.unwrap()
                };
                let expect = if label == "strict" {
                    case.strict
                } else {
                    case.lax
                };
                match expect {
                    Ok(()) => assert_eq!(t.outcome, Outcome::Accepted, "{label}: {}", case.name),
                    Err(text) => {
                        let Outcome::Rejected { reply, .. } = &t.outcome else {
                            panic!(
                                "{label}: {}: expected a refusal, got {:?}",
                                case.name, t.outcome
                            )
                        };
                        let reply = reply.clone().unwrap_or_default();
                        assert!(
                            reply.starts_with("550 5.7.1 "),
                            "{label}: {}: {reply}",
                            case.name
                        );
                        assert!(reply.contains(text), "{label}: {}: {reply}", case.name);
                    }
                }
            }
        }
        c.quit().await.unwrap();
    }
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn without_require_recipient_key_the_keyring_is_not_consulted() {
    let k = keyed();
    let p = Policy {
        require_recipient_key: false,
        ..policy(HiddenRecipients::Reject, UnknownRecipient::Reject)
    };
    let mut c = client(p).await;
    let t = run_message(&mut c, &spec(pgp_mime("n1", &k.to_mallory), &[RECIPIENT]))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let t = run_next_message(&mut c, &spec(pgp_mime("n2", &k.symmetric), &[RECIPIENT]))
        .await
        .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    c.quit().await.unwrap();
}

fn write_config(dir: &Path, keyring: &Path) -> std::path::PathBuf {
    let file = dir.join("pgp-milter.toml");
    std::fs::write(
        &file,
        format!(
            "keyring_dir = {:?}\nrequire_recipient_key = true\nhidden_recipients = \"accept\"\n",
            keyring.to_str().unwrap()
        ),
    )
    .unwrap();
    file
}

#[ignore = "needs gpg"]
#[test]
fn config_loads_the_keyring_and_a_garbage_key_file_is_named() {
    let keys = keyring_dir(&[("notes.txt", "not a key, and not .asc: ignored")]);
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), keys.path());
    let c = Config::load(&file).unwrap();
    assert!(c.policy.require_recipient_key);
    assert_eq!(c.policy.hidden_recipients, HiddenRecipients::Accept);
    let ring = c.policy.keyring.as_ref().unwrap().get();
    assert_eq!(
        (ring.len(), ring.address_count(), ring.file_count()),
        (2, 2, 2)
    );

    let bad = keyring_dir(&[(
        "zz-garbage.asc",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n",
    )]);
    let file = write_config(dir.path(), bad.path());
    let e = Config::load(&file).unwrap_err().to_string();
    assert!(e.contains("pgp-milter.toml: key `keyring_dir`: "), "{e}");
    assert!(e.contains("zz-garbage.asc: "), "{e}");

    // A secret key in armor that claims to be a public key: rpgp parses
    // it, the keyring refuses it.
    let secret = keyring_dir(&[("secret.asc", &support::unusable().secret_as_public)]);
    let file = write_config(dir.path(), secret.path());
    let e = Config::load(&file).unwrap_err().to_string();
    assert!(
        e.contains("secret.asc: armor block 1: secret key material"),
        "{e}"
    );

    // A message where a key belongs.
    let k = keyed();
    let wrong = keyring_dir(&[("message.asc", k.to_bob.as_str())]);
    let file = write_config(dir.path(), wrong.path());
    let e = Config::load(&file).unwrap_err().to_string();
    assert!(
        e.contains("message.asc: armor block 1 is PGP MESSAGE, not a PGP PUBLIC KEY BLOCK"),
        "{e}"
    );
}

#[ignore = "needs gpg"]
#[test]
fn check_config_reports_the_keyring() {
    let keys = keyring_dir(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), keys.path());
    let (ok, out, err) = pgp_milter(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("require_recipient_key = true\n"), "{out}");
    assert!(out.contains("hidden_recipients = \"accept\"\n"), "{out}");
    assert!(
        out.contains("keyring: 2 keys (2 encryption keys) from 2 files, 2 addresses"),
        "{out}"
    );
    let bad = keyring_dir(&[("broken.asc", "garbage\n")]);
    let file = write_config(dir.path(), bad.path());
    let (ok, _, err) = pgp_milter(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert!(!ok);
    assert!(
        err.contains("keyring_dir") && err.contains("broken.asc"),
        "{err}"
    );
}

/// The daemon as a child process, killed on drop.
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `needle` shows in the log within 10 s. The socket can exist
    /// before the daemon's start-up lines reach the file, so a test that
    /// looks for one right after start waits for it.
    async fn log_shows(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.log_text().contains(needle) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    fn hangup(&self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the daemon on a socket in `dir`, with `dir/keys` as the keyring
/// and `require_recipient_key`, logging to `dir/daemon.log`; waits (20 s at
/// most) for the socket.
async fn start_daemon(dir: &Path) -> (Daemon, minimilter::SocketSpec) {
    let socket = dir.join("pgp.sock");
    let config = dir.join("pgp-milter.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"unix:{}\"]\nkeyring_dir = \"keys\"\nrequire_recipient_key = true\n",
            socket.display()
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_pgp-milter"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon { child, log };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() {
        assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log_text());
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let spec = format!("unix:{}", socket.display()).parse().unwrap();
    (d, spec)
}

async fn verdict(spec: &minimilter::SocketSpec, message: Vec<u8>) -> Outcome {
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    let mut c = MilterClient::connect(spec, cfg).await.unwrap();
    let t = run_message(&mut c, &spec_for(message)).await.unwrap();
    let _ = c.quit().await;
    t.outcome
}

fn spec_for(message: Vec<u8>) -> MessageSpec {
    spec(message, &[RECIPIENT])
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn sighup_reloads_the_keyring_and_a_bad_reload_keeps_the_old_keys() {
    let k = keyed();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("carol.asc"), &k.carol_key).unwrap();
    let (mut d, spec) = start_daemon(dir.path()).await;
    let message = || pgp_mime("h1", &k.to_bob);

    // Bob has no key yet.
    let Outcome::Rejected { reply, .. } = verdict(&spec, message()).await else {
        panic!("expected a refusal:\n{}", d.log_text())
    };
    assert!(
        reply
            .unwrap_or_default()
            .contains("no key for bob@example.org"),
        "{}",
        d.log_text()
    );

    // Add Bob's key and reload.
    std::fs::write(keys.join("bob.asc"), &k.bob_key).unwrap();
    d.hangup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while verdict(&spec, message()).await != Outcome::Accepted {
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(d.log_shows("keyring reloaded").await, "{}", d.log_text());

    // A broken file: the reload fails (the configuration, keyring
    // included, is read as at start-up), the daemon keeps running with the
    // keys it had.
    std::fs::write(keys.join("broken.asc"), "garbage\n").unwrap();
    d.hangup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.log_text().contains("the previous state stays in force") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(d.log_text().contains("broken.asc"), "{}", d.log_text());
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log_text());
    assert_eq!(verdict(&spec, message()).await, Outcome::Accepted);
}

/// Bob's and Carol's keys plus the expired, revoked and corrupted ones.
fn unusable_keyring_dir() -> tempfile::TempDir {
    let u = support::unusable();
    keyring_dir(&[
        ("eve.asc", &u.eve_key),
        ("frank.asc", &u.frank_key),
        ("grace.asc", &u.grace_key),
        ("heidi.asc", &u.heidi_key),
    ])
}

/// True if `s` is `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    s.len() == 10
        && s.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        })
}

#[ignore = "needs gpg"]
#[test]
fn unusable_keys_load_and_say_why() {
    let u = support::unusable();
    assert_eq!(pgp_milter::keyring::date(u.eve_expires), "2025-01-01");
    let dir = unusable_keyring_dir();
    let ring = Keyring::load_dir(dir.path()).expect("unusable keys still load");
    let problems = ring.problems_at(pgp_milter::keyring::now());
    let [eve, frank_old, grace, heidi] = problems.as_slice() else {
        panic!("{problems:?}")
    };
    assert_eq!(eve, "key for eve@example.org expired 2025-01-01");
    let d = frank_old
        .strip_prefix("key for frank.old@example.org User ID revoked ")
        .unwrap_or_else(|| panic!("{frank_old}"));
    assert!(is_date(d), "{frank_old}");
    let d = grace
        .strip_prefix("key for grace@example.org revoked ")
        .unwrap_or_else(|| panic!("{grace}"));
    assert!(is_date(d), "{grace}");
    assert_eq!(
        heidi,
        "key for heidi@example.org unverifiable: no valid self-signature on its User ID"
    );
    // Bob, Carol and Frank's remaining User ID are usable; the rest not.
    assert_eq!(ring.address_count(), 3);
    assert_eq!(ring.keys_for("frank@example.org").len(), 1);
    let now = pgp_milter::keyring::now();
    assert!(
        ring.keys_for("frank@example.org")[0]
            .problem_at(now)
            .is_none()
    );
    // The keys are there (so a refusal can name them), just not usable.
    for who in ["eve", "grace", "heidi", "frank.old"] {
        let keys = ring.keys_for(&format!("{who}@example.org"));
        assert_eq!(keys.len(), 1, "{who}");
        assert!(keys[0].problem_at(now).is_some(), "{who}");
    }
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn unusable_keys_do_not_satisfy_require_recipient_key() {
    let u = support::unusable();
    let dir = unusable_keyring_dir();
    let policy = Policy {
        require_recipient_key: true,
        keyring: Some(Arc::new(SharedKeyring::fixed(
            Keyring::load_dir(dir.path()).unwrap(),
        ))),
        ..Policy::default()
    };
    let mut c = client(policy).await;
    let cases = [
        (
            &u.to_eve,
            "eve@example.org",
            Err("(key for eve@example.org expired 2025-01-01)"),
        ),
        (&u.to_frank, "frank@example.org", Ok(())),
        (
            &u.to_frank,
            "frank.old@example.org",
            Err("(key for frank.old@example.org User ID revoked "),
        ),
        (
            &u.to_grace,
            "grace@example.org",
            Err("(key for grace@example.org revoked "),
        ),
        (
            &u.to_heidi,
            "heidi@example.org",
            Err("(key for heidi@example.org unverifiable: no valid self-signature on its User ID)"),
        ),
    ];
    for (i, (armored, rcpt, expect)) in cases.into_iter().enumerate() {
        let s = spec(pgp_mime("u", armored), &[rcpt]);
        let t = if i == 0 {
            run_message(&mut c, &s).await.unwrap()
        } else {
            run_next_message(&mut c, &s).await.unwrap()
        };
        match expect {
            Ok(()) => assert_eq!(t.outcome, Outcome::Accepted, "{rcpt}"),
            Err(text) => {
                let Outcome::Rejected { reply, .. } = &t.outcome else {
                    panic!("{rcpt}: expected a refusal, got {:?}", t.outcome)
                };
                let reply = reply.clone().unwrap_or_default();
                assert!(reply.starts_with("550 5.7.1 "), "{rcpt}: {reply}");
                assert!(reply.contains(text), "{rcpt}: {reply}");
            }
        }
    }
    c.quit().await.unwrap();
}

#[ignore = "needs gpg"]
#[test]
fn check_config_names_unusable_keys() {
    let keys = unusable_keyring_dir();
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), keys.path());
    let (ok, out, err) = pgp_milter(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("keyring: 6 keys (3 encryption keys) from 6 files, 3 addresses"),
        "{out}"
    );
    for line in [
        "keyring: unusable: key for eve@example.org expired 2025-01-01\n",
        "keyring: unusable: key for frank.old@example.org User ID revoked ",
        "keyring: unusable: key for grace@example.org revoked ",
        "keyring: unusable: key for heidi@example.org unverifiable: no valid self-signature on its User ID\n",
    ] {
        assert!(out.contains(line), "{line:?} not in {out}");
    }
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn the_daemon_logs_why_a_key_does_not_count() {
    let u = support::unusable();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("eve.asc"), &u.eve_key).unwrap();
    std::fs::write(keys.join("bob.asc"), &keyed().bob_key).unwrap();
    let (d, socket) = start_daemon(dir.path()).await;
    // At start-up.
    assert!(
        d.log_shows("problem=key for eve@example.org expired 2025-01-01")
            .await,
        "{}",
        d.log_text()
    );
    // In the decision line of a message encrypted to Eve's (expired) key.
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    let mut c = MilterClient::connect(&socket, cfg).await.unwrap();
    let t = run_message(
        &mut c,
        &spec(pgp_mime("e", &u.to_eve), &["eve@example.org"]),
    )
    .await
    .unwrap();
    let _ = c.quit().await;
    assert!(
        matches!(t.outcome, Outcome::Rejected { .. }),
        "{:?}",
        t.outcome
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let log = d.log_text();
        if let Some(l) = log.lines().find(|l| l.contains("verdict=reject")) {
            break l.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        line.contains("to=<eve@example.org>")
            && line.contains("reason=key for eve@example.org expired 2025-01-01"),
        "{line}"
    );
}

#[ignore = "needs gpg"]
#[tokio::test]
async fn every_enforced_recipient_needs_a_key_with_recipient_key_scope_every() {
    let k = keyed();
    let every = |unknown| Policy {
        recipient_key_scope: RecipientKeyScope::Every,
        ..policy(HiddenRecipients::Reject, unknown)
    };
    let refused = |armored: &str, rcpts: &[&'static str], reason: &'static str| {
        (pgp_mime("e", armored), rcpts.to_vec(), Some(reason))
    };
    let accepted =
        |armored: &str, rcpts: &[&'static str]| (pgp_mime("e", armored), rcpts.to_vec(), None);
    let cases = vec![
        accepted(&k.to_bob_and_carol, &[RECIPIENT, CAROL]),
        accepted(&k.to_bob, &[RECIPIENT]),
        // Role addresses are not enforced, so need no key.
        accepted(&k.to_bob, &[RECIPIENT, "postmaster@example.org"]),
        refused(
            &k.to_bob,
            &[RECIPIENT, CAROL],
            "(not encrypted to a key of carol@example.net (encrypted to ",
        ),
        refused(
            &k.to_carol,
            &[RECIPIENT, CAROL],
            "(not encrypted to a key of bob@example.org (encrypted to ",
        ),
        refused(
            &k.to_bob_and_carol,
            &[RECIPIENT, MALLORY, CAROL],
            "(no key for mallory@example.com in the keyring)",
        ),
        // Bob's key shown, Carol's hidden (a wildcard): nothing shows a key
        // of Carol's, so under hidden_recipients = reject she is not
        // satisfied.
        refused(
            &k.bob_and_hidden_carol,
            &[RECIPIENT, CAROL],
            "(not encrypted to a key of carol@example.net (encrypted to ",
        ),
    ];
    let mut c = client(every(UnknownRecipient::Reject)).await;
    for (i, (message, rcpts, reason)) in cases.into_iter().enumerate() {
        let s = spec(message, &rcpts);
        let t = if i == 0 {
            run_message(&mut c, &s).await.unwrap()
        } else {
            run_next_message(&mut c, &s).await.unwrap()
        };
        match reason {
            None => assert_eq!(t.outcome, Outcome::Accepted, "case {i}: {rcpts:?}"),
            Some(reason) => {
                let Outcome::Rejected { reply, .. } = &t.outcome else {
                    panic!(
                        "case {i}: {rcpts:?}: expected a refusal, got {:?}",
                        t.outcome
                    )
                };
                let reply = reply.clone().unwrap_or_default();
                assert!(reply.starts_with("550 5.7.1 "), "case {i}: {reply}");
                assert!(reply.contains(reason), "case {i}: {reply}");
                if i == 6 {
                    assert!(reply.ends_with(", hidden recipient))"), "{reply}");
                }
            }
        }
    }
    c.quit().await.unwrap();

    // unknown_recipient = accept: Mallory (no key) does not block, Carol
    // (a key the message is not encrypted to) still does.
    let mut c = client(every(UnknownRecipient::Accept)).await;
    let s = spec(
        pgp_mime("e", &k.to_bob_and_carol),
        &[RECIPIENT, MALLORY, CAROL],
    );
    let t = run_message(&mut c, &s).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let s = spec(pgp_mime("e", &k.to_bob), &[RECIPIENT, MALLORY, CAROL]);
    let t = run_next_message(&mut c, &s).await.unwrap();
    let Outcome::Rejected { reply, .. } = &t.outcome else {
        panic!("expected a refusal, got {:?}", t.outcome)
    };
    assert!(
        reply
            .as_deref()
            .unwrap_or("")
            .contains("(not encrypted to a key of carol@example.net"),
        "{reply:?}"
    );
    c.quit().await.unwrap();
}
