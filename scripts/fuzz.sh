#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and fails on a crash,
# printing the reproducer.
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_JOBS      targets fuzzed at once (default 2: CI has 2 cores)
#   FUZZ_TARGETS   space-separated subset (default: all five)
#   FUZZ_TOOLCHAIN stable (default) or nightly
#
# On stable, cargo-fuzz 0.13 builds and runs with `--sanitizer none` (the
# default AddressSanitizer needs `-Zsanitizer`, nightly only); coverage
# instrumentation, libFuzzer and debug assertions are all there. With
# FUZZ_TOOLCHAIN=nightly the targets are built with AddressSanitizer.
#
# Exit status: 0 no crash, 1 a crash (or a build failure), 77 cargo-fuzz
# cannot run on this machine (no C++ compiler for libFuzzer, or cargo-fuzz
# cannot be installed) -- scripts/test.sh reports that as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-"frame_decoder milter_session mta_session pgp_detect mailman_address"}
toolchain=${FUZZ_TOOLCHAIN:-stable}
case "$toolchain" in
    stable) sanitizer=none ;;
    nightly) sanitizer=address ;;
    *) echo "FUZZ_TOOLCHAIN must be stable or nightly, not $toolchain" >&2; exit 2 ;;
esac

if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz.sh: no C++ compiler (c++); libfuzzer-sys cannot build libFuzzer" >&2
    exit 77
fi
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz.sh: toolchain $toolchain is not installed" >&2
    exit 77
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz --locked"
    start=$(date +%s)
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz.sh: cargo-fuzz could not be installed" >&2
        exit 77
    fi
    echo "cargo-fuzz installed in $(( $(date +%s) - start )) s"
fi

# cargo fuzz has no --locked; check fuzz/Cargo.lock the way --locked would,
# so CI never resolves dependencies afresh. It goes stale when a crate the
# targets use (milter-proto, pgp-milter, mailman-milter) gains a dependency.
if ! cargo "+$toolchain" metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
    echo "fuzz.sh: fuzz/Cargo.lock is out of date; refresh it with" >&2
    echo "    cargo update --manifest-path fuzz/Cargo.toml --workspace" >&2
    echo "and commit it" >&2
    exit 1
fi

echo "== cargo +$toolchain fuzz build -s $sanitizer (all targets)"
start=$(date +%s)
cargo "+$toolchain" fuzz build -s "$sanitizer"
echo "built in $(( $(date +%s) - start )) s"

# New corpus entries go to a scratch directory; fuzz/corpus keeps only the
# committed seeds (libFuzzer writes to the first directory only).
work=$(mktemp -d /tmp/minimilter-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

run_one() {
    local t=$1
    mkdir -p "$work/$t"
    # -max_total_time bounds the run; timeout is the backstop should
    # libFuzzer itself hang. -timeout: one input taking 10 s is a hang.
    timeout --kill-after=10 "$(( seconds + 120 ))" \
        cargo "+$toolchain" fuzz run -s "$sanitizer" "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$work/$t.log" 2>&1
}

echo "== fuzzing ${targets// /, } for $seconds s each, $jobs at a time"
start=$(date +%s)
declare -A pids=()
failed=()
for t in $targets; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    run_one "$t" &
    pids[$t]=$!
done
for t in $targets; do
    if wait "${pids[$t]}"; then
        runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$work/$t.log" | grep -Eo '[0-9]+$' || echo '?')
        cov=$(grep -Eo 'cov: [0-9]+' "$work/$t.log" | tail -1 || true)
        echo "$t: no crash in $seconds s ($runs inputs, $cov)"
    else
        failed+=("$t")
        echo "$t: FAILED" >&2
        grep -E 'invariant broken|panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$work/$t.log" >&2 || tail -n 40 "$work/$t.log" >&2
        for a in $(grep -Eo 'fuzz/artifacts/[^ ]+' "$work/$t.log" | sort -u); do
            if [ -f "$a" ]; then
                echo "reproducer $a ($(stat -c %s "$a") bytes), base64:" >&2
                base64 -w 76 "$a" >&2
                echo "reproduce: cargo +$toolchain fuzz run -s $sanitizer $t $a" >&2
                echo "on stable without cargo-fuzz: copy it to fuzz/corpus/$t/ and run cargo test -p fuzz-checks --test corpus_replay" >&2
            fi
        done
    fi
done
echo "fuzzed in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in ${failed[*]}" >&2
    exit 1
fi
