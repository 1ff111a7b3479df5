//! A header line that ends in a bare CR, as the milter protocol may carry
//! it: an MTA that passed the SMTP line `Subject: d<CR><CR><LF>` on as
//! `Subject: d<CR>` (minimilter's Postfix model does; Postfix 3.7 itself
//! drops trailing CRs and turns inner ones into spaces) would deliver a
//! header that Python's `email` ends at the bare CR, taking the CRLF after
//! it as the blank line that ends the header, so it shows everything after
//! it (the MIME header fields, and the preamble text readers otherwise
//! ignore) as a text/plain body. The same holds for a CR at the end of a
//! folded line (MTAs send folds as LF alone, so such a CR is the
//! message's). The milter must see the bare CR and refuse it as the strict
//! reader does.

mod support;
mod through_milter;

use minimilter::transaction::Outcome;
use pgp_milter::Policy;

const ARMOR: &str = include_str!("fixtures/gpg/encrypted.asc");

fn pgp_mime(subject_line: &str) -> Vec<u8> {
    let armor = support::crlf(ARMOR);
    format!(
        "From: a@example.org\r\nTo: bob@example.org\r\n{subject_line}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
         \tboundary=\"enc\"\r\n\r\n\
         Dear Bob, the plans in the clear, in the preamble.\r\n\
         --enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --enc\r\nContent-Type: application/octet-stream\r\n\r\n{armor}\r\n--enc--\r\n"
    )
    .into_bytes()
}

async fn outcome(message: Vec<u8>) -> Outcome {
    let mut judged =
        through_milter::judged(Policy::default(), "alice@client.example", &[&message]).await;
    judged.remove(0).0
}

#[tokio::test]
async fn a_header_line_ending_in_a_bare_cr_is_refused() {
    assert_eq!(outcome(pgp_mime("Subject: d")).await, Outcome::Accepted);
    // Folded lines pass.
    assert_eq!(
        outcome(pgp_mime("Subject: a long\r\n subject")).await,
        Outcome::Accepted
    );
    // The bare CR at the end of the line, alone or before a NUL (Postfix
    // cuts a header line at a NUL, for the milter and the recipient).
    for line in [
        "Subject: d\r",
        "Subject: d\r\0more",
        "X-Note: \r",
        "Subject: a long\r\r\n subject",
    ] {
        match outcome(pgp_mime(line)).await {
            Outcome::Rejected { reply, .. } => {
                let reply = reply.unwrap_or_default();
                assert!(
                    reply.contains("bare CR (not followed by LF) in a header"),
                    "{line:?}: {reply}"
                );
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }
}
