//! Encrypted mail as real clients write it, through a real Postfix with
//! pgp-milter: every message is delivered (a wrong refusal of real
//! encrypted mail is the worst outcome this milter can produce).
//!
//! The OpenPGP data is made now by GnuPG (an RSA 3072 and a Curve25519
//! key; one and two recipients, `--throw-keyids`, `--symmetric`, signed
//! and encrypted, binary) and by Sequoia's `sq` (v4); the MIME around it
//! follows what each client writes (header fields and part fields as
//! they send them, the Autocrypt header of Delta Chat and Thunderbird, a
//! folded `Content-Type`, a trailing `;`, `charset` on the parts,
//! Outlook's one-line `References` of over 998 octets, an unquoted
//! `protocol` (KMail 3, genemail); Apple Mail, KMail,
//! PGP Universal, Exchange's and Proton Bridge's "mixed up" form, and
//! PHPMailer's armor labelled `text/html`), in
//! 7bit, base64 and quoted-printable, with CRLF and with bare LF line
//! ends (Postfix turns those into CRLF), sent with DATA and with BDAT.
//! Then the milter restarts while Postfix holds a transaction open: that
//! message gets a tempfail, the next session is judged by the new daemon.
//!
//! Needs Postfix and root (scripts/install-test-deps.sh), `gpg` and `sq`.

mod support;

mod tools;

use support::served::{BehindPostfix, behind_postfix, start_milter};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::{Postfix, SmtpClient};

/// Runs `program` with `args` in `dir`, `input` on stdin; its stdout.
fn run(program: &str, dir: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    tools::output(
        Command::new(program)
            .env("GNUPGHOME", dir)
            .current_dir(dir)
            .args(args),
        input,
    )
}

/// OpenPGP messages of real implementations: (what, armored or binary).
fn openpgp_outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let gpg = |args: &[&str], input: &[u8]| {
        let mut all = vec!["--batch", "--yes", "--trust-model", "always", "--quiet"];
        all.extend_from_slice(args);
        run("gpg", dir, &all, input)
    };
    for (uid, algo, usage) in [
        ("Bob <bob@example.org>", "rsa3072", "sign,encr"),
        ("Carol <carol@example.org>", "future-default", "default"),
    ] {
        gpg(
            &[
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                algo,
                usage,
                "never",
            ],
            b"",
        );
    }
    let text = "Hello Bob,\n\nthe plan stands.\n".repeat(20);
    let mut out = Vec::new();
    let mut add = |what: &str, data: Vec<u8>| out.push((what.to_owned(), data));
    add(
        "gpg rsa",
        gpg(&["--armor", "-r", "bob@example.org", "-e"], text.as_bytes()),
    );
    add(
        "gpg two recipients, hidden",
        gpg(
            &[
                "--armor",
                "--throw-keyids",
                "-r",
                "bob@example.org",
                "-r",
                "carol@example.org",
                "-e",
            ],
            text.as_bytes(),
        ),
    );
    add(
        "gpg symmetric",
        gpg(
            &[
                "--armor",
                "--passphrase",
                "pw",
                "--pinentry-mode",
                "loopback",
                "-c",
            ],
            text.as_bytes(),
        ),
    );
    add(
        "gpg signed and encrypted",
        gpg(
            &[
                "--armor",
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "-u",
                "carol@example.org",
                "-r",
                "bob@example.org",
                "-s",
                "-e",
            ],
            text.as_bytes(),
        ),
    );
    add(
        "gpg binary",
        gpg(&["-r", "carol@example.org", "-e"], text.as_bytes()),
    );
    let cert = run(
        "sq",
        dir,
        &[
            "key",
            "generate",
            "--userid",
            "<dave@example.org>",
            "--export",
            "dave.key",
        ],
        b"",
    );
    drop(cert);
    let sq_cert = run("sq", dir, &["key", "extract-cert", "dave.key"], b"");
    std::fs::write(dir.join("dave.cert"), sq_cert).unwrap();
    add(
        "sq",
        run(
            "sq",
            dir,
            &["encrypt", "--recipient-cert", "dave.cert"],
            text.as_bytes(),
        ),
    );
    out
}

fn b64(data: &[u8]) -> String {
    support::base64_lines(data)
}

/// The message shapes, each from `data` (armor, or binary for a `.pgp`
/// attachment).
fn shapes(what: &str, data: &[u8]) -> Vec<(String, String)> {
    let binary = data.first().is_some_and(|b| b & 0x80 != 0);
    let autocrypt = "Autocrypt: addr=alice@client.example; prefer-encrypt=mutual; keydata=\n \
                     xjMEZ0Qm5RYJKwYBBAHaRw8BAQdAqkGnJgP0jBL5mTVdJ9mO2NNmJm0Ox4wW0gk7lE6KbZ/N\n \
                     FWFsaWNlQGNsaWVudC5leGFtcGxlwosEEBYIADMWIQQmFIrLW0xGHsB0XPjDrd8WvvRVigUC\n";
    let top = |subject: &str, extra: &str| {
        format!(
            "From: Alice <alice@client.example>\nTo: Bob <bob@example.org>\n\
             Subject: {subject}\nDate: Mon, 07 Dec 2026 05:00:00 +0000\n\
             Message-ID: <{}@client.example>\nMIME-Version: 1.0\n{extra}",
            testkit::unique_id("m")
        )
    };
    if binary {
        // An inline-PGP client attaching the binary message (`.pgp`).
        return vec![(
            format!("{what}: .pgp attachment"),
            format!(
                "{}Content-Type: multipart/mixed; boundary=\"att\"\n\n--att\n\
                 Content-Type: application/octet-stream; name=\"msg.pgp\"\n\
                 Content-Disposition: attachment; filename=\"msg.pgp\"\n\
                 Content-Transfer-Encoding: base64\n\n{}--att--\n",
                top("...", ""),
                b64(data)
            ),
        )];
    }
    let armor = String::from_utf8(data.to_vec()).unwrap();
    let mut v = Vec::new();
    // Thunderbird 115 (its own OpenPGP): protected headers inside, "..."
    // outside, the Autocrypt header, a preamble.
    v.push((
        format!("{what}: Thunderbird"),
        format!(
            "{}Content-Type: multipart/encrypted;\n protocol=\"application/pgp-encrypted\";\n \
             boundary=\"------------0123456789ABCDEFGHIJKLMN\"\n\n\
             This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n\
             --------------0123456789ABCDEFGHIJKLMN\n\
             Content-Type: application/pgp-encrypted\n\
             Content-Description: PGP/MIME version identification\n\nVersion: 1\n\n\
             --------------0123456789ABCDEFGHIJKLMN\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\n\
             Content-Description: OpenPGP encrypted message\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\n\n{armor}\n\
             --------------0123456789ABCDEFGHIJKLMN--\n",
            top(
                "...",
                &format!("{autocrypt}User-Agent: Mozilla Thunderbird\n")
            )
        ),
    ));
    // Delta Chat: Chat-Version, Autocrypt, charset and 7bit on the parts,
    // a trailing `;` after the file name.
    v.push((
        format!("{what}: Delta Chat"),
        format!(
            "{}Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n \
             boundary=\"KM1aXcKrz1wK6G5wuaQ7ZNsXj6jZMn\"\n\n\
             --KM1aXcKrz1wK6G5wuaQ7ZNsXj6jZMn\n\
             Content-Type: application/pgp-encrypted; charset=\"utf-8\"\n\
             Content-Description: PGP/MIME version identification\n\
             Content-Transfer-Encoding: 7bit\n\nVersion: 1\n\n\
             --KM1aXcKrz1wK6G5wuaQ7ZNsXj6jZMn\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\";\n charset=\"utf-8\"\n\
             Content-Description: OpenPGP encrypted message\n\
             Content-Disposition: inline; filename=\"encrypted.asc\";\n\
             Content-Transfer-Encoding: 7bit\n\n{armor}\n\
             --KM1aXcKrz1wK6G5wuaQ7ZNsXj6jZMn--\n\n",
            top(
                "[...]",
                &format!("Chat-Version: 1.0\n{autocrypt}Chat-Disposition-Notification-To: alice@client.example\n")
            )
        ),
    ));
    // Mailvelope: protocol after the boundary, an attachment disposition
    // on the control part, no blank line after "Version: 1".
    v.push((
        format!("{what}: Mailvelope"),
        format!(
            "{}Content-Type: multipart/encrypted; boundary=\"mv-boundary-1\";\n \
             protocol=\"application/pgp-encrypted\"\n\n\
             --mv-boundary-1\nContent-Type: application/pgp-encrypted\n\
             Content-Disposition: attachment\n\nVersion: 1\n\
             --mv-boundary-1\nContent-Type: application/octet-stream\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\n\n{armor}\n--mv-boundary-1--\n",
            top("Re: plan", "")
        ),
    ));
    // K-9 Mail / FairEmail: unquoted parameters, 7bit.
    v.push((
        format!("{what}: K-9"),
        format!(
            "{}Content-Type: multipart/encrypted; boundary=----K9ABCDEF;\n \
             protocol=\"application/pgp-encrypted\"\n\n\
             ------K9ABCDEF\nContent-Type: application/pgp-encrypted\n\
             Content-Transfer-Encoding: 7bit\n\nVersion: 1\n\
             ------K9ABCDEF\nContent-Type: application/octet-stream; name=encrypted.asc\n\
             Content-Disposition: inline; filename=encrypted.asc\n\
             Content-Transfer-Encoding: 7bit\n\n{armor}\n------K9ABCDEF--\n",
            top("Encrypted message", "")
        ),
    ));
    // Outlook with GpgOL, a reply deep in a thread: Outlook writes
    // `References` on one line, here over 1900 octets (RFC 5322's limit
    // is 998; Postfix passes it on as it came).
    let references: Vec<String> = (0..24)
        .map(|i| format!("<PR0P264MB33563D04B559EC154855E36AD28B{i:02}@PR0P264MB3356.FRAP264.PROD.OUTLOOK.COM>"))
        .collect();
    v.push((
        format!("{what}: Outlook GpgOL, long References"),
        format!(
            "{}Content-Type: multipart/encrypted;\n\tprotocol=\"application/pgp-encrypted\";\n\t\
             boundary=\"=-=_GpgOL_0123456789-=-=\"\nContent-Transfer-Encoding: 7Bit\n\n\
             --=-=_GpgOL_0123456789-=-=\nContent-Type: application/pgp-encrypted\n\
             Content-Transfer-Encoding: 7Bit\n\nVersion: 1\n\n\
             --=-=_GpgOL_0123456789-=-=\nContent-Type: application/octet-stream\n\
             Content-Transfer-Encoding: 7Bit\n\n{armor}\n--=-=_GpgOL_0123456789-=-=--\n",
            top(
                "RE: plan",
                &format!(
                    "References: {}\nX-Mailer: Microsoft Outlook 16.0\n",
                    references.join(" ")
                )
            )
        ),
    ));
    // Proton: PGP/MIME, the armored part base64-encoded.
    v.push((
        format!("{what}: base64 armored part"),
        format!(
            "{}Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n \
             boundary=\"---------------------a1b2c3d4e5f6\"\n\n\
             -----------------------a1b2c3d4e5f6\nContent-Type: application/pgp-encrypted\n\
             Content-Description: PGP/MIME version identification\n\nVersion: 1\n\n\
             -----------------------a1b2c3d4e5f6\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\n\
             Content-Description: OpenPGP encrypted message\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\n\
             Content-Transfer-Encoding: base64\n\n{}\
             -----------------------a1b2c3d4e5f6--\n",
            top("Proton", "X-Pm-Origin: internal\n"),
            b64(armor.as_bytes())
        ),
    ));
    // Apple Mail with GPG Suite: the boundary has `=`, parameters folded
    // with tabs, a blank line after the header, the control part
    // described as "Versions Identification".
    v.push((
        format!("{what}: Apple Mail GPG Suite"),
        format!(
            "{}Content-Type: multipart/encrypted;\n\tboundary=\"Apple-Mail=_8A2E0E4B-0E3B-4C6B\";\n\t\
             protocol=\"application/pgp-encrypted\"\n\n\n\
             --Apple-Mail=_8A2E0E4B-0E3B-4C6B\nContent-Transfer-Encoding: 7bit\n\
             Content-Type: application/pgp-encrypted\n\
             Content-Description: PGP/MIME Versions Identification\n\nVersion: 1\n\n\
             --Apple-Mail=_8A2E0E4B-0E3B-4C6B\nContent-Transfer-Encoding: 7bit\n\
             Content-Disposition: inline;\n\tfilename=encrypted.asc\n\
             Content-Type: application/octet-stream;\n\tname=encrypted.asc\n\
             Content-Description: OpenPGP encrypted message\n\n{armor}\n\n\
             --Apple-Mail=_8A2E0E4B-0E3B-4C6B--\n",
            top("...", "X-Mailer: Apple Mail (2.3445.104.21)\n")
        ),
    ));
    // KMail: `7Bit` on the multipart, no blank line after `Version: 1`.
    v.push((
        format!("{what}: KMail"),
        format!(
            "{}Content-Type: multipart/encrypted; boundary=\"nextPart1234567.ABCdefGHij\"; \
             protocol=\"application/pgp-encrypted\"\nContent-Transfer-Encoding: 7Bit\n\n\
             --nextPart1234567.ABCdefGHij\nContent-Type: application/pgp-encrypted\n\
             Content-Disposition: attachment\n\nVersion: 1\n\
             --nextPart1234567.ABCdefGHij\nContent-Type: application/octet-stream\n\
             Content-Disposition: inline; filename=\"msg.asc\"\n\n{armor}\n\n\
             --nextPart1234567.ABCdefGHij--\n\n",
            top("...", "User-Agent: KMail/5.2.3\n")
        ),
    ));
    // KMail 3's GPGME plug-in and Python's genemail: the protocol
    // parameter without quotes.
    v.push((
        format!("{what}: unquoted protocol"),
        format!(
            "{}Content-Type: multipart/encrypted; protocol=application/pgp-encrypted; \
             boundary=\"==BNDRY==\"\nContent-Transfer-Encoding: 7bit\n\n\
             --==BNDRY==\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n\
             --==BNDRY==\nContent-Type: application/octet-stream\n\n{armor}\n--==BNDRY==--\n",
            top("...", "")
        ),
    ));
    // Symantec Encryption Server (PGP Universal): Mac type parameters,
    // file names on both parts, its own armor `Version:` line.
    let universal = armor.replacen(
        "-----BEGIN PGP MESSAGE-----\n",
        "-----BEGIN PGP MESSAGE-----\nVersion: PGP Universal 3.3.2 (Build 21495)\n",
        1,
    );
    v.push((
        format!("{what}: PGP Universal"),
        format!(
            "{}X-PGP-Universal: processed;\n\tby pgp1.client.example on Fri, 19 Oct 2018 10:12:05 -0400\n\
             X-PGP-Encoding-Format: MIME\nContent-Type: multipart/encrypted;\n\t\
             boundary=\"PGP_Universal_0F1A1B2B_79986338\";\n\tprotocol=\"application/pgp-encrypted\"\n\n\n\
             --PGP_Universal_0F1A1B2B_79986338\nContent-Type: application/pgp-encrypted;\n\t\
             x-mac-type=54455854;\n\tname=Version.txt\n\
             Content-Disposition: attachment; filename=Version.txt\n\nVersion: 1\n\n\
             --PGP_Universal_0F1A1B2B_79986338\nContent-Type: application/octet-stream;\n\t\
             x-mac-type=70674546;\n\tname=Message.pgp\n\
             Content-Disposition: attachment; filename=Message.pgp\n\n{universal}\n\n\
             --PGP_Universal_0F1A1B2B_79986338--\n",
            top("...", "")
        ),
    ));
    // Exchange and Proton Bridge "mixed up" (draft-dkg-openpgp-pgpmime-
    // message-mangling): multipart/mixed, an empty text/plain body, the
    // two RFC 3156 parts as base64 attachments.
    v.push((
        format!("{what}: Exchange mixed up"),
        format!(
            "{}Content-Type: multipart/mixed;\n\tboundary=\"_003_415B007C20834BE7_\"\n\n\
             --_003_415B007C20834BE7_\nContent-Type: text/plain; charset=\"us-ascii\"\n\
             Content-Transfer-Encoding: quoted-printable\n\n\n\
             --_003_415B007C20834BE7_\n\
             Content-Type: application/pgp-encrypted; name=\"PGPMIME Versions Identification\"\n\
             Content-Description: PGP/MIME Versions Identification\n\
             Content-Disposition: attachment; filename=\"PGPMIME Versions Identification\"; size=13\n\
             Content-Transfer-Encoding: base64\n\n{}\n\
             --_003_415B007C20834BE7_\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\n\
             Content-Description: OpenPGP encrypted message.asc\n\
             Content-Disposition: attachment; filename=\"encrypted.asc\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n--_003_415B007C20834BE7_--\n",
            top("...", "X-MS-Has-Attach: yes\n"),
            b64(b"Version: 1\r\n"),
            b64(armor.replace('\n', "\r\n").as_bytes())
        ),
    ));
    // WordPress (wp-pgp-encrypted-emails through PHPMailer): the armor
    // alone, labelled text/html.
    v.push((
        format!("{what}: PHPMailer text/html"),
        format!(
            "{}Content-Type: text/html; charset=UTF-8\n\n{armor}\n",
            top("Neue Anmeldung", "X-Mailer: WPMailSMTP/Mailer/mail 1.4.1\n")
        ),
    ));
    // Inline PGP (Enigmail, GpgOL, webmail plug-ins): armor in
    // text/plain, quoted-printable and flowed.
    v.push((
        format!("{what}: inline quoted-printable"),
        format!(
            "{}Content-Type: text/plain; charset=UTF-8; format=flowed\n\
             Content-Transfer-Encoding: quoted-printable\n\n{}",
            top("inline", ""),
            support::qp(&armor)
        ),
    ));
    v.push((
        format!("{what}: inline in multipart/mixed"),
        format!(
            "{}Content-Type: multipart/mixed; boundary=\"mix\"\n\n--mix\n\
             Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 7bit\n\n\
             {armor}\n--mix--\n",
            top("inline", "")
        ),
    ));
    v
}

/// Sends `message` with BDAT (RFC 3030) in two chunks; the last reply.
fn send_bdat(port: u16, message: &[u8]) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    assert!(reply().starts_with("220"));
    w.write_all(b"EHLO client.example\r\n").unwrap();
    let ehlo = reply();
    assert!(ehlo.contains("CHUNKING"), "Postfix offers CHUNKING: {ehlo}");
    for cmd in [
        "MAIL FROM:<alice@client.example>",
        "RCPT TO:<bob@example.org>",
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let r = reply();
        assert!(r.starts_with('2'), "{cmd}: {r}");
    }
    let (a, b) = message.split_at(message.len() / 2);
    w.write_all(format!("BDAT {}\r\n", a.len()).as_bytes())
        .unwrap();
    w.write_all(a).unwrap();
    let first = reply();
    if !first.starts_with("250") {
        return first;
    }
    w.write_all(format!("BDAT {} LAST\r\n", b.len()).as_bytes())
        .unwrap();
    w.write_all(b).unwrap();
    let last = reply();
    let _ = w.write_all(b"QUIT\r\n");
    last
}

#[test]
#[ignore = "needs postfix, gpg and sq"]
fn postfix_delivers_what_real_clients_send() {
    let home = tempfile::Builder::new()
        .prefix("clients")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let outputs = openpgp_outputs(home.path());
    let mut messages = Vec::new();
    for (what, data) in &outputs {
        for (name, m) in shapes(what, data) {
            let crlf = support::crlf(&m).into_bytes();
            let lf = m.replace("\r\n", "\n").into_bytes();
            messages.push((format!("{name}, CRLF"), crlf));
            messages.push((format!("{name}, LF"), lf));
        }
    }
    // The milter's own verdict first (a failure here names the shape).
    for (name, m) in &messages {
        let d = pgp_milter::detect(m);
        assert!(
            matches!(d, pgp_milter::Detection::Encrypted(_)),
            "{name}: {d}\n{}",
            String::from_utf8_lossy(m)
        );
    }

    let BehindPostfix {
        postfix: pf,
        daemon,
        config,
        socket,
        dir,
    } = behind_postfix(Postfix::prepare().unwrap().user("postmaster"), "");
    let port = pf.port("pgp");
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    for (i, (name, m)) in messages.iter().enumerate() {
        if i % 7 == 3 {
            let r = send_bdat(port, m);
            assert!(
                r.starts_with("250"),
                "{name} (BDAT): {r}\n{}",
                daemon.log_text()
            );
            continue;
        }
        assert!(c.mail("<alice@client.example>").unwrap().is_positive());
        assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
        let r = c.data(m).unwrap();
        assert_eq!(r.code, 250, "{name}: {r:?}\n{}", daemon.log_text());
    }
    c.quit().unwrap();
    pf.wait_for_delivery("bob", messages.len(), Duration::from_secs(60))
        .unwrap();
    let log = daemon.log_text();
    let accepted = log.matches("verdict=accept").count();
    assert_eq!(accepted, messages.len(), "{log}");

    // The milter restarts while Postfix holds a session in the middle of a
    // transaction: that message gets Postfix's tempfail (the client tries
    // again later; nothing is refused for good or let through unchecked),
    // and the next session is served by the new daemon.
    let (name, m) = &messages[0];
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<alice@client.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let mut daemon = daemon;
    daemon.stop();
    let _ = std::fs::remove_file(&socket);
    let daemon = start_milter(&config, &socket, dir.join("pgp-milter-2.log"));
    let r = c.data(m).unwrap();
    assert!(r.is_transient(), "{name} across a restart: {r:?}");
    let _ = c.quit();
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<alice@client.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let r = c.data(m).unwrap();
    assert_eq!(
        r.code,
        250,
        "{name} after the restart: {r:?}\n{}",
        daemon.log_text()
    );
    assert!(c.mail("<alice@client.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let r = c.data(support::plain("plain", "In the clear.\n")).unwrap();
    assert_eq!(r.code, 550, "plain after the restart: {r:?}");
    c.quit().unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A 50 MB file encrypted by GnuPG and sent as PGP/MIME (about 68 MB of
/// armor) through Postfix: delivered, judged completely, in bounded memory.
#[test]
#[ignore = "needs postfix and gpg"]
fn postfix_delivers_a_fifty_megabyte_encrypted_attachment() {
    let home = tempfile::Builder::new().prefix("big").tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let dir = home.path();
    let gpg = |args: &[&str], input: &[u8]| {
        let mut all = vec!["--batch", "--yes", "--trust-model", "always", "--quiet"];
        all.extend_from_slice(args);
        run("gpg", dir, &all, input)
    };
    gpg(
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            "Bob <bob@example.org>",
            "future-default",
            "default",
            "never",
        ],
        b"",
    );
    // Incompressible content (GnuPG would compress zeros to nothing).
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let file: Vec<u8> = (0..50_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let armor = gpg(&["--armor", "-r", "bob@example.org", "-e"], &file);
    drop(file);
    let armor = String::from_utf8(armor).unwrap();
    let message = support::pgp_mime("fifty megabytes", &armor);
    drop(armor);
    assert!(message.len() > 60_000_000);

    let BehindPostfix {
        postfix: pf,
        daemon,
        ..
    } = behind_postfix(
        Postfix::prepare()
            .unwrap()
            .user("postmaster")
            .main_cf("message_size_limit", "100000000"),
        "",
    );
    let mut c = SmtpClient::connect(pf.port("pgp")).unwrap();
    c.set_timeout(Duration::from_secs(300)).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    assert!(c.mail("<alice@client.example>").unwrap().is_positive());
    assert!(c.rcpt("<bob@example.org>").unwrap().is_positive());
    let r = c.data(&message).unwrap();
    assert_eq!(r.code, 250, "{r:?}\n{}", daemon.log_text());
    c.quit().unwrap();
    let log = daemon.log_text();
    assert!(log.contains("verdict=accept"), "{log}");
    // Peak resident memory of the whole daemon: far below the message.
    let peak = rss_kib(daemon.pid().unwrap());
    eprintln!("pgp-milter peak RSS {peak} KiB");
    assert!(peak < 64 << 10, "peak RSS {peak} KiB for a 68 MB message");
}
