//! Replays the committed seed corpus (`fuzz/corpus/<target>/`) through the
//! same checks the cargo-fuzz targets run, on the stable toolchain: every
//! seed (and every crash reproducer added after a fix) must pass, and the
//! corpus must still hold what the seed module generates and exercise what
//! it is there for.

use std::path::{Path, PathBuf};

use fuzz_checks::{
    Outcome, frame_decoder, mailman_address, milter_session, mta_session, payload_chunking,
    pgp_detect,
};

/// A fuzz target's entry point.
type Run = fn(&[u8]) -> Outcome;

const TARGETS: [(&str, Run); 6] = [
    ("frame_decoder", frame_decoder::run),
    ("milter_session", milter_session::run),
    ("mta_session", mta_session::run),
    ("pgp_detect", pgp_detect::run),
    ("mailman_address", mailman_address::run),
    ("payload_chunking", payload_chunking::run),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn seeds_of(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
            )
        })
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn every_seed_passes_its_targets_checks() {
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let seeds = seeds_of(target);
        assert!(seeds.len() >= 5, "{target}: only {} seeds", seeds.len());
        for (name, bytes) in seeds {
            if let Err(f) = run(&bytes) {
                failures.push(format!("{target}/{name}: {f}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn committed_seeds_match_the_seed_module() {
    for (target, name, bytes) in fuzz_checks::seeds::seeds() {
        let path = corpus_dir(target).join(name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == bytes,
            "{} differs from fuzz_checks::seeds (run `cargo run -p fuzz-checks --example write_seeds`)",
            path.display()
        );
    }
    let total: u64 = TARGETS
        .iter()
        .flat_map(|(t, _)| seeds_of(t))
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert!(
        total < 256 * 1024,
        "the corpus is {total} bytes; keep it small"
    );
}

/// The payload_chunking seeds are what its module builds. Set
/// `WRITE_PAYLOAD_SEEDS=1` to (re)write them.
#[test]
fn payload_chunking_seeds_match_their_module() {
    let dir = corpus_dir("payload_chunking");
    for (name, bytes) in payload_chunking::seeds() {
        let path = dir.join(name);
        if std::env::var_os("WRITE_PAYLOAD_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == bytes,
            "{} differs from payload_chunking::seeds (rerun with WRITE_PAYLOAD_SEEDS=1)",
            path.display()
        );
    }
}

/// The pgp seeds cover both verdicts, so a detector that accepted or
/// refused everything would be noticed by the fuzzer's starting point too.
#[test]
fn pgp_seeds_hold_accepted_and_refused_messages() {
    let verdicts: Vec<(String, bool)> = seeds_of("pgp_detect")
        .into_iter()
        .map(|(name, bytes)| {
            let d = pgp_detect::detect_checked(&bytes[1..]).expect("no internal failure");
            (name, matches!(d, pgp_milter::Detection::Encrypted(_)))
        })
        .collect();
    for (name, encrypted) in &verdicts {
        let expect = matches!(
            name.as_str(),
            "pgp-mime-encrypted" | "inline-encrypted" | "attachment-binary"
        );
        assert_eq!(*encrypted, expect, "{name}");
    }
}

/// The Postfix-shaped streams are whole conversations: every packet
/// decodes, and the session seeds reach end of message.
#[test]
fn protocol_seeds_are_whole_conversations() {
    use milter_proto::{Command, FrameDecoder};
    let (_, stream) = seeds_of("frame_decoder")
        .into_iter()
        .find(|(n, _)| n == "postfix6-connection")
        .expect("the Postfix seed");
    // Skip the limit choice, cut count and three cuts.
    let mut buf = bytes::BytesMut::from(&stream[2 + 6..]);
    let dec = FrameDecoder::new(65_535);
    let mut codes = Vec::new();
    while let Some(f) = dec.decode(&mut buf).expect("valid framing") {
        codes.push(Command::parse(f).expect("a valid command").code());
    }
    assert!(buf.is_empty());
    assert_eq!(codes.first(), Some(&b'O'));
    assert_eq!(codes.last(), Some(&b'Q'));
    assert_eq!(
        codes.iter().filter(|&&c| c == b'E').count(),
        2,
        "{:?}",
        String::from_utf8_lossy(&codes)
    );
    assert_eq!(codes.iter().filter(|&&c| c == b'A').count(), 2);
}

/// The addresses seeds all hold at least one address the parser finds.
#[test]
fn address_seeds_hold_addresses() {
    for (name, bytes) in seeds_of("mailman_address") {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !mailman_milter::address::header_addresses(&text).is_empty(),
            "{name}"
        );
    }
}

/// Together, the session seeds reach every branch of the session checks:
/// renegotiation after `K`, modifications at end of message, decisions
/// deferred from no-reply steps, aborts of open messages, refused packets.
#[test]
fn session_seeds_reach_every_branch() {
    let mut t = milter_session::Counts::default();
    for (name, bytes) in seeds_of("milter_session") {
        let c = milter_session::run_counted(&bytes).unwrap_or_else(|f| panic!("{name}: {f}"));
        println!("{name}: {c:?}");
        t.negotiated += c.negotiated;
        t.answered += c.answered;
        t.modified_eom += c.modified_eom;
        t.deferred += c.deferred;
        t.aborted_open += c.aborted_open;
        t.new_connection += c.new_connection;
        t.refused += c.refused;
    }
    assert!(
        t.negotiated > t.new_connection && t.new_connection > 0,
        "{t:?}"
    );
    assert!(
        t.answered > 0 && t.modified_eom > 0 && t.deferred > 0,
        "{t:?}"
    );
    assert!(t.aborted_open > 0 && t.refused > 0, "{t:?}");
}
