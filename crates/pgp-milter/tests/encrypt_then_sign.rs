//! Encrypt-then-sign: PGP/MIME signed (RFC 3156 §5) whose signed entity is
//! PGP/MIME encrypted (RFC 1847 §2.1 lets the signed entity be any MIME
//! entity). The content is encrypted, so the message passes as encrypted
//! under `require = "encrypted"`, as long as the inner entity is a
//! well-formed PGP/MIME encrypted message and the signature part a real
//! OpenPGP signature; plaintext in the same shape stays refused.
//!
//! The fast tests use `tests/fixtures/gpg/encrypt-then-sign.eml` (made with
//! GnuPG 2.2.40: an Ed25519/Cv25519 key, `gpg -a -e`, then `gpg -a
//! --detach-sign --digest-algo SHA256` over the encrypted entity with CRLF
//! line ends, as RFC 3156 §5 says). The ignored ones make a fresh one with
//! gpg and check the signature with `gpg --verify`, and ask Python's
//! `email` and GMime what they read.

mod support;

use std::process::Command;

use pgp_milter::{Decision, Detection, Form, Policy, Require, detect};

const FIXTURE: &str = include_str!("fixtures/gpg/encrypt-then-sign.eml");

/// The parts of an encrypt-then-sign message.
struct Pieces {
    /// The signed entity: `multipart/encrypted` header and body.
    inner: String,
    /// The armored signature.
    signature: String,
}

fn pieces(message: &str) -> Pieces {
    let start = message.find("--sig\r\n").unwrap() + 7;
    let end = message[start..].find("\r\n--sig\r\n").unwrap() + start;
    let sig_start = message.find("-----BEGIN PGP SIGNATURE-----").unwrap();
    let sig_end = message.find("-----END PGP SIGNATURE-----").unwrap() + 27;
    Pieces {
        inner: message[start..end].to_owned(),
        signature: message[sig_start..sig_end].to_owned(),
    }
}

/// PGP/MIME signed around `inner`, with `signature` as its second part.
fn signed(inner: &str, signature: &str) -> Vec<u8> {
    format!(
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; micalg=pgp-sha256;\r\n \
         protocol=\"application/pgp-signature\"; boundary=\"sig\"\r\n\r\n\
         --sig\r\n{inner}\r\n--sig\r\n\
         Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n\
         {signature}\r\n--sig--\r\n"
    )
    .into_bytes()
}

fn judge(m: &[u8], require: Require) -> (Detection, bool) {
    let d = detect(m);
    let policy = Policy {
        require,
        ..Policy::default()
    };
    let ok = matches!(policy.judge(&d), Decision::Accept(_));
    (d, ok)
}

fn accepted_as_encrypted(m: &[u8]) {
    let (d, ok) = judge(m, Require::Encrypted);
    assert_eq!(d, Detection::Encrypted(Form::PgpMime), "{d}");
    assert!(ok, "{d}");
}

fn refused(m: &[u8]) -> Detection {
    let (d, ok) = judge(m, Require::Encrypted);
    assert!(!ok, "accepted ({d}):\n{}", String::from_utf8_lossy(m));
    d
}

#[test]
fn gpg_encrypt_then_sign_passes_as_encrypted() {
    accepted_as_encrypted(FIXTURE.as_bytes());
    // Rebuilt from its pieces, the same.
    let p = pieces(FIXTURE);
    accepted_as_encrypted(&signed(&p.inner, &p.signature));
    // And under encrypted-or-signed, too.
    assert!(judge(FIXTURE.as_bytes(), Require::EncryptedOrSigned).1);
}

#[test]
fn signed_plaintext_is_still_refused() {
    let p = pieces(FIXTURE);
    let d = refused(&signed(
        "Content-Type: text/plain; charset=us-ascii\r\n\r\nThe marker: meet at noon.",
        &p.signature,
    ));
    assert_eq!(d, Detection::Signed(Form::PgpMime));
    // A signed multipart/mixed holding an encrypted message and text.
    let d = refused(&signed(
        &format!(
            "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n{}\r\n\
             --mix\r\nContent-Type: text/plain\r\n\r\nThe marker.\r\n--mix--",
            p.inner
        ),
        &p.signature,
    ));
    assert_eq!(d, Detection::Signed(Form::PgpMime));
}

#[test]
fn a_signed_encrypted_entity_that_is_not_well_formed_is_refused() {
    let p = pieces(FIXTURE);
    let armor_start = p.inner.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let armor_end = p.inner.find("-----END PGP MESSAGE-----").unwrap() + 25;
    // Plaintext instead of the ciphertext.
    let plain_data = format!(
        "{}The marker: meet at noon.{}",
        &p.inner[..armor_start],
        &p.inner[armor_end..]
    );
    refused(&signed(&plain_data, &p.signature));
    // A third part holding text.
    let third = p.inner.replacen(
        "\r\n--enc--",
        "\r\n--enc\r\nContent-Type: text/plain\r\n\r\nThe marker.\r\n--enc--",
        1,
    );
    refused(&signed(&third, &p.signature));
    // No control part.
    let Some(at) = p
        .inner
        .find("--enc\r\nContent-Type: application/octet-stream")
    else {
        panic!("fixture layout");
    };
    let first = p.inner.find("--enc\r\n").unwrap();
    let no_control = format!("{}{}", &p.inner[..first], &p.inner[at..]);
    refused(&signed(&no_control, &p.signature));
    // The protocol not PGP/MIME.
    refused(&signed(
        &p.inner
            .replacen("application/pgp-encrypted\"", "application/x-other\"", 1),
        &p.signature,
    ));
}

#[test]
fn the_signature_must_be_an_openpgp_signature() {
    let p = pieces(FIXTURE);
    for bad in [
        "The marker: not a signature.".to_owned(),
        // Armor of the wrong kind: the ciphertext again.
        p.inner[p.inner.find("-----BEGIN PGP MESSAGE-----").unwrap()
            ..p.inner.find("-----END PGP MESSAGE-----").unwrap() + 25]
            .to_owned(),
        // A signature armor holding garbage.
        "-----BEGIN PGP SIGNATURE-----\r\n\r\nVGhlIG1hcmtlcjogbm90IGEgc2lnbmF0dXJlLg==\r\n\
         -----END PGP SIGNATURE-----"
            .to_owned(),
    ] {
        refused(&signed(&p.inner, &bad));
    }
}

/// A fresh encrypt-then-sign message from gpg, with the signature checked
/// by `gpg --verify` over the signed entity as RFC 3156 §5 defines it.
fn fresh() -> Vec<u8> {
    let home = tempfile::Builder::new()
        .prefix("pgpm-ets-")
        .tempdir_in("/tmp")
        .unwrap();
    let h = home.path();
    support::run(
        h,
        &[
            "--quick-generate-key",
            "Alice <alice@example.org>",
            "future-default",
            "default",
            "never",
        ],
        b"",
    );
    let armor = String::from_utf8(support::run(
        h,
        &[
            "--armor",
            "--encrypt",
            "--trust-model",
            "always",
            "-r",
            "alice@example.org",
        ],
        b"Meet at noon.\n",
    ))
    .unwrap();
    let p = pieces(FIXTURE);
    let old_start = p.inner.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let old_end = p.inner.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let inner = format!(
        "{}{}{}",
        &p.inner[..old_start],
        support::crlf(armor.trim_end()),
        &p.inner[old_end..]
    );
    let sig = String::from_utf8(support::run(
        h,
        &["--armor", "--detach-sign", "--digest-algo", "SHA256"],
        inner.as_bytes(),
    ))
    .unwrap();
    let sig = support::crlf(sig.trim_end());
    let message = signed(&inner, &sig);
    // The signed entity as a receiving client cuts it out.
    let text = String::from_utf8(message.clone()).unwrap();
    let cut = pieces(&text);
    let sig_file = h.join("sig.asc");
    let entity_file = h.join("entity");
    std::fs::write(&sig_file, &cut.signature).unwrap();
    std::fs::write(&entity_file, &cut.inner).unwrap();
    support::run(
        h,
        &[
            "--verify",
            sig_file.to_str().unwrap(),
            entity_file.to_str().unwrap(),
        ],
        b"",
    );
    let _ = Command::new("gpgconf")
        .args(["--kill", "all"])
        .env("GNUPGHOME", h)
        .status();
    message
}

#[test]
#[ignore = "needs gpg"]
fn fresh_gpg_encrypt_then_sign_passes_as_encrypted() {
    let m = fresh();
    accepted_as_encrypted(&m);
    let p = pieces(std::str::from_utf8(&m).unwrap());
    refused(&signed(
        "Content-Type: text/plain\r\n\r\nThe marker.",
        &p.signature,
    ));
}

#[test]
#[ignore = "needs python3-gi and gir1.2-gmime-3.0"]
fn python_and_gmime_read_the_fixture_as_signed_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m"), FIXTURE).unwrap();
    let line = support::structure_readers(dir.path());
    let views: Vec<&str> = line.trim_end().split('\t').skip(1).collect();
    assert_eq!(views.len(), 3);
    for v in &views {
        let types: Vec<&str> = v
            .split(" | ")
            .map(|e| e.rsplit_once(':').unwrap().0)
            .collect();
        assert_eq!(
            types,
            [
                "0:multipart/signed;protocol=application/pgp-signature",
                "1:multipart/encrypted;protocol=application/pgp-encrypted",
                "2:application/pgp-encrypted",
                "2:application/octet-stream",
                "1:application/pgp-signature",
            ],
            "{v}"
        );
        assert!(!v.contains('M'), "{v}");
    }
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
}
