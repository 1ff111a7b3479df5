//! The chatmail rules over the milter protocol (our MTA-side client, the
//! milter in-process): the SecureJoin exemption, the From check of
//! authenticated submissions, and `profile = "chatmail"` as a file loads it.

use std::path::Path;

use bytes::Bytes;
use minimilter::proto::Step;
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, proto::Offer,
    run_message,
};
use pgp_milter::{Config, PgpMilter, Policy};

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

fn chatmail() -> Policy {
    Config::parse(
        "profile = \"chatmail\"\n",
        Path::new("/etc/pgp-milter.toml"),
    )
    .unwrap()
    .policy
}

async fn outcome(policy: Policy, spec: MessageSpec) -> Outcome {
    let mut c = client(policy).await;
    let t = run_message(&mut c, &spec).await.unwrap();
    t.outcome
}

fn spec(message: &str) -> MessageSpec {
    MessageSpec {
        from: "alice@relay.example".into(),
        rcpts: vec!["bob@relay.example".into()],
        message: Bytes::from(message.to_owned()),
        ..MessageSpec::default()
    }
}

fn authenticated(s: MessageSpec) -> MessageSpec {
    authenticated_as(s, "alice@relay.example")
}

fn authenticated_as(s: MessageSpec, login: &str) -> MessageSpec {
    MessageSpec {
        macros: vec![("{auth_authen}".into(), login.into())],
        ..s
    }
}

fn reply(o: &Outcome) -> String {
    match o {
        Outcome::Rejected { reply, .. } => reply.clone().unwrap_or_default(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The unencrypted first SecureJoin step in the shape Delta Chat sends
/// it (key data shortened).
const HANDSHAKE: &str = "Subject: [...]\r\n\
From: <alice@relay.example>\r\n\
To: <bob@relay.example>\r\n\
Chat-Version: 1.0\r\n\
Secure-Join: vc-request\r\n\
Secure-Join-Invitenumber: Zt2dFq8Ykz\r\n\
Autocrypt: addr=alice@relay.example; prefer-encrypt=mutual;\r\n\
\x20keydata=xjMEZ2dlZhYJKwYBBAHaRw8BAQdAabcdefghijklmnopqrstuvwxyz0123456789\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\"\r\n\
\r\n\
\r\n\
--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Secure-Join: vc-request\r\n\
\r\n\
\r\n\
--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--\r\n";

#[tokio::test]
async fn the_securejoin_first_step_passes_only_when_configured() {
    assert_eq!(
        outcome(chatmail(), spec(HANDSHAKE)).await,
        Outcome::Accepted
    );
    // Also as an authenticated submission (outgoing side).
    assert_eq!(
        outcome(chatmail(), authenticated(spec(HANDSHAKE))).await,
        Outcome::Accepted
    );
    let vg = HANDSHAKE.replace("vc-request", "vg-request");
    assert_eq!(outcome(chatmail(), spec(&vg)).await, Outcome::Accepted);
    // Without the setting it is plaintext like any other.
    let o = outcome(Policy::default(), spec(HANDSHAKE)).await;
    assert!(reply(&o).starts_with("550 5.7.1 "), "{o:?}");
}

#[tokio::test]
async fn the_captured_delta_chat_first_step_passes() {
    // As deltachat-rpc-server 2.65.0 sent it (tests/deltachat/), on the
    // wire with CRLF.
    let real = include_str!("deltachat/vc-request.eml").replace('\n', "\r\n");
    let s = MessageSpec {
        from: "carol@example.org".into(),
        rcpts: vec!["alice@example.org".into()],
        ..spec(&real)
    };
    assert_eq!(outcome(chatmail(), s.clone()).await, Outcome::Accepted);
    assert_eq!(
        outcome(chatmail(), authenticated_as(s.clone(), "carol@example.org")).await,
        Outcome::Accepted
    );
    // With one more line of text it is plaintext.
    let more = real.replace(
        "\r\nSecure-Join: vc-request\r\n--",
        "\r\nSecure-Join: vc-request\r\nP.S. the door code is 1234\r\n--",
    );
    assert_ne!(more, real);
    let o = outcome(
        chatmail(),
        MessageSpec {
            message: Bytes::from(more),
            ..s
        },
    )
    .await;
    assert!(reply(&o).starts_with("523 "), "{o:?}");
}

#[tokio::test]
async fn handshake_look_alikes_are_refused_with_the_chatmail_reply() {
    let body = "\r\nSecure-Join: vc-request\r\n\r\n";
    let end = "--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--";
    let look_alikes = [
        // The header with other content.
        HANDSHAKE.replace(body, "\r\nhello bob, my PIN is 1234\r\n"),
        HANDSHAKE.replace(body, "\r\nSecure-Join: vc-request\r\nand a secret\r\n"),
        // An extra part.
        HANDSHAKE.replace(
            end,
            "--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\r\nContent-Type: text/plain\r\n\r\nsecret\r\n\
             --Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--",
        ),
        // A different step in the body, a different header value.
        HANDSHAKE.replace(body, "\r\nSecure-Join: vg-request\r\n"),
        HANDSHAKE.replace(
            "Secure-Join: vc-request\r\nSecure-Join-I",
            "Secure-Join: vc-auth-required\r\nSecure-Join-I",
        ),
        // Text after the closing boundary, an attachment.
        format!("{HANDSHAKE}the epilogue talks\r\n"),
        HANDSHAKE.replace(
            "charset=utf-8\r\n",
            "charset=utf-8\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n",
        ),
        // Larger than any handshake (the early refusal comes back).
        HANDSHAKE.replace(
            body,
            &format!("\r\nSecure-Join: vc-request\r\n{}\r\n", "x".repeat(40_000)),
        ),
    ];
    for m in look_alikes {
        let o = outcome(chatmail(), spec(&m)).await;
        assert_eq!(
            reply(&o),
            "523 Encryption Needed: Invalid Unencrypted Mail",
            "{m}"
        );
    }
    // The body without the header is plaintext too.
    let no_header = HANDSHAKE.replace("Secure-Join: vc-request\r\nSecure-Join-I", "Secure-Join-I");
    assert!(matches!(
        outcome(chatmail(), spec(&no_header)).await,
        Outcome::Rejected { .. }
    ));
}

fn plain_from(from: &str) -> String {
    format!("From: {from}\r\nTo: <bob@relay.example>\r\nSubject: hi\r\n\r\nhello\r\n")
}

#[tokio::test]
async fn an_authenticated_submission_from_another_address_gets_554() {
    let forged = authenticated(spec(&plain_from("Bob <bob@relay.example>")));
    let o = outcome(chatmail(), forged.clone()).await;
    assert_eq!(
        reply(&o),
        "554 5.7.1 From <bob@relay.example> does not match envelope sender <alice@relay.example>"
    );
    // The From check comes before the content: also for a handshake.
    let h = HANDSHAKE.replace("From: <alice@", "From: <mallory@");
    assert!(reply(&outcome(chatmail(), authenticated(spec(&h))).await).starts_with("554 "));
    // Two From fields, none.
    let two = format!(
        "From: alice@relay.example\r\n{}",
        plain_from("bob@relay.example")
    );
    assert!(reply(&outcome(chatmail(), authenticated(spec(&two))).await).starts_with("554 "));
    let none = "To: bob@relay.example\r\n\r\nhello\r\n";
    assert_eq!(
        reply(&outcome(chatmail(), authenticated(spec(none))).await),
        "554 5.7.1 no From header field"
    );
    // The right From on plaintext: the content rule answers, not the From rule.
    let own = authenticated(spec(&plain_from("\"Alice\" <Alice@Relay.Example>")));
    assert_eq!(
        reply(&outcome(chatmail(), own).await),
        "523 Encryption Needed: Invalid Unencrypted Mail"
    );
    // Not authenticated: From is not ours to check (content decides).
    let incoming = spec(&plain_from("Bob <bob@relay.example>"));
    assert!(reply(&outcome(chatmail(), incoming).await).starts_with("523 "));
    // Off by default: the default policy skips authenticated mail.
    assert_eq!(outcome(Policy::default(), forged).await, Outcome::Accepted);
    let from_only = Policy {
        from_must_match_sender: true,
        ..Policy::default()
    };
    let forged = authenticated(spec(&plain_from("bob@relay.example")));
    assert!(reply(&outcome(from_only, forged).await).starts_with("554 5.7.1 From <bob@"));
}

#[test]
fn the_chatmail_profile_is_one_line_and_the_file_wins() {
    let p = chatmail();
    assert!(p.accept_securejoin && p.from_must_match_sender && !p.skip_authenticated);
    assert_eq!(p.bounces, pgp_milter::policy::Bounces::AcceptReports);
    assert_eq!(
        p.reject_reply.to_string(),
        "523 Encryption Needed: Invalid Unencrypted Mail"
    );
    let c = Config::parse(
        "profile = \"chatmail\"\nskip_authenticated = true\nreject_reply = \"550 5.7.1 no ({reason})\"\n",
        Path::new("/etc/pgp-milter.toml"),
    )
    .unwrap();
    assert!(c.policy.skip_authenticated && c.policy.accept_securejoin);
    assert_eq!(c.policy.reject_reply.to_string(), "550 5.7.1 no ({reason})");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("from_must_match_sender")),
        "{:?}",
        c.warnings
    );
    let d = Config::parse("", Path::new("/etc/pgp-milter.toml")).unwrap();
    assert!(!d.policy.accept_securejoin && !d.policy.from_must_match_sender);
    for (text, key) in [
        ("profile = \"chatmal\"", "chatmal"),
        (
            "from_mismatch_reply = \"450 no\"",
            "key `from_mismatch_reply`",
        ),
        ("accept_securejoin = \"yes\"", "accept_securejoin"),
    ] {
        let e = Config::parse(text, Path::new("/etc/pgp-milter.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/pgp-milter.toml: ") && e.contains(key),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_handshake_candidate_defers_the_early_refusal_only_while_it_is_small() {
    let step_of = |o: &Outcome| match o {
        Outcome::Rejected { at, .. } => *at,
        other => panic!("expected a rejection, got {other:?}"),
    };
    // Plaintext without a Secure-Join field: refused while it streams, as
    // without the profile.
    let big_text = format!("{}\r\n", "plain words ".repeat(20_000));
    let plain = HANDSHAKE
        .replace("Secure-Join: vc-request\r\nSecure-Join-I", "Secure-Join-I")
        .replace(
            "\r\nSecure-Join: vc-request\r\n\r\n",
            &format!("\r\n{big_text}"),
        );
    assert_eq!(
        step_of(&outcome(chatmail(), spec(&plain)).await),
        Step::Body
    );
    // With the field, small: judged at the end (and refused there, it is
    // not the handshake).
    let small = HANDSHAKE.replace("\r\nSecure-Join: vc-request\r\n\r\n", "\r\nhello\r\n");
    assert_eq!(
        step_of(&outcome(chatmail(), spec(&small)).await),
        Step::EndOfMessage
    );
    // With the field, larger than any handshake: refused while it streams.
    let large = HANDSHAKE.replace(
        "\r\nSecure-Join: vc-request\r\n\r\n",
        &format!("\r\n{big_text}"),
    );
    assert_eq!(
        step_of(&outcome(chatmail(), spec(&large)).await),
        Step::Body
    );
}

#[test]
fn check_config_shows_what_the_profile_expands_to() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgp-milter.toml");
    std::fs::write(&file, "profile = \"chatmail\"\nskip_authenticated = true\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgp-milter"))
        .arg("--config")
        .arg(&file)
        .arg("--check-config")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for line in [
        "profile = \"chatmail\"",
        "reject_reply = \"523 Encryption Needed: Invalid Unencrypted Mail\"",
        "accept_securejoin = true",
        "from_must_match_sender = true",
        "bounces = \"accept-reports\"",
        // The file's own key wins over the profile.
        "skip_authenticated = true",
        "# profile \"chatmail\" sets skip_authenticated = false (unless the file sets it)",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
}

mod never_panic {
    use pgp_milter::mime::transcript;
    use pgp_milter::securejoin::handshake;
    use pgp_milter::sender_match::{check, from_mailbox};
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Any bytes, and the real first step with bytes spliced into its
        /// body: an answer, never a panic; a splice that passes reads as
        /// the real message does (it carries nothing).
        #[test]
        fn handshake_reads_anything(
            junk in proptest::collection::vec(any::<u8>(), 0..600),
            at in 0usize..2000,
        ) {
            let _ = handshake(&junk);
            let real: &[u8] = include_bytes!("deltachat/vc-request.eml");
            let body_at = real.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
            let at = (body_at + at).min(real.len());
            let mut m = real[..at].to_vec();
            m.extend_from_slice(&junk);
            m.extend_from_slice(&real[at..]);
            if handshake(&m).is_ok() && junk.iter().any(|b| !b.is_ascii_whitespace()) {
                prop_assert_eq!(transcript(&m, &[]), transcript(real, &[]));
            }
        }

        #[test]
        fn from_fields_read_anything(value in "\\PC{0,200}", sender in "[a-z@.]{0,30}") {
            let _ = from_mailbox(&value);
            let _ = check(&[value], &sender);
        }
    }
}
