//! Delivery status reports (bounces) under `bounces = "accept-reports"`:
//! pgp-milter's verdict against what Python's `email` (policy default)
//! and GMime show of each report (`tests/oracle/report_readers.py`).
//!
//! The reports start from real ones: three that Postfix 3.7 wrote
//! (`tests/fixtures/postfix/`, see MADE-BY there), and the layouts
//! Sendmail, Exim and Exchange write (hand-built from their output:
//! Sendmail's untyped first part, Exim's unquoted boundary and
//! `Content-type`, Exchange's multipart/alternative explanation in
//! quoted-printable). They are then changed with a fixed seed: benignly
//! (line ends, transport padding, header case, folding, extra fields,
//! blank epilogue, no preamble) and with hostile changes that plant the
//! word "marker" where the report rules allow no text (a fourth part, a
//! delimiter look-alike, duplicate parameters and fields, encoded words,
//! white space before a colon, bare CR, NUL, a plaintext returned message,
//! a body under text/rfc822-headers, an epilogue, an explanation that is
//! an attachment, a mislabelled status part, a top header line ending in a
//! bare CR, random insertions and deletions). Each goes through the milter
//! (over the milter protocol, from the null sender, as Postfix plays it).
//! Asserted:
//! * whenever pgp-milter accepts, neither reader shows the marker outside
//!   the explanation, the status fields and the returned header lines of
//!   the message as the MTA delivers it;
//! * whenever both readers see a well-formed report returning nothing,
//!   headers or an encrypted message (and only benign changes were made,
//!   and Python found no defect), pgp-milter accepts it; the real Postfix
//!   reports, unchanged, are accepted.

mod mutations;
mod support;
mod through_milter;

use std::process::Command;

use minimilter::transaction::Outcome;
use mutations::{Rng, replace_nth};
use pgp_milter::policy::Bounces;
use pgp_milter::{Config, Policy};
use support::crlf;

const ARMOR: &str = include_str!("fixtures/gpg/encrypted.asc");

/// A report and its top-level boundary.
#[derive(Clone)]
struct Base {
    name: &'static str,
    message: String,
    boundary: String,
}

fn base(name: &'static str, message: String) -> Base {
    let at = message.find("boundary=").expect("a boundary") + "boundary=".len();
    let rest = &message[at..];
    let boundary = match rest.strip_prefix('"') {
        Some(q) => q[..q.find('"').unwrap()].to_owned(),
        None => rest[..rest.find(['\r', '\n', ';']).unwrap()].to_owned(),
    };
    Base {
        name,
        message,
        boundary,
    }
}

/// The original message a report returns, or its headers.
const ORIGINAL_HEADERS: &str = "Return-Path: <alice@example.org>\r\n\
    Received: from client.example (client.example [192.0.2.7])\r\n\
    \tby mail.example.net with ESMTP id 2ANCl0ab012345\r\n\
    \tfor <nobody@remote.example>; Mon, 23 Nov 2026 13:00:00 GMT\r\n\
    From: alice@example.org\r\n\
    To: nobody@remote.example\r\n\
    Subject: plans\r\n\
    Message-Id: <1@example.org>\r\n\
    MIME-Version: 1.0\r\n";

fn sendmail(returned_headers: bool) -> String {
    let b = "2ANCl0ab012345.1795945200/mail.example.net";
    let third = if returned_headers {
        format!("--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n{ORIGINAL_HEADERS}\r\n")
    } else {
        String::new()
    };
    format!(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mail.example.net>\r\n\
         To: <alice@example.org>\r\n\
         Date: Mon, 23 Nov 2026 13:00:01 GMT\r\n\
         Message-Id: <202611231300.2ANCl1ab012345@mail.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{b}\"\r\n\
         Subject: Returned mail: see transcript for details\r\n\
         Auto-Submitted: auto-generated (failure)\r\n\
         \r\n\
         This is a MIME-encapsulated message\r\n\
         \r\n\
         --{b}\r\n\
         \r\n\
         The original message was received at Mon, 23 Nov 2026 13:00:00 GMT\r\n\
         from client.example [192.0.2.7]\r\n\
         \r\n\
         \x20  ----- The following addresses had permanent fatal errors -----\r\n\
         <nobody@remote.example>\r\n\
         \x20   (reason: 550 5.1.1 User unknown)\r\n\
         \r\n\
         \x20  ----- Transcript of session follows -----\r\n\
         ... while talking to mx.remote.example.:\r\n\
         >>> DATA\r\n\
         <<< 550 5.1.1 User unknown\r\n\
         550 5.1.1 <nobody@remote.example>... User unknown\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mail.example.net\r\n\
         Received-From-MTA: DNS; client.example\r\n\
         Arrival-Date: Mon, 23 Nov 2026 13:00:00 GMT\r\n\
         \r\n\
         Final-Recipient: RFC822; nobody@remote.example\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Remote-MTA: DNS; mx.remote.example\r\n\
         Diagnostic-Code: SMTP; 550 5.1.1 User unknown\r\n\
         Last-Attempt-Date: Mon, 23 Nov 2026 13:00:01 GMT\r\n\
         \r\n\
         {third}--{b}--\r\n\
         \r\n"
    )
}

fn exim(returned: &str) -> String {
    let b = "1795945200-eximdsn-1804289383";
    format!(
        "From: Mail Delivery System <Mailer-Daemon@mail.example.com>\r\n\
         To: alice@example.org\r\n\
         References: <1@example.org>\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary={b}\r\n\
         MIME-Version: 1.0\r\n\
         Subject: Mail delivery failed: returning message to sender\r\n\
         Message-Id: <E1kXYZa-000123-AB@mail.example.com>\r\n\
         Date: Mon, 23 Nov 2026 13:00:01 +0000\r\n\
         Auto-Submitted: auto-replied\r\n\
         \r\n\
         --{b}\r\n\
         Content-type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This message was created automatically by mail delivery software.\r\n\
         \r\n\
         A message that you sent could not be delivered to one or more of its\r\n\
         recipients. This is a permanent error. The following address(es) failed:\r\n\
         \r\n\
         \x20 nobody@remote.example\r\n\
         \x20   host mx.remote.example [198.51.100.1]\r\n\
         \x20   SMTP error from remote mail server after RCPT TO:<nobody@remote.example>:\r\n\
         \x20   550 5.1.1 User unknown\r\n\
         \r\n\
         --{b}\r\n\
         Content-type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mail.example.com\r\n\
         \r\n\
         Action: failed\r\n\
         Final-Recipient: rfc822;nobody@remote.example\r\n\
         Status: 5.0.0\r\n\
         Remote-MTA: dns; mx.remote.example\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\
         \r\n\
         --{b}\r\n\
         Content-type: message/rfc822\r\n\
         \r\n\
         {returned}\r\n\
         --{b}--\r\n"
    )
}

fn exchange() -> String {
    let b = "b4b5d2e1-0c1a-4f5e-9d3a-0123456789ab";
    let a = "c3f1a9d0-77e2-4c1b-8f00-fedcba987654";
    format!(
        "From: Microsoft Outlook <postmaster@example.onmicrosoft.com>\r\n\
         To: <alice@example.org>\r\n\
         Date: Mon, 23 Nov 2026 13:00:01 +0000\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{b}\"\r\n\
         X-MS-Exchange-Message-Is-Ndr:\r\n\
         Content-Language: en-US\r\n\
         Message-ID: <0a1b2c3d-ndr@EXCH01.example.com>\r\n\
         In-Reply-To: <1@example.org>\r\n\
         Subject: Undeliverable: plans\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: multipart/alternative; differences=Content-Type;\r\n\
         \tboundary=\"{a}\"\r\n\
         \r\n\
         --{a}\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         Delivery has failed to these recipients or groups:\r\n\
         \r\n\
         nobody@remote.example<mailto:nobody@remote.example>\r\n\
         The email address you entered couldn't be found. Please check the recipi=\r\n\
         ent's email address and try to resend the message.\r\n\
         \r\n\
         --{a}\r\n\
         Content-Type: text/html; charset=\"us-ascii\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         <html><head><meta http-equiv=3D\"Content-Type\" content=3D\"text/html; charset=\r\n\
         =3Dus-ascii\"></head><body><p><b><font color=3D\"#000066\" size=3D\"3\" face=\r\n\
         =3D\"Arial\">Delivery has failed to these recipients or groups:</font></b></p>\r\n\
         <p>nobody@remote.example</p></body></html>\r\n\
         \r\n\
         --{a}--\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns;EXCH01.example.com\r\n\
         Received-From-MTA: dns;mail.example.org\r\n\
         Arrival-Date: Mon, 23 Nov 2026 13:00:00 +0000\r\n\
         \r\n\
         Final-Recipient: rfc822;nobody@remote.example\r\n\
         Action: failed\r\n\
         Status: 5.1.10\r\n\
         Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not\r\n\
         \x20found by SMTP address lookup\r\n\
         \r\n\
         --{b}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {ORIGINAL_HEADERS}\
         \r\n\
         --{b}--\r\n"
    )
}

fn bases() -> Vec<Base> {
    let armor = crlf(ARMOR);
    let pgp_mime = String::from_utf8(support::pgp_mime("plans", &armor)).unwrap();
    let inline = String::from_utf8(support::inline(
        "plans",
        &armor,
        support::Cte::SevenBit,
        false,
    ))
    .unwrap();
    vec![
        base(
            "postfix-hdrs",
            crlf(include_str!("fixtures/postfix/postfix-hdrs.eml")),
        ),
        base(
            "postfix-encrypted",
            crlf(include_str!("fixtures/postfix/postfix-encrypted.eml")),
        ),
        base(
            "postfix-large",
            crlf(include_str!("fixtures/postfix/postfix-large.eml")),
        ),
        base("sendmail-headers", sendmail(true)),
        base("sendmail-nothing", sendmail(false)),
        base("exim-pgp-mime", exim(&pgp_mime)),
        base("exim-inline", exim(&inline)),
        base("exchange", exchange()),
    ]
}

/// Changes after which the report is the same report for every reader.
fn benign(m: &str, b: &str, rng: &mut Rng) -> String {
    match rng.below(9) {
        0 => m.replace("\r\n", "\n"),
        1 => replace_nth(m, &format!("--{b}\r\n"), &format!("--{b} \t \r\n"), rng),
        2 => m
            .replace("Content-Type:", "content-TYPE:")
            .replace("Content-type:", "CONTENT-type:"),
        3 if m.contains("\r\n") => m.replace(
            "Content-Type: message/delivery-status",
            "Content-Type:\r\n message/delivery-status",
        ),
        3 => m.replace(
            "Content-Type: message/delivery-status",
            "Content-Type:\n message/delivery-status",
        ),
        4 => replace_nth(
            m,
            &format!("--{b}\r\n"),
            &format!("--{b}\r\nX-Extra: yes\r\n"),
            rng,
        ),
        5 => format!("{m}\r\n \r\n\t\r\n"),
        6 => m
            .replacen("This is a MIME-encapsulated message.\r\n", "", 1)
            .replacen("This is a MIME-encapsulated message\r\n", "", 1),
        7 => m.replace("MIME-Version: 1.0\r\n", ""),
        _ => m.replace("report-type=delivery-status", "report-type=Delivery-Status"),
    }
}

/// Changes that plant the marker where the report rules allow no text.
fn hostile(m: &str, b: &str, rng: &mut Rng) -> String {
    let close = format!("--{b}--");
    let part = "Content-Type: text/plain\r\n\r\nthe marker text\r\n";
    let before_close = |what: &str| m.replacen(&close, &format!("{what}{close}"), 1);
    match rng.below(19) {
        0 => {
            let junk = rng.pick(&["z", "--x", "-", " x", "\t--", "--\r\nmore"]);
            before_close(&format!("--{b}{junk}\r\n{part}"))
        }
        1 => m
            .replacen(
                &format!("boundary=\"{b}\""),
                &format!("boundary=\"{b}\"; boundary=\"other\""),
                1,
            )
            .replacen(
                &format!("boundary={b}\r\n"),
                &format!("boundary={b}; boundary=other\r\n"),
                1,
            )
            .replacen(
                &format!("--{b}\r\n"),
                &format!("--other\r\n{part}--{b}\r\n"),
                1,
            ),
        2 => m
            .replacen(
                &format!("boundary=\"{b}\""),
                &format!("boundary=\"=?us-ascii?q?{b}?=\""),
                1,
            )
            .replacen(&close, &format!("--{b}\r\n{part}{close}"), 1),
        3 => m
            .replacen(
                "Content-Type: message/delivery-status",
                "Content-Type : message/delivery-status",
                1,
            )
            .replacen(&close, &format!("--{b}\r\n{part}{close}"), 1),
        4 => replace_nth(m, "\r\n", "\rthe marker\r", rng),
        5 => before_close(&format!(
            "--{b}\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\r\ndGhlIG1hcmtlciB0ZXh0\r\n"
        )),
        6 => {
            let at = char_at(m, rng.below(m.len()));
            format!("{}\0marker{}", &m[..at], &m[at..])
        }
        7 => m
            .replacen(
                "Content-Type: message/delivery-status\r\n",
                "Content-Type: message/delivery-status\r\nContent-Type: text/plain\r\n",
                1,
            )
            .replacen("Reporting-MTA:", "the marker\r\nReporting-MTA:", 1),
        // The returned content is plaintext, or holds some.
        8 => {
            let cut = m.find("Content-Type: text/rfc822-headers");
            let cut = cut.or_else(|| m.find("Content-type: message/rfc822"));
            let cut = cut.or_else(|| m.find("Content-Type: message/rfc822"));
            let third = "Content-Type: message/rfc822\r\n\r\n\
                         Subject: x\r\nContent-Type: text/plain\r\n\r\nthe marker\r\n";
            match cut {
                Some(at) => format!("{}{third}{close}\r\n", &m[..at]),
                None => before_close(&format!("--{b}\r\n{third}")),
            }
        }
        9 => m.replacen(
            "-----BEGIN PGP MESSAGE-----",
            "the marker\r\n-----BEGIN PGP MESSAGE-----",
            1,
        ),
        // A body after the returned headers.
        10 => m.replacen(
            &format!("\r\n{close}"),
            &format!("\r\n\r\nthe marker after the headers\r\n{close}"),
            1,
        ),
        11 => {
            let snippet = rng.pick(&[
                "\r\nthe marker\r\n",
                "--",
                "\r",
                "\n",
                ";",
                "\"",
                "=?x?q?y?=",
                ":",
                " ",
                "\r\n\r\nthe marker",
            ]);
            let at = char_at(m, rng.below(m.len()));
            let snippet = match rng.below(3) {
                0 => format!("\r\n--{b}\r\n\r\nthe marker\r\n"),
                1 => format!("\r\n--{b}--\r\nthe marker\r\n"),
                _ => (*snippet).to_owned(),
            };
            format!("{}{snippet}{}", &m[..at], &m[at..])
        }
        12 => {
            let at = char_at(m, rng.below(m.len()));
            let end = char_at(m, (at + 1 + rng.below(5)).min(m.len()));
            format!("{}{}", &m[..at], &m[end.max(at)..])
        }
        13 => format!("{m}the marker in an epilogue\r\n"),
        // The explanation as a file, with the marker in it.
        14 => {
            let Some(first) = m.find(&format!("--{b}")) else {
                return m.to_owned();
            };
            let at = first + m[first..].find('\n').map_or(0, |n| n + 1);
            format!(
                "{}Content-Disposition: attachment; filename=\"plans.txt\"\r\n{}",
                &m[..at],
                &m[at..]
            )
            .replacen("\r\n\r\n", "\r\n\r\nthe marker\r\n", 2)
        }
        // The status part typed as text, or the whole as a mixed message.
        15 => m
            .replacen(
                "Content-Type: message/delivery-status",
                "Content-Type: text/plain",
                1,
            )
            .replacen(
                "Content-type: message/delivery-status",
                "Content-type: text/plain",
                1,
            )
            .replacen("Reporting-MTA:", "the marker\r\nReporting-MTA:", 1),
        16 => m
            .replacen("multipart/report", "multipart/mixed", 1)
            .replacen(&close, &format!("--{b}\r\n{part}{close}"), 1),
        // A top header line that ends in a bare CR (before a NUL, where
        // the MTA cuts the line): readers that end the header there show
        // the preamble, which holds the marker.
        17 => {
            let end = m.find("\r\n\r\n").unwrap_or(0);
            let cr = rng.pick(&["\r", "\r\0x"]);
            let with_cr = replace_nth(&m[..end], "\r\n", &format!("{cr}\r\n"), rng);
            format!("{with_cr}\r\n\r\nthe marker in the preamble{}", &m[end..])
        }
        // A returned message in base64 (not allowed for message/rfc822;
        // some readers decode it anyway).
        _ => before_close(&format!(
            "--{b}\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             U3ViamVjdDogeA0KDQp0aGUgbWFya2VyDQo=\r\n"
        )),
    }
}

fn char_at(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

struct Case {
    base: &'static str,
    message: Vec<u8>,
    hostile: bool,
}

fn cases(n: usize) -> Vec<Case> {
    let bases = bases();
    let mut rng = Rng(0x00B0_0DCE_D5E5);
    let mut out: Vec<Case> = bases
        .iter()
        .map(|b| Case {
            base: b.name,
            message: b.message.clone().into_bytes(),
            hostile: false,
        })
        .collect();
    while out.len() < n {
        let b = rng.pick(&bases).clone();
        let mut m = b.message;
        // Hostile changes first: they find the CRLF lines the benign
        // ones may change.
        let hostile = rng.chance(65);
        if hostile {
            for _ in 0..=rng.below(2) {
                m = self::hostile(&m, &b.boundary, &mut rng);
            }
        }
        for _ in 0..rng.below(3) {
            m = benign(&m, &b.boundary, &mut rng);
        }
        out.push(Case {
            base: b.name,
            message: m.into_bytes(),
            hostile,
        });
    }
    out
}

/// (python leak, python well-formed, python defects, gmime leak, gmime
/// well-formed) per case.
fn oracle(messages: &[&[u8]]) -> Vec<[bool; 5]> {
    let dir = tempfile::tempdir().unwrap();
    let armor_file = dir.path().join("armor");
    std::fs::write(&armor_file, ARMOR).unwrap();
    let msgs = dir.path().join("m");
    std::fs::create_dir(&msgs).unwrap();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(msgs.join(format!("{i:06}")), m).unwrap();
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/report_readers.py"
    );
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(&armor_file)
        .arg(&msgs)
        .output()
        .expect("/usr/bin/python3 with python3-gi and gir1.2-gmime-3.0");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views: Vec<[bool; 5]> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let b = |i: usize| f[i] == "1";
            [b(1), b(2), b(3), b(4), b(5)]
        })
        .collect();
    assert_eq!(views.len(), messages.len());
    views
}

async fn outcomes(policy: Policy, messages: &[&[u8]]) -> Vec<Outcome> {
    through_milter::judged(policy, "", messages)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect()
}

fn accept_reports() -> Policy {
    Policy {
        bounces: Bounces::AcceptReports,
        ..Policy::default()
    }
}

#[tokio::test]
async fn real_reports_are_accepted() {
    let bases = bases();
    let messages: Vec<&[u8]> = bases.iter().map(|b| b.message.as_bytes()).collect();
    let got = outcomes(accept_reports(), &messages).await;
    for (b, o) in bases.iter().zip(&got) {
        assert_eq!(*o, Outcome::Accepted, "{}", b.name);
    }
    // The same reports from a real sender, or under the default policy,
    // are plaintext.
    let got = outcomes(Policy::default(), &messages).await;
    assert!(got.iter().all(|o| matches!(o, Outcome::Rejected { .. })));
}

/// `max_bounce_bytes` is in force whatever `max_body_bytes` says: a report
/// streams, nothing of it is kept whole, so a report larger than
/// `max_body_bytes` and within `max_bounce_bytes` passes, and one over
/// `max_bounce_bytes` is refused for that, under the configuration the
/// milter loads (which warns about neither).
#[tokio::test]
async fn the_bounce_limit_holds_whatever_max_body_bytes_says() {
    let config = Config::parse(
        "bounces = \"accept-reports\"\nmax_body_bytes = 65536\nmax_bounce_bytes = 262144\n",
        std::path::Path::new("pgp-milter.toml"),
    )
    .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let report = |explanation_lines: usize| {
        sendmail(true).replacen(
            "550 5.1.1 <nobody@remote.example>... User unknown\r\n",
            &"550 5.1.1 <nobody@remote.example>... User unknown\r\n".repeat(explanation_lines),
            1,
        )
    };
    let within = report(3000);
    let over = report(6000);
    // Over max_body_bytes and over the default bounce limit.
    assert!(within.len() > 131072 && within.len() < 262144);
    assert!(over.len() > 262144);
    let got = outcomes(config.policy, &[within.as_bytes(), over.as_bytes()]).await;
    assert_eq!(got[0], Outcome::Accepted);
    match &got[1] {
        Outcome::Rejected { reply, .. } => assert!(
            reply
                .as_deref()
                .unwrap_or("")
                .ends_with("(delivery status report larger than 262144 bytes (max_bounce_bytes))"),
            "{reply:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs python3-gi and gir1.2-gmime-3.0"]
async fn reports_pgp_milter_accepts_show_no_text_beyond_the_report_rules() {
    let cases = cases(1500);
    let messages: Vec<&[u8]> = cases.iter().map(|c| c.message.as_slice()).collect();
    let got = through_milter::judged(accept_reports(), "", &messages).await;
    // Well-formed: as sent. Leaks: in what the MTA delivers (a header
    // line is delivered as the MTA cut it, not as it was sent).
    let views = oracle(&messages);
    let delivered: Vec<&[u8]> = got
        .iter()
        .zip(&messages)
        .map(|((_, d), m)| d.as_deref().unwrap_or(m))
        .collect();
    let delivered_views = oracle(&delivered);
    let (mut accepted, mut both_good, mut leaking) = (0, 0, 0);
    let mut leaks = Vec::new();
    let mut refused_good = Vec::new();
    for (i, ((c, v), (o, _))) in cases.iter().zip(&views).zip(&got).enumerate() {
        let [_, py_good, py_defects, _, gm_good] = *v;
        let [py_leak, _, _, gm_leak, _] = delivered_views[i];
        let ok = *o == Outcome::Accepted;
        accepted += usize::from(ok);
        leaking += usize::from(py_leak || gm_leak);
        let show = || String::from_utf8_lossy(&c.message).into_owned();
        if ok && (py_leak || gm_leak) {
            leaks.push(format!(
                "case {i} ({}): accepted, but python shows the marker outside the report's \
                 text: {py_leak}, gmime: {gm_leak}\n{}",
                c.base,
                show()
            ));
        }
        if py_good && gm_good && !py_defects && !c.hostile {
            both_good += 1;
            if !ok {
                refused_good.push(format!(
                    "case {i} ({}): both readers see a well-formed report, refused: {o:?}\n{}",
                    c.base,
                    show()
                ));
            }
        }
    }
    eprintln!(
        "{} reports: {accepted} accepted, {both_good} well-formed for both readers, \
         {leaking} with the marker outside the report's text for a reader",
        cases.len()
    );
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks[..leaks.len().min(3)].join("\n\n")
    );
    assert!(
        refused_good.is_empty(),
        "{} refused:\n{}",
        refused_good.len(),
        refused_good[..refused_good.len().min(3)].join("\n\n")
    );
    assert!(accepted > 200, "only {accepted} accepted");
    assert!(both_good > 200, "only {both_good} well-formed");
    assert!(leaking > 200, "only {leaking} with a marker a reader shows");
}
