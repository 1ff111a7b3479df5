//! The ways plaintext got past pgp-milter's old lenient MIME reading, one
//! named test each, and the real mail it refused. Each hostile message
//! plants text a mail reader shows (Python's `email`, NeoMutt and GMime
//! did) next to a real GnuPG PGP/MIME message; each must be refused, with
//! the construct named where the reader refuses it.
//!
//! Every check runs twice: on GnuPG output committed under
//! `tests/fixtures/gpg/` (made by `scripts/make-pgp-fixtures.sh`; no
//! program needed), and, ignored unless gpg is there, on GnuPG output made
//! at test time.

mod support;

use pgp_milter::{Decision, Detection, Policy, detect};
use support::crlf;

/// The real OpenPGP data the checks plant text next to.
struct Material {
    /// An armored message encrypted to a key.
    encrypted: String,
    /// The same, binary.
    encrypted_binary: Vec<u8>,
}

/// GnuPG output committed with the tests.
fn committed() -> Material {
    Material {
        encrypted: include_str!("fixtures/gpg/encrypted.asc").to_owned(),
        encrypted_binary: include_bytes!("fixtures/gpg/encrypted.gpg").to_vec(),
    }
}

/// GnuPG output made now.
fn fresh() -> Material {
    let g = support::gpg();
    Material {
        encrypted: g.encrypted.clone(),
        encrypted_binary: g.encrypted_binary.clone(),
    }
}

/// Each check as a test on the committed fixtures, and as an ignored one
/// on fresh gpg output.
macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        mod committed {
            $(#[test]
            fn $name() {
                super::$name(&super::committed());
            })*
        }
        mod fresh_gpg {
            $(#[test]
            #[ignore = "needs gpg"]
            fn $name() {
                super::$name(&super::fresh());
            })*
        }
    };
}

checks!(
    the_base_message_passes,
    a_delimiter_with_text_after_its_close_dashes,
    a_delimiter_with_a_suffix_opening_a_part,
    two_boundary_parameters,
    an_encoded_word_in_the_boundary,
    an_encoded_word_as_the_content_type,
    white_space_before_a_colon,
    a_bare_cr_ending_a_line_for_some_readers,
    mixed_line_ends_in_one_header,
    a_commented_transfer_encoding,
    an_unknown_transfer_encoding,
    a_duplicate_content_type_or_transfer_encoding,
    a_nul_byte,
    a_boundary_rfc_2046_does_not_allow,
    a_header_line_over_998_octets,
    parts_typed_as_something_other_than_type_and_subtype,
    an_encapsulated_message_is_read_as_the_message_it_holds,
    attachments_whatever_their_type_or_name_hold_only_openpgp,
    nested_preambles_and_epilogues_share_the_text_budget,
    real_mail_an_inner_boundary_extending_the_outer_one_passes,
    real_mail_a_gmail_html_twin_with_a_default_font_passes,
    a_padding_packet_full_of_text_before_real_ciphertext,
    ciphertext_that_is_text,
    armor_headers_are_bounded,
    session_key_packets_full_of_text,
    many_short_padding_packets_of_text,
    short_encrypted_packets_of_text_in_many_attachments,
    sentences_planted_in_ciphertext,
    a_key_next_to_the_message_with_user_ids_of_prose,
    a_charset_that_does_not_read_armor_as_ascii,
    an_archive_or_document_inside_the_ciphertext,
    part_headers_are_bounded,
);

const SECRET: &str = "The meeting is at noon, bring the contract.";

/// A PGP/MIME message (boundary `b`) with `extra` inserted before its
/// closing delimiter, and `header` replacing its Content-Type line.
fn pgp_mime_with(g: &Material, header: &str, before_close: &str) -> Vec<u8> {
    crlf(&format!(
        "From: a@example.org\nTo: bob@example.org\nSubject: s\nMIME-Version: 1.0\n{header}\n\n\
         --b\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\
         --b\nContent-Type: application/octet-stream\n\n{}\n{before_close}--b--\n",
        g.encrypted
    ))
    .into_bytes()
}

const CT: &str =
    "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"";

fn refused(m: &[u8], why: &str) {
    let d = detect(m);
    let decision = Policy::default().judge(&d);
    assert!(
        matches!(decision, Decision::Reject(..)),
        "accepted: {d}\n{}",
        String::from_utf8_lossy(m)
    );
    assert!(d.to_string().contains(why), "reason {d:?} lacks {why:?}");
}

fn accepted(m: &[u8]) {
    let d = detect(m);
    assert!(matches!(d, Detection::Encrypted(_)), "refused: {d}");
}

fn the_base_message_passes(g: &Material) {
    accepted(&pgp_mime_with(g, CT, ""));
}

fn a_delimiter_with_text_after_its_close_dashes(g: &Material) {
    // `--b--x` closed the multipart for mailparse; readers show what follows.
    let m = pgp_mime_with(
        g,
        CT,
        &format!("--b--x\nContent-Type: text/plain\n\n{SECRET}\n"),
    );
    refused(&m, "begins with a boundary but is not a delimiter");
}

fn a_delimiter_with_a_suffix_opening_a_part(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        &format!("--bz\nContent-Type: text/plain\n\n{SECRET}\n"),
    );
    refused(&m, "begins with a boundary but is not a delimiter");
}

fn two_boundary_parameters(g: &Material) {
    let header = format!("{CT}; boundary=\"c\"");
    let m = pgp_mime_with(
        g,
        &header,
        &format!("--c\nContent-Type: text/plain\n\n{SECRET}\n"),
    );
    refused(&m, "parameter boundary given twice");
}

fn an_encoded_word_in_the_boundary(g: &Material) {
    let header = CT.replace("boundary=\"b\"", "boundary=\"=?us-ascii?q?b?=\"");
    refused(
        &pgp_mime_with(g, &header, ""),
        "encoded word in parameter boundary",
    );
}

fn an_encoded_word_as_the_content_type(_: &Material) {
    let m = crlf(&format!(
        "Subject: s\nContent-Type: =?us-ascii?q?multipart/encrypted?=; boundary=b\n\n{SECRET}\n"
    ));
    refused(m.as_bytes(), "is not type/subtype");
}

fn white_space_before_a_colon(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        &format!("--b\nContent-Type : text/plain\n\n{SECRET}\n"),
    );
    refused(&m, "white space before the colon");
}

fn a_bare_cr_ending_a_line_for_some_readers(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        &format!("\r--b\rContent-Type: text/plain\r\r{SECRET}\n"),
    );
    refused(&m, "bare CR");
}

fn mixed_line_ends_in_one_header(g: &Material) {
    let m = pgp_mime_with(g, CT, "--b\nX-A: 1\r\r\nContent-Type: text/plain\n\nx\n");
    // The CR-CR-LF reads as a bare CR; CRLF then LF in one header is refused too.
    refused(&m, "bare CR");
    let m = b"Content-Type: text/plain\r\nX-B: 2\n\nx";
    refused(m, "mixed line ends");
}

fn a_commented_transfer_encoding(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64 (x)\n\n\
         VGhlIG1lZXRpbmcgaXMgYXQgbm9vbi4=\n",
    );
    refused(&m, "comment in Content-Transfer-Encoding");
}

fn an_unknown_transfer_encoding(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: x-uuencode\n\nx\n",
    );
    refused(&m, "unknown Content-Transfer-Encoding");
}

fn a_duplicate_content_type_or_transfer_encoding(g: &Material) {
    let m = pgp_mime_with(g, &format!("{CT}\nContent-Type: text/plain"), "");
    refused(&m, "2 Content-Type headers");
    let m = pgp_mime_with(
        g,
        CT,
        "--b\nContent-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64\n\nx\n",
    );
    refused(&m, "2 Content-Transfer-Encoding headers");
}

fn a_nul_byte(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        &format!("--b\nContent-Type: text/plain\n\n\0{SECRET}\n"),
    );
    refused(&m, "NUL byte");
}

fn a_boundary_rfc_2046_does_not_allow(g: &Material) {
    let header = CT.replace("boundary=\"b\"", "boundary=\"b<1>\"");
    refused(&pgp_mime_with(g, &header, ""), "not allowed by RFC 2046");
}

/// Over 998 octets where a break at octet 998 (Postfix's `smtp(8)` inserts
/// CRLF SPACE there) would change the structure: in a MIME field, before
/// a field name's colon, on a line that begins with a boundary. A long
/// line of any other field is real mail (Outlook's `References`) that
/// Python's `email`, GMime and NeoMutt read as one field:
/// `tests/long_header_lines.rs`.
fn a_header_line_over_998_octets(g: &Material) {
    let long = "x".repeat(1000);
    for header in [
        format!("{CT}; x-pad=\"{long}\""),
        format!("{CT}\nX-{long}: a"),
        format!("{CT}\nContent-Disposition: inline; filename=\"{long}\""),
    ] {
        refused(&pgp_mime_with(g, &header, ""), "longer than 998 octets");
    }
    let m = pgp_mime_with(
        g,
        CT,
        &format!("--b\nX-A: {SECRET}\n--b{}\n\n{SECRET}\n", " ".repeat(1000)),
    );
    refused(&m, "more than 998 octets beginning with a boundary");
    accepted(&pgp_mime_with(g, &format!("{CT}\nX-Long: {long}"), ""));
}

fn parts_typed_as_something_other_than_type_and_subtype(g: &Material) {
    for label in ["text", "text /plain", "plaintext"] {
        let m = pgp_mime_with(g, CT, &format!("--b\nContent-Type: {label}\n\n{SECRET}\n"));
        refused(&m, "is not type/subtype");
    }
}

fn an_encapsulated_message_is_read_as_the_message_it_holds(g: &Material) {
    let m = pgp_mime_with(
        g,
        CT,
        &format!("--b\nContent-Type: message/rfc822\n\nSubject: fwd\n\n{SECRET}\n"),
    );
    // Three parts in multipart/encrypted; inside a multipart/mixed the
    // inner text/plain is the plaintext.
    refused(&m, "3 parts instead of 2");
    let m = crlf(&format!(
        "Content-Type: multipart/mixed; boundary=m\n\n--m\n{CT}\n\n--b\n\
         Content-Type: application/pgp-encrypted\n\nVersion: 1\n--b\n\
         Content-Type: application/octet-stream\n\n{}\n--b--\n--m\n\
         Content-Type: message/rfc822\n\nSubject: fwd\n\n{SECRET}\n--m--\n",
        g.encrypted
    ));
    refused(m.as_bytes(), "text/plain part");
}

fn attachments_whatever_their_type_or_name_hold_only_openpgp(g: &Material) {
    for (ct, name) in [
        ("text/plain", "notes.txt"),
        ("application/pdf", "contract.pdf"),
        ("application/octet-stream", "data.bin"),
    ] {
        let m = crlf(&format!(
            "Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\n{}\n--m\n\
             Content-Type: {ct}; name=\"{name}\"\nContent-Disposition: attachment; filename=\"{name}\"\n\
             Content-Transfer-Encoding: base64\n\nVGhlIG1lZXRpbmcgaXMgYXQgbm9vbi4=\n--m--\n",
            g.encrypted
        ));
        refused(m.as_bytes(), "unencrypted content");
    }
}

fn nested_preambles_and_epilogues_share_the_text_budget(g: &Material) {
    // About 2500 bytes of text: under the 4096 limit alone, over it twice.
    let text = format!("{SECRET}\n").repeat(70);
    let message = |outer_pre: &str, inner_pre: &str, inner_epi: &str, outer_epi: &str| {
        crlf(&format!(
            "Content-Type: multipart/mixed; boundary=m\n\n{outer_pre}--m\n\
             Content-Type: multipart/mixed; boundary=n\n\n{inner_pre}--n\n\
             Content-Type: text/plain\n\n{}\n--n--\n{inner_epi}--m--\n{outer_epi}",
            g.encrypted
        ))
        .into_bytes()
    };
    accepted(&message("", &text, &text, ""));
    refused(
        &message(&text, &text, "", ""),
        "bytes of text before the first boundary (preamble), at most 4096",
    );
    refused(
        &message("", "", &text, &text),
        "bytes of text after the closing boundary (epilogue), at most 4096",
    );
}

fn real_mail_an_inner_boundary_extending_the_outer_one_passes(g: &Material) {
    let m = crlf(&format!(
        "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n{}\n\n\
         --b-inner\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\
         --b-inner\nContent-Type: application/octet-stream\n\n{}\n--b-inner--\n--b--\n",
        CT.replace("boundary=\"b\"", "boundary=\"b-inner\""),
        g.encrypted
    ));
    accepted(m.as_bytes());
}

fn real_mail_a_gmail_html_twin_with_a_default_font_passes(g: &Material) {
    let armor = crlf(&g.encrypted);
    let html: String = armor
        .lines()
        .map(|l| format!("{}<br>", l.replace('<', "&lt;")))
        .collect();
    let m = format!(
        "Content-Type: multipart/alternative; boundary=\"a\"\r\n\r\n--a\r\n\
         Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\n{armor}\r\n--a\r\n\
         Content-Type: text/html; charset=\"UTF-8\"\r\n\r\n<div dir=\"ltr\"><div class=\"gmail_default\" \
         style=\"font-family:arial,helvetica,sans-serif;font-size:small;color:#000000\">{html}</div></div>\r\n\
         --a--\r\n"
    );
    accepted(m.as_bytes());
    // The same twin with text in it is plaintext.
    let leaky = m.replace("<div dir=\"ltr\">", &format!("<div dir=\"ltr\">{SECRET}"));
    refused(leaky.as_bytes(), "text/html part");
}

/// A new-format packet header (RFC 9580 §4.2.1) and body.
fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0xC0 | tag];
    let n = body.len();
    assert!(n < 8384);
    if n < 192 {
        p.push(n as u8);
    } else {
        let m = n - 192;
        p.extend([(m >> 8) as u8 + 192, (m & 0xff) as u8]);
    }
    p.extend_from_slice(body);
    p
}

fn armored(data: &[u8], headers: &str) -> String {
    format!(
        "-----BEGIN PGP MESSAGE-----\n{headers}\n{}-----END PGP MESSAGE-----\n",
        support::base64_lines(data)
    )
}

fn inline_armor(text: &str) -> Vec<u8> {
    crlf(&format!("Subject: s\nContent-Type: text/plain\n\n{text}")).into_bytes()
}

fn a_padding_packet_full_of_text_before_real_ciphertext(g: &Material) {
    // A binary attachment named .txt: Padding (tag 21) holding prose, then
    // GnuPG's own session-key and encrypted-data packets.
    let mut data = packet(21, SECRET.repeat(8).as_bytes());
    data.extend_from_slice(&g.encrypted_binary);
    let m = crlf(&format!(
        "Content-Type: multipart/mixed; boundary=m\n\n--m\n\
         Content-Type: application/octet-stream; name=\"notes.txt\"\n\
         Content-Transfer-Encoding: base64\n\n{}--m--\n",
        support::base64_lines(&data)
    ));
    refused(m.as_bytes(), "not ciphertext");
}

fn ciphertext_that_is_text(_: &Material) {
    // A passphrase session key, then "encrypted" data that is a sentence.
    let mut data = vec![0xC3, 0x0D, 4, 9, 3, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    let mut seipd = vec![1u8];
    seipd.extend(SECRET.repeat(20).as_bytes());
    data.extend(packet(18, &seipd));
    refused(&inline_armor(&armored(&data, "")), "not ciphertext");
}

fn armor_headers_are_bounded(g: &Material) {
    let prose: String = (0..40)
        .map(|i| format!("Comment: line {i} of a letter nobody encrypted\n"))
        .collect();
    let enc = g.encrypted.replace("\r\n", "\n");
    let text = enc.replacen(
        "-----BEGIN PGP MESSAGE-----\n",
        &format!("-----BEGIN PGP MESSAGE-----\n{prose}"),
        1,
    );
    let d = detect(&inline_armor(&text));
    assert!(!matches!(d, Detection::Encrypted(_)), "accepted: {d}");
    // GnuPG's own header lines pass.
    let text = enc.replacen(
        "-----BEGIN PGP MESSAGE-----\n",
        "-----BEGIN PGP MESSAGE-----\nVersion: GnuPG v2\nComment: https://gnupg.org\n",
        1,
    );
    accepted(&inline_armor(&text));
}

/// The first packet of `data` (GnuPG's session-key packet) and the rest.
fn split_first_packet(data: &[u8]) -> (&[u8], &[u8]) {
    let (head, len) = match data[0] {
        b if b & 0x40 != 0 => match data[1] {
            n @ 0..192 => (2, usize::from(n)),
            n @ 192..224 => (
                3,
                ((usize::from(n) - 192) << 8) + usize::from(data[2]) + 192,
            ),
            _ => panic!("unexpected length octet"),
        },
        b => match b & 3 {
            0 => (2, usize::from(data[1])),
            1 => (3, usize::from(u16::from_be_bytes([data[1], data[2]]))),
            _ => panic!("unexpected old length type"),
        },
    };
    data.split_at(head + len)
}

/// A multipart/mixed of binary attachments named `.txt`, one per payload.
fn attachments(payloads: &[Vec<u8>]) -> Vec<u8> {
    let parts: String = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "--m\nContent-Type: application/octet-stream; name=\"note{i}.txt\"\n\
                 Content-Transfer-Encoding: base64\n\n{}",
                support::base64_lines(p)
            )
        })
        .collect();
    crlf(&format!(
        "Content-Type: multipart/mixed; boundary=m\n\n{parts}--m--\n"
    ))
    .into_bytes()
}

/// An MPI (RFC 9580 §3.2) of `value` (first octet not zero).
fn mpi(value: &[u8]) -> Vec<u8> {
    let bits = (value.len() - 1) * 8 + (8 - value[0].leading_zeros() as usize);
    let mut m = (bits as u16).to_be_bytes().to_vec();
    m.extend_from_slice(value);
    m
}

fn session_key_packets_full_of_text(g: &Material) {
    // rpgp reads an RSA "ciphertext" of any octets: prose there, in one
    // large PKESK or in many small ones, before GnuPG's real packets.
    let mut big = vec![3, 1, 2, 3, 4, 5, 6, 7, 8, 1];
    big.extend(mpi(SECRET.repeat(10).as_bytes()));
    let mut data = packet(1, &big);
    data.extend_from_slice(&g.encrypted_binary);
    refused(&attachments(&[data]), "not ciphertext");
    // Each different (a piece repeated is tested once: repeating carries
    // nothing new).
    let mut data: Vec<u8> = (0..30)
        .flat_map(|i| {
            let mut small = vec![3, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            small.extend(mpi(format!("{i:02} {SECRET}").as_bytes()));
            packet(1, &small)
        })
        .collect();
    data.extend_from_slice(&g.encrypted_binary);
    refused(&inline_armor(&armored(&data, "")), "not ciphertext");
    // A passphrase session key whose "encrypted session key" is prose.
    let mut skesk = vec![4, 9, 3, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0x60];
    skesk.extend(SECRET.repeat(4).as_bytes());
    let mut data = packet(3, &skesk);
    data.extend_from_slice(split_first_packet(&g.encrypted_binary).1);
    refused(&attachments(&[data]), "not ciphertext");
}

fn many_short_padding_packets_of_text(g: &Material) {
    // Each under the 64 octets one packet needs to be judged alone.
    let mut data: Vec<u8> = (0..40)
        .flat_map(|i| packet(21, &format!("{i:02} {SECRET}").as_bytes()[..40]))
        .collect();
    data.extend_from_slice(&g.encrypted_binary);
    refused(&attachments(&[data]), "not ciphertext");
}

fn short_encrypted_packets_of_text_in_many_attachments(g: &Material) {
    // Each attachment: GnuPG's session key, then a SEIPD v1 of 43 octets
    // of prose (too short to judge alone). Together they are judged.
    let (pkesk, _) = split_first_packet(&g.encrypted_binary);
    let one = |i: usize| {
        let mut seipd = vec![1u8];
        seipd.extend(format!("{SECRET} {i:02}").as_bytes());
        [pkesk, &packet(18, &seipd)].concat()
    };
    let all: Vec<Vec<u8>> = (0..30).map(one).collect();
    refused(&attachments(&all), "not ciphertext");
    // The same attachment thirty times repeats one piece, tested once.
    accepted(&attachments(&vec![one(0); 30]));
    // One such attachment alone stays under what can be judged.
    accepted(&attachments(&[one(0)]));
}

fn sentences_planted_in_ciphertext(g: &Material) {
    // 64 KiB of random-looking "ciphertext" with a sentence of 130 octets
    // every 4 KiB: too little to move the 4096-octet windows, enough to
    // read.
    let (pkesk, _) = split_first_packet(&g.encrypted_binary);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut body: Vec<u8> = std::iter::once(1u8)
        .chain((0..65_536).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        }))
        .collect();
    let sentence = SECRET.repeat(4);
    for at in (1000..60_000).step_by(4096) {
        body[at..at + 130].copy_from_slice(&sentence.as_bytes()[..130]);
    }
    let mut seipd = vec![0xD2, 0xFF];
    seipd.extend((body.len() as u32).to_be_bytes());
    seipd.extend(&body);
    let data = [pkesk, &seipd].concat();
    refused(&attachments(std::slice::from_ref(&data)), "not ciphertext");
    // The same without the sentences passes.
    let mut clean = data;
    let start = clean.len() - body.len();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for b in &mut clean[start + 1..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    accepted(&attachments(&[clean]));
}

/// A v4 Ed25519 public key packet body (RFC 9580 §5.5.2): what rpgp reads.
fn ed25519_key() -> Vec<u8> {
    let mut k = vec![
        4, 0x66, 0, 0, 0, 22, 9, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01,
    ];
    k.extend([0x01, 0x07, 0x40]);
    k.extend((0u8..32).map(|i| i.wrapping_mul(97).wrapping_add(13)));
    k
}

fn a_key_next_to_the_message_with_user_ids_of_prose(g: &Material) {
    // A binary key attachment named .txt whose User IDs are a letter.
    let key = |uids: &[&str]| -> Vec<u8> {
        let mut k = packet(6, &ed25519_key());
        for u in uids {
            k.extend(packet(13, u.as_bytes()));
        }
        k
    };
    let letter: Vec<String> = (0..30).map(|i| format!("{i}: {SECRET}")).collect();
    let letter: Vec<&str> = letter.iter().map(String::as_str).collect();
    let mut m = attachments(&[g.encrypted_binary.clone(), key(&letter)]);
    refused(&m, "User IDs");
    // The same letter spread over many key attachments.
    let keys: Vec<Vec<u8>> = std::iter::once(g.encrypted_binary.clone())
        .chain(letter.iter().map(|u| key(&[u])))
        .collect();
    refused(&attachments(&keys), "User IDs");
    // A key with the User IDs a real one has passes.
    m = attachments(&[
        g.encrypted_binary.clone(),
        key(&["Bob Example <bob@example.org>", "Bob <bob@work.example>"]),
    ]);
    accepted(&m);
    // A self-signature whose notation is a letter (human-readable or not).
    for flags in [0x80, 0] {
        let name = b"note@example.org";
        let letter = SECRET.repeat(30);
        let mut notation = vec![flags, 0, 0, 0];
        notation.extend((name.len() as u16).to_be_bytes());
        notation.extend((letter.len() as u16).to_be_bytes());
        notation.extend(name);
        notation.extend(letter.as_bytes());
        let mut hashed = vec![5, 2, 0x66, 0, 0, 0];
        let n = notation.len() + 1 - 192;
        hashed.extend([(n >> 8) as u8 + 192, n as u8, 20]);
        hashed.extend(notation);
        let mut sig = vec![4, 0x13, 22, 8];
        sig.extend((hashed.len() as u16).to_be_bytes());
        sig.extend(hashed);
        sig.extend([0, 0, 0xab, 0xcd, 0, 0xff]);
        sig.extend([7; 32]);
        sig.extend([0, 0xff]);
        sig.extend([9; 32]);
        let mut k = key(&["Bob <bob@example.org>"]);
        k.extend(packet(2, &sig));
        let m = attachments(&[g.encrypted_binary.clone(), k]);
        let d = detect(&m);
        assert!(!matches!(d, Detection::Encrypted(_)), "accepted: {d}");
    }
}

/// Keys as GnuPG and Sequoia export them (Sequoia salts every signature
/// with a notation of random bytes) pass next to the message.
#[test]
#[ignore = "needs gpg and sq"]
fn real_keys_next_to_the_message_pass() {
    let g = fresh();
    let mut keys = vec![support::gpg().public_key.clone()];
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let status = std::process::Command::new("sq")
        .args(["key", "generate", "--userid", "Dave <dave@example.org>"])
        .args(["--userid", "<dave@work.example>", "--export"])
        .arg(&key)
        .status()
        .expect("sq must be installed");
    assert!(status.success());
    let cert = std::process::Command::new("sq")
        .args(["key", "extract-cert"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(cert.status.success());
    keys.push(String::from_utf8(cert.stdout).unwrap());
    for k in keys {
        let m = crlf(&format!(
            "Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\n{}\
             --m\nContent-Type: application/pgp-keys; name=\"key.asc\"\n\n{k}--m--\n",
            g.encrypted
        ));
        accepted(m.as_bytes());
    }
}

/// Armor whose lines end in `+` and base64 that UTF-7 reads as words
/// (`+AG0AYQByAGsAZQBy` is "marker"), one line in three; its ciphertext
/// stays random enough. Labelled `charset=utf-7` (made by a script that
/// placed the words; the session key is GnuPG's from `fixtures/gpg`).
const UTF7_ARMOR: &[u8] = include_bytes!("fixtures/crafted/utf7-armor.eml");

fn a_charset_that_does_not_read_armor_as_ascii(g: &Material) {
    refused(UTF7_ARMOR, "charset utf-7");
    // Only the label makes it text: read as UTF-8 it is armor.
    let as_utf8 = String::from_utf8_lossy(UTF7_ARMOR).replace("charset=utf-7", "charset=utf-8");
    accepted(as_utf8.as_bytes());
    let with = |cs: &str| {
        crlf(&format!(
            "Subject: s\nContent-Type: text/plain; {cs}\n\n{}",
            g.encrypted
        ))
        .into_bytes()
    };
    for cs in [
        "charset=utf-7",
        "charset=\"UTF-7\"",
        "charset=unicode-1-1-utf-7",
        "charset=x-imap4-modified-utf7",
        "charset=utf-16",
        "charset=UTF-16LE",
        "charset=utf-32be",
        "charset=ucs-2",
        "charset=hz-gb-2312",
        "charset=ibm037",
    ] {
        refused(&with(cs), "which does not read armor as ASCII");
    }
    // The label written so that readers and a filter could disagree.
    for cs in [
        "charset*=''utf-7",
        "charset*0=utf; charset*1=-7",
        "charset=\"=?us-ascii?q?utf-7?=\"",
        "charset=utf-8; charset=utf-7",
    ] {
        refused(&with(cs), "ambiguous MIME");
    }
    for cs in [
        "charset=us-ascii",
        "charset=\"utf-8\"",
        "charset=UTF8",
        "charset=iso-8859-1",
        "charset=windows-1252",
        "charset=shift_jis",
        "charset=iso-2022-jp",
        "charset=unicode-1-1-utf-8",
    ] {
        accepted(&with(cs));
    }
}

/// Python's `email` (policy default) shows the words of the UTF-7 armor:
/// the oracle's verdict on the committed message.
#[test]
#[ignore = "needs python3"]
fn python_shows_text_in_the_utf7_armor() {
    let out = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys,email,email.policy;\
             m=email.message_from_bytes(sys.stdin.buffer.read(),policy=email.policy.default);\
             sys.stdout.buffer.write(m.get_content().encode(\"utf-8\",\"replace\"))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(UTF7_ARMOR)?;
            c.wait_with_output()
        })
        .expect("run /usr/bin/python3");
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("marker") && shown.contains("secret"),
        "{shown}"
    );
}

/// A ZIP archive (RFC-less, PKWARE's APPNOTE) of one deflated text file.
fn zip_of(name: &str, text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(text).unwrap();
    let data = e.finish().unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(text);
    let fields = |z: &mut Vec<u8>| {
        z.extend([20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]);
        z.extend(crc.sum().to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((text.len() as u32).to_le_bytes());
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0, 0]);
    };
    let mut z = b"PK\x03\x04".to_vec();
    fields(&mut z);
    z.extend(name.as_bytes());
    z.extend(&data);
    let cd_at = z.len() as u32;
    z.extend(b"PK\x01\x02\x14\x00");
    fields(&mut z);
    z.extend([0; 14]);
    z.extend(name.as_bytes());
    let cd_len = z.len() as u32 - cd_at;
    z.extend(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    z.extend(cd_len.to_le_bytes());
    z.extend(cd_at.to_le_bytes());
    z.extend([0, 0]);
    z
}

/// GnuPG's session key, then a SEIPD v1 whose "ciphertext" is `inner`
/// after some noise: what a ZIP reader or PDF viewer opens whole.
fn polyglot(g: &Material, inner: &[u8]) -> Vec<u8> {
    let (pkesk, _) = split_first_packet(&g.encrypted_binary);
    let mut x = 0x2545_f491_u64;
    let mut body = vec![1u8];
    body.extend((0..600).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }));
    body.extend(inner);
    let mut seipd = vec![0xD2, 0xFF];
    seipd.extend((body.len() as u32).to_be_bytes());
    seipd.extend(body);
    [pkesk, &seipd].concat()
}

/// A letter that deflates well: 40,000 words of a small vocabulary.
fn letter() -> Vec<u8> {
    let words = [
        "the", "merger", "closes", "friday", "keep", "quiet", "vote", "board",
    ];
    let mut x = 7u64;
    let mut t = String::from("marker: ");
    for _ in 0..40_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        t.push_str(words[(x >> 60) as usize % words.len()]);
        t.push(' ');
    }
    t.into_bytes()
}

fn an_archive_or_document_inside_the_ciphertext(g: &Material) {
    // Deflated text is as close to uniform bytes as ciphertext: only the
    // archive's end record tells it.
    let zip = polyglot(g, &zip_of("letter.txt", &letter()));
    refused(&attachments(std::slice::from_ref(&zip)), "ZIP archive");
    let mut pdf = b"%PDF-1.7\n%".to_vec();
    pdf.extend(&zip_of("x", &letter())[30..]);
    refused(&attachments(&[polyglot(g, &pdf)]), "PDF document");
    // The same bytes armored are not a file anyone opens as an archive.
    accepted(&inline_armor(&armored(&zip, "")));
}

/// `unzip` extracts the letter from the attachment that passed as
/// encrypted before: the oracle's verdict.
#[test]
#[ignore = "needs unzip"]
fn unzip_opens_the_archive_inside_the_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("letter.zip");
    std::fs::write(
        &file,
        polyglot(&committed(), &zip_of("letter.txt", &letter())),
    )
    .unwrap();
    let out = std::process::Command::new("unzip")
        .arg("-p")
        .arg(&file)
        .output()
        .expect("unzip must be installed (Debian package unzip)");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("marker: "),
        "{out:?}"
    );
}

fn part_headers_are_bounded(g: &Material) {
    // Fields of a part are not judged, but they are stored in the clear:
    // 300 KiB of them next to the encrypted part is refused.
    let field = format!("X-Note: {SECRET}\n");
    let many = field.repeat((300 << 10) / field.len());
    let with = |fields: &str| {
        crlf(&format!(
            "Content-Type: multipart/mixed; boundary=m\n\n--m\n\
             Content-Type: text/plain\n{fields}\n{}--m--\n",
            g.encrypted
        ))
        .into_bytes()
    };
    refused(&with(&many), "part headers of more than 262144 bytes");
    // A part header as clients write it, and a long one, pass.
    accepted(&with(&field.repeat(200)));
}
