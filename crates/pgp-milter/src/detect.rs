//! Is a message OpenPGP mail? Decided from the parsed MIME structure and the
//! OpenPGP packets inside it, never from a substring of the raw message.
//!
//! * PGP/MIME encrypted (RFC 3156 §4): `multipart/encrypted;
//!   protocol="application/pgp-encrypted"` with exactly two parts, the
//!   `Version: 1` control part, then an `application/octet-stream` part
//!   holding one armored (or binary) encrypted OpenPGP message.
//! * PGP/MIME signed (§5): `multipart/signed;
//!   protocol="application/pgp-signature"` whose second part holds OpenPGP
//!   signature packets.
//! * Inline: every leaf that carries anything is an armored block (after its
//!   transfer encoding is undone) or a binary OpenPGP attachment; text next
//!   to the armor makes the message plaintext.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mailparse::{MailHeaderMap, ParsedMail};

use crate::armor::{self, Kind};
use crate::openpgp::{self, OpenPgpError};
use crate::packets::{self, Shape};

/// How the OpenPGP protection was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// RFC 3156 multipart/encrypted or multipart/signed.
    PgpMime,
    /// Armored blocks or OpenPGP attachments in ordinary parts.
    Inline,
    /// A cleartext signature.
    Cleartext,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::PgpMime => "PGP/MIME",
            Form::Inline => "inline PGP",
            Form::Cleartext => "cleartext signature",
        })
    }
}

/// Why a message is not OpenPGP mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPgp {
    /// Nothing OpenPGP at all.
    NoOpenPgp,
    /// Armor or packets that do not parse; the text says where and why.
    Invalid(String),
    /// A MIME structure that cannot be read safely (unparseable, nested
    /// too deep, ambiguous headers, cut off): not an OpenPGP problem.
    Mime(String),
    /// Plaintext next to (or instead of) the OpenPGP parts.
    PlaintextPart(String),
    /// Only an OpenPGP key, no message.
    KeyOnly,
    /// S/MIME (RFC 8551): encrypted or signed, but not OpenPGP.
    Smime,
    /// Signed, not encrypted (when encryption is required).
    SignedOnly(Form),
    /// The body was larger than the configured cap before it was proven.
    TooLarge(usize),
    /// The detector itself failed (a bug); tempfail, not reject.
    Internal(String),
}

impl fmt::Display for NotPgp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotPgp::NoOpenPgp => f.write_str("no OpenPGP data found"),
            NotPgp::Invalid(why) => write!(f, "invalid OpenPGP data: {why}"),
            NotPgp::Mime(why) => write!(f, "unreadable MIME structure: {why}"),
            NotPgp::PlaintextPart(why) => write!(f, "unencrypted content: {why}"),
            NotPgp::KeyOnly => f.write_str(
                "only an OpenPGP key block (PGP PUBLIC KEY BLOCK), no encrypted message",
            ),
            NotPgp::Smime => f.write_str("S/MIME is not OpenPGP"),
            NotPgp::SignedOnly(form) => write!(f, "signed ({form}) but not encrypted"),
            NotPgp::TooLarge(cap) => write!(f, "not proven encrypted within the first {cap} bytes"),
            NotPgp::Internal(why) => write!(f, "internal error: {why}"),
        }
    }
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// Encrypted OpenPGP mail.
    Encrypted(Form),
    /// Signed, not encrypted.
    Signed(Form),
    /// Not OpenPGP mail.
    Plain(NotPgp),
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detection::Encrypted(form) => write!(f, "encrypted ({form})"),
            Detection::Signed(form) => write!(f, "signed ({form})"),
            Detection::Plain(why) => why.fmt(f),
        }
    }
}

/// Classifies a whole message (headers, blank line, body; CRLF or LF).
/// Never panics: a panic in the parsers becomes `Plain(Internal)`.
pub fn detect(message: &[u8]) -> Detection {
    // One decompression budget for the whole message, all parts together.
    match catch_unwind(AssertUnwindSafe(|| {
        openpgp::per_message(|| detect_inner(message))
    })) {
        Ok(d) => d,
        Err(panic) => {
            let what = minimilter::panic_message(&*panic);
            Detection::Plain(NotPgp::Internal(format!(
                "detector panicked: {}",
                openpgp::one_line(&what)
            )))
        }
    }
}

fn detect_inner(message: &[u8]) -> Detection {
    let parsed = match mailparse::parse_mail(message) {
        Ok(p) => p,
        Err(e) => return Detection::Plain(NotPgp::Mime(mime_error(&e))),
    };
    match entity(&parsed, 0) {
        Class::Encrypted(form) => Detection::Encrypted(form),
        Class::Signed(form) => Detection::Signed(form),
        Class::Empty => Detection::Plain(NotPgp::NoOpenPgp),
        Class::Key => Detection::Plain(NotPgp::KeyOnly),
        Class::Plain(why) => Detection::Plain(why),
    }
}

/// mailparse's reason, in words (its recursion guard reads "Recursion limit
/// reached").
fn mime_error(e: &mailparse::MailParseError) -> String {
    let text = openpgp::one_line(&e.to_string());
    if text.to_ascii_lowercase().contains("recursion limit") {
        "MIME parts nested too deep to parse".into()
    } else {
        format!("unparseable MIME: {text}")
    }
}

/// The class of one MIME entity, ordered for combining parts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    /// Whitespace only.
    Empty,
    /// An OpenPGP key (public data; neither plaintext nor a message).
    Key,
    Encrypted(Form),
    Signed(Form),
    Plain(NotPgp),
}

/// The combination of the parts of a multipart: plaintext anywhere wins,
/// then signed, then encrypted.
fn combine(parts: impl IntoIterator<Item = Class>) -> Class {
    let mut acc = Class::Empty;
    for c in parts {
        acc = match (acc, c) {
            (p @ Class::Plain(_), _) | (_, p @ Class::Plain(_)) => return p,
            (s @ Class::Signed(_), _) | (_, s @ Class::Signed(_)) => s,
            (e @ Class::Encrypted(_), _) | (_, e @ Class::Encrypted(_)) => e,
            (Class::Key, _) | (_, Class::Key) => Class::Key,
            (Class::Empty, Class::Empty) => Class::Empty,
        };
    }
    acc
}

/// Deepest multipart nesting looked into; real mail stays far below.
const MAX_DEPTH: usize = 16;

fn entity(part: &ParsedMail<'_>, depth: usize) -> Class {
    // Two Content-Type (or transfer-encoding) headers make the part mean
    // different things to different readers: the parser here takes the
    // first, a mail client may show the last, plaintext and all.
    for name in ["Content-Type", "Content-Transfer-Encoding"] {
        let n = part.headers.get_all_values(name).len();
        if n > 1 {
            return Class::Plain(NotPgp::Mime(format!("ambiguous MIME: {n} {name} headers")));
        }
    }
    let mime = part.ctype.mimetype.to_ascii_lowercase();
    if let Some(sub) = mime.strip_prefix("multipart/") {
        if depth >= MAX_DEPTH {
            return Class::Plain(NotPgp::Mime(format!(
                "multiparts nested more than {MAX_DEPTH} deep"
            )));
        }
        if let Err(why) = multipart_complete(part) {
            return Class::Plain(NotPgp::Mime(why));
        }
        let protocol = part
            .ctype
            .params
            .get("protocol")
            .map(|p| p.to_ascii_lowercase());
        return match (sub, protocol.as_deref()) {
            ("encrypted", Some("application/pgp-encrypted")) => pgp_mime_encrypted(part),
            ("signed", Some("application/pgp-signature")) => pgp_mime_signed(part),
            ("signed", Some(p)) if is_smime(p) => Class::Plain(NotPgp::Smime),
            ("alternative", _) => combine(
                part.subparts
                    .iter()
                    .map(|p| alternative(part, p).unwrap_or_else(|| entity(p, depth + 1))),
            ),
            _ => combine(part.subparts.iter().map(|p| entity(p, depth + 1))),
        };
    }
    if is_smime(&mime) {
        return Class::Plain(NotPgp::Smime);
    }
    leaf(part, &mime)
}

/// A `text/html` alternative that only repeats, in presentation markup, a
/// `text/plain` sibling that is nothing but valid armor adds nothing:
/// `Some(Empty)`. Repeats means the same lines (armor headers included, so
/// a `Comment:` cannot differ). `None` for every other part, which is then
/// judged as usual (HTML with any other text is plaintext).
fn alternative(parent: &ParsedMail<'_>, part: &ParsedMail<'_>) -> Option<Class> {
    if !part.ctype.mimetype.eq_ignore_ascii_case("text/html") {
        return None;
    }
    let lines = |text: &[u8]| -> Vec<Vec<u8>> {
        text.split(|&b| b == b'\n')
            .map(<[u8]>::trim_ascii)
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let only_armor = |text: &[u8]| {
        let s = armor::scan(text);
        !s.text_outside && !s.blocks.is_empty() && s.blocks.iter().all(Result::is_ok)
    };
    let html = part.get_body_raw().ok()?;
    let shown = lines(crate::html::visible_text(&html).ok()?.as_bytes());
    let repeated = parent.subparts.iter().any(|sibling| {
        sibling.ctype.mimetype.eq_ignore_ascii_case("text/plain")
            && sibling
                .get_body_raw()
                .is_ok_and(|b| only_armor(&b) && lines(&b) == shown)
    });
    repeated.then_some(Class::Empty)
}

/// S/MIME content types (RFC 8551 §3.2; the `x-` forms are what older
/// clients send): enveloped or signed data, and detached signatures.
fn is_smime(mime: &str) -> bool {
    matches!(
        mime.to_ascii_lowercase().as_str(),
        "application/pkcs7-mime"
            | "application/x-pkcs7-mime"
            | "application/pkcs7-signature"
            | "application/x-pkcs7-signature"
    )
}

/// A multipart needs its parts and its closing delimiter: without them it
/// was cut off (or is not a multipart at all).
pub(crate) fn multipart_complete(part: &ParsedMail<'_>) -> Result<(), String> {
    let Some(boundary) = part.ctype.params.get("boundary") else {
        return Err(format!("{} without a boundary", part.ctype.mimetype));
    };
    if part.subparts.is_empty() {
        return Err(format!("{} without parts", part.ctype.mimetype));
    }
    if !has_closing_delimiter(part.raw_bytes, boundary.as_bytes()) {
        return Err(format!(
            "{} without its closing boundary (truncated)",
            part.ctype.mimetype
        ));
    }
    Ok(())
}

/// True if a line of `raw` is `--boundary--` (RFC 2046 §5.1.1; trailing
/// whitespace allowed).
pub fn has_closing_delimiter(raw: &[u8], boundary: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').any(|line| {
        line.trim_ascii_end()
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
            .is_some_and(|l| l == b"--")
    })
}

/// RFC 3156 §4.
fn pgp_mime_encrypted(part: &ParsedMail<'_>) -> Class {
    let invalid = |why: &str| Class::Plain(NotPgp::Invalid(format!("PGP/MIME encrypted: {why}")));
    let [control, payload] = part.subparts.as_slice() else {
        return invalid(&format!("{} parts instead of 2", part.subparts.len()));
    };
    if !control
        .ctype
        .mimetype
        .eq_ignore_ascii_case("application/pgp-encrypted")
    {
        return invalid("first part is not application/pgp-encrypted");
    }
    if !control.get_body_raw().is_ok_and(|body| is_version_1(&body)) {
        return invalid("control part without \"Version: 1\"");
    }
    if !payload
        .ctype
        .mimetype
        .eq_ignore_ascii_case("application/octet-stream")
    {
        return invalid("second part is not application/octet-stream");
    }
    let Ok(body) = payload.get_body_raw() else {
        return invalid("undecodable second part");
    };
    match openpgp_data(&body) {
        Class::Encrypted(_) => Class::Encrypted(Form::PgpMime),
        Class::Plain(NotPgp::Invalid(why)) => invalid(&why),
        Class::Empty => invalid("empty second part"),
        _ => invalid("second part is not an encrypted OpenPGP message"),
    }
}

/// The RFC 3156 control part's content: a `Version: 1` line, nothing else.
fn is_version_1(body: &[u8]) -> bool {
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty());
    lines
        .next()
        .is_some_and(|l| l.eq_ignore_ascii_case(b"Version: 1"))
        && lines.next().is_none()
}

/// RFC 3156 §5: the signed entity, then the signature.
fn pgp_mime_signed(part: &ParsedMail<'_>) -> Class {
    let invalid = |why: &str| Class::Plain(NotPgp::Invalid(format!("PGP/MIME signed: {why}")));
    let [_signed, signature] = part.subparts.as_slice() else {
        return invalid(&format!("{} parts instead of 2", part.subparts.len()));
    };
    if !signature
        .ctype
        .mimetype
        .eq_ignore_ascii_case("application/pgp-signature")
    {
        return invalid("second part is not application/pgp-signature");
    }
    let Ok(body) = signature.get_body_raw() else {
        return invalid("undecodable signature part");
    };
    let s = armor::scan(&body);
    match (s.text_outside, s.blocks.as_slice()) {
        (false, [Ok(block)]) if block.kind == Kind::Signature => {
            match packets::shape(&block.data) {
                Ok(Shape::Signatures) => Class::Signed(Form::PgpMime),
                Ok(other) => invalid(&format!("signature part holds {other}")),
                Err(e) if e.is_internal() => Class::Plain(NotPgp::Internal(e.to_string())),
                Err(e) => invalid(&e.to_string()),
            }
        }
        (_, [Err(e)]) => invalid(&e.to_string()),
        _ => invalid("signature part is not one armored signature"),
    }
}

/// A leaf part: text or an attachment.
fn leaf(part: &ParsedMail<'_>, mime: &str) -> Class {
    let Ok(body) = part.get_body_raw() else {
        return Class::Plain(NotPgp::Invalid(format!("undecodable {mime} part")));
    };
    if body.trim_ascii().is_empty() {
        return Class::Empty;
    }
    if mime == "application/pgp-encrypted" && is_version_1(&body) {
        // An RFC 3156 control part outside multipart/encrypted (Exchange
        // turns multipart/encrypted into multipart/mixed): no content.
        return Class::Empty;
    }
    if mime.starts_with("text/") {
        return match text(&body) {
            Class::Plain(NotPgp::NoOpenPgp) => {
                Class::Plain(NotPgp::PlaintextPart(format!("{mime} part")))
            }
            other => other,
        };
    }
    match openpgp_data(&body) {
        Class::Plain(NotPgp::NoOpenPgp) => {
            Class::Plain(NotPgp::PlaintextPart(format!("{mime} attachment")))
        }
        other => other,
    }
}

/// The decoded body of a non-text part: armor, or binary packets.
fn openpgp_data(body: &[u8]) -> Class {
    let start = body.trim_ascii_start();
    if start.starts_with(b"-----BEGIN PGP ") {
        return text(body);
    }
    // Binary OpenPGP (a .pgp/.gpg attachment): only an encrypted message
    // counts; any other bytes are an ordinary (unencrypted) attachment.
    match packets::shape(body) {
        Ok(Shape::Encrypted { .. }) => Class::Encrypted(Form::Inline),
        Ok(Shape::Key) => Class::Key,
        Err(e) if e.is_internal() => Class::Plain(NotPgp::Internal(e.to_string())),
        _ => Class::Plain(NotPgp::NoOpenPgp),
    }
}

/// Decoded text: only armored blocks and whitespace, or plaintext.
fn text(body: &[u8]) -> Class {
    let s = armor::scan(body);
    if s.blocks.is_empty() {
        return Class::Plain(NotPgp::NoOpenPgp);
    }
    if s.text_outside {
        return Class::Plain(NotPgp::PlaintextPart(
            "text outside the OpenPGP armor".into(),
        ));
    }
    combine(s.blocks.iter().map(block))
}

fn block(b: &Result<armor::Block, armor::ArmorError>) -> Class {
    let b = match b {
        Ok(b) => b,
        Err(e) => return Class::Plain(NotPgp::Invalid(e.to_string())),
    };
    let shape = match packets::shape(&b.data) {
        Ok(s) => s,
        Err(e) if e.is_internal() => return Class::Plain(NotPgp::Internal(e.to_string())),
        Err(e) => return Class::Plain(NotPgp::Invalid(e.to_string())),
    };
    match (&b.kind, shape) {
        (Kind::Message, Shape::Encrypted { .. }) => Class::Encrypted(Form::Inline),
        (Kind::Message, Shape::Signed) => Class::Signed(Form::Inline),
        (Kind::Cleartext, Shape::Signatures) => Class::Signed(Form::Cleartext),
        (Kind::PublicKey | Kind::PrivateKey, Shape::Key) => Class::Key,
        (Kind::Message, Shape::Other(why)) => Class::Plain(NotPgp::Invalid(format!(
            "PGP MESSAGE is not encrypted: {why}"
        ))),
        (kind, shape) => Class::Plain(NotPgp::Invalid(format!("{kind} armor holding {shape}"))),
    }
}

/// The PKESK recipients of every encrypted OpenPGP message in `message`
/// (armored or binary, in any part), one list per encrypted block; a
/// passphrase-only block gives an empty list. Meant for a message
/// [`detect`] found encrypted. Never panics: a panic in the parsers is an
/// error.
pub fn encrypted_to(message: &[u8]) -> Result<Vec<Vec<packets::KeyTarget>>, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        openpgp::per_message(|| encrypted_to_inner(message))
    })) {
        Ok(r) => r,
        Err(_) => Err("recipient collection panicked".into()),
    }
}

fn encrypted_to_inner(message: &[u8]) -> Result<Vec<Vec<packets::KeyTarget>>, String> {
    let parsed = mailparse::parse_mail(message).map_err(|e| format!("unparseable MIME: {e}"))?;
    let mut out = Vec::new();
    collect_recipients(&parsed, 0, &mut out)?;
    Ok(out)
}

fn collect_recipients(
    part: &ParsedMail<'_>,
    depth: usize,
    out: &mut Vec<Vec<packets::KeyTarget>>,
) -> Result<(), String> {
    if part
        .ctype
        .mimetype
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        if depth >= MAX_DEPTH {
            return Err(format!("multiparts nested more than {MAX_DEPTH} deep"));
        }
        for sub in &part.subparts {
            collect_recipients(sub, depth + 1, out)?;
        }
        return Ok(());
    }
    let body = part.get_body_raw().map_err(|e| e.to_string())?;
    let mut one = |data: &[u8]| -> Result<(), String> {
        let parsed = match openpgp::packets(data) {
            Ok(parsed) => parsed,
            Err(e @ (OpenPgpError::Panicked(_) | OpenPgpError::TooLarge { .. })) => {
                return Err(e.to_string());
            }
            Err(_) => return Ok(()),
        };
        if let Ok(Shape::Encrypted { .. }) = packets::shape_of(&parsed) {
            out.push(packets::recipients(&parsed).map_err(|e| e.to_string())?);
        }
        Ok(())
    };
    if body.trim_ascii_start().starts_with(b"-----BEGIN PGP ")
        || part.ctype.mimetype.starts_with("text/")
    {
        for block in armor::scan(&body).blocks.into_iter().flatten() {
            if block.kind == Kind::Message {
                one(&block.data)?;
            }
        }
    } else {
        one(&body)?;
    }
    Ok(())
}

/// True if the headers of `message` (as far as present) declare a top-level
/// multipart; returns its boundary. Used to decide before end of message.
pub fn top_boundary(headers: &[u8]) -> Option<String> {
    let (headers, _) = mailparse::parse_headers(headers).ok()?;
    let ct = headers.get_first_value("Content-Type")?;
    let ct = mailparse::parse_content_type(&ct);
    if !ct.mimetype.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    ct.params.get("boundary").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_delimiter_is_a_whole_line() {
        assert!(has_closing_delimiter(b"a\r\n--b1--\r\n", b"b1"));
        assert!(has_closing_delimiter(b"--b1--  ", b"b1"));
        assert!(!has_closing_delimiter(b"a\r\n--b1\r\n", b"b1"));
        assert!(!has_closing_delimiter(b"x--b1--\r\n", b"b1"));
        assert!(!has_closing_delimiter(b"--b1--x\r\n", b"b1"));
    }

    #[test]
    fn duplicate_content_type_is_ambiguous_and_refused() {
        let m = b"Subject: x\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=enc-b\r\n\
Content-Type: text/plain\r\n\
\r\n\
Plaintext a reader using the last header would show.\r\n";
        assert!(matches!(
            detect(m),
            Detection::Plain(NotPgp::Mime(why)) if why.contains("2 Content-Type headers")
        ));
    }

    #[test]
    fn plain_text_is_not_pgp() {
        let d = detect(b"Subject: hi\r\n\r\nHello there.\r\n");
        assert_eq!(
            d,
            Detection::Plain(NotPgp::PlaintextPart("text/plain part".into()))
        );
        assert_eq!(
            detect(b"Subject: hi\r\n\r\n\r\n"),
            Detection::Plain(NotPgp::NoOpenPgp)
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut m = String::from("Subject: deep\r\n");
        for i in 0..40 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}x\"\r\n\r\n--b{i}x\r\n"
            ));
        }
        m.push_str("Content-Type: text/plain\r\n\r\nx\r\n");
        for i in (0..40).rev() {
            m.push_str(&format!("--b{i}x--\r\n"));
        }
        let d = detect(m.as_bytes()).to_string();
        assert!(d.contains("nested more than 16 deep"), "{d}");
    }

    #[test]
    fn combine_orders_classes() {
        use Class::*;
        assert_eq!(
            combine([Empty, Encrypted(Form::Inline)]),
            Encrypted(Form::Inline)
        );
        assert_eq!(
            combine([Encrypted(Form::Inline), Signed(Form::Cleartext)]),
            Signed(Form::Cleartext)
        );
        assert_eq!(
            combine([Encrypted(Form::Inline), Plain(NotPgp::NoOpenPgp), Key]),
            Plain(NotPgp::NoOpenPgp)
        );
        assert_eq!(combine([Key, Empty]), Key);
        assert_eq!(
            combine([Key, Encrypted(Form::Inline)]),
            Encrypted(Form::Inline)
        );
    }
}
