//! The detector and the policy on real GnuPG output, without any socket.

mod support;

use pgp_milter::policy::Require;
use pgp_milter::{Decision, Policy, detect};
use support::cases;

#[ignore = "needs gpg"]
#[test]
fn every_corpus_message_is_detected_as_expected() {
    let mut failures = Vec::new();
    for c in cases() {
        let d = detect(&c.message).to_string();
        if !d.starts_with(c.detected) {
            failures.push(format!("{}: expected {:?}, got {d:?}", c.name, c.detected));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[ignore = "needs gpg"]
#[test]
fn each_policy_passes_exactly_what_it_should() {
    let strict = Policy::default();
    let lax = Policy {
        require: Require::EncryptedOrSigned,
        ..Policy::default()
    };
    for c in cases() {
        let d = detect(&c.message);
        for (policy, expect) in [(&strict, c.passes_encrypted), (&lax, c.passes_signed)] {
            let decision = policy.judge(&d);
            assert_eq!(
                matches!(decision, Decision::Accept(_)),
                expect,
                "{} under {:?}: {decision:?}",
                c.name,
                policy.require
            );
            if let Decision::Reject(reply, _) = &decision {
                let text = reply.to_string();
                assert!(
                    text.starts_with("550 5.7.1 Only OpenPGP-encrypted"),
                    "{text}"
                );
            }
        }
    }
}

#[test]
fn refusals_name_the_reason() {
    let p = Policy::default();
    let plain = support::plain("r", "Hello\n");
    let Decision::Reject(reply, _) = p.judge(&detect(&plain)) else {
        panic!("plain text must be refused")
    };
    assert_eq!(
        reply.to_string(),
        "550 5.7.1 Only OpenPGP-encrypted mail is accepted here \
         (unencrypted content: text/plain part)"
    );
    let empty = support::plain("r", "\n");
    let Decision::Reject(reply, _) = p.judge(&detect(&empty)) else {
        panic!("an empty body must be refused")
    };
    assert_eq!(
        reply.to_string(),
        "550 5.7.1 Only OpenPGP-encrypted mail is accepted here (no OpenPGP data found)"
    );
}

#[ignore = "needs gpg"]
#[test]
fn damaged_pgp_mime_structures_are_refused() {
    let enc = &support::gpg().encrypted;
    let good = String::from_utf8(support::pgp_mime("d", enc)).unwrap();
    for (name, bad) in [
        ("no Version: 1", good.replace("Version: 1", "Version: 2")),
        (
            "wrong second part type",
            good.replace("application/octet-stream", "text/plain"),
        ),
        (
            "third plaintext part",
            good.replace(
                "--enc-b0undary--",
                "--enc-b0undary\r\nContent-Type: text/plain\r\n\r\nsurprise\r\n--enc-b0undary--",
            ),
        ),
    ] {
        let d = detect(bad.as_bytes());
        assert!(
            d.to_string()
                .starts_with("invalid OpenPGP data: PGP/MIME encrypted: "),
            "{name}: {d}"
        );
    }
    // Another protocol is not PGP/MIME; its parts are then judged one by
    // one like any multipart's (here: a control part and encrypted armor).
    let other = good.replace(
        "protocol=\"application/pgp-encrypted\"",
        "protocol=\"application/pkcs7-mime\"",
    );
    assert_eq!(
        detect(other.as_bytes()),
        pgp_milter::Detection::Encrypted(pgp_milter::Form::Inline)
    );
}

#[ignore = "needs gpg"]
#[test]
fn random_and_cut_inputs_never_panic() {
    // Every prefix of a real message, and byte flips in its armor: the
    // detector answers (usually "refused"), never panics.
    let m = support::pgp_mime("f", &support::gpg().encrypted);
    for cut in (0..m.len()).step_by(7) {
        let _ = detect(&m[..cut]);
    }
    let mut x: u32 = 12345;
    for _ in 0..300 {
        let mut v = m.clone();
        for _ in 0..4 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let i = (x as usize >> 4) % v.len();
            v[i] = (x >> 24) as u8;
        }
        let _ = detect(&v);
    }
}

/// The packets of the first armored block of `armored`, parsed by rpgp.
fn packets_of(armored: &str) -> Vec<pgp_milter::openpgp::PacketInfo> {
    let scan = pgp_milter::armor::scan(armored.as_bytes());
    let block = scan.blocks[0].as_ref().expect("armor");
    pgp_milter::openpgp::packets(&block.data).expect("packets")
}

#[ignore = "needs gpg"]
#[test]
fn gnupg_compressed_signed_messages_are_signed() {
    let g = support::gpg();
    // The inputs are what they claim: `--compress-algo none` gives
    // one-pass signature, literal data, signature; every algorithm gives
    // one Compressed Data packet holding the same three.
    let tags = |p: &[pgp_milter::openpgp::PacketInfo]| p.iter().map(|p| p.tag).collect::<Vec<_>>();
    assert_eq!(tags(&packets_of(&g.signed_message)), [4, 11, 2]);
    let mut all = vec![("default (zip)", g.signed_compressed.clone())];
    all.extend(g.signed_by_algo.iter().map(|(a, s)| (*a, s.clone())));
    let lax = Policy {
        require: Require::EncryptedOrSigned,
        ..Policy::default()
    };
    for (algo, armored) in &all {
        let p = packets_of(armored);
        assert_eq!(tags(&p), [8], "{algo}");
        assert_eq!(tags(p[0].contents.as_ref().unwrap()), [4, 11, 2], "{algo}");
        let d = detect(&support::plain("c", armored));
        assert_eq!(d.to_string(), "signed (inline PGP)", "{algo}");
        assert!(matches!(lax.judge(&d), Decision::Accept(_)), "{algo}");
        let Decision::Reject(reply, _) = Policy::default().judge(&d) else {
            panic!("{algo}: signed-only passed require = encrypted")
        };
        assert!(
            reply
                .to_string()
                .ends_with("(signed (inline PGP) but not encrypted)"),
            "{reply}"
        );
    }
}

#[ignore = "needs gpg"]
#[test]
fn a_decompression_bomb_is_refused() {
    let g = support::gpg();
    // 40 MiB of zeros, zlib-compressed by GnuPG: small on the wire.
    assert!(g.signed_bomb.len() < 1 << 20, "{}", g.signed_bomb.len());
    let d = detect(&support::plain("bomb", &g.signed_bomb));
    assert_eq!(
        d.to_string(),
        format!(
            "invalid OpenPGP data: compressed data expands beyond the per-message limit of {} MiB",
            pgp_milter::openpgp::MAX_DECOMPRESSED_BYTES >> 20
        )
    );
    let lax = Policy {
        require: Require::EncryptedOrSigned,
        ..Policy::default()
    };
    assert!(matches!(lax.judge(&d), Decision::Reject(..)));
}

/// `multipart/alternative` of a text/plain part and a text/html part.
fn alternative(plain: &str, html: &str) -> Vec<u8> {
    support::crlf(&format!(
        "From: alice@client.example\r\nTo: bob@example.org\r\nSubject: alt\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n\
         --alt-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n\
         --alt-b\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--alt-b--\r\n",
        support::qp(html)
    ))
    .into_bytes()
}

/// HTML-escapes `s` (and `+`, as some editors do).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('+', "&#43;")
}

#[ignore = "needs gpg"]
#[test]
fn html_alternatives_pass_only_as_a_pure_repeat_of_the_armor() {
    let g = support::gpg();
    let enc = &g.encrypted;
    let pre = |armor: &str| {
        format!(
            "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\
             </head><body text=\"#000000\" bgcolor=\"#FFFFFF\">\
             <pre class=\"moz-quote-pre\" wrap=\"\">{}</pre></body></html>",
            escape(armor)
        )
    };
    let divs = |armor: &str| {
        let lines: String = armor
            .lines()
            .map(|l| format!("<div>{}<br></div>\n", escape(l)))
            .collect();
        format!("<!DOCTYPE html><html><body>{lines}</body></html>")
    };
    let passes = [
        ("<pre> repeat", alternative(enc, &pre(enc))),
        ("<div><br> repeat", alternative(enc, &divs(enc))),
    ];
    for (name, m) in passes {
        assert_eq!(detect(&m).to_string(), "encrypted (inline PGP)", "{name}");
    }
    let commented = enc.replacen("\n\n", "\nComment: meet me at noon\n\n", 1);
    let refused = [
        (
            "a greeting next to the armor",
            alternative(enc, &format!("<p>Hello Bob,</p>{}", pre(enc))),
        ),
        (
            "a different message in the HTML",
            alternative(enc, &pre(&g.symmetric)),
        ),
        (
            "an armor header only in the HTML",
            alternative(enc, &pre(&commented)),
        ),
        (
            "text in an attribute",
            alternative(
                enc,
                &pre(enc).replace("<pre ", "<pre title=\"meet me at noon\" "),
            ),
        ),
        (
            "a link",
            alternative(
                enc,
                &format!("{}<a href=\"https://example.org/\">x</a>", pre(enc)),
            ),
        ),
        (
            "text next to the armor in the plain part too",
            alternative(
                &format!("Hello Bob,\n{enc}"),
                &pre(&format!("Hello Bob,\n{enc}")),
            ),
        ),
    ];
    for (name, m) in refused {
        let d = detect(&m);
        assert!(
            d.to_string().starts_with("unencrypted content"),
            "{name}: {d}"
        );
        assert!(
            matches!(Policy::default().judge(&d), Decision::Reject(..)),
            "{name}"
        );
    }
    // HTML armor with no text/plain twin: not a repeat, refused as before.
    let html_only = support::crlf(&format!(
        "From: a@client.example\r\nTo: bob@example.org\r\nSubject: h\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html\r\n\r\n{}\r\n",
        pre(enc)
    ));
    let d = detect(html_only.as_bytes()).to_string();
    assert!(d.starts_with("unencrypted content: text/html"), "{d}");
}

/// `gpg --dearmor` of `armored` in a throw-away home: the packets, or
/// `None` if GnuPG refuses the armor.
fn gnupg_dearmor(armored: &str) -> Option<Vec<u8>> {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--dearmor"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gpg (package gnupg) is needed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(armored.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// Blank lines inside the armor (after the checksum, between data lines)
/// are read by GnuPG as if absent; the milter accepts them too. Armor whose
/// END line is missing is reported as truncated, not as something else.
#[ignore = "needs gpg"]
#[test]
fn armor_with_blank_lines_passes_as_gnupg_reads_it_and_a_cut_one_is_truncated() {
    let enc = support::gpg().encrypted.replace("\r\n", "\n");
    let packets = gnupg_dearmor(&enc).expect("GnuPG reads its own armor");
    let lines: Vec<&str> = enc.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("-----END PGP MESSAGE"))
        .unwrap();
    let with_blank_at = |at: usize| {
        let mut l = lines.clone();
        l.insert(at, "");
        l.join("\n") + "\n"
    };
    // Before the END line (after the checksum, if gpg wrote one), and in
    // the middle of the data.
    for (what, text) in [
        ("blank before END", with_blank_at(end)),
        ("blank in the data", with_blank_at(end - 3)),
    ] {
        assert_eq!(
            gnupg_dearmor(&text).as_deref(),
            Some(packets.as_slice()),
            "{what}: GnuPG reads the same packets"
        );
        let d = detect(&support::inline(what, &text, support::Cte::SevenBit, false));
        assert_eq!(d.to_string(), "encrypted (inline PGP)", "{what}");
    }
    // The END line missing: at the end of the text, or with a signature
    // line after the armor.
    let cut = lines[..end].join("\n") + "\n";
    // (The streaming armor reader names the signature line it finds
    // inside the block.)
    for (what, text, why) in [
        (
            "cut",
            cut.clone(),
            "armor is truncated (no END line for BEGIN PGP MESSAGE)",
        ),
        (
            "cut, then text",
            format!("{cut}\n-- \nBob\n"),
            "malformed armor: unexpected -- inside BEGIN PGP MESSAGE",
        ),
    ] {
        let d = detect(&support::inline(what, &text, support::Cte::SevenBit, false));
        assert_eq!(
            d.to_string(),
            format!("invalid OpenPGP data: {why}"),
            "{what}"
        );
    }
}

/// Armor header keys no RFC defines (`Subject:`, `X-Mailer-Version:`, even
/// `Bad Key:`) GnuPG reads past ("unknown armor header") to the same
/// packets, so an inline message carrying them is encrypted mail and must
/// pass; a header line GnuPG calls invalid (no space after the colon) is
/// refused by both.
#[ignore = "needs gpg"]
#[test]
fn armor_headers_gnupg_reads_past_pass_and_one_it_refuses_is_refused() {
    let enc = support::gpg().encrypted.replace("\r\n", "\n");
    let packets = gnupg_dearmor(&enc).expect("GnuPG reads its own armor");
    let (begin, rest) = enc.split_once('\n').unwrap();
    for extra in [
        "Subject: hello there\n",
        "X-Mailer-Version: 1.2\nComment: two lines\n",
        "Bad Key: x\n",
    ] {
        let text = format!("{begin}\n{extra}{rest}");
        assert_eq!(
            gnupg_dearmor(&text).as_deref(),
            Some(packets.as_slice()),
            "{extra:?}: GnuPG reads the same packets"
        );
        let d = detect(&support::inline(
            "headers",
            &text,
            support::Cte::SevenBit,
            false,
        ));
        assert_eq!(d.to_string(), "encrypted (inline PGP)", "{extra:?}");
    }
    let text = format!("{begin}\nComment:no space\n{rest}");
    assert_eq!(gnupg_dearmor(&text), None, "GnuPG refuses it");
    let d = detect(&support::inline(
        "bad",
        &text,
        support::Cte::SevenBit,
        false,
    ));
    assert!(d.to_string().starts_with("invalid OpenPGP data"), "{d}");
}
