//! Replays the committed `mime_chunking` seeds (`fuzz/corpus/mime_chunking/`)
//! through the target's checks on the stable toolchain, and the same
//! messages cut at every offset.

use std::path::Path;

#[test]
fn every_mime_chunking_seed_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mime_chunking");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("seed");
        fuzz_checks::mime_chunking::run(&bytes)
            .unwrap_or_else(|f| panic!("{}: {f}", path.display()));
        // Every single cut of the message, too.
        let skip = 1 + 2 * usize::from(bytes[0]);
        let message = &bytes[skip.min(bytes.len())..];
        for cut in 0..=message.len() {
            fuzz_checks::mime_chunking::check(message, &[cut])
                .unwrap_or_else(|f| panic!("{} cut at {cut}: {f}", path.display()));
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} seeds");
}
