//! The `pgp-milter` daemon behind a real Postfix on 127.0.0.1: encrypted
//! mail is delivered, plain mail refused during the SMTP session, postmaster
//! passes, mixed policies are split with 452, a stopped milter gives
//! Postfix's tempfail; and the recipient-key policy with GnuPG-made keys.
//!
//! Needs Postfix from Debian and root (scripts/install-test-deps.sh) and
//! GnuPG (package `gnupg`); without them this fails with instructions.

mod support;

use support::served::{BehindPostfix, behind_postfix, start_milter};

use std::path::Path;
use std::time::Duration;

use testkit::{Postfix, SmtpClient, SmtpService};

/// The daemon with `config`, once it listens on `socket`; killed on drop.
fn send(c: &mut SmtpClient, message: &[u8]) -> testkit::Reply {
    let r = c.mail("<alice@client.example>").unwrap();
    assert!(r.is_positive(), "{r:?}");
    let r = c.rcpt("<bob@example.org>").unwrap();
    assert!(r.is_positive(), "{r:?}");
    c.data(message).unwrap()
}

#[ignore = "needs postfix and gpg"]
#[test]
fn postfix_delivers_encrypted_mail_and_refuses_plain_mail() {
    let corpus = support::gpg();
    let BehindPostfix {
        postfix: pf,
        mut daemon,
        ..
    } = behind_postfix(Postfix::prepare().unwrap().user("postmaster"), "");
    let ctx = |what: &str| format!("{what}\n--- pgp-milter log ---\n{}", daemon.log_text());

    let mut c = SmtpClient::connect(pf.port("pgp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());

    // Encrypted PGP/MIME: queued and delivered.
    let subject = testkit::unique_id("encrypted");
    let r = send(&mut c, &support::pgp_mime(&subject, &corpus.encrypted));
    assert_eq!(r.code, 250, "{}", ctx(&format!("encrypted: {r:?}")));

    // Plain text on the same session: refused with the reason.
    let plain_subject = testkit::unique_id("plain");
    let r = send(
        &mut c,
        &support::plain(&plain_subject, "Hello, in the clear.\n"),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("plain: {r:?}")));
    assert!(
        r.text().contains(
            "5.7.1 Only OpenPGP-encrypted mail is accepted here \
             (unencrypted content: text/plain part)"
        ),
        "{r:?}"
    );

    // Inline, base64-encoded armor (the seed refused this): delivered.
    let inline_subject = testkit::unique_id("inline");
    let r = send(
        &mut c,
        &support::inline(
            &inline_subject,
            &corpus.encrypted,
            support::Cte::Base64,
            false,
        ),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("inline base64: {r:?}")));
    c.quit().unwrap();

    let mail = pf
        .wait_for_delivery("bob", 2, Duration::from_secs(30))
        .unwrap();
    assert!(
        mail.iter().any(|m| m.contains(&subject)),
        "PGP/MIME delivered"
    );
    assert!(
        mail.iter().any(|m| m.contains(&inline_subject)),
        "inline delivered"
    );
    assert!(
        !mail.iter().any(|m| m.contains(&plain_subject)),
        "plain not delivered"
    );

    // One log line per decision, with the queue id, envelope and reason.
    let log = daemon.log_text();
    let decisions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("minimilter::message"))
        .collect();
    assert_eq!(decisions.len(), 3, "{log}");
    assert!(decisions[0].contains("verdict=accept"), "{log}");
    assert!(
        decisions[0].contains("from=<alice@client.example>"),
        "{log}"
    );
    assert!(decisions[0].contains("to=<bob@example.org>"), "{log}");
    assert!(
        !decisions[0].contains("queue_id=-"),
        "queue id logged: {log}"
    );
    assert!(decisions[1].contains("verdict=reject"), "{log}");
    assert!(
        decisions[1].contains("reason=unencrypted content: text/plain part"),
        "{log}"
    );
    assert!(
        decisions[2].contains("reason=encrypted (inline PGP)"),
        "{log}"
    );

    // Postmaster is never checked; a transaction mixing it with an enforced
    // recipient defers the second with 452 4.5.3, and the client's retry
    // for it alone is delivered.
    let mut c = SmtpClient::connect(pf.port("pgp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let to_postmaster = testkit::unique_id("postmaster");
    let r = send_to(
        &mut c,
        "postmaster@example.org",
        &support::plain(&to_postmaster, "The filter ate my mail.\n"),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("postmaster: {r:?}")));
    let mixed = testkit::unique_id("mixed");
    let message = support::plain(&mixed, "Mixed.\n");
    assert!(c.mail("<alice@client.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let r = c.rcpt("<postmaster@example.org>").unwrap();
    assert_eq!(r.code, 452, "{}", ctx(&format!("mixed: {r:?}")));
    assert_eq!(
        r.text(),
        "4.5.3 <postmaster@example.org>: Recipient under a different OpenPGP policy; \
         send to this recipient separately",
        "{r:?}"
    );
    let r = c.data(&message).unwrap();
    assert_eq!(r.code, 550, "{r:?}");
    let r = send_to(&mut c, "postmaster@example.org", &message);
    assert_eq!(r.code, 250, "{}", ctx(&format!("mixed retry: {r:?}")));
    c.quit().unwrap();
    let mail = pf
        .wait_for_delivery("postmaster", 2, Duration::from_secs(30))
        .unwrap();
    assert!(mail.iter().any(|m| m.contains(&to_postmaster)), "{mail:?}");
    assert!(mail.iter().any(|m| m.contains(&mixed)), "{mail:?}");
    assert!(
        !pf.delivered("bob").iter().any(|m| m.contains(&mixed)),
        "refused part of the mixed transaction delivered"
    );

    // Milter down: milter_default_action = tempfail keeps the mail at the
    // client.
    daemon.stop();
    let mut c = SmtpClient::connect(pf.port("pgp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    // Postfix logs `milter-reject: CONNECT ... 451 4.7.1` and, with its
    // delayed rejects, answers at MAIL FROM.
    let r = c.mail("<alice@client.example>").unwrap();
    assert_eq!(r.code, 451, "milter down: {r:?}\n{}", pf.log());
    assert_eq!(
        r.text(),
        "4.7.1 Service unavailable - try again later",
        "{r:?}"
    );
    let _ = c.quit();
    pf.wait_for_log(
        "milter-reject: CONNECT from localhost[127.0.0.1]: 451 4.7.1",
        Duration::from_secs(10),
    )
    .unwrap();
}

/// `message` from alice to `rcpt` on an open session; the reply after DATA.
fn send_to(c: &mut SmtpClient, rcpt: &str, message: &[u8]) -> testkit::Reply {
    let r = c.mail("<alice@client.example>").unwrap();
    assert!(r.is_positive(), "{r:?}");
    let r = c.rcpt(&format!("<{rcpt}>")).unwrap();
    assert!(r.is_positive(), "{r:?}");
    c.data(message).unwrap()
}

/// A configuration requiring a recipient's key from `keyring`.
fn keyed_config(socket: &Path, keyring: &Path, hidden: &str) -> String {
    format!(
        "listen = [\"unix:{}\"]\nsocket_mode = \"666\"\nkeyring_dir = \"{}\"\n\
         require_recipient_key = true\nhidden_recipients = \"{hidden}\"\n",
        socket.display(),
        keyring.display()
    )
}

/// The refusal Postfix relays for `reason`.
fn refusal(reason: &str) -> String {
    format!("5.7.1 Only OpenPGP-encrypted mail is accepted here ({reason})")
}

#[ignore = "needs postfix and gpg"]
#[test]
fn postfix_enforces_recipient_keys() {
    // Real keys made by GnuPG (`--batch --quick-generate-key` in a temporary
    // GNUPGHOME): the keyring directory holds bob.asc and carol.asc; Mallory's
    // key exists but is not in it.
    let k = support::keyed();
    let keyring = support::keyring_dir(&[]);
    // In GnuPG's listing a certificate's `uid` lines come before its
    // subkeys, so the subkey is the encryption key after Mallory's `pub`.
    let keys = support::colon_keys(&k.colons);
    let mallory = keys
        .iter()
        .position(|key| key.kind == "pub" && key.uids.iter().any(|u| u.contains(support::MALLORY)))
        .expect("Mallory's certificate");
    let mallory_subkey = keys[mallory + 1..]
        .iter()
        .take_while(|key| key.kind == "sub")
        .find(|key| key.capabilities.contains('e'))
        .expect("Mallory's encryption subkey")
        .key_id
        .clone();

    // Two milters behind one Postfix: hidden recipients refused (the
    // default, written out) on service "strict", accepted on "hidden-ok".
    let builder = Postfix::prepare().unwrap();
    let dir = builder.path().to_owned();
    let strict_sock = builder.socket_path("keys.sock");
    let lenient_sock = builder.socket_path("keys-hidden.sock");
    let pf = builder
        .service(SmtpService::new("strict").with_milters(format!("unix:{}", strict_sock.display())))
        .service(
            SmtpService::new("hidden-ok").with_milters(format!("unix:{}", lenient_sock.display())),
        )
        .start()
        .unwrap();
    let strict_config = dir.join("strict.toml");
    std::fs::write(
        &strict_config,
        keyed_config(&strict_sock, keyring.path(), "reject"),
    )
    .unwrap();
    let lenient_config = dir.join("hidden-ok.toml");
    std::fs::write(
        &lenient_config,
        keyed_config(&lenient_sock, keyring.path(), "accept"),
    )
    .unwrap();
    let strict = start_milter(&strict_config, &strict_sock, dir.join("strict.log"));
    let lenient = start_milter(&lenient_config, &lenient_sock, dir.join("hidden-ok.log"));
    let ctx = |what: &str| {
        format!(
            "{what}\n--- strict milter ---\n{}\n--- hidden-ok milter ---\n{}\n--- postfix ---\n{}",
            strict.log_text(),
            lenient.log_text(),
            pf.log()
        )
    };

    let mut c = SmtpClient::connect(pf.port("strict")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());

    // Encrypted to the recipient's key: delivered.
    let to_bob = testkit::unique_id("key-bob");
    let r = send_to(
        &mut c,
        "bob@example.org",
        &support::pgp_mime(&to_bob, &k.to_bob),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("to bob: {r:?}")));

    // Encrypted to Bob and Carol (inline): Bob's key is among them.
    let to_both = testkit::unique_id("key-both");
    let r = send_to(
        &mut c,
        "bob@example.org",
        &support::inline(&to_both, &k.to_bob_and_carol, support::Cte::SevenBit, false),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("to bob and carol: {r:?}")));

    // Encrypted to someone else's key only: refused, naming the key ID
    // GnuPG reports for Mallory's encryption subkey.
    let to_mallory = testkit::unique_id("key-mallory");
    let r = send_to(
        &mut c,
        "bob@example.org",
        &support::pgp_mime(&to_mallory, &k.to_mallory),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("to mallory: {r:?}")));
    assert_eq!(
        r.text(),
        refusal(&format!(
            "not encrypted to a key of bob@example.org (encrypted to {mallory_subkey})"
        )),
        "{r:?}"
    );

    // Hidden recipient (`--throw-keyids`) with hidden_recipients = "reject".
    let hidden = testkit::unique_id("key-hidden");
    let hidden_msg = support::pgp_mime(&hidden, &k.throw_keyids_bob);
    let r = send_to(&mut c, "bob@example.org", &hidden_msg);
    assert_eq!(r.code, 550, "{}", ctx(&format!("hidden: {r:?}")));
    assert_eq!(
        r.text(),
        refusal(
            "encrypted to hidden recipients only (wildcard key IDs), \
             which do not show a key of bob@example.org"
        ),
        "{r:?}"
    );

    // Plain text: refused as without recipient keys.
    let plain = testkit::unique_id("key-plain");
    let r = send_to(
        &mut c,
        "bob@example.org",
        &support::plain(&plain, "In the clear.\n"),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("plain: {r:?}")));
    assert_eq!(
        r.text(),
        refusal("unencrypted content: text/plain part"),
        "{r:?}"
    );

    // A recipient without a key in the keyring (unknown_recipient =
    // "reject", the default): refused although the message is encrypted.
    let to_dave = testkit::unique_id("key-dave");
    let r = send_to(
        &mut c,
        "dave@example.org",
        &support::pgp_mime(&to_dave, &k.to_bob),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("dave: {r:?}")));
    assert_eq!(
        r.text(),
        refusal("no key for dave@example.org in the keyring"),
        "{r:?}"
    );
    c.quit().unwrap();

    // hidden_recipients = "accept": the same hidden-recipient message is
    // delivered; Mallory's is still refused.
    let mut c = SmtpClient::connect(pf.port("hidden-ok")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let hidden_ok = testkit::unique_id("key-hidden-ok");
    let r = send_to(
        &mut c,
        "bob@example.org",
        &support::pgp_mime(&hidden_ok, &k.throw_keyids_bob),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("hidden, accept: {r:?}")));
    let r = send_to(
        &mut c,
        "bob@example.org",
        &support::pgp_mime(&to_mallory, &k.to_mallory),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("mallory, accept: {r:?}")));
    c.quit().unwrap();

    let mail = pf
        .wait_for_delivery("bob", 3, Duration::from_secs(30))
        .unwrap();
    for delivered in [&to_bob, &to_both, &hidden_ok] {
        assert!(
            mail.iter().any(|m| m.contains(delivered.as_str())),
            "{delivered} not delivered"
        );
    }
    for refused in [&to_mallory, &hidden, &plain] {
        assert!(
            !mail.iter().any(|m| m.contains(refused.as_str())),
            "{refused} delivered"
        );
    }
    assert!(pf.delivered("dave").is_empty(), "mail for dave delivered");

    // Refused during the session: Postfix queued nothing, so no bounce.
    let queue = pf.queue().unwrap();
    assert!(
        !queue.contains("alice@client.example"),
        "a bounce is queued:\n{queue}"
    );
    assert!(
        !pf.log().contains("sender non-delivery notification"),
        "{}",
        pf.log()
    );

    // The decisions name which key let the message through.
    strict
        .wait_for_log(
            "verdict=accept reason=encrypted (PGP/MIME) to a key of bob@example.org",
            Duration::from_secs(10),
        )
        .unwrap();
    lenient
        .wait_for_log(
            "reason=encrypted (PGP/MIME) to a hidden recipient (accepted as bob@example.org)",
            Duration::from_secs(10),
        )
        .unwrap();
}

/// Postfix 3.7 makes real bounces (its test configuration has no outbound
/// transport, so mail to another domain bounces at once, and bounce(8)
/// delivers the report to the local sender's maildir without any milter);
/// those reports are then sent to the milter from the null sender with
/// `bounces = "accept-reports"`.
#[ignore = "needs postfix and gpg"]
#[test]
fn postfix_made_bounces_pass_only_as_reports_without_plaintext() {
    let corpus = support::gpg();
    let BehindPostfix {
        postfix: pf,
        daemon,
        ..
    } = behind_postfix(
        Postfix::prepare()
            .unwrap()
            // Accepts mail to other domains at RCPT (otherwise smtpd refuses
            // it there, seeing the error transport), so it bounces in the queue.
            .service(SmtpService::new("out").with_option("smtpd_reject_unlisted_recipient", "no")),
        "bounces = \"accept-reports\"\n",
    );

    // Alice sends four messages out; each bounces back to her: plaintext
    // with RET=HDRS (the report returns its headers only), plaintext in
    // full, PGP/MIME in full, and plaintext larger than Postfix's
    // bounce_size_limit (50000 bytes by default), of which Postfix returns
    // the headers only.
    let mut out = SmtpClient::connect(pf.port("out")).unwrap();
    assert!(out.ehlo("client.example").unwrap().is_positive());
    let plans = "The plans, in the clear.\n";
    let originals = [
        ("<alice@example.org> RET=HDRS", testkit::unique_id("hdrs")),
        ("<alice@example.org>", testkit::unique_id("full")),
        ("<alice@example.org>", testkit::unique_id("encrypted")),
        ("<alice@example.org>", testkit::unique_id("large")),
    ];
    for (i, (from, subject)) in originals.iter().enumerate() {
        let message = match i {
            2 => support::pgp_mime(subject, &corpus.encrypted),
            3 => support::plain(subject, &plans.repeat(3000)),
            _ => support::plain(subject, plans),
        };
        assert!(out.mail(from).unwrap().is_positive());
        assert!(out.rcpt("<nobody@remote.example>").unwrap().is_positive());
        let r = out.data(&message).unwrap();
        assert_eq!(r.code, 250, "{r:?}");
    }
    out.quit().unwrap();
    let bounces = pf
        .wait_for_delivery("alice", 4, Duration::from_secs(30))
        .unwrap();
    let bounce_of = |subject: &str| -> String {
        bounces
            .iter()
            .find(|b| b.contains(subject))
            .unwrap_or_else(|| panic!("no bounce for {subject}:\n{bounces:?}"))
            .clone()
    };
    let [hdrs, full, encrypted, large] = [0, 1, 2, 3].map(|i| bounce_of(&originals[i].1));
    // They are Postfix's reports, in the forms the policy distinguishes.
    for b in [&hdrs, &full, &encrypted, &large] {
        assert!(
            b.contains("Content-Type: multipart/report; report-type=delivery-status;"),
            "{b}"
        );
        assert!(b.contains("Content-Type: message/delivery-status"), "{b}");
    }
    for b in [&hdrs, &large] {
        assert!(b.contains("Content-Type: text/rfc822-headers"), "{b}");
        assert!(!b.contains(plans.trim_end()), "{b}");
    }
    assert!(full.contains("Content-Type: message/rfc822"), "{full}");
    assert!(full.contains(plans.trim_end()), "{full}");
    assert!(
        encrypted.contains("Content-Type: message/rfc822"),
        "{encrypted}"
    );

    let ctx = |what: &str| format!("{what}\n--- pgp-milter log ---\n{}", daemon.log_text());
    let mut c = SmtpClient::connect(pf.port("pgp")).unwrap();
    assert!(c.ehlo("mx.remote.example").unwrap().is_positive());
    let mut send = |from: &str, message: &str| {
        assert!(c.mail(from).unwrap().is_positive());
        assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
        c.data(message.as_bytes()).unwrap()
    };
    let r = send("<>", &hdrs);
    assert_eq!(r.code, 250, "{}", ctx(&format!("headers only: {r:?}")));
    let r = send("<>", &encrypted);
    assert_eq!(
        r.code,
        250,
        "{}",
        ctx(&format!("encrypted returned: {r:?}"))
    );
    let r = send("<>", &large);
    assert_eq!(
        r.code,
        250,
        "{}",
        ctx(&format!("large, headers only: {r:?}"))
    );
    let r = send("<>", &full);
    assert_eq!(
        r.code,
        550,
        "{}",
        ctx(&format!("plaintext returned: {r:?}"))
    );
    assert!(
        r.text().contains(
            "(delivery status report returns a message that is not OpenPGP: \
             unencrypted content: text/plain part)"
        ),
        "{r:?}"
    );
    // The same report from a real sender is ordinary plaintext.
    let r = send("<mailer@remote.example>", &hdrs);
    assert_eq!(r.code, 550, "{}", ctx(&format!("from a sender: {r:?}")));
    assert!(
        r.text().ends_with("(unencrypted content: text/plain part)"),
        "{r:?}"
    );
    // A real report followed by 2 MB of plaintext after its closing
    // boundary: read to the end (no SKIP at the boundary) and refused.
    let mut leak = hdrs.clone();
    for i in 0..60_000 {
        leak.push_str(&format!("{i:05} plaintext after the report's end\n"));
    }
    assert!(leak.len() > 2_000_000);
    let r = send("<>", &leak);
    assert_eq!(r.code, 550, "{}", ctx(&format!("epilogue: {r:?}")));
    assert!(
        r.text()
            .ends_with("text after the closing boundary (epilogue))"),
        "{r:?}"
    );
    c.quit().unwrap();
    let mail = pf
        .wait_for_delivery("bob", 3, Duration::from_secs(30))
        .unwrap();
    assert_eq!(mail.len(), 3, "{mail:?}");
    for subject in [&originals[0].1, &originals[2].1, &originals[3].1] {
        assert!(
            mail.iter().any(|m| m.contains(subject.as_str())),
            "{mail:?}"
        );
    }
    let log = daemon.log_text();
    assert!(
        log.contains("reason=delivery status report (bounce) from dns; mx.testkit.invalid: failed rfc822; nobody@remote.example"),
        "{log}"
    );
}

/// `message` from alice to the raw `RCPT TO` argument `rcpt_arg` (angle
/// brackets included, spelled as a client may); the reply after DATA.
fn send_raw(c: &mut SmtpClient, rcpt_arg: &str, message: &[u8]) -> testkit::Reply {
    let r = c.mail("<alice@client.example>").unwrap();
    assert!(r.is_positive(), "{r:?}");
    let r = c.rcpt(rcpt_arg).unwrap();
    assert!(r.is_positive(), "RCPT TO:{rcpt_arg}: {r:?}");
    c.data(message).unwrap()
}

/// The reviewer's bypass, through a real Postfix: `RCPT TO:<bob@example.org.>`
/// and `<"bob"@example.org>` are delivered by Postfix to bob@example.org, so
/// plaintext to them must be refused like plaintext to bob. With
/// `recipient_delimiter`, `bob+tag@` is bob's mailbox for the keyring (real
/// GnuPG keys) and `postmaster+x@` is a role address.
#[ignore = "needs postfix and gpg"]
#[test]
fn postfix_spellings_and_extensions_of_a_recipient_get_its_policy() {
    let corpus = support::gpg();
    let k = support::keyed();
    let keyring = support::keyring_dir(&[]);
    let builder = Postfix::prepare()
        .unwrap()
        .user("postmaster")
        .main_cf("recipient_delimiter", "+")
        // Unqualified recipients are in the mail domain, as on a real MX
        // whose myorigin is its domain.
        .main_cf("myorigin", "example.org");
    let dir = builder.path().to_owned();
    let dom_sock = builder.socket_path("dom.sock");
    let keys_sock = builder.socket_path("keys.sock");
    let pf = builder
        .service(SmtpService::new("dom").with_milters(format!("unix:{}", dom_sock.display())))
        .service(SmtpService::new("keys").with_milters(format!("unix:{}", keys_sock.display())))
        .start()
        .unwrap();
    // The configured domain has a trailing dot and capitals: it is the same
    // domain, and must match.
    let dom_config = dir.join("dom.toml");
    std::fs::write(
        &dom_config,
        format!(
            "listen = [\"unix:{}\"]\nsocket_mode = \"666\"\nenforce_domains = [\"Example.ORG.\"]\n",
            dom_sock.display()
        ),
    )
    .unwrap();
    let keys_config = dir.join("keys.toml");
    std::fs::write(
        &keys_config,
        keyed_config(&keys_sock, keyring.path(), "reject"),
    )
    .unwrap();
    let dom = start_milter(&dom_config, &dom_sock, dir.join("dom.log"));
    let keys = start_milter(&keys_config, &keys_sock, dir.join("keys.log"));
    let ctx = |what: &str| {
        format!(
            "{what}\n--- dom milter ---\n{}\n--- keys milter ---\n{}\n--- postfix ---\n{}",
            dom.log_text(),
            keys.log_text(),
            pf.log()
        )
    };

    // enforce_domains: every spelling of bob is enforced.
    let mut c = SmtpClient::connect(pf.port("dom")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let mut plain_subjects = Vec::new();
    for rcpt in [
        "<bob@example.org>",
        "<bob@example.org.>",
        "<\"bob\"@example.org>",
        "<\"bob\"@EXAMPLE.org.>",
        "<bob>",
    ] {
        let subject = testkit::unique_id("plain-spelling");
        let r = send_raw(&mut c, rcpt, &support::plain(&subject, "In the clear.\n"));
        assert_eq!(r.code, 550, "{}", ctx(&format!("plain to {rcpt}: {r:?}")));
        assert_eq!(
            r.text(),
            refusal("unencrypted content: text/plain part"),
            "{rcpt}: {r:?}"
        );
        plain_subjects.push(subject);
    }
    // The same spellings with an encrypted message are delivered to bob:
    // they really reach bob's mailbox.
    let mut encrypted_subjects = Vec::new();
    for rcpt in ["<bob@example.org.>", "<bob>"] {
        let subject = testkit::unique_id("enc-spelling");
        let r = send_raw(
            &mut c,
            rcpt,
            &support::pgp_mime(&subject, &corpus.encrypted),
        );
        assert_eq!(
            r.code,
            250,
            "{}",
            ctx(&format!("encrypted to {rcpt}: {r:?}"))
        );
        encrypted_subjects.push(subject);
    }
    c.quit().unwrap();

    // require_recipient_key: bob+tag@ and "bob"@ are bob, with bob's key.
    let mut c = SmtpClient::connect(pf.port("keys")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let mut keyed_subjects = Vec::new();
    for rcpt in ["<bob+tag@example.org>", "<\"bob\"@example.org.>"] {
        let subject = testkit::unique_id("key-spelling");
        let r = send_raw(&mut c, rcpt, &support::pgp_mime(&subject, &k.to_bob));
        assert_eq!(r.code, 250, "{}", ctx(&format!("to bob as {rcpt}: {r:?}")));
        keyed_subjects.push(subject);
    }
    // Still bob's key that counts: Mallory's is refused for bob+tag.
    let to_mallory = testkit::unique_id("key-spelling-mallory");
    let r = send_raw(
        &mut c,
        "<bob+tag@example.org>",
        &support::pgp_mime(&to_mallory, &k.to_mallory),
    );
    assert_eq!(r.code, 550, "{}", ctx(&format!("mallory: {r:?}")));
    assert!(
        r.text()
            .contains("(not encrypted to a key of bob+tag@example.org (encrypted to "),
        "{r:?}"
    );
    // postmaster+x@ is the postmaster: plain text passes.
    let to_postmaster = testkit::unique_id("postmaster-ext");
    let r = send_raw(
        &mut c,
        "<postmaster+x@example.org>",
        &support::plain(&to_postmaster, "The filter ate my mail.\n"),
    );
    assert_eq!(r.code, 250, "{}", ctx(&format!("postmaster+x: {r:?}")));
    c.quit().unwrap();

    let mail = pf
        .wait_for_delivery("bob", 4, Duration::from_secs(30))
        .unwrap();
    for delivered in keyed_subjects.iter().chain(&encrypted_subjects) {
        assert!(
            mail.iter().any(|m| m.contains(delivered.as_str())),
            "{delivered} not delivered"
        );
    }
    for refused in plain_subjects.iter().chain([&to_mallory]) {
        assert!(
            !mail.iter().any(|m| m.contains(refused.as_str())),
            "{refused} delivered"
        );
    }
    let pm = pf
        .wait_for_delivery("postmaster", 1, Duration::from_secs(30))
        .unwrap();
    assert!(pm.iter().any(|m| m.contains(&to_postmaster)));
    // The log names the mailbox, not the client's spelling.
    dom.wait_for_log(
        "to=<bob@example.org> verdict=reject",
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        !dom.log_text().contains("example.org.>"),
        "{}",
        dom.log_text()
    );
}
