//! The SecureJoin handshake exemption (`accept_securejoin`).
//!
//! Delta Chat verifies contacts and joins groups with the SecureJoin
//! protocol. Its first step (`vc-request` for a contact, `vg-request` for
//! a group) is sent *before* the two sides have each other's keys, so with
//! an invite link from an older client (no `v=3` parameter) it goes out
//! unencrypted: a `Secure-Join: vc-request` header field and a
//! `multipart/mixed` holding one `text/plain` part whose text is
//! `Secure-Join: vc-request`. The sender's key travels in the `Autocrypt:`
//! header field. A relay that refuses all plaintext would refuse that step,
//! and those users could never verify each other.
//!
//! This module accepts exactly that shape and nothing more, so the
//! exemption carries no text a person wrote:
//! * one `Secure-Join` header field, value exactly `vc-request` or
//!   `vg-request`;
//! * a `multipart/mixed` (only a `boundary` parameter) whose preamble and
//!   epilogue are white space;
//! * exactly one part, `text/plain` (parameters: `charset` = `utf-8` or
//!   `us-ascii` only), 7bit, 8bit or quoted-printable, no other header
//!   field in the part (no `Content-Disposition`, no file name);
//! * whose text, white space around it removed, is `secure-join: ` and the
//!   header's value (ASCII case ignored in `secure-join`, as chatmail's
//!   filtermail compares it).
//!
//! Anything else (a different body, an extra part, an attachment, an
//! extra part header field, text around the multipart) is not a
//! handshake, and the message is judged like any other: plaintext is
//! refused. The outer header fields are not judged, as for encrypted mail.
//!
//! A handshake message is small (headers with one Autocrypt key, and one
//! short line); anything larger than [`MAX_HANDSHAKE_BYTES`] is not one,
//! so the milter keeps at most that much of a message to decide.
//!
//! The reading is the strict MIME reader's ([`crate::mime`]): a message it
//! refuses is never a handshake.

use std::fmt;

use thiserror::Error;

use crate::mime::{Encoding, Item, Transcript, transcript};

/// The largest message (header and body) that may be a handshake.
pub const MAX_HANDSHAKE_BYTES: usize = 32 << 10;

/// The handshake step a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `vc-request`: verify a contact.
    VcRequest,
    /// `vg-request`: join a group.
    VgRequest,
}

impl Step {
    fn parse(value: &str) -> Option<Step> {
        match value {
            "vc-request" => Some(Step::VcRequest),
            "vg-request" => Some(Step::VgRequest),
            _ => None,
        }
    }

    /// `vc-request` or `vg-request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::VcRequest => "vc-request",
            Step::VgRequest => "vg-request",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message is not a SecureJoin handshake.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotHandshake {
    /// No `Secure-Join` header field.
    #[error("no Secure-Join header field")]
    NoHeader,
    /// More than one, or a value other than the two first steps.
    #[error("Secure-Join header field is not one vc-request or vg-request")]
    BadHeader,
    /// Larger than [`MAX_HANDSHAKE_BYTES`].
    #[error("larger than a handshake ({MAX_HANDSHAKE_BYTES} bytes)")]
    TooLarge,
    /// The strict reader refuses it.
    #[error("unreadable MIME structure")]
    Mime,
    /// Not the one-part shape.
    #[error("not the handshake's MIME shape: {0}")]
    Shape(&'static str),
    /// The part's text is not the handshake line.
    #[error("the text is not `Secure-Join: {0}`")]
    Body(Step),
}

/// What the milter keeps of a message while it may be a handshake: its
/// header lines as it gives them to the reader, then the body, at most
/// [`MAX_HANDSHAKE_BYTES`] in all, and only when the message has a
/// `Secure-Join` field (anything else is dropped at the end of the header).
#[derive(Debug, Default)]
pub struct Candidate {
    kept: Vec<u8>,
    /// Not a handshake (too large, or no `Secure-Join` field): keep nothing.
    out: bool,
    /// A `Secure-Join` field was seen.
    field: bool,
}

impl Candidate {
    /// One header field (`name`, and `line`: the field as the reader gets
    /// it, `name: value` and CRLF).
    pub fn header(&mut self, name: &[u8], line: &[u8]) {
        if name.eq_ignore_ascii_case(b"secure-join") {
            self.field = true;
        }
        self.keep(line);
    }

    /// The blank line after the header: without a `Secure-Join` field the
    /// message is no handshake.
    pub fn end_of_headers(&mut self) {
        self.keep(b"\r\n");
        if !self.field {
            self.drop_all();
        }
    }

    /// A body chunk.
    pub fn body(&mut self, chunk: &[u8]) {
        self.keep(chunk);
    }

    /// Whether the message may still be a handshake: a refusal found
    /// before its end waits for the end.
    pub fn pending(&self) -> bool {
        self.field && !self.out
    }

    /// At the end of the message: the handshake step it is, if it is one.
    pub fn judge(&mut self) -> Option<Step> {
        if !self.pending() {
            return None;
        }
        let message = std::mem::take(&mut self.kept);
        self.out = true;
        handshake(&message).ok()
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.out {
            return;
        }
        if self.kept.len() + bytes.len() > MAX_HANDSHAKE_BYTES {
            self.drop_all();
            return;
        }
        self.kept.extend_from_slice(bytes);
    }

    fn drop_all(&mut self) {
        self.out = true;
        self.kept = Vec::new();
    }
}

/// The header field lines of `message` (up to the blank line), unfolded,
/// as (name, value) with the value's surrounding white space removed.
fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = fields.last_mut() {
                v.push_str(&text);
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) => fields.push((name.to_owned(), value.to_owned())),
            // Not a field: the strict reader refuses it anyway.
            None => fields.push((String::new(), text.into_owned())),
        }
    }
    for (_, v) in &mut fields {
        *v = v.trim_matches([' ', '\t']).to_owned();
    }
    fields
}

/// The header field names of the first part of the multipart with
/// `boundary` in `message` (already read by the strict reader, so the
/// first delimiter line is exactly `--boundary` and white space).
fn first_part_field_names(message: &[u8], boundary: &str) -> Vec<String> {
    let delimiter = format!("--{boundary}");
    let mut lines = message.split(|&b| b == b'\n');
    // Skip the message header.
    for line in lines.by_ref() {
        if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
            break;
        }
    }
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii_end() == delimiter.as_bytes() {
            break;
        }
    }
    let rest: Vec<u8> = lines.collect::<Vec<_>>().join(&b'\n');
    header_fields(&rest)
        .into_iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect()
}

fn blank(text: &[u8]) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}

/// Whether `message` (header, blank line, body; CRLF or LF) is the first
/// step of a SecureJoin handshake, and which.
pub fn handshake(message: &[u8]) -> Result<Step, NotHandshake> {
    if message.len() > MAX_HANDSHAKE_BYTES {
        return Err(NotHandshake::TooLarge);
    }
    let fields = header_fields(message);
    let mut values = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("secure-join"));
    let step = match (values.next(), values.next()) {
        (None, _) => return Err(NotHandshake::NoHeader),
        (Some((_, v)), None) => Step::parse(v).ok_or(NotHandshake::BadHeader)?,
        (Some(_), Some(_)) => return Err(NotHandshake::BadHeader),
    };
    let items = match transcript(message, &[]) {
        Transcript::Read(items) => items,
        Transcript::Refused(..) => return Err(NotHandshake::Mime),
    };
    let mut items = items.into_iter().peekable();
    let Some(Item::Start(outer)) = items.next() else {
        return Err(NotHandshake::Shape("no message"));
    };
    if outer.essence() != "multipart/mixed" {
        return Err(NotHandshake::Shape("not multipart/mixed"));
    }
    if outer.media.params.iter().any(|(n, _)| n != "boundary") {
        return Err(NotHandshake::Shape(
            "a multipart parameter besides boundary",
        ));
    }
    let boundary = outer.media.param("boundary").unwrap_or_default().to_owned();
    if let Some(Item::Preamble(p)) = items.peek() {
        if !blank(p) {
            return Err(NotHandshake::Shape("text in the preamble"));
        }
        items.next();
    }
    let Some(Item::Start(part)) = items.next() else {
        return Err(NotHandshake::Shape("no part"));
    };
    if part.essence() != "text/plain" || part.defaulted {
        return Err(NotHandshake::Shape("the part is not text/plain"));
    }
    let charset_ok = |(n, v): &(String, String)| {
        n == "charset" && (v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("us-ascii"))
    };
    if !part.media.params.iter().all(charset_ok) {
        return Err(NotHandshake::Shape(
            "a text/plain parameter besides charset",
        ));
    }
    if !matches!(
        part.encoding,
        Encoding::SevenBit | Encoding::EightBit | Encoding::QuotedPrintable
    ) {
        return Err(NotHandshake::Shape("the part's transfer encoding"));
    }
    if part.disposition.is_some() || part.filename.is_some() {
        return Err(NotHandshake::Shape("a disposition or file name"));
    }
    let names = first_part_field_names(message, &boundary);
    if !names
        .iter()
        .all(|n| n == "content-type" || n == "content-transfer-encoding")
    {
        return Err(NotHandshake::Shape(
            "a part header field besides the MIME ones",
        ));
    }
    let mut body = Vec::new();
    if let Some(Item::Body(_)) = items.peek()
        && let Some(Item::Body(b)) = items.next()
    {
        body = b;
    }
    if items.next() != Some(Item::End) {
        return Err(NotHandshake::Shape("more than a leaf in the part"));
    }
    if let Some(Item::Start(_)) = items.peek() {
        return Err(NotHandshake::Shape("more than one part"));
    }
    if let Some(Item::Epilogue(e)) = items.peek() {
        if !blank(e) {
            return Err(NotHandshake::Shape("text in the epilogue"));
        }
        items.next();
    }
    if items.next() != Some(Item::End) || items.next() != Some(Item::Finished) {
        return Err(NotHandshake::Shape("more than one part"));
    }
    let text = body.trim_ascii();
    let Some((name, value)) = text.split_at_checked(b"secure-join: ".len()) else {
        return Err(NotHandshake::Body(step));
    };
    if !name.eq_ignore_ascii_case(b"secure-join: ") || value != step.as_str().as_bytes() {
        return Err(NotHandshake::Body(step));
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unencrypted first step as Delta Chat writes it (shape of a
    /// real `deltachat-rpc-server` 2.65.0 message, key shortened).
    const REAL: &str = "Subject: [...]\r\n\
From: <alice@relay.example>\r\n\
To: <bob@relay.example>\r\n\
Date: Sun, 06 Dec 2026 20:00:00 +0000\r\n\
Message-ID: <Mr.abc@relay.example>\r\n\
Chat-Version: 1.0\r\n\
Secure-Join: vc-request\r\n\
Secure-Join-Invitenumber: Zt2dFq8Ykz\r\n\
Autocrypt: addr=alice@relay.example; prefer-encrypt=mutual;\r\n\
\x20keydata=xjMEZ2dlZhYJKwYBBAHaRw8BAQdAabcdefghijklmnopqrstuvwxyz0123456789\r\n\
\x20ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnop\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\"\r\n\
\r\n\
\r\n\
--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Secure-Join: vc-request\r\n\
\r\n\
\r\n\
--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--\r\n\
\r\n";

    fn with(from: &str, to: &str) -> Vec<u8> {
        assert!(REAL.contains(from), "{from}");
        REAL.replacen(from, to, 1).into_bytes()
    }

    #[test]
    fn the_real_handshake_passes() {
        assert_eq!(handshake(REAL.as_bytes()), Ok(Step::VcRequest));
        let vg = REAL.replace("vc-request", "vg-request");
        assert_eq!(handshake(vg.as_bytes()), Ok(Step::VgRequest));
        // LF line ends, a quoted-printable part, no charset, lower case
        // body, us-ascii.
        assert_eq!(
            handshake(REAL.replace("\r\n", "\n").as_bytes()),
            Ok(Step::VcRequest)
        );
        let qp = with(
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Type: text/plain; charset=US-ASCII\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        );
        assert_eq!(handshake(&qp), Ok(Step::VcRequest));
        let lower = with(
            "\r\nSecure-Join: vc-request\r\n\r\n",
            "\r\nsecure-join: vc-request\r\n\r\n",
        );
        assert_eq!(handshake(&lower), Ok(Step::VcRequest));
    }

    /// The first step as `deltachat-rpc-server` 2.65.0 sent it with an
    /// invite link without `v=3` (captured at the MTA, LF line ends as
    /// stored; Postfix's trace fields removed).
    const CAPTURED: &[u8] = include_bytes!("../tests/deltachat/vc-request.eml");

    #[test]
    fn the_message_delta_chat_sends_passes_and_nothing_near_it() {
        let lf = String::from_utf8(CAPTURED.to_vec()).unwrap();
        let crlf = lf.replace('\n', "\r\n");
        for m in [&lf, &crlf] {
            assert_eq!(handshake(m.as_bytes()), Ok(Step::VcRequest));
            let vg = m.replace("vc-request", "vg-request");
            assert_eq!(handshake(vg.as_bytes()), Ok(Step::VgRequest));
        }
        let body = "\r\nSecure-Join: vc-request\r\n--";
        assert!(crlf.contains(body));
        for (look_alike, why) in [
            (
                crlf.replace(body, "\r\nSecure-Join: vc-request\r\nhi\r\n--"),
                NotHandshake::Body(Step::VcRequest),
            ),
            (
                crlf.replace(body, "\r\nSecure-Join: vc-request hi\r\n--"),
                NotHandshake::Body(Step::VcRequest),
            ),
            (
                crlf.replace("charset=\"utf-8\"", "charset=\"utf-8\"; name=\"hi\""),
                NotHandshake::Shape("a text/plain parameter besides charset"),
            ),
            (
                crlf.replace("Secure-Join-Invitenumber", "Secure-Join: vc-request\r\nX"),
                NotHandshake::BadHeader,
            ),
        ] {
            assert_eq!(handshake(look_alike.as_bytes()), Err(why), "{look_alike}");
        }
    }

    #[test]
    fn look_alikes_are_not_handshakes() {
        let body_line = "\r\nSecure-Join: vc-request\r\n\r\n";
        let cases: Vec<(Vec<u8>, NotHandshake)> = vec![
            // No header, a wrong header value, two headers.
            (
                with("Secure-Join: vc-request\r\nSecure-Join-I", "Secure-Join-I"),
                NotHandshake::NoHeader,
            ),
            (
                with(
                    "Secure-Join: vc-request\r\nSecure-Join-I",
                    "Secure-Join: vc-auth-required\r\nSecure-Join-I",
                ),
                NotHandshake::BadHeader,
            ),
            (
                with(
                    "Secure-Join: vc-request\r\nSecure-Join-I",
                    "Secure-Join: vc-request hello\r\nSecure-Join-I",
                ),
                NotHandshake::BadHeader,
            ),
            (
                with("Chat-Version", "Secure-Join: vg-request\r\nChat-Version"),
                NotHandshake::BadHeader,
            ),
            // A different body, text after it, another step's body.
            (
                with(body_line, "\r\nMeow!\r\n\r\n"),
                NotHandshake::Body(Step::VcRequest),
            ),
            (
                with(body_line, "\r\nSecure-Join: vc-request\r\nmeet me at 5\r\n"),
                NotHandshake::Body(Step::VcRequest),
            ),
            (
                with(body_line, "\r\nSecure-Join: vg-request\r\n"),
                NotHandshake::Body(Step::VcRequest),
            ),
            (
                with(body_line, "\r\nSecure-Join:  vc-request\r\n"),
                NotHandshake::Body(Step::VcRequest),
            ),
            (
                with(body_line, "\r\nSecure-Join: VC-REQUEST\r\n"),
                NotHandshake::Body(Step::VcRequest),
            ),
            // An extra part.
            (
                with(
                    "--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--",
                    "--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\r\nContent-Type: text/plain\r\n\r\nsecret\r\n--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--",
                ),
                NotHandshake::Shape("more than one part"),
            ),
            // An attachment instead of text, a nested multipart.
            (
                with(
                    "Content-Type: text/plain; charset=utf-8\r\n",
                    "Content-Type: application/octet-stream\r\n",
                ),
                NotHandshake::Shape("the part is not text/plain"),
            ),
            (
                with(
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nSecure-Join: vc-request\r\n\r\n",
                    "Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n\r\nSecure-Join: vc-request\r\n--in--\r\n",
                ),
                NotHandshake::Shape("the part is not text/plain"),
            ),
            // Text around the multipart, in a parameter, in a part field.
            (
                with("\r\n\r\n--Gl92", "\r\nhello\r\n--Gl92"),
                NotHandshake::Shape("text in the preamble"),
            ),
            (
                with(
                    "--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--\r\n",
                    "--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--\r\nbye\r\n",
                ),
                NotHandshake::Shape("text in the epilogue"),
            ),
            (
                with("charset=utf-8", "charset=utf-8; note=hunter2"),
                NotHandshake::Shape("a text/plain parameter besides charset"),
            ),
            (
                with("charset=utf-8\r\n", "charset=utf-8\r\nX-Note: hunter2\r\n"),
                NotHandshake::Shape("a part header field besides the MIME ones"),
            ),
            (
                with(
                    "charset=utf-8\r\n",
                    "charset=utf-8\r\nContent-Disposition: attachment; filename=a.txt\r\n",
                ),
                NotHandshake::Shape("a disposition or file name"),
            ),
            (
                with(
                    "charset=utf-8\r\n\r\nSecure-Join: vc-request\r\n",
                    "charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                     U2VjdXJlLUpvaW46IHZjLXJlcXVlc3Q=\r\n",
                ),
                NotHandshake::Shape("the part's transfer encoding"),
            ),
            (
                with("multipart/mixed", "multipart/alternative"),
                NotHandshake::Shape("not multipart/mixed"),
            ),
            // Not multipart at all; broken MIME.
            (
                with(
                    "multipart/mixed; boundary=\"Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi\"",
                    "text/plain",
                ),
                NotHandshake::Shape("not multipart/mixed"),
            ),
            (
                with("--Gl92xgZjOShJ5PGHntqYkoo2OK2Dvi--\r\n", ""),
                NotHandshake::Mime,
            ),
        ];
        for (message, why) in cases {
            assert_eq!(
                handshake(&message),
                Err(why),
                "{}",
                String::from_utf8_lossy(&message)
            );
        }
    }

    #[test]
    fn no_byte_of_the_real_body_can_change_and_carry_anything() {
        // Every position after the header of the real message: one visible
        // character inserted, or one deleted (white space aside). Whatever
        // it hits (part header, text, delimiter, epilogue), the message is
        // no longer the handshake, or reads exactly as before (`text/plain;;
        // charset=…` is the same part): a change never passes with content
        // of its own. Exhaustive, so deterministic.
        let real = String::from_utf8(CAPTURED.to_vec())
            .unwrap()
            .replace('\n', "\r\n");
        let reading = transcript(real.as_bytes(), &[]);
        let body_at = real.find("\r\n\r\n").unwrap() + 4;
        let (mut tried, mut same) = (0, 0);
        let mut check = |m: &str, what: &str| {
            tried += 1;
            if handshake(m.as_bytes()).is_ok() {
                assert_eq!(transcript(m.as_bytes(), &[]), reading, "{what}:\n{m}");
                same += 1;
            }
        };
        for at in body_at..=real.len() {
            for c in ['x', '!', '=', ';', '"', '-', ':', '<', '0', '.', '\\', '('] {
                let mut m = real.clone();
                m.insert(at, c);
                check(&m, &format!("{c:?} inserted at {at}"));
            }
            if at < real.len() && !real.as_bytes()[at].is_ascii_whitespace() {
                let mut m = real.clone();
                m.remove(at);
                check(&m, &format!("deleted at {at}"));
            }
        }
        // (9 of 2813 read the same: an empty parameter `;;`, or a backslash
        // quoting a letter of `"utf-8"`.)
        assert!(
            tried > 1000 && same < tried / 100,
            "{tried} tried, {same} read the same"
        );
    }

    /// Feeds `message` to a [`Candidate`] as the milter does: header
    /// lines, the blank line, body chunks of `chunk` bytes.
    fn through_candidate(message: &[u8], chunk: usize) -> (bool, Option<Step>) {
        let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
        let (header, body) = text.split_once("\n\n").unwrap();
        let mut c = Candidate::default();
        let mut fields: Vec<String> = Vec::new();
        for line in header.split('\n') {
            if line.starts_with([' ', '\t']) {
                let last = fields.last_mut().unwrap();
                last.push_str("\r\n");
                last.push_str(line);
            } else {
                fields.push(line.to_owned());
            }
        }
        for f in fields {
            let name = f.split(':').next().unwrap().to_owned();
            c.header(name.as_bytes(), format!("{f}\r\n").as_bytes());
        }
        c.end_of_headers();
        let body = body.replace('\n', "\r\n");
        for piece in body.as_bytes().chunks(chunk) {
            c.body(piece);
        }
        (c.pending(), c.judge())
    }

    #[test]
    fn the_candidate_keeps_only_a_small_message_with_the_field() {
        let real = String::from_utf8(CAPTURED.to_vec()).unwrap();
        for chunk in [1, 7, 4096] {
            assert_eq!(
                through_candidate(real.as_bytes(), chunk),
                (true, Some(Step::VcRequest))
            );
        }
        // No field: nothing kept, nothing deferred.
        let none = real.replace("Secure-Join: vc-request\nSecure-Join-I", "Secure-Join-I");
        assert_eq!(through_candidate(none.as_bytes(), 4096), (false, None));
        // Too large: no longer pending, not a handshake.
        let big = real.replace(
            "\nSecure-Join: vc-request\n--",
            &format!("\n{}\n--", "x".repeat(MAX_HANDSHAKE_BYTES)),
        );
        assert_eq!(through_candidate(big.as_bytes(), 4096), (false, None));
        // Pending but not the shape.
        let other = real.replace("\nSecure-Join: vc-request\n--", "\nhello\n--");
        assert_eq!(through_candidate(other.as_bytes(), 4096), (true, None));
    }

    #[test]
    fn anything_larger_than_a_handshake_is_not_one() {
        let big = with(
            "Chat-Version: 1.0\r\n",
            &format!("X-Pad: {}\r\n", "a".repeat(MAX_HANDSHAKE_BYTES)),
        );
        assert_eq!(handshake(&big), Err(NotHandshake::TooLarge));
    }
}
