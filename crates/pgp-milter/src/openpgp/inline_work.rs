//! The work allowance of a step judged inline, on an async worker.
//!
//! Reading a message costs time proportional to its bytes, except where
//! data is amplified: Compressed Data expands (up to the message's
//! decompression budget, 32 MiB, from a few hundred octets). A small
//! message is therefore judged inline only under an allowance of
//! decompressed octets: every decompressor (the payload reader's and
//! rpgp's) charges what it produces, and the first octet over the
//! allowance stops the step with an error and marks it *heavy*. The
//! caller then throws the step's result away and judges the message again
//! from its start on a blocking thread, where only the message budget
//! applies. The verdict never depends on the allowance; only the thread
//! the work runs on does.
//!
//! The allowance lives in a thread-local for the same reason the budget
//! does: a step runs synchronously on one thread, and the decompressors
//! sit deep below the detector's entry points.

use std::cell::Cell;

thread_local! {
    /// Decompressed octets the current inline step may still produce
    /// (`None`: no inline step on this thread, nothing is charged).
    static LEFT: Cell<Option<u64>> = const { Cell::new(None) };
    /// Set once the current inline step went over its allowance.
    static HEAVY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as an inline step with `allowance` decompressed octets;
/// returns its result and whether it went over the allowance (then the
/// result is meaningless and the step must be redone off the worker).
/// Steps nest: the outer step's state comes back afterwards, panic or not.
pub fn run<T>(allowance: u64, f: impl FnOnce() -> T) -> (T, bool) {
    struct Restore(Option<u64>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEFT.with(|l| l.set(self.0));
            HEAVY.with(|h| h.set(self.1));
        }
    }
    let _restore = Restore(
        LEFT.with(|l| l.replace(Some(allowance))),
        HEAVY.with(|h| h.replace(false)),
    );
    let t = f();
    (t, HEAVY.with(Cell::get))
}

/// Charges `n` decompressed octets to the current inline step, if any.
/// False once the step is over its allowance: the caller stops with an
/// error (whose text never matters: the step is redone).
pub fn charge(n: u64) -> bool {
    LEFT.with(|l| match l.get() {
        None => true,
        Some(left) if n <= left && !HEAVY.with(Cell::get) => {
            l.set(Some(left - n));
            true
        }
        Some(_) => {
            HEAVY.with(|h| h.set(true));
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_only_inside_a_step_and_marks_it_heavy_past_the_allowance() {
        // Outside a step nothing is limited.
        assert!(charge(u64::MAX));
        let ((), heavy) = run(10, || {
            assert!(charge(4));
            assert!(charge(6));
            assert!(!charge(1));
            // Once heavy, stays heavy, even for nothing more.
            assert!(!charge(0));
        });
        assert!(heavy);
        let (n, heavy) = run(10, || {
            // A nested step has its own allowance; the outer one's comes back.
            let ((), inner) = run(1, || assert!(!charge(2)));
            assert!(inner);
            assert!(charge(10));
            7
        });
        assert_eq!((n, heavy), (7, false));
        assert!(charge(u64::MAX));
    }
}
