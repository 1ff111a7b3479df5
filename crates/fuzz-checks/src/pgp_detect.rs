//! `pgp_detect`: arbitrary MIME/armor bytes through pgp-milter's detection.
//!
//! Invariants:
//! - no panic anywhere (the detector's own panic catcher must not fire:
//!   `NotPgp::Internal` is a failure) in `detect` and `top_boundary`. Only
//!   these and `Detection`/`NotPgp` are used: the armor and packet layers
//!   underneath are being reworked (their functions differ between
//!   branches), and `detect` runs them all anyway;
//! - the verdict does not depend on the order of headers the detector does
//!   not read: moving `From:`/`To:`/`Subject:`/`X-*` lines around (or adding
//!   one) never changes whether a message is accepted as encrypted;
//! - line endings do not matter: the same message with LF and with CRLF
//!   line endings gets the same verdict (Postfix hands over CRLF, a local
//!   submission may not);
//! - the verdict is deterministic (the same bytes twice give the same answer).
//!
//! Bounded work is checked by the fuzzer itself (its per-input timeout and
//! `-rss_limit_mb`), and on stable by the corpus replay finishing.

use pgp_milter::detect::top_boundary;
use pgp_milter::{Detection, NotPgp, detect};

use crate::{Failure, Input, Outcome, ensure_eq};

/// Headers the detector has no reason to read.
const IRRELEVANT: [&[u8]; 4] = [
    b"From: a@example.org",
    b"To: b@example.org",
    b"Subject: fuzz",
    b"X-Mailer: fuzz 1.0",
];

fn is_encrypted(d: &Detection) -> bool {
    matches!(d, Detection::Encrypted(_))
}

/// Runs the detector, failing if its panic catcher fired.
pub fn detect_checked(m: &[u8]) -> Result<Detection, Failure> {
    let d = detect(m);
    if let Detection::Plain(NotPgp::Internal(why)) = &d {
        return Err(Failure(format!(
            "detector failed internally: {why}\ninput: {:?}",
            String::from_utf8_lossy(m)
        )));
    }
    Ok(d)
}

/// Splits a message at the first empty line: (header lines, body).
fn split_message(m: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::new();
    let mut rest = m;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[nl + 1..];
        if line.is_empty() {
            return (lines, rest);
        }
        lines.push(line);
    }
    // No body: the whole input is headers (and maybe a partial line).
    if !rest.is_empty() {
        lines.push(rest);
    }
    (lines, &[])
}

/// Joins header lines (continuations stay with their field) and a body
/// with `eol`.
fn join(fields: &[Vec<&[u8]>], body: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        for l in f {
            out.extend_from_slice(l);
            out.extend_from_slice(eol);
        }
    }
    out.extend_from_slice(eol);
    out.extend_from_slice(body);
    out
}

/// The fuzz entry: a rotation amount, then the message.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let rotation = usize::from(input.u8());
    let message = input.rest();
    check_message(message, rotation)
}

/// Checks one message; `rotation` picks where irrelevant headers go.
pub fn check_message(message: &[u8], rotation: usize) -> Outcome {
    let d = detect_checked(message)?;
    ensure_eq!(
        is_encrypted(&d),
        is_encrypted(&detect_checked(message)?),
        "not deterministic"
    );
    let _ = top_boundary(message);

    let (lines, body) = split_message(message);
    // Only messages whose header block is well formed: fields start with a
    // name and a colon; continuation lines start with white space.
    let well_formed = lines
        .first()
        .is_some_and(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
        && lines.iter().all(|l| {
            l.starts_with(b" ")
                || l.starts_with(b"\t")
                || l.iter().position(|&b| b == b':').is_some_and(|c| {
                    c > 0 && l[..c].iter().all(|&b| b.is_ascii_graphic() && b != b':')
                })
        })
        && !body.contains(&b'\r');
    if !well_formed || lines.is_empty() {
        return Ok(());
    }
    let mut fields: Vec<Vec<&[u8]>> = Vec::new();
    for l in &lines {
        if l.starts_with(b" ") || l.starts_with(b"\t") {
            fields.last_mut().expect("first line is a field").push(l);
        } else {
            fields.push(vec![l]);
        }
    }
    let lf_body = body.to_vec();
    let crlf_body: Vec<u8> = lf_body
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .join(&b"\r\n"[..]);
    let verdict = is_encrypted(&detect_checked(&join(&fields, &lf_body, b"\n"))?);

    // Line endings.
    let crlf = join(&fields, &crlf_body, b"\r\n");
    ensure_eq!(
        is_encrypted(&detect_checked(&crlf)?),
        verdict,
        "CRLF vs LF changed the verdict"
    );

    // Irrelevant headers: one added at `rotation`, and the irrelevant ones
    // already there moved to the end.
    let extra = IRRELEVANT[rotation % IRRELEVANT.len()];
    let mut moved = fields.clone();
    moved.insert(rotation % (moved.len() + 1), vec![extra]);
    let irrelevant = |f: &Vec<&[u8]>| {
        let name = f[0].split(|&b| b == b':').next().unwrap_or_default();
        IRRELEVANT
            .iter()
            .any(|h| h.split(|&b| b == b':').next() == Some(name))
            || name.len() > 2 && name[..2].eq_ignore_ascii_case(b"x-")
    };
    let (mut keep, tail): (Vec<_>, Vec<_>) = moved.into_iter().partition(|f| !irrelevant(f));
    keep.extend(tail);
    ensure_eq!(
        is_encrypted(&detect_checked(&join(&keep, &lf_body, b"\n"))?),
        verdict,
        "reordering irrelevant headers changed the verdict"
    );
    Ok(())
}
