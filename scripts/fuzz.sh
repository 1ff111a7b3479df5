#!/usr/bin/env bash
# Runs the cargo-fuzz targets and fails on a crash, printing the reproducer.
#
# Two modes:
#
#   scripts/fuzz.sh            deterministic (scripts/test.sh, CI): each
#                              target replays its committed corpus, then
#                              fuzzes with a fixed -seed for a fixed -runs.
#                              The same code and toolchain give the same
#                              result, run after run.
#   scripts/fuzz.sh --explore  exploratory: random seeds, time-bounded
#                              (FUZZ_SECONDS per target). Run it by hand, and
#                              after every change to a parser; what it finds
#                              goes into fuzz/corpus/<target>/ with its fix,
#                              so the deterministic run replays it from then on.
#
# Environment:
#   FUZZ_TARGETS    space-separated subset (default: all seven)
#   FUZZ_JOBS       targets fuzzed at once, one process each (default 2: CI
#                   has 2 cores)
#   FUZZ_TOOLCHAIN  stable (default) or nightly (AddressSanitizer)
#   deterministic mode only:
#   FUZZ_SEED       libFuzzer -seed (default 20261206)
#   FUZZ_RUNS       -runs for every target (default: per target, below,
#                   about 20-40 s each on 2 shared cores)
#   FUZZ_MAX_LEN    -max_len (default 4096, the length libFuzzer chose by
#                   itself while every corpus file was shorter; see below)
#   explore mode only:
#   FUZZ_SECONDS    seconds per target (default 300)
#
# What keeps the deterministic run deterministic (libFuzzer's options):
#   - -seed fixed and -runs fixed, never -max_total_time (how far a run gets
#     in N seconds depends on the machine and its load);
#   - one process per target: no -jobs/-workers/-fork (several processes
#     share finds through the corpus directory as timing allows);
#   - -reload=0: by default libFuzzer re-reads the corpus directory every
#     second;
#   - the committed corpus goes in through -seed_inputs, as a list sorted by
#     name: a directory is read in readdir order, which differs between file
#     systems (ext4 hashes names with a per-file-system seed), and libFuzzer
#     breaks ties in its size order by that order;
#   - new inputs go to an empty scratch directory (libFuzzer writes to the
#     first one), never into fuzz/corpus;
#   - -use_cmp=0 (and -use_memmem=0): libFuzzer records the operands of
#     compares the code makes and splices them into inputs; some are
#     pointers (slice iterators compare addresses), which differ with every
#     run under ASLR, so two runs with the same seed drifted apart (measured:
#     2274 vs 2288 new inputs in 150,000 runs of mailman_address; with
#     -use_cmp=0 the same 2494 both times). Explore mode keeps it on;
#   - no -use_value_profile, no -dict, no -entropic_scale_per_exec_time
#     (the default, off): nothing that depends on time or addresses.
#   -timeout (an input running 30 s is a hang) and -rss_limit_mb are
#   time/memory-based, but only fail on a real hang or blow-up.
# And outside libFuzzer: the fuzzer binary runs directly (not through
# `cargo fuzz run`, which adds cargo's environment) under `env -i` with a
# fixed environment and fixed argument lengths, and with address-space
# randomization off (`setarch -R`). The kernel places the initial stack at
# a random 16-byte offset, so a stack buffer is 32-byte aligned in about
# half the runs; instrumented code with alignment-dependent paths (SIMD
# searches, word-at-a-time loops that first walk to an aligned address)
# then covers different edges. Measured: pgp_detect's 100,000 runs through
# this script ended at cov 4049 in some runs and 3921 in others, the same
# build and command; with randomization off, the same every time. The
# environment and arguments are fixed because their size moves the stack
# too. Where the kernel refuses the personality (some container seccomp
# profiles), the script says so and runs with randomization.
#
# And what keeps it the same in every clone, wherever it lies: the build and
# the runs go through one fixed path, a link $FUZZ_LINK
# (/tmp/minimilter-fuzz-root) to this clone, held under a lock while this
# script runs. The crates the targets use (../crates/*) lie outside the fuzz
# workspace, and for such path dependencies cargo hashes their absolute path
# into -C metadata, so symbol names and with them the order of functions
# and coverage counters in the binary changed with the clone's path;
# libFuzzer's choices follow the counters' order (measured: milter_session
# found 1294 new inputs in one clone, 1297 in another at another path).
# Built through the same link, two clones at different paths gave the same
# code, data and counter sections (only the build id differs, from debug
# info naming the real directory) and the same fuzz results.
#
# On stable, cargo-fuzz 0.13 builds and runs with `--sanitizer none` (the
# default AddressSanitizer needs `-Zsanitizer`, nightly only); coverage
# instrumentation, libFuzzer and debug assertions are all there.
#
# Exit status: 0 no crash, 1 a crash (or a build failure), 2 bad usage, 77
# cargo-fuzz cannot run on this machine (no C++ compiler for libFuzzer, or
# cargo-fuzz cannot be installed) -- scripts/test.sh reports that as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

mode=deterministic
while [ $# -gt 0 ]; do
    case "$1" in
        --explore) mode=explore ;;
        -h | --help) usage; exit 0 ;;
        *) echo "fuzz.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# -runs per target for the deterministic mode: 18 to 36 s each on an idle
# 2-core machine, 110 s for all seven two at a time; see README.md, "Fuzzing".
declare -A runs_of=(
    [frame_decoder]=3000000
    [milter_session]=1000000
    [mta_session]=5000000
    [pgp_detect]=500000
    [mailman_address]=500000
    [payload_chunking]=1000000
    [mime_chunking]=500000
)

# -max_len of the deterministic mode: left to itself libFuzzer lets inputs
# grow to the largest corpus file (at least 4096), so one large reproducer (a ZIP inside
# ciphertext is 41 KB) would let every mutation grow that long and cut the
# executions per second tenfold. Longer corpus files are read up to this
# length here; `cargo test` (corpus_replay.rs) replays them whole.
max_len=${FUZZ_MAX_LEN:-4096}

jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-"frame_decoder milter_session mta_session pgp_detect mailman_address payload_chunking mime_chunking"}
toolchain=${FUZZ_TOOLCHAIN:-stable}
seed=${FUZZ_SEED:-20261206}
seconds=${FUZZ_SECONDS:-300}
case "$toolchain" in
    stable) sanitizer=none ;;
    nightly) sanitizer=address ;;
    *) echo "FUZZ_TOOLCHAIN must be stable or nightly, not $toolchain" >&2; exit 2 ;;
esac
for t in $targets; do
    if [ -z "${runs_of[$t]:-}" ]; then
        echo "fuzz.sh: unknown target $t" >&2
        exit 2
    fi
done

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

# The fixed process layout of the deterministic runs (see the top).
fixed_layout=(env -i RUST_BACKTRACE=1)
if [ "$toolchain" = nightly ]; then
    fixed_layout+=(ASAN_OPTIONS=detect_odr_violation=0) # as cargo fuzz run sets it
fi
if setarch "$(uname -m)" -R true 2>/dev/null; then
    fixed_layout=(setarch "$(uname -m)" -R "${fixed_layout[@]}")
elif [ "$mode" = deterministic ]; then
    echo "fuzz.sh: warning: this kernel refuses setarch -R (no address-space randomization);" >&2
    echo "fuzz.sh: coverage counts may differ from run to run (never whether a committed input crashes)" >&2
fi
host=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')

link=${FUZZ_LINK:-/tmp/minimilter-fuzz-root}
exec 9>"$link.lock"
if ! flock -n 9; then
    echo "== waiting for another fuzz.sh to release $link"
    flock 9
fi
ln -sfn "$(pwd -P)" "$link"
fuzz_dir=$link/fuzz

echo "== cargo +$toolchain fuzz build -s $sanitizer --fuzz-dir $fuzz_dir (all targets)"
start=$(date +%s)
cargo "+$toolchain" fuzz build -s "$sanitizer" --fuzz-dir "$fuzz_dir"
echo "built in $(( $(date +%s) - start )) s"

work=$(mktemp -d /tmp/minimilter-fuzz.XXXXXX)
if [ "$mode" = deterministic ]; then
    trap 'rm -rf "$work"' EXIT
fi

run_one() {
    local t=$1
    mkdir -p "$work/$t"
    if [ "$mode" = deterministic ]; then
        # The committed corpus, sorted by name, comma-separated.
        local list=() f
        while IFS= read -r f; do
            case "$f" in *,*) echo "fuzz.sh: a comma in corpus file $f" >&2; return 1 ;; esac
            list+=("fuzz/corpus/$t/$f")
        done < <(LC_ALL=C ls -A "fuzz/corpus/$t" | LC_ALL=C sort)
        (IFS=,; printf '%s' "${list[*]}") >"$work/$t.seeds"
        # timeout is the backstop should libFuzzer itself hang. The binary
        # was built above; run it as `cargo fuzz run` would, minus cargo's
        # environment (see the top).
        mkdir -p "$fuzz_dir/artifacts/$t"
        timeout --kill-after=10 "${FUZZ_BACKSTOP:-900}" "${fixed_layout[@]}" \
            "$fuzz_dir/target/$host/release/$t" -artifact_prefix="$fuzz_dir/artifacts/$t/" "$work/$t" \
            -seed="$seed" -runs="${FUZZ_RUNS:-${runs_of[$t]}}" -max_len="$max_len" \
            -seed_inputs="@$work/$t.seeds" -reload=0 -use_cmp=0 -use_memmem=0 \
            -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
            >"$work/$t.log" 2>&1
    else
        # No -seed: libFuzzer picks one and prints it ("INFO: Seed: N").
        # The binary built above, run directly: through `cargo fuzz run`, a
        # source file edited meanwhile made cargo rebuild inside the time
        # budget, and the run was killed and reported as a crash.
        mkdir -p "$fuzz_dir/artifacts/$t"
        timeout --kill-after=10 "$(( seconds + 120 ))" \
            "$fuzz_dir/target/$host/release/$t" -artifact_prefix="$fuzz_dir/artifacts/$t/" \
            "$work/$t" "fuzz/corpus/$t" \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            >"$work/$t.log" 2>&1
    fi
}

# One line of what a run did: executed inputs, the last status line's
# coverage (cov: edges, ft: features, corp: inputs/bytes) and new inputs.
summary() {
    local log=$1 runs done_line new secs
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
    new=$(grep -Eo 'stat::new_units_added: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
    done_line=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)
    secs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -Eo 'in [0-9]+' | grep -Eo '[0-9]+' || echo '?')
    echo "$runs inputs in $secs s, $done_line, $new new"
}

if [ "$mode" = deterministic ]; then
    echo "== fuzzing ${targets// /, }: -seed=$seed, fixed -runs, $jobs at a time"
else
    echo "== exploring ${targets// /, } for $seconds s each with random seeds, $jobs at a time"
fi
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
        line="$t: no crash: $(summary "$work/$t.log")"
        if [ "$mode" = explore ]; then
            line+=", seed $(grep -Eo 'Seed: [0-9]+' "$work/$t.log" | head -1 | grep -Eo '[0-9]+')"
        fi
        echo "$line"
    else
        failed+=("$t")
        echo "$t: FAILED" >&2
        grep -E 'invariant broken|panicked|ERROR: libFuzzer|SUMMARY|Test unit written|Seed:' "$work/$t.log" >&2 || tail -n 40 "$work/$t.log" >&2
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
if [ "$mode" = explore ]; then
    echo "new corpus inputs (not committed) are in $work/<target>/; logs in $work/<target>.log"
    echo "a crash's reproducer belongs in fuzz/corpus/<target>/, committed with its fix"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in ${failed[*]}" >&2
    exit 1
fi
