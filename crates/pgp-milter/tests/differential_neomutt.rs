//! pgp-milter's reading against NeoMutt's display (a third independent
//! reader next to Python's `email` and GMime in `tests/differential.rs`).
//!
//! The same generator as there (`tests/mutations/`), with a seed of its
//! own, on the GnuPG output committed under `tests/fixtures/gpg/`: real
//! PGP/MIME, inline, attachment and HTML-twin messages, changed benignly
//! and with hostile changes that plant the word "marker" where some reader
//! may show it. NeoMutt reads them all in one run (`tests/neomutt/`), and
//! shows every part, attachments through `cat`. The messages go through
//! the milter as Postfix plays it, and NeoMutt reads what Postfix delivers.
//! Asserted: whenever pgp-milter accepts, NeoMutt displays no marker.

mod mutations;
mod neomutt;
mod support;
mod through_milter;

use minimilter::transaction::Outcome;
use pgp_milter::Policy;

#[tokio::test]
#[ignore = "needs neomutt"]
async fn whenever_pgp_milter_accepts_neomutt_displays_no_plaintext() {
    let bases = mutations::bases(&mutations::Material {
        armor: include_str!("fixtures/gpg/encrypted.asc"),
        binary: include_bytes!("fixtures/gpg/encrypted.gpg"),
        signature: None,
    });
    let cases = mutations::cases(&bases, 400, 0x4E30_4D55_7474);
    let messages: Vec<&[u8]> = cases.iter().map(|c| c.message.as_slice()).collect();
    // Through the milter as Postfix plays it; NeoMutt reads what Postfix
    // delivers of an accepted message (the message as sent otherwise).
    let got = through_milter::judged(Policy::default(), "alice@client.example", &messages).await;
    let read: Vec<Vec<u8>> = got
        .iter()
        .zip(&messages)
        .map(|((_, delivered), m)| delivered.clone().unwrap_or_else(|| m.to_vec()))
        .collect();
    let shown = neomutt::displayed(&read);
    let (mut accepted, mut with_marker, mut benign_accepted) = (0, 0, 0);
    let mut leaks = Vec::new();
    for (i, ((c, view), (o, _))) in cases.iter().zip(&shown).zip(&got).enumerate() {
        let ok = *o == Outcome::Accepted;
        let marker = neomutt::has_marker(view);
        accepted += usize::from(ok);
        with_marker += usize::from(marker);
        benign_accepted += usize::from(ok && !c.hostile);
        if ok && marker {
            leaks.push(format!(
                "case {i}: accepted but neomutt displays:\n{}\n--- the message:\n{}",
                String::from_utf8_lossy(view),
                String::from_utf8_lossy(&read[i])
            ));
        }
    }
    eprintln!(
        "{} cases: {accepted} accepted ({benign_accepted} without a hostile change), \
         {with_marker} with the marker displayed by neomutt",
        cases.len()
    );
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks[..leaks.len().min(3)].join("\n\n")
    );
    // The oracle must see plaintext where it is, and the generator must
    // make both kinds, or the test says nothing.
    assert!(accepted > 50, "only {accepted} accepted");
    assert!(
        with_marker > 100,
        "only {with_marker} with a marker displayed"
    );
}

/// The oracle itself: NeoMutt shows text parts, decoded attachments and
/// returned messages, and not what it cannot decrypt.
#[test]
#[ignore = "needs neomutt"]
fn neomutt_shows_what_a_user_sees() {
    let armor = support::crlf(include_str!("fixtures/gpg/encrypted.asc"));
    let m = |ct: &str, body: &str| {
        format!(
            "From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n{ct}\r\n\r\n{body}\r\n--b--\r\n"
        )
        .into_bytes()
    };
    let shown = neomutt::displayed(&[
        m("Content-Type: text/plain", "a marker"),
        m("Content-Type: text/plain; charset=utf-7", "+AG0-arker"),
        m(
            "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64",
            "bWFya2Vy",
        ),
        m("Content-Type: text/x-unknown", "marker"),
        m("Content-Type: message/rfc822", "Subject: in\r\n\r\nmarker"),
        m("Content-Type: text/plain", &armor),
        support::pgp_mime("s", &armor),
    ]);
    let marked: Vec<bool> = shown.iter().map(|v| neomutt::has_marker(v)).collect();
    assert_eq!(marked, [true, true, true, true, true, false, false]);
    let armor_shown = String::from_utf8_lossy(&shown[5]).into_owned();
    assert!(
        armor_shown.contains("-----BEGIN PGP MESSAGE-----"),
        "{armor_shown}"
    );
}
