//! Generated and mutated MIME messages for the differential tests
//! (`tests/differential.rs`, `tests/differential_neomutt.rs`): real
//! OpenPGP messages in every shape the README lists, changed in ways that
//! keep them what they are (benign) and in ways that plant the word
//! "marker" where some mail reader may show it (hostile). Deterministic:
//! a fixed seed gives the same cases on every run.

#![allow(dead_code)]

use crate::support;

/// A fixed seed, the same cases on every run.
pub use testkit::random::Xorshift as Rng;

pub const B: &str = "enc-b0undary";

pub fn replace_nth(s: &str, pat: &str, with: &str, rng: &mut Rng) -> String {
    let hits: Vec<usize> = s.match_indices(pat).map(|(i, _)| i).collect();
    if hits.is_empty() {
        return s.to_owned();
    }
    let at = *rng.pick(&hits);
    format!("{}{with}{}", &s[..at], &s[at + pat.len()..])
}

/// Changes that keep the message what it is for every reader.
pub fn benign(m: &str, rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => m.replace("\r\n", "\n"),
        1 => replace_nth(m, &format!("--{B}\r\n"), &format!("--{B} \t \r\n"), rng),
        2 => m.replace("Content-Type:", "content-TYPE:"),
        // Folded with the message's own line end (a CRLF fold in an LF
        // header is a mixed line end, refused on purpose).
        3 if m.contains("\r\n") => m.replace("; boundary=", ";\r\n\tboundary="),
        3 => m.replace("; boundary=", ";\n\tboundary="),
        4 => replace_nth(
            m,
            &format!("--{B}\r\n"),
            &format!("--{B}\r\nX-Extra: yes\r\n"),
            rng,
        ),
        5 => format!("{m}a short footer with a marker\r\n"),
        6 => m.replace("MIME-Version: 1.0\r\n", ""),
        _ => m.replace(&format!("boundary=\"{B}\""), &format!("boundary={B}")),
    }
}

/// Changes that plant plaintext where some reader may show it.
pub fn hostile(m: &str, rng: &mut Rng) -> String {
    let close = format!("--{B}--");
    let part = "Content-Type: text/plain\r\n\r\nthe marker text\r\n";
    match rng.below(14) {
        0 => {
            let junk = rng.pick(&["z", "--x", "-", " x", "\t--", "--\r\nmore"]);
            m.replacen(&close, &format!("--{B}{junk}\r\n{part}{close}"), 1)
        }
        1 => m
            .replace(
                &format!("boundary=\"{B}\""),
                &format!("boundary=\"{B}\"; boundary=\"other\""),
            )
            .replacen(&format!("--{B}\r\n"), &format!("--other\r\n{part}--{B}\r\n"), 1),
        2 => m
            .replace(
                &format!("boundary=\"{B}\""),
                &format!("boundary=\"=?us-ascii?q?{B}?=\""),
            )
            .replacen(&close, &format!("--{B}\r\n{part}{close}"), 1),
        3 => m
            .replace(
                "Content-Type: application/octet-stream",
                "Content-Type : application/octet-stream",
            )
            .replacen(&close, &format!("--{B}\r\n{part}{close}"), 1),
        4 => replace_nth(m, "\r\n", "\rthe marker\r", rng),
        5 => m.replacen(
            &close,
            &format!(
                "--{B}\r\nContent-Type: application/octet-stream\r\n\
                 Content-Transfer-Encoding: base64 (comment)\r\n\r\n\
                 dGhlIG1hcmtlciB0ZXh0\r\n{close}"
            ),
            1,
        ),
        6 => {
            let at = rng.below(m.len());
            let at = (0..=at).rev().find(|&i| m.is_char_boundary(i)).unwrap_or(0);
            format!("{}\0marker{}", &m[..at], &m[at..])
        }
        7 => m
            .replace(
                "Content-Type: application/octet-stream",
                "Content-Type: application/octet-stream\r\nContent-Type: text/plain",
            )
            .replace("-----END PGP MESSAGE-----", "-----END PGP MESSAGE-----\r\nthe marker"),
        8 => {
            let label = rng.pick(&[
                "text /plain",
                "plaintext",
                "text/plain",
                "message/rfc822",
                "application/pdf",
                "text/plain; charset=utf-7",
            ]);
            m.replace("application/octet-stream", label)
                .replace("-----BEGIN PGP MESSAGE-----", "the marker\r\n-----BEGIN PGP MESSAGE-----")
        }
        9 => {
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
                "\r\n--enc-b0undary\r\n\r\nthe marker\r\n",
                "\r\n\r\nthe marker",
                "\r\n--enc-b0undary--\r\nthe marker\r\n",
            ]);
            let at = rng.below(m.len());
            let at = (0..=at).rev().find(|&i| m.is_char_boundary(i)).unwrap_or(0);
            format!("{}{snippet}{}", &m[..at], &m[at..])
        }
        10 => {
            let at = rng.below(m.len());
            let at = (0..=at).rev().find(|&i| m.is_char_boundary(i)).unwrap_or(0);
            let end = (at + 1 + rng.below(5)).min(m.len());
            let end = (end..=m.len()).find(|&i| m.is_char_boundary(i)).unwrap_or(m.len());
            format!("{}{}", &m[..at], &m[end..])
        }
        11 => m.replacen(
            &close,
            &format!(
                "--{B}\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 the mar=\r\nker\r\n{close}"
            ),
            1,
        ),
        // A top header line that ends in a bare CR (before a NUL, where
        // the MTA cuts the line): readers that end the header there show
        // what follows, the preamble too, which holds the marker.
        12 => {
            let end = m.find("\r\n\r\n").unwrap_or(0);
            let cr = rng.pick(&["\r", "\r\0x"]);
            let with_cr = replace_nth(&m[..end], "\r\n", &format!("{cr}\r\n"), rng);
            format!("{with_cr}\r\n\r\nthe marker in the preamble{}", &m[end..])
        }
        _ => m.replacen(
            &close,
            &format!("--{B}\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nthe marker\r\n{close}"),
            1,
        ),
    }
}

pub struct Case {
    pub message: Vec<u8>,
    pub hostile: bool,
}

/// The header fields of the generated messages that are not built by
/// `support`.
pub const HEAD: &str =
    "From: a@example.org\r\nTo: bob@example.org\r\nSubject: d\r\nMIME-Version: 1.0\r\n";

/// The real OpenPGP material the messages are built from.
pub struct Material<'a> {
    /// An armored encrypted message.
    pub armor: &'a str,
    /// The same kind of message, binary.
    pub binary: &'a [u8],
    /// An armored detached signature of [`support::SIGNED_ENTITY`], for the
    /// PGP/MIME signed base (left out without one).
    pub signature: Option<&'a str>,
}

/// The well-formed messages the mutations start from.
pub fn bases(material: &Material) -> Vec<String> {
    let armor = support::crlf(material.armor);
    let binary = support::base64_lines(material.binary);
    let mut bases: Vec<String> = vec![
        String::from_utf8(support::pgp_mime("d", &armor)).unwrap(),
        String::from_utf8(support::inline("d", &armor, support::Cte::SevenBit, false)).unwrap(),
        String::from_utf8(support::inline(
            "d",
            &armor,
            support::Cte::QuotedPrintable,
            false,
        ))
        .unwrap(),
        String::from_utf8(support::inline("d", &armor, support::Cte::Base64, false)).unwrap(),
        // Inline armor with the same message as a binary attachment.
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=\"{B}\"\r\n\r\n\
             --{B}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{armor}\r\n\
             --{B}\r\nContent-Type: application/octet-stream; name=\"message.pgp\"\r\n\
             Content-Disposition: attachment; filename=\"message.pgp\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{binary}--{B}--\r\n"
        ),
        // A binary attachment alone (application/pgp-encrypted files).
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=\"{B}\"\r\n\r\n\
             --{B}\r\nContent-Type: application/octet-stream; name=\"message.gpg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{binary}--{B}--\r\n"
        ),
        // Webmail's inline PGP: the armor and its HTML twin.
        format!(
            "{HEAD}Content-Type: multipart/alternative; boundary=\"{B}\"\r\n\r\n\
             --{B}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{armor}\r\n\
             --{B}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n\
             <html><body><pre>{armor}</pre></body></html>\r\n--{B}--\r\n"
        ),
        // PGP/MIME inside a multipart/mixed whose boundary the inner one
        // extends (legal; prefix matching used to mis-split it).
        {
            let inner = String::from_utf8(support::pgp_mime("d", &armor)).unwrap();
            let body_at = inner.find("Content-Type: multipart/encrypted").unwrap();
            format!(
                "{}Content-Type: multipart/mixed; boundary=\"enc\"\r\n\r\n--enc\r\n{}\r\n--enc--\r\n",
                &inner[..body_at],
                &inner[body_at..]
            )
        },
    ];
    if let Some(signature) = material.signature {
        // PGP/MIME signed (refused: not encrypted; its signed text never
        // holds the marker unless a mutation plants it).
        bases.insert(
            7,
            String::from_utf8(support::pgp_mime_signed("d", &support::crlf(signature)))
                .unwrap()
                .replace("sig-b", B),
        );
    }
    bases
}

/// `n` cases drawn with `seed`: a base, up to two benign changes, and in
/// about two cases of three one or two hostile ones.
pub fn cases(bases: &[String], n: usize, seed: u64) -> Vec<Case> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut m = rng.pick(bases).clone();
            for _ in 0..rng.below(3) {
                m = benign(&m, &mut rng);
            }
            let hostile = rng.chance(65);
            if hostile {
                for _ in 0..=rng.below(2) {
                    m = self::hostile(&m, &mut rng);
                }
            }
            Case {
                message: m.into_bytes(),
                hostile,
            }
        })
        .collect()
}
