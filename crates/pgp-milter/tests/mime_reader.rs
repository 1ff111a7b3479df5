//! The strict streaming MIME reader and the detector on top of it give the
//! same reading whatever the chunking, on generated MIME trees mutated at
//! their delimiters, parameters, header fields and line ends, and on the
//! real GnuPG corpus.

mod support;

use pgp_milter::detect::{Detector, Wanted};
use pgp_milter::mime::{Transcript, transcript};
use proptest::prelude::*;

/// What must not depend on the chunking: everything read, or the refusal.
fn reading(t: Transcript) -> Result<Vec<pgp_milter::mime::Item>, String> {
    match t {
        Transcript::Read(items) => Ok(items),
        Transcript::Refused(_, e) => Err(e.to_string()),
    }
}

fn detect_in(message: &[u8], cuts: &[usize]) -> pgp_milter::detect::Found {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(message.len())).collect();
    cuts.extend([0, message.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    let mut d = Detector::new(Wanted { keys: true });
    for w in cuts.windows(2) {
        if d.feed(&message[w[0]..w[1]]).is_some() {
            break;
        }
    }
    d.finish()
}

const BOUNDARIES: [&str; 4] = ["b", "b-1", "b-1x", "=_x y"];

fn leaf() -> impl Strategy<Value = String> {
    let ctype = prop::sample::select(vec![
        "",
        "Content-Type: text/plain\r\n",
        "Content-Type: application/octet-stream\r\n",
        "Content-Type: application/pgp-encrypted\r\n",
        "Content-Type: message/rfc822\r\n",
    ]);
    let cte = prop::sample::select(vec![
        "",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",
    ]);
    let piece = prop::sample::select(vec![
        "SGVsbG8=",
        "QUJD",
        "text",
        " ",
        "=3D",
        "=",
        "\r\n",
        "\n",
        "--",
        "-----BEGIN PGP MESSAGE-----",
        "Version: 1",
        "--b",
        "--b-1",
        "--b--",
        "Subject: x\r\n\r\n",
        "\t",
    ]);
    (ctype, cte, prop::collection::vec(piece, 0..12))
        .prop_map(|(t, e, body)| format!("{t}{e}\r\n{}", body.concat()))
}

fn tree() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        (
            prop::sample::select(BOUNDARIES.to_vec()),
            prop::sample::select(vec!["mixed", "alternative", "encrypted", "digest"]),
            prop::collection::vec(inner, 1..4),
            prop::sample::select(vec!["", "preamble\r\n", "--b-1x\r\n"]),
            prop::sample::select(vec!["", "epilogue\r\n", "\r\n"]),
        )
            .prop_map(|(b, sub, parts, pre, epi)| {
                let mut m = format!(
                    "Content-Type: multipart/{sub}; boundary=\"{b}\"; protocol=\"application/pgp-encrypted\"\r\n\r\n{pre}"
                );
                for p in parts {
                    m.push_str(&format!("--{b}\r\n{p}\r\n"));
                }
                m.push_str(&format!("--{b}--\r\n{epi}"));
                m
            })
    })
}

/// Mutations at the places readers disagree about.
fn mutate(m: &str, edits: &[(usize, u8)]) -> Vec<u8> {
    let snippets: [&[u8]; 12] = [
        b"\r",
        b"\n",
        b"\0",
        b"--",
        b" ",
        b";",
        b"=?utf-8?q?x?=",
        b"\"",
        b":",
        b"--b--x",
        b"\t",
        b"Content-Type: text/plain\r\n",
    ];
    let mut v = m.as_bytes().to_vec();
    for &(at, what) in edits {
        let at = at % (v.len() + 1);
        let s = snippets[usize::from(what) % snippets.len()];
        if what >= 200 && at < v.len() {
            v.remove(at);
        } else {
            v.splice(at..at, s.iter().copied());
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn the_same_bytes_in_any_chunking_read_the_same(
        t in tree(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let m = mutate(&format!("Subject: t\r\n{t}"), &edits);
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (m.len() + 1)).collect();
        let whole = reading(transcript(&m, &[]));
        prop_assert_eq!(&whole, &reading(transcript(&m, &cuts)));
        let bytewise: Vec<usize> = (0..m.len()).collect();
        prop_assert_eq!(&whole, &reading(transcript(&m, &bytewise)));
        let a = detect_in(&m, &[]);
        let b = detect_in(&m, &cuts);
        prop_assert_eq!(a.detection, b.detection);
    }
}

#[test]
#[ignore = "needs gpg"]
fn the_corpus_reads_the_same_in_any_chunking() {
    for c in support::cases() {
        let m = &c.message;
        let whole = detect_in(m, &[]);
        for step in [1usize, 7, 64, 997, 4096] {
            let cuts: Vec<usize> = (0..m.len()).step_by(step).collect();
            let found = detect_in(m, &cuts);
            assert_eq!(whole, found, "{} cut every {step} bytes", c.name);
        }
    }
}
