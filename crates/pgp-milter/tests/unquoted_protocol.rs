//! `protocol=application/pgp-encrypted` without quotes. RFC 2045 wants the
//! value quoted (a `/` is a special character), but real senders write it
//! bare: KDE's GPGME crypto plug-in (KMail 3) wrote `multipart/encrypted;
//! protocol=application/pgp-encrypted` as its constant, and Python's
//! genemail writes it so too. Readers disagree on the value (Python's
//! `email` with its default policy reads `application`, its compat32
//! policy and GMime `application/pgp-encrypted`), but not on the
//! structure: the boundary and the parts are the same for all, and the
//! milter judges every part whatever the protocol says (a control part in
//! a plain multipart counts as empty, the armor as encrypted). So a bare
//! media type there is read; any other special character, or a bare `/`
//! in any other parameter (a boundary), stays refused.

mod support;
mod through_milter;

use through_milter::reply;

use minimilter::transaction::Outcome;
use pgp_milter::Policy;

const ARMOR: &str = include_str!("fixtures/gpg/encrypted.asc");

fn pgp_mime(params: &str, boundary: &str, first_part: &str) -> Vec<u8> {
    support::crlf(&format!(
        "From: a@example.org\nTo: bob@example.org\nSubject: s\nMIME-Version: 1.0\n\
         Content-Type: multipart/encrypted; {params}\n\n\
         --{boundary}\n{first_part}\n\
         --{boundary}\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n\
         --{boundary}\nContent-Type: application/octet-stream\n\n{ARMOR}\n--{boundary}--\n"
    ))
    .into_bytes()
}

async fn outcomes(messages: &[Vec<u8>]) -> Vec<Outcome> {
    through_milter::outcomes(Policy::default(), "a@example.org", messages).await
}

/// The two RFC 3156 parts only (`pgp_mime` puts `first` before them).
fn encrypted(params: &str) -> Vec<u8> {
    let m = String::from_utf8(pgp_mime(params, "b", "")).unwrap();
    // Drop the empty first part: `--b`, a blank line.
    m.replacen("--b\r\n\r\n--b\r\n", "--b\r\n", 1).into_bytes()
}

#[tokio::test]
async fn a_bare_protocol_media_type_is_read() {
    let messages = [
        // KMail 3's cryptplug.
        encrypted("protocol=application/pgp-encrypted; boundary=\"b\""),
        // genemail.
        encrypted("protocol=application/pgp-encrypted; boundary=b"),
        encrypted("boundary=b;\n protocol=Application/PGP-Encrypted"),
    ];
    for (i, o) in outcomes(&messages).await.iter().enumerate() {
        assert_eq!(*o, Outcome::Accepted, "message {i}: {}", reply(o));
    }
}

#[tokio::test]
async fn other_bare_special_characters_stay_refused() {
    let plain = "Content-Type: text/plain\n\nThe plans, in the clear.";
    let messages = [
        // Plaintext next to the parts is refused whatever the protocol.
        pgp_mime("protocol=application/pgp-encrypted; boundary=b", "b", plain),
        // Only `type/subtype`, nothing more.
        encrypted("protocol=application/pgp-encrypted/x; boundary=b"),
        encrypted("protocol=application/pgp\"encrypted; boundary=b"),
        encrypted("protocol=/pgp-encrypted; boundary=b"),
        encrypted("protocol=application/; boundary=b"),
        // A bare `/` in the boundary decides the structure.
        String::from_utf8(pgp_mime(
            "protocol=\"application/pgp-encrypted\"; boundary=a/b",
            "a/b",
            "",
        ))
        .unwrap()
        .into_bytes(),
    ];
    let got = outcomes(&messages).await;
    assert!(
        reply(&got[0]).contains("unencrypted content: text/plain part")
            || reply(&got[0]).contains("3 parts instead of 2"),
        "{}",
        reply(&got[0])
    );
    for (i, o) in got.iter().enumerate().skip(1) {
        let r = reply(o);
        assert!(r.contains("without quotes"), "message {i}: {r}");
    }
}
