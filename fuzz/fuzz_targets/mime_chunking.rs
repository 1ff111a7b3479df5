//! See `fuzz_checks::mime_chunking` for the input layout and the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_checks::or_crash(fuzz_checks::mime_chunking::run(data));
});
