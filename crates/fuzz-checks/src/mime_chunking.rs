//! `mime_chunking`: pgp-milter's strict streaming MIME reader and the
//! detector on top of it, fed the same bytes cut in different places.
//!
//! Input layout: one byte `n`, then `n` big-endian `u16` cut offsets (taken
//! modulo the message length), then the message.
//!
//! Invariants:
//! - no panic, and the detector's panic catcher never fires (an
//!   `Internal` reason is a failure);
//! - the reading (every event, with adjacent text merged, or the refusal
//!   and its reason) is the same whole, cut at the given offsets, and fed
//!   byte by byte;
//! - the detection (and the recipients found) is the same whole and cut;
//! - the delivery-report reading (the report, or why it is none) is the
//!   same whole and cut, and the report reader never panics;

use pgp_milter::detect::{Detector, Found, Wanted};
use pgp_milter::mime::{Transcript, transcript};
use pgp_milter::report::{NotReport, ReportReader, delivery_report};
use pgp_milter::{Detection, NotPgp};

use crate::{Failure, Input, Outcome, ensure_eq};

/// The fuzz entry.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let n = usize::from(input.u8());
    let raw: Vec<usize> = (0..n).map(|_| usize::from(input.u16())).collect();
    let message = input.rest();
    let cuts: Vec<usize> = raw.iter().map(|c| c % (message.len() + 1)).collect();
    check(message, &cuts)
}

fn reading(t: Transcript) -> Result<Vec<pgp_milter::mime::Item>, String> {
    match t {
        Transcript::Read(items) => Ok(items),
        Transcript::Refused(_, e) => Err(e.to_string()),
    }
}

fn detect_in(message: &[u8], cuts: &[usize]) -> Result<Found, Failure> {
    let mut points: Vec<usize> = cuts.to_vec();
    points.extend([0, message.len()]);
    points.sort_unstable();
    points.dedup();
    let mut d = Detector::new(Wanted { keys: true });
    for w in points.windows(2) {
        if d.feed(&message[w[0]..w[1]]).is_some() {
            break;
        }
    }
    let found = d.finish();
    if let Detection::Plain(NotPgp::Internal(why)) = &found.detection {
        return Err(Failure(format!(
            "detector failed internally: {why}\ninput: {:?}",
            String::from_utf8_lossy(message)
        )));
    }
    Ok(found)
}

/// Checks one message and one set of cuts.
pub fn check(message: &[u8], cuts: &[usize]) -> Outcome {
    let whole = reading(transcript(message, &[]));
    ensure_eq!(
        whole,
        reading(transcript(message, cuts)),
        "reading depends on the chunking {cuts:?}"
    );
    if message.len() <= 4096 {
        let bytewise: Vec<usize> = (0..message.len()).collect();
        ensure_eq!(
            whole,
            reading(transcript(message, &bytewise)),
            "reading byte by byte differs"
        );
    }
    let a = detect_in(message, &[])?;
    let b = detect_in(message, cuts)?;
    ensure_eq!(a, b, "detection depends on the chunking {cuts:?}");
    let whole = delivery_report(message);
    if let Err(NotReport::Malformed(why)) = &whole
        && why.contains("panicked")
    {
        return Err(Failure(format!(
            "report reader panicked\ninput: {:?}",
            String::from_utf8_lossy(message)
        )));
    }
    let mut points: Vec<usize> = cuts.to_vec();
    points.extend([0, message.len()]);
    points.sort_unstable();
    points.dedup();
    let mut r = ReportReader::default();
    for w in points.windows(2) {
        r.feed(&message[w[0]..w[1]]);
    }
    ensure_eq!(
        whole,
        r.finish(),
        "report reading depends on the chunking {cuts:?}"
    );
    Ok(())
}
