//! The invariants the fuzz targets check, in one place.
//!
//! Each module holds one target's checks: a structured check (called by the
//! property tests with generated values) and a `run(bytes)` entry that turns
//! arbitrary bytes into the same structure (called by the cargo-fuzz target
//! and by `tests/corpus_replay.rs`, which replays the committed seed corpus on
//! the stable toolchain). So a seed, a fuzzer find and a proptest case are all
//! judged by the same code.
//!
//! A check returns [`Failure`] instead of panicking so that proptest can
//! shrink; the fuzz targets turn a failure into a panic, which is what
//! libFuzzer records as a crash.

pub mod frame_decoder;
mod input;
#[cfg(feature = "mailman")]
pub mod mailman_address;
pub mod milter_session;
#[cfg(feature = "pgp")]
pub mod mime_chunking;
pub mod mta_session;
#[cfg(feature = "pgp")]
pub mod payload_chunking;
#[cfg(feature = "pgp")]
pub mod pgp_detect;
pub mod seeds;

pub use input::Input;

/// A broken invariant, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// The result of a check.
pub type Outcome = Result<(), Failure>;

/// Fails the check with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Failure(format!(
                "{} (invariant: {})",
                format!($($fmt)+),
                stringify!($cond)
            )));
        }
    };
}

/// Fails the check unless both sides are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        $crate::ensure_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($fmt:tt)+) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::Failure(format!(
                        "{} != {}: {:?} != {:?} {}",
                        stringify!($left),
                        stringify!($right),
                        l,
                        r,
                        format!($($fmt)+)
                    )));
                }
            }
        }
    };
}

/// The fuzz targets' entry: a broken invariant is a crash.
pub fn or_crash(outcome: Outcome) {
    if let Err(f) = outcome {
        panic!("invariant broken: {f}");
    }
}
