//! Header lines longer than RFC 5322's 998 octets in real mail: Outlook
//! writes a long thread's `References` as one line (a reply deep in a
//! thread carries well over 1000 octets of message IDs), and libraries
//! that Q-encode a long non-ASCII `Subject` without folding write lines of
//! several thousand. Postfix accepts such lines and passes them to the
//! milter as they came; mail readers read them. An encrypted reply must
//! not be refused for them.
//!
//! A line over 998 octets stays refused where an MTA's repair could change
//! what readers see: Postfix's `smtp(8)` breaks such a line at octet 998
//! by inserting CRLF SPACE, harmless in a field no reader takes structure
//! from, but a break inside a `Content-*` field's value (a boundary) or
//! before the colon of a field name would change the message.

mod support;
mod through_milter;

use through_milter::reply;

use minimilter::transaction::Outcome;
use pgp_milter::Policy;

const ARMOR: &str = include_str!("fixtures/gpg/encrypted.asc");

/// Outlook's `References` of a long thread, on one line (the form
/// Exchange/Outlook message IDs take).
fn outlook_references(n: usize) -> String {
    let ids: Vec<String> = (0..n)
        .map(|i| format!("<PR0P264MB33563D04B559EC154855E36AD28B{i:02}@PR0P264MB3356.FRAP264.PROD.OUTLOOK.COM>"))
        .collect();
    format!("References: {}", ids.join(" "))
}

/// PGP/MIME as Outlook with GpgOL sends it, `header` among its top-level
/// fields and `part_header` among the encrypted part's.
fn pgp_mime(header: &str, content_type_tail: &str, part_header: &str) -> Vec<u8> {
    let armor = support::crlf(ARMOR);
    format!(
        "From: Alice <alice@client.example>\r\nTo: bob@example.org\r\nSubject: RE: plan\r\n\
         {header}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted;\r\n\tprotocol=\"application/pgp-encrypted\";\r\n\
         \tboundary=\"=-=_GpgOL_0123-=-=\"{content_type_tail}\r\n\r\n\
         --=-=_GpgOL_0123-=-=\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --=-=_GpgOL_0123-=-=\r\nContent-Type: application/octet-stream\r\n{part_header}\r\n\r\n\
         {armor}\r\n--=-=_GpgOL_0123-=-=--\r\n"
    )
    .into_bytes()
}

async fn outcomes(messages: &[Vec<u8>]) -> Vec<Outcome> {
    through_milter::outcomes(Policy::default(), "alice@client.example", messages).await
}

#[tokio::test]
async fn encrypted_mail_with_header_lines_over_998_octets_is_accepted() {
    let references = outlook_references(20);
    assert!(references.len() > 1500, "{}", references.len());
    let subject = format!(
        "X-Long-Subject: {}",
        "=?UTF-8?Q?=C3=A4=C3=B6?= ".repeat(150)
    );
    assert!(subject.len() > 3000);
    let messages = [
        pgp_mime(
            &references,
            "",
            "Content-Description: OpenPGP encrypted message",
        ),
        pgp_mime(
            &subject,
            "",
            "Content-Description: OpenPGP encrypted message",
        ),
        // In a part's header too (a field no reader takes structure from).
        pgp_mime(
            "X-Mailer: GpgOL",
            "",
            &format!("Content-Description: {}", "encrypted ".repeat(150)),
        ),
        // A long folded line after a fold.
        pgp_mime(&format!("{references}\r\n {references}"), "", "X-A: b"),
    ];
    for (i, o) in outcomes(&messages).await.iter().enumerate() {
        assert_eq!(*o, Outcome::Accepted, "message {i}: {}", reply(o));
    }
}

#[tokio::test]
async fn lines_over_998_octets_an_mta_would_break_into_other_structure_are_refused() {
    let long_name = format!("X-{}: a", "n".repeat(1000));
    let messages = [
        // The structure's own field: a break at octet 998 lands in it.
        pgp_mime(
            "X-Mailer: GpgOL",
            &format!(";\r\n\tx-pad=\"{}\"", "p".repeat(1000)),
            "X-A: b",
        ),
        pgp_mime(
            "X-Mailer: GpgOL",
            "",
            &format!(
                "Content-Disposition: inline; filename=\"{}.asc\"",
                "f".repeat(1000)
            ),
        ),
        // A break before the colon leaves a line without one.
        pgp_mime(&long_name, "", "X-A: b"),
        pgp_mime("X-Mailer: GpgOL", "", &long_name),
    ];
    for (i, o) in outcomes(&messages).await.iter().enumerate() {
        let r = reply(o);
        assert!(r.contains("longer than 998 octets"), "message {i}: {r}");
    }
}
