//! pgp-milter's reading against two independent mail readers that Debian
//! packages: Python's `email` (policy default) and GMime 3 (through
//! python3-gi), both run in-process by `tests/oracle/mime_readers.py`.
//!
//! Thousands of messages are generated from real GnuPG PGP/MIME and
//! inline messages (alone, with a binary OpenPGP attachment, with an HTML
//! twin; and PGP/MIME signed) with a deterministic seed, then mutated: benign changes
//! (LF line ends, transport padding, header case, folding, extra fields,
//! text around the multipart) and hostile ones that plant the word
//! "marker" where some reader may show it (delimiter look-alikes, duplicate
//! parameters and fields, encoded words, white space before a colon, bare
//! CR, NUL, commented transfer encodings, mislabelled parts, a top header
//! line ending in a bare CR, random insertions and deletions). Asserted:
//! * whenever pgp-milter accepts, neither reader has a leaf holding the
//!   marker (the plaintext it would display or let the user open);
//! * whenever both readers see a well-formed encrypted message (and only
//!   benign changes were made, and Python found no defect), pgp-milter
//!   accepts it.

mod mutations;
mod support;

use std::process::Command;

use mutations::Case;
use pgp_milter::{Decision, Policy, detect};
use support::gpg;

fn cases(n: usize) -> Vec<Case> {
    let g = gpg();
    let bases = mutations::bases(&mutations::Material {
        armor: &g.encrypted,
        binary: &g.encrypted_binary,
        signature: Some(&g.detached_signature),
    });
    // By hand, more cases or another seed: DIFFERENTIAL_CASES=20000
    // DIFFERENTIAL_SEED=7 (CI keeps the fixed ones).
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    mutations::cases(
        &bases,
        env("DIFFERENTIAL_CASES").map_or(n, |c| c as usize),
        env("DIFFERENTIAL_SEED").unwrap_or(0x005E_ED0F_D1FF),
    )
}

/// The readers' views: (python marker, python well-formed, python defects,
/// gmime marker, gmime well-formed) per case.
fn oracle(cases: &[Case]) -> Vec<[bool; 5]> {
    let dir = tempfile::tempdir().unwrap();
    let armor_file = dir.path().join("armor");
    std::fs::write(&armor_file, &gpg().encrypted).unwrap();
    let binary_file = dir.path().join("binary");
    std::fs::write(&binary_file, &gpg().encrypted_binary).unwrap();
    let msgs = dir.path().join("m");
    std::fs::create_dir(&msgs).unwrap();
    for (i, c) in cases.iter().enumerate() {
        std::fs::write(msgs.join(format!("{i:06}")), &c.message).unwrap();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/mime_readers.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(&armor_file)
        .arg(&binary_file)
        .arg(&msgs)
        .output()
        .expect("/usr/bin/python3 with python3-gi and gir1.2-gmime-3.0");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let views: Vec<[bool; 5]> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let b = |i: usize| f[i] == "1";
            [b(1), b(2), b(3), b(4), b(5)]
        })
        .collect();
    assert_eq!(views.len(), cases.len());
    views
}

#[test]
#[ignore = "needs python3-gi and gir1.2-gmime-3.0"]
fn pgp_milter_agrees_with_python_email_and_gmime() {
    let cases = cases(3000);
    let views = oracle(&cases);
    let policy = Policy::default();
    let mut leaks = Vec::new();
    let mut refused_good = Vec::new();
    let (mut accepted, mut both_good, mut shown) = (0, 0, 0);
    for (i, (c, v)) in cases.iter().zip(&views).enumerate() {
        let [py_marker, py_good, py_defects, gm_marker, gm_good] = *v;
        let d = detect(&c.message);
        let ok = matches!(policy.judge(&d), Decision::Accept(_));
        accepted += usize::from(ok);
        shown += usize::from(py_marker || gm_marker);
        let show = || String::from_utf8_lossy(&c.message).into_owned();
        if ok && (py_marker || gm_marker) {
            leaks.push(format!(
                "case {i}: accepted ({d}) but python shows the marker: {py_marker}, gmime: {gm_marker}\n{}",
                show()
            ));
        }
        if py_good && gm_good && !py_defects && !c.hostile {
            both_good += 1;
            if !ok {
                refused_good.push(format!(
                    "case {i}: both readers see it well-formed, refused: {d}\n{}",
                    show()
                ));
            }
        }
    }
    eprintln!(
        "{} cases: {accepted} accepted, {both_good} well-formed for both readers, \
         {shown} with the marker shown by a reader",
        cases.len()
    );
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks[..leaks.len().min(3)].join("\n\n")
    );
    assert!(
        refused_good.is_empty(),
        "{} refused:\n{}",
        refused_good.len(),
        refused_good[..refused_good.len().min(3)].join("\n\n")
    );
    // The generator must produce both kinds in numbers, or the test says
    // nothing.
    assert!(accepted > 300, "only {accepted} accepted");
    assert!(both_good > 300, "only {both_good} well-formed");
    assert!(shown > 300, "only {shown} with a marker a reader shows");
}
