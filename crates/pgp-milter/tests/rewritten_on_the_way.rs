//! Encrypted mail that a mailing list or a gateway rewrote on the way, and
//! the decision a careful administrator of an "OpenPGP only" address
//! expects for each, judged as Postfix plays the message to the milter.
//!
//! * A list that only adds header fields (`[list]` in the `Subject`,
//!   `List-*`) leaves the encrypted body as it was: accepted.
//! * A list footer is text every reader shows next to the ciphertext:
//!   Mailman appends it to a single `text/plain` body, and wraps any other
//!   message into a `multipart/mixed` with the footer as a `text/plain`
//!   part. That is plaintext in the mailbox, refused like any other
//!   (`require = "encrypted"` has no list exception; a list's mail to such
//!   an address should come unfooted, or the list be exempted with
//!   `exempt_senders`).
//! * A gateway's disclaimer after the closing boundary (the epilogue),
//!   which readers do not show, passes within the epilogue's 4096 bytes
//!   of text; a longer one is refused.

mod support;
mod through_milter;

use through_milter::reply;

use minimilter::transaction::Outcome;
use pgp_milter::Policy;

const ARMOR: &str = include_str!("fixtures/gpg/encrypted.asc");

const FOOTER: &str = "_______________________________________________\n\
                      list mailing list -- list@lists.example.org\n\
                      To unsubscribe send an email to list-leave@lists.example.org\n";

fn header(extra: &str) -> String {
    format!(
        "From: Alice <alice@client.example>\nTo: list@lists.example.org\n\
         Subject: [list] plan\nMessage-ID: <p1@client.example>\nMIME-Version: 1.0\n{extra}"
    )
}

/// The PGP/MIME entity (its own Content-Type and body).
fn pgp_mime_entity(epilogue: &str) -> String {
    format!(
        "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n \
         boundary=\"enc\"\n\n--enc\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n\
         --enc\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\n\n{ARMOR}\n\
         --enc--\n{epilogue}"
    )
}

async fn outcomes(messages: &[String]) -> Vec<Outcome> {
    let bytes: Vec<String> = messages.iter().map(|m| support::crlf(m)).collect();
    through_milter::outcomes(Policy::default(), "list-bounces@lists.example.org", &bytes).await
}

#[tokio::test]
async fn list_header_changes_pass_and_list_footers_do_not() {
    let list_fields = "List-Id: <list.lists.example.org>\n\
                       List-Unsubscribe: <mailto:list-leave@lists.example.org>\n\
                       Precedence: list\n";
    let disclaimer = "This e-mail was scanned for viruses by the gateway.\n";
    let accepted = [
        format!("{}{}", header(list_fields), pgp_mime_entity("")),
        format!("{}{}", header(""), pgp_mime_entity(disclaimer)),
    ];
    for (i, o) in outcomes(&accepted).await.iter().enumerate() {
        assert_eq!(*o, Outcome::Accepted, "case {i}: {}", reply(o));
    }

    let refused = [
        // Mailman, a multipart: wrapped, the footer a part of its own.
        (
            format!(
                "{}Content-Type: multipart/mixed; boundary=\"===============1234==\"\n\n\
                 --===============1234==\n{}\n--===============1234==\n\
                 Content-Type: text/plain; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
                 Content-Transfer-Encoding: 7bit\nContent-Disposition: inline\n\n{FOOTER}\n\
                 --===============1234==--\n",
                header(list_fields),
                pgp_mime_entity("")
            ),
            "unencrypted content: text/plain part",
        ),
        // Mailman, inline PGP in a single text/plain: appended.
        (
            format!(
                "{}Content-Type: text/plain; charset=\"us-ascii\"\n\
                 Content-Transfer-Encoding: 7bit\n\n{ARMOR}\n{FOOTER}",
                header(list_fields)
            ),
            "text outside the OpenPGP armor",
        ),
        // A disclaimer longer than the epilogue may hold.
        (
            format!("{}{}", header(""), pgp_mime_entity(&disclaimer.repeat(100))),
            "after the closing boundary (epilogue)",
        ),
    ];
    let messages: Vec<String> = refused.iter().map(|(m, _)| m.clone()).collect();
    for ((_, why), o) in refused.iter().zip(outcomes(&messages).await) {
        let r = reply(&o);
        assert!(r.starts_with("550 5.7.1") && r.contains(why), "{why}: {r}");
    }
}
