#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (Postfix,
# swaks, miltertest, libmilter headers from Debian) when missing, then checks
# formatting and lints and runs every test: the fast set (scripts/test-fast.sh)
# and then the tests marked `#[ignore = "needs <program>"]`, including the ones
# that start a real Postfix on 127.0.0.1, and the Debian package test
# (scripts/package.sh builds the packages first; the test installs them into
# this machine and purges them again). Last, every cargo-fuzz target runs
# through scripts/fuzz.sh on the stable toolchain, deterministically (a fixed
# -seed and -runs per target; FUZZ=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
# One build from a clean tree gains nothing from incremental compilation, and
# its caches were 1.5 GB of the target directory (about 2.4 GB stays, with
# fuzz/target). A developer's own `cargo test` keeps it.
export CARGO_INCREMENTAL=0
# Property tests (proptest) take their seed from here unless a test fixes its
# own: the same code gives the same result on every run. Exploration with
# random seeds is `cargo test` (or scripts/test-fast.sh) by hand, and a
# finding joins the tests with its fix.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261206}"

if [ "$(id -u)" -eq 0 ]; then
    ./scripts/install-test-deps.sh
else
    echo "note: not root; assuming Postfix and friends are installed (run scripts/install-test-deps.sh as root)" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# First the fast set, with the external programs hidden: a test that needs
# one but is not marked `#[ignore = "needs ..."]` fails here. Then every
# marked test, where a missing program is a failure, not a skip.
echo "== fast set: cargo test --workspace (scripts/test-fast.sh --hermetic)"
./scripts/test-fast.sh --hermetic
# The Debian packages, built once (release) for crates/packaging's package
# test below, which installs them into this machine, runs them behind
# Postfix and purges them again. Only the .debs are tested, so the release
# build goes into a directory of its own and is removed once they are
# written (--clean): it would be the largest part of the disk a clone takes
# after this command.
echo "== scripts/package.sh --clean (Debian packages into target/debian/)"
./scripts/package.sh --clean
echo "== tests that need external programs: cargo test --workspace -- --ignored"
# (Benchmarks, also marked ignored, are run by hand: docs/performance.md.)
cargo test --workspace --locked --no-fail-fast -- --ignored 2>&1 | tee target/test-output.txt

# The fuzz targets' checks already ran above on every committed seed
# (crates/fuzz-checks/tests/corpus_replay.rs) and, on generated inputs, in
# milter-proto's proptests; this adds coverage-guided fuzzing on top,
# deterministic (fixed -seed and -runs per target, see scripts/fuzz.sh):
# the same code gives the same result. Random, longer fuzzing is
# `scripts/fuzz.sh --explore`, run by hand.
fuzz_skipped() {
    echo "== cargo-fuzz SKIPPED ($1): only the stable corpus replay" \
         "(cargo test -p fuzz-checks --test corpus_replay) and the proptests ran" >&2
}
if [ "${FUZZ:-1}" = 0 ]; then
    fuzz_skipped "FUZZ=0"
else
    echo "== scripts/fuzz.sh (deterministic: fixed seed and runs)"
    status=0
    ./scripts/fuzz.sh || status=$?
    case $status in
        0) ;;
        77) fuzz_skipped "cargo-fuzz cannot run on this machine, see above" ;;
        *) exit "$status" ;;
    esac
fi
