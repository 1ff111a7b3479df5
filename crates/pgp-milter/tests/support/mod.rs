//! A corpus of real OpenPGP mail, made by GnuPG in a throw-away home
//! directory when the tests start, and the messages built from it.
//!
//! Needs `gpg` (Debian package `gnupg`); without it the tests fail with
//! that name rather than pass silently.

#![allow(dead_code)]

pub mod served;
pub mod threads;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The recipient whose key encrypts the corpus.
pub const RECIPIENT: &str = "bob@example.org";

/// Real OpenPGP outputs of GnuPG.
#[derive(Debug)]
pub struct Gpg {
    /// `gpg --encrypt --armor` to the test key.
    pub encrypted: String,
    /// `gpg --encrypt` (binary) to the test key.
    pub encrypted_binary: Vec<u8>,
    /// `gpg --symmetric --armor`.
    pub symmetric: String,
    /// `gpg --clearsign`.
    pub clearsigned: String,
    /// `gpg --detach-sign --armor` of [`SIGNED_ENTITY`].
    pub detached_signature: String,
    /// `gpg --store --armor`: literal data, armored, not encrypted.
    pub literal: String,
    /// `gpg --export --armor`.
    pub public_key: String,
    /// `gpg --sign --armor --compress-algo none`: one-pass signature,
    /// literal data, signature.
    pub signed_message: String,
    /// `gpg --sign --armor`: the same inside a compressed packet (GnuPG's
    /// default algorithm, ZIP).
    pub signed_compressed: String,
    /// `gpg --sign --armor --compress-algo zlib`, `zip`, `bzip2`.
    pub signed_by_algo: Vec<(&'static str, String)>,
    /// `gpg --sign --armor --compress-algo zlib` of 40 MiB of zeros: a few
    /// dozen KiB that expand beyond the decompression cap.
    pub signed_bomb: String,
    /// `gpg --sign --armor --compress-algo bzip2` of 20 MiB of zeros: a few
    /// hundred bytes, under the decompression budget alone, over it twice.
    pub signed_small_bomb: String,
}

/// The MIME entity the detached signature signs.
pub const SIGNED_ENTITY: &str =
    "Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned, not sealed.\r\n";

/// The corpus, made once per test binary.
pub fn gpg() -> &'static Gpg {
    static CORPUS: OnceLock<Gpg> = OnceLock::new();
    CORPUS.get_or_init(make_corpus)
}

fn make_corpus() -> Gpg {
    let ok = Command::new("gpg")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "GnuPG (`gpg`) is needed to build the test corpus: install the Debian package `gnupg` \
         (apt-get install -y gnupg)"
    );
    let home = tempfile::Builder::new()
        .prefix("pgpm-gpg-")
        .tempdir_in("/tmp")
        .expect("temporary GNUPGHOME");
    let h = home.path();
    run(
        h,
        &[
            "--quick-generate-key",
            "Bob <bob@example.org>",
            "future-default",
            "default",
            "never",
        ],
        b"",
    );
    let secret = "The eagle lands at midnight.\n";
    let to_bob = ["--trust-model", "always", "--recipient", RECIPIENT];
    let text = |out: Vec<u8>| String::from_utf8(out).expect("armor is text");
    let mut enc = vec!["--armor", "--encrypt"];
    enc.extend(to_bob);
    let mut bin = vec!["--encrypt"];
    bin.extend(to_bob);
    let corpus = Gpg {
        encrypted: text(run(h, &enc, secret.as_bytes())),
        encrypted_binary: run(h, &bin, secret.as_bytes()),
        symmetric: text(run(
            h,
            &["--armor", "--symmetric", "--passphrase", "correct horse"],
            secret.as_bytes(),
        )),
        clearsigned: text(run(h, &["--clearsign"], b"I said this.\n")),
        detached_signature: text(run(
            h,
            &["--armor", "--detach-sign"],
            SIGNED_ENTITY.as_bytes(),
        )),
        literal: text(run(h, &["--armor", "--store"], b"Not encrypted at all.\n")),
        public_key: text(run(h, &["--armor", "--export", RECIPIENT], b"")),
        signed_message: text(run(
            h,
            &["--armor", "--sign", "--compress-algo", "none"],
            b"Signed inline.\n",
        )),
        signed_compressed: text(run(h, &["--armor", "--sign"], b"Signed inline.\n")),
        signed_by_algo: ["zlib", "zip", "bzip2"]
            .into_iter()
            .map(|algo| {
                let out = run(
                    h,
                    &["--armor", "--sign", "--compress-algo", algo],
                    b"Signed inline, compressed.\n",
                );
                (algo, text(out))
            })
            .collect(),
        signed_bomb: text(run(
            h,
            &["--armor", "--sign", "--compress-algo", "zlib"],
            &vec![0u8; 40 << 20],
        )),
        signed_small_bomb: text(run(
            h,
            &["--armor", "--sign", "--compress-algo", "bzip2"],
            &vec![0u8; 20 << 20],
        )),
    };
    // Stop the agent GnuPG started for this home before removing it.
    let _ = Command::new("gpgconf")
        .args(["--kill", "all"])
        .env("GNUPGHOME", h)
        .status();
    corpus
}

/// gpg in `home` with `input` on stdin, no passphrase; its stdout (a
/// failure fails the test).
pub fn run(home: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gpg")
        .args([
            "--batch",
            "--quiet",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .env("GNUPGHOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting gpg");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// CRLF line ends everywhere (the text may have LF or CRLF).
pub fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn headers(subject: &str, extra: &str) -> String {
    format!(
        "From: alice@client.example\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\n{extra}"
    )
}

/// RFC 3156 PGP/MIME encrypted, with a preamble and an epilogue.
pub fn pgp_mime(subject: &str, armored: &str) -> Vec<u8> {
    crlf(&format!(
        "{}Content-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\";\r\n \
         boundary=\"enc-b0undary\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
         --enc-b0undary\r\nContent-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
         --enc-b0undary\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n\
         {armored}\r\n--enc-b0undary--\r\n\r\nepilogue\r\n",
        headers(subject, "")
    ))
    .into_bytes()
}

/// RFC 3156 PGP/MIME signed.
pub fn pgp_mime_signed(subject: &str, signature: &str) -> Vec<u8> {
    crlf(&format!(
        "{}Content-Type: multipart/signed; micalg=pgp-sha256;\r\n \
         protocol=\"application/pgp-signature\"; boundary=\"sig-b\"\r\n\r\n\
         --sig-b\r\n{SIGNED_ENTITY}\r\n--sig-b\r\n\
         Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n\
         {signature}\r\n--sig-b--\r\n",
        headers(subject, "")
    ))
    .into_bytes()
}

/// How a text part is transfer-encoded.
#[derive(Debug, Clone, Copy)]
pub enum Cte {
    /// 7bit, as is.
    SevenBit,
    /// quoted-printable.
    QuotedPrintable,
    /// base64.
    Base64,
}

/// A single text/plain part holding `text`, encoded with `cte`; `lf` keeps
/// the text's line ends LF (the headers stay CRLF, as the MTA sends them).
pub fn inline(subject: &str, text: &str, cte: Cte, lf: bool) -> Vec<u8> {
    let text = if lf {
        text.replace("\r\n", "\n")
    } else {
        crlf(text)
    };
    let (name, body) = match cte {
        Cte::SevenBit => ("7bit", text),
        Cte::QuotedPrintable => ("quoted-printable", qp(&text)),
        Cte::Base64 => ("base64", base64_lines(text.as_bytes())),
    };
    let mut m = headers(
        subject,
        &format!(
            "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: {name}\r\n"
        ),
    );
    m.push_str("\r\n");
    m.push_str(&body);
    m.into_bytes()
}

/// What a hand-built bounce returns of the original message.
#[derive(Debug, Clone)]
pub enum DsnReturn {
    /// No third part.
    Nothing,
    /// `text/rfc822-headers` with these header lines.
    Headers(String),
    /// `message/rfc822` holding this whole message.
    Message(Vec<u8>),
}

/// A delivery status report (RFC 3464/6522) to `RECIPIENT` in the layout
/// Postfix's bounce(8) writes (boundary `QUEUEID.TIME/HOST`, the
/// "Notification", "Delivery report" and "Undelivered Message" parts, the
/// X-Postfix fields), built by hand: `tests/postfix.rs` also feeds the
/// daemon one a real Postfix made. `explanation` is extra text for the
/// human-readable part (to make the report larger).
pub fn postfix_dsn(subject: &str, returned: &DsnReturn, explanation: &str) -> Vec<u8> {
    let boundary = "8C2D61E0A3.1795945200/mx.remote.example";
    let mut m = crlf(&format!(
        "Date: Mon, 23 Nov 2026 13:00:00 +0000 (UTC)\n\
         From: MAILER-DAEMON@mx.remote.example (Mail Delivery System)\n\
         Subject: {subject}\n\
         To: {RECIPIENT}\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{boundary}\"\n\
         Content-Transfer-Encoding: 8bit\n\
         Message-Id: <20261123130000.8C2D61E0A3@mx.remote.example>\n\
         \n\
         This is a MIME-encapsulated message.\n\
         \n\
         --{boundary}\n\
         Content-Description: Notification\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n\
         This is the mail system at host mx.remote.example.\n\
         \n\
         I'm sorry to have to inform you that your message could not\n\
         be delivered to one or more recipients. It's attached below.\n\
         \n\
         <nobody@remote.example>: unknown user: \"nobody\"\n\
         {explanation}\n\
         --{boundary}\n\
         Content-Description: Delivery report\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; mx.remote.example\n\
         X-Postfix-Queue-ID: 8C2D61E0A3\n\
         X-Postfix-Sender: rfc822; {RECIPIENT}\n\
         Arrival-Date: Mon, 23 Nov 2026 12:59:59 +0000 (UTC)\n\
         \n\
         Final-Recipient: rfc822; nobody@remote.example\n\
         Original-Recipient: rfc822;nobody@remote.example\n\
         Action: failed\n\
         Status: 5.1.1\n\
         Diagnostic-Code: X-Postfix; unknown user: \"nobody\"\n\
         \n"
    ))
    .into_bytes();
    let third = |m: &mut Vec<u8>, headers: &str, body: &[u8]| {
        m.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n").as_bytes());
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
    };
    match returned {
        DsnReturn::Nothing => {}
        DsnReturn::Headers(h) => third(
            &mut m,
            "Content-Description: Undelivered Message Headers\r\n\
             Content-Type: text/rfc822-headers\r\n",
            crlf(h).as_bytes(),
        ),
        DsnReturn::Message(msg) => third(
            &mut m,
            "Content-Description: Undelivered Message\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: 8bit\r\n",
            msg,
        ),
    }
    m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    m
}

/// A plain message without MIME headers.
pub fn plain(subject: &str, body: &str) -> Vec<u8> {
    crlf(&format!(
        "From: alice@client.example\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\r\n{body}"
    ))
    .into_bytes()
}

/// multipart/mixed with the given parts (each: headers, blank line, body).
pub fn mixed(subject: &str, parts: &[String]) -> Vec<u8> {
    let mut m = headers(
        subject,
        "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n",
    );
    for p in parts {
        m.push_str("--mix\r\n");
        m.push_str(&crlf(p));
        m.push_str("\r\n");
    }
    m.push_str("--mix--\r\n");
    m.into_bytes()
}

/// A base64 attachment part.
pub fn attachment(mime: &str, filename: &str, data: &[u8]) -> String {
    format!(
        "Content-Type: {mime}; name=\"{filename}\"\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}",
        base64_lines(data)
    )
}

/// Base64 in 76-character lines, CRLF.
pub fn base64_lines(data: &[u8]) -> String {
    STANDARD
        .encode(data)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect()
}

/// Quoted-printable with soft line breaks, keeping the text's line ends.
pub fn qp(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let (content, eol) = match line.strip_suffix("\r\n") {
            Some(c) => (c, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(c) => (c, "\n"),
                None => (line, ""),
            },
        };
        let mut col = 0;
        for b in content.bytes() {
            let enc = if b == b'=' || !(b' '..=b'~').contains(&b) {
                format!("={b:02X}")
            } else {
                (b as char).to_string()
            };
            if col + enc.len() > 75 {
                out.push('=');
                out.push_str(if eol.is_empty() { "\r\n" } else { eol });
                col = 0;
            }
            col += enc.len();
            out.push_str(&enc);
        }
        out.push_str(eol);
    }
    out
}

/// Armor with extra armor headers and without its checksum line.
pub fn with_headers_no_checksum(armored: &str) -> String {
    let mut out = String::new();
    for line in armored.lines() {
        if line.len() == 5 && line.starts_with('=') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with("-----BEGIN PGP MESSAGE-----") {
            out.push_str("Version: GopenPGP 2.7.4\nComment: https://gopenpgp.org\n");
        }
    }
    out
}

/// One corpus message and what each policy must do with it.
pub struct Case {
    /// Short name for failure messages.
    pub name: &'static str,
    /// The whole message (CRLF headers).
    pub message: Vec<u8>,
    /// Detection, as `Detection`'s Display text starts.
    pub detected: &'static str,
    /// Passes with `require = "encrypted"`.
    pub passes_encrypted: bool,
    /// Passes with `require = "encrypted-or-signed"`.
    pub passes_signed: bool,
}

/// Every case of the corpus.
pub fn cases() -> Vec<Case> {
    let g = gpg();
    let enc = g.encrypted.as_str();
    let case = |name, message, detected, passes_encrypted, passes_signed| Case {
        name,
        message,
        detected,
        passes_encrypted,
        passes_signed,
    };
    let half = &enc[..enc.len() / 2];
    let garbage = format!(
        "-----BEGIN PGP MESSAGE-----\n\n{}-----END PGP MESSAGE-----\n",
        base64_lines(b"This is just some text pretending to be OpenPGP data.")
    );
    let quoted: String = enc.lines().map(|l| format!("> {l}\n")).collect();
    let signed_inside = format!("Content-Type: text/plain\r\n\r\n{}", g.clearsigned);
    vec![
        case(
            "pgp/mime encrypted",
            pgp_mime("m1", enc),
            "encrypted (PGP/MIME)",
            true,
            true,
        ),
        case(
            "pgp/mime encrypted, armor headers, no checksum",
            pgp_mime("m2", &with_headers_no_checksum(enc)),
            "encrypted (PGP/MIME)",
            true,
            true,
        ),
        case(
            "pgp/mime symmetric",
            pgp_mime("m3", &g.symmetric),
            "encrypted (PGP/MIME)",
            true,
            true,
        ),
        case(
            "inline 7bit LF",
            inline("i1", enc, Cte::SevenBit, true),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline 7bit CRLF",
            inline("i2", enc, Cte::SevenBit, false),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline quoted-printable",
            inline("i3", enc, Cte::QuotedPrintable, false),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline quoted-printable LF",
            inline("i3l", enc, Cte::QuotedPrintable, true),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline base64",
            inline("i4", enc, Cte::Base64, false),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline base64 LF",
            inline("i4l", enc, Cte::Base64, true),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline symmetric",
            inline("i5", &g.symmetric, Cte::SevenBit, false),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "inline text plus binary .pgp attachment",
            mixed(
                "i6",
                &[
                    format!("Content-Type: text/plain\r\n\r\n{enc}"),
                    attachment(
                        "application/octet-stream",
                        "report.pdf.pgp",
                        &g.encrypted_binary,
                    ),
                ],
            ),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "pgp/mime turned into multipart/mixed by Exchange",
            mixed(
                "e1",
                &[
                    "Content-Type: application/pgp-encrypted\r\n\
                     Content-Disposition: attachment; filename=\"PGPMIME Versions Identification\"\r\n\r\n\
                     Version: 1\r\n"
                        .to_owned(),
                    format!(
                        "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n{enc}"
                    ),
                ],
            ),
            "encrypted (inline PGP)",
            true,
            true,
        ),
        case(
            "plain text containing the BEGIN line",
            plain("p1", &format!("Hi Bob,\n\nhere it is:\n\n{enc}\nCheers\n")),
            "unencrypted content",
            false,
            false,
        ),
        case(
            "quoted armor in a reply",
            plain("p2", &format!("You wrote:\n{quoted}")),
            "unencrypted content",
            false,
            false,
        ),
        case(
            "plain text",
            plain("p3", "Just saying hello.\n"),
            "unencrypted content",
            false,
            false,
        ),
        case(
            "header line only",
            plain("p4", "-----BEGIN PGP MESSAGE-----\n"),
            "invalid OpenPGP data: armor is truncated",
            false,
            false,
        ),
        case(
            "garbage armor",
            plain("p5", &garbage),
            "invalid OpenPGP data: not an OpenPGP packet header at offset 0",
            false,
            false,
        ),
        case(
            "truncated armor",
            plain("p6", half),
            "invalid OpenPGP data: armor is truncated",
            false,
            false,
        ),
        case(
            "pgp/mime with truncated armor",
            pgp_mime("p7", half),
            "invalid OpenPGP data: PGP/MIME encrypted: armor is truncated",
            false,
            false,
        ),
        case(
            "literal data armored as PGP MESSAGE",
            plain("p8", &g.literal),
            "invalid OpenPGP data: PGP MESSAGE is not encrypted",
            false,
            false,
        ),
        case(
            "key block alone",
            plain("k1", &g.public_key),
            "only an OpenPGP key",
            false,
            false,
        ),
        case(
            "encrypted text plus a plaintext attachment",
            mixed(
                "x1",
                &[
                    format!("Content-Type: text/plain\r\n\r\n{enc}"),
                    attachment("application/pdf", "secret.pdf", b"%PDF-1.4 not encrypted"),
                ],
            ),
            "unencrypted content: application/pdf attachment",
            false,
            false,
        ),
        case(
            "multipart/mixed cut before its closing boundary",
            {
                let mut m = mixed("x2", &[format!("Content-Type: text/plain\r\n\r\n{enc}")]);
                m.truncate(m.len() - "--mix--\r\n".len());
                m
            },
            "unreadable MIME structure: multipart/mixed without its closing boundary",
            false,
            false,
        ),
        case(
            "signed PGP MESSAGE",
            plain("s4", &g.signed_message),
            "signed (inline PGP)",
            false,
            true,
        ),
        case(
            "compressed signed PGP MESSAGE (gpg --sign)",
            plain("s5", &g.signed_compressed),
            "signed (inline PGP)",
            false,
            true,
        ),
        case(
            "compressed signed PGP MESSAGE, zlib",
            plain("s6", &g.signed_by_algo[0].1),
            "signed (inline PGP)",
            false,
            true,
        ),
        case(
            "compressed signed PGP MESSAGE, zip",
            plain("s7", &g.signed_by_algo[1].1),
            "signed (inline PGP)",
            false,
            true,
        ),
        case(
            "compressed signed PGP MESSAGE, bzip2",
            plain("s8", &g.signed_by_algo[2].1),
            "signed (inline PGP)",
            false,
            true,
        ),
        case(
            "clearsigned",
            plain("s1", &g.clearsigned),
            "signed (cleartext signature)",
            false,
            true,
        ),
        case(
            "pgp/mime signed",
            pgp_mime_signed("s2", &g.detached_signature),
            "signed (PGP/MIME)",
            false,
            true,
        ),
        case(
            "encrypted and clearsigned parts",
            mixed(
                "s3",
                &[
                    format!("Content-Type: text/plain\r\n\r\n{enc}"),
                    signed_inside,
                ],
            ),
            "signed (cleartext signature)",
            false,
            true,
        ),
    ]
}

/// The second recipient with a key in the test keyring (its User ID is
/// written `Carol Example <Carol@Example.NET>`; an RSA key with an RSA
/// encryption subkey).
pub const CAROL: &str = "carol@example.net";
/// A recipient whose key is not in the test keyring.
pub const MALLORY: &str = "mallory@example.com";

/// Keys for recipient-key tests, made by GnuPG, and messages encrypted to
/// them.
#[derive(Debug)]
pub struct Keyed {
    /// `gpg --export --armor` of Bob's key (ed25519 + cv25519 subkey).
    pub bob_key: String,
    /// `gpg --export --armor` of Carol's key (RSA + RSA encryption subkey).
    pub carol_key: String,
    /// `gpg --with-colons --fingerprint` of every key in the home
    /// (Bob, Carol, Mallory).
    pub colons: String,
    /// Encrypted (armored) to Bob.
    pub to_bob: String,
    /// Encrypted to Carol.
    pub to_carol: String,
    /// Encrypted to Mallory (not in the keyring).
    pub to_mallory: String,
    /// Encrypted to Bob and Carol.
    pub to_bob_and_carol: String,
    /// `--hidden-recipient` Bob: a wildcard key ID.
    pub hidden_bob: String,
    /// `--hidden-recipient` Carol, `--recipient` Bob.
    pub bob_and_hidden_carol: String,
    /// `--throw-keyids --recipient` Bob: wildcard key IDs only.
    pub throw_keyids_bob: String,
    /// `--symmetric`.
    pub symmetric: String,
    /// Binary `--encrypt` to Bob.
    pub to_bob_binary: Vec<u8>,
}

/// The keyed corpus, made once per test binary.
pub fn keyed() -> &'static Keyed {
    static KEYED: OnceLock<Keyed> = OnceLock::new();
    KEYED.get_or_init(make_keyed)
}

fn make_keyed() -> Keyed {
    gpg(); // checks that gpg is there, with a clear message
    let home = tempfile::Builder::new()
        .prefix("pgpm-keys-")
        .tempdir_in("/tmp")
        .expect("temporary GNUPGHOME");
    let h = home.path();
    let generate = |uid: &str| {
        run(
            h,
            &[
                "--quick-generate-key",
                uid,
                "future-default",
                "default",
                "never",
            ],
            b"",
        );
    };
    generate("Bob <bob@example.org>");
    generate("Mallory <mallory@example.com>");
    run(
        h,
        &[
            "--quick-generate-key",
            "Carol Example <Carol@Example.NET>",
            "rsa2048",
            "sign,cert",
            "never",
        ],
        b"",
    );
    let colons =
        String::from_utf8(run(h, &["--with-colons", "--fingerprint", CAROL], b"")).unwrap();
    let carol_fpr = colons
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .expect("Carol's fingerprint")
        .to_owned();
    run(
        h,
        &["--quick-add-key", &carol_fpr, "rsa2048", "encr", "never"],
        b"",
    );
    let text = |out: Vec<u8>| String::from_utf8(out).expect("armor is text");
    let secret = b"For your eyes only.\n";
    let enc = |extra: &[&str]| {
        let mut args = vec!["--armor", "--encrypt", "--trust-model", "always"];
        args.extend_from_slice(extra);
        text(run(h, &args, secret))
    };
    let keyed = Keyed {
        bob_key: text(run(h, &["--armor", "--export", RECIPIENT], b"")),
        carol_key: text(run(h, &["--armor", "--export", CAROL], b"")),
        colons: text(run(h, &["--with-colons", "--fingerprint"], b"")),
        to_bob: enc(&["--recipient", RECIPIENT]),
        to_carol: enc(&["--recipient", CAROL]),
        to_mallory: enc(&["--recipient", MALLORY]),
        to_bob_and_carol: enc(&["--recipient", RECIPIENT, "--recipient", CAROL]),
        hidden_bob: enc(&["--hidden-recipient", RECIPIENT]),
        bob_and_hidden_carol: enc(&["--recipient", RECIPIENT, "--hidden-recipient", CAROL]),
        throw_keyids_bob: enc(&["--throw-keyids", "--recipient", RECIPIENT]),
        symmetric: text(run(
            h,
            &["--armor", "--symmetric", "--passphrase", "correct horse"],
            secret,
        )),
        to_bob_binary: run(
            h,
            &[
                "--encrypt",
                "--trust-model",
                "always",
                "--recipient",
                RECIPIENT,
            ],
            secret,
        ),
    };
    let _ = Command::new("gpgconf")
        .args(["--kill", "all"])
        .env("GNUPGHOME", h)
        .status();
    keyed
}

/// A keyring directory holding `bob.asc` and `carol.asc` (Mallory's key is
/// not in it) plus `extra` files (name, contents).
pub fn keyring_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let k = keyed();
    let dir = tempfile::Builder::new()
        .prefix("pgpm-keyring-")
        .tempdir()
        .expect("keyring directory");
    std::fs::write(dir.path().join("bob.asc"), &k.bob_key).unwrap();
    std::fs::write(dir.path().join("carol.asc"), &k.carol_key).unwrap();
    for (name, contents) in extra {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

/// One key line of `gpg --with-colons` (`pub` or `sub`) with its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColonKey {
    /// `pub` or `sub`.
    pub kind: String,
    /// Field 5: the key ID.
    pub key_id: String,
    /// Field 12: capabilities (`e` for encryption).
    pub capabilities: String,
    /// The `fpr` line's field 10.
    pub fingerprint: String,
    /// The User IDs of its certificate (from `uid` lines).
    pub uids: Vec<String>,
}

/// Parses `gpg --with-colons --fingerprint` output.
pub fn colon_keys(colons: &str) -> Vec<ColonKey> {
    let mut out: Vec<ColonKey> = Vec::new();
    let mut cert_start = 0;
    for line in colons.lines() {
        let f: Vec<&str> = line.split(':').collect();
        match f[0] {
            "pub" | "sub" => {
                if f[0] == "pub" {
                    cert_start = out.len();
                }
                out.push(ColonKey {
                    kind: f[0].to_owned(),
                    key_id: f[4].to_owned(),
                    capabilities: f[11].to_owned(),
                    fingerprint: String::new(),
                    uids: Vec::new(),
                });
            }
            "fpr" => {
                if let Some(k) = out.last_mut().filter(|k| k.fingerprint.is_empty()) {
                    k.fingerprint = f[9].to_owned();
                }
            }
            "uid" => {
                for k in &mut out[cert_start..] {
                    k.uids.push(f[9].to_owned());
                }
            }
            _ => {}
        }
    }
    out
}

/// Runs the `pgp-milter` binary; (success, stdout, stderr).
pub fn pgp_milter(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgp-milter"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running pgp-milter");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Keys that exist but must not satisfy `require_recipient_key`, made by
/// GnuPG, and messages encrypted to them while they were still good.
#[derive(Debug)]
pub struct Unusable {
    /// Eve: made with a faked clock on 2024-01-01, expiring 2025-01-01
    /// (GnuPG puts the expiry at noon UTC).
    pub eve_key: String,
    /// Eve's expiry as `gpg --with-colons` gives it (Unix seconds).
    pub eve_expires: u64,
    /// Frank: `Frank <frank@example.org>` plus `Frank Old
    /// <frank.old@example.org>`, the latter revoked with
    /// `--quick-revoke-uid`.
    pub frank_key: String,
    /// Grace: the whole key revoked by importing GnuPG's own revocation
    /// certificate (`openpgp-revocs.d/<fpr>.rev`).
    pub grace_key: String,
    /// Heidi: exported, then the last octet of her User ID's
    /// self-signature flipped.
    pub heidi_key: String,
    /// Heidi's secret key (`--export-secret-keys`, no passphrase) in
    /// armor that claims `PGP PUBLIC KEY BLOCK`.
    pub secret_as_public: String,
    /// Encrypted to Eve (with the faked clock, before expiry).
    pub to_eve: String,
    /// Encrypted to Frank's key (one key for both User IDs).
    pub to_frank: String,
    /// Encrypted to Grace before the revocation.
    pub to_grace: String,
    /// Encrypted to Heidi.
    pub to_heidi: String,
}

/// The unusable-keys corpus, made once per test binary.
pub fn unusable() -> &'static Unusable {
    static UNUSABLE: OnceLock<Unusable> = OnceLock::new();
    UNUSABLE.get_or_init(make_unusable)
}

/// An armored public key block of binary `data`.
pub fn armor_key(data: &[u8]) -> String {
    format!(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{}-----END PGP PUBLIC KEY BLOCK-----\n",
        base64_lines(data).replace("\r\n", "\n")
    )
}

fn make_unusable() -> Unusable {
    gpg(); // checks that gpg is there, with a clear message
    let home = tempfile::Builder::new()
        .prefix("pgpm-unusable-")
        .tempdir_in("/tmp")
        .expect("temporary GNUPGHOME");
    let h = home.path();
    let text = |out: Vec<u8>| String::from_utf8(out).expect("armor is text");
    let fingerprint = |who: &str| {
        let colons = text(run(h, &["--with-colons", "--fingerprint", who], b""));
        colons
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_owned()
    };
    let secret = b"Not for expired keys.\n";
    let encrypt = |to: &str, extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            "--armor",
            "--encrypt",
            "--trust-model",
            "always",
            "--recipient",
            to,
        ]);
        text(run(h, &args, secret))
    };
    // Eve: created 2024-01-01, expiring 2025-01-01.
    run(
        h,
        &[
            "--faked-system-time",
            "20240101T000000",
            "--quick-generate-key",
            "Eve <eve@example.org>",
            "future-default",
            "default",
            "2025-01-01",
        ],
        b"",
    );
    let eve_colons = text(run(
        h,
        &["--with-colons", "--list-keys", "eve@example.org"],
        b"",
    ));
    let eve_expires = eve_colons
        .lines()
        .find(|l| l.starts_with("pub:"))
        .and_then(|l| l.split(':').nth(6))
        .and_then(|t| t.parse().ok())
        .expect("Eve's expiry");
    let to_eve = encrypt(
        "eve@example.org",
        &["--faked-system-time", "20240601T000000"],
    );
    // Frank: a second User ID, revoked.
    let generate = |uid: &str| {
        run(
            h,
            &[
                "--quick-generate-key",
                uid,
                "future-default",
                "default",
                "never",
            ],
            b"",
        );
    };
    generate("Frank <frank@example.org>");
    let frank = fingerprint("frank@example.org");
    run(
        h,
        &[
            "--quick-add-uid",
            &frank,
            "Frank Old <frank.old@example.org>",
        ],
        b"",
    );
    let to_frank = encrypt("frank@example.org", &[]);
    run(
        h,
        &[
            "--quick-revoke-uid",
            &frank,
            "Frank Old <frank.old@example.org>",
        ],
        b"",
    );
    // Grace: revoked with the certificate GnuPG made at generation.
    generate("Grace <grace@example.org>");
    let grace = fingerprint("grace@example.org");
    let to_grace = encrypt("grace@example.org", &[]);
    let cert = std::fs::read_to_string(h.join("openpgp-revocs.d").join(format!("{grace}.rev")))
        .expect("GnuPG's revocation certificate");
    // GnuPG prefixes the armor with a colon so it is not imported by accident.
    run(
        h,
        &["--import"],
        cert.replace(":-----BEGIN", "-----BEGIN").as_bytes(),
    );
    // Heidi: the exported User ID self-signature corrupted.
    generate("Heidi <heidi@example.org>");
    let to_heidi = encrypt("heidi@example.org", &[]);
    let mut heidi = run(h, &["--export", "heidi@example.org"], b"");
    let listing = text(run(h, &["--list-packets"], &heidi));
    let field = |line: &str, name: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .expect("list-packets field")
    };
    let headers: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("# off="))
        .collect();
    let uid = headers
        .iter()
        .position(|l| l.contains(" tag=13 "))
        .expect("User ID packet");
    let sig = headers[uid + 1];
    assert!(sig.contains(" tag=2 "), "{sig}");
    let end = field(sig, "off=") + field(sig, "hlen=") + field(sig, "plen=");
    heidi[end - 1] ^= 0x55;
    let keys = Unusable {
        eve_key: text(run(h, &["--armor", "--export", "eve@example.org"], b"")),
        eve_expires,
        frank_key: text(run(h, &["--armor", "--export", "frank@example.org"], b"")),
        grace_key: text(run(h, &["--armor", "--export", "grace@example.org"], b"")),
        heidi_key: armor_key(&heidi),
        secret_as_public: armor_key(&run(h, &["--export-secret-keys", "heidi@example.org"], b"")),
        to_eve,
        to_frank,
        to_grace,
        to_heidi,
    };
    let _ = Command::new("gpgconf")
        .args(["--kill", "all"])
        .env("GNUPGHOME", h)
        .status();
    keys
}

/// Real S/MIME messages made by OpenSSL (a throw-away self-signed
/// certificate), each with its name: `cms -encrypt` (application/pkcs7-mime
/// enveloped-data), `smime -encrypt` (the x- form), `cms -sign` and `smime
/// -sign` (multipart/signed with application/pkcs7-signature and the x-
/// form), `smime -sign -nodetach` (x-pkcs7-mime signed-data).
pub fn smime_messages() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::Builder::new()
        .prefix("pgpm-smime-")
        .tempdir()
        .expect("temporary directory");
    let d = dir.path();
    let openssl = |args: &[&str]| -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("OpenSSL (`openssl`, Debian package openssl) makes the S/MIME corpus");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=bob@example.org",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
    ]);
    std::fs::write(
        d.join("body.txt"),
        "Content-Type: text/plain\r\n\r\nSealed the other way.\r\n",
    )
    .unwrap();
    let sign = [
        "-in", "body.txt", "-signer", "cert.pem", "-inkey", "key.pem",
    ];
    let message = |mime: Vec<u8>| {
        let mut m = format!("From: alice@client.example\r\nTo: {RECIPIENT}\r\nSubject: s/mime\r\n")
            .into_bytes();
        m.extend(crlf(&String::from_utf8(mime).expect("MIME is text")).into_bytes());
        m
    };
    vec![
        (
            "cms -encrypt",
            message(openssl(&[
                "cms", "-encrypt", "-aes256", "-in", "body.txt", "cert.pem",
            ])),
        ),
        (
            "smime -encrypt",
            message(openssl(&[
                "smime", "-encrypt", "-aes256", "-in", "body.txt", "cert.pem",
            ])),
        ),
        (
            "cms -sign",
            message(openssl(&[&["cms", "-sign"][..], &sign].concat())),
        ),
        (
            "smime -sign",
            message(openssl(&[&["smime", "-sign"][..], &sign].concat())),
        ),
        (
            "smime -sign -nodetach",
            message(openssl(
                &[&["smime", "-sign", "-nodetach"][..], &sign].concat(),
            )),
        ),
    ]
}

/// `tests/oracle/structure_readers.py` over every message file in `dir`:
/// its stdout, a line per file (name, then Python's default policy's,
/// Python's compat32's and GMime's view of the structure, tab-separated).
pub fn structure_readers(dir: &Path) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/structure_readers.py"
    );
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(dir)
        .output()
        .expect("/usr/bin/python3 with python3-gi and gir1.2-gmime-3.0");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
