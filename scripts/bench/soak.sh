#!/usr/bin/env bash
# Bounded soak of the Rust milter (target/release/examples/action_milter): does its
# memory stay flat under sustained load? Writes target/bench/soak-minimilter.json and
# regenerates docs/performance.md from everything in target/bench/ (the tables of an
# earlier scripts/bench/run.sh are kept; this only adds or replaces the soak section).
#
# Phases (one `minimilter bench` each, 32 connections, on a unix socket, each ended by
# its --duration), with the milter's VmRSS sampled every 10 s throughout:
#   1mib        1 MiB bodies,  60 s  (RSS under 1 MiB load: peak and steady)
#   2kib        2 KiB bodies, 300 s  (the 5-minute soak)
#   1mib-again  1 MiB bodies,  60 s  (same load as the first phase, after the soak)
# then 10 s idle and a last sample. About 7.5 minutes in all.
#
# Usage: scripts/bench/soak.sh            (also: scripts/bench/run.sh --soak-only)
# Environment: SOAK_CONNS (32), SOAK_SECONDS (300), SOAK_BIG_SECONDS (60),
#              SOAK_INTERVAL (10), SOAK_NO_BUILD=1 (skip cargo build), SOAK_NO_REPORT=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=/usr/bin/python3
OUT=target/bench
DOC=docs/performance.md
CONNS=${SOAK_CONNS:-32}
SECS=${SOAK_SECONDS:-300}
BIG_SECS=${SOAK_BIG_SECONDS:-60}
INTERVAL=${SOAK_INTERVAL:-10}

if [ -z "${SOAK_NO_BUILD:-}" ]; then
    echo "== building"
    cargo build --release -p minimilter -p minimilter-cli --examples --bins
fi
mkdir -p "$OUT"
RUST_MILTER=target/release/examples/action_milter
export BENCH_BIN=target/release/minimilter

SOCKDIR=$(mktemp -d /tmp/minimilter-soak.XXXXXX)
SOCK=$SOCKDIR/minimilter.sock
MILTER_PID=""
cleanup() {
    if [ -n "$MILTER_PID" ]; then
        kill "$MILTER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$MILTER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$MILTER_PID" 2>/dev/null || true
        wait "$MILTER_PID" 2>/dev/null || true
    fi
    rm -rf "$SOCKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RUST_LOG=warn "$RUST_MILTER" --listen "unix:$SOCK" --socket-mode 600 \
    --max-connections 1000 2>>"$OUT/soak-minimilter.log" &
MILTER_PID=$!
for _ in $(seq 100); do
    [ -S "$SOCK" ] && break
    kill -0 "$MILTER_PID" 2>/dev/null || break
    sleep 0.1
done
[ -S "$SOCK" ] || { echo "soak.sh: the milter did not start" >&2; exit 1; }
sleep 0.5

echo "== soak: $CONNS connections, 1 MiB ${BIG_SECS} s, 2 KiB ${SECS} s, 1 MiB ${BIG_SECS} s"
"$PY" scripts/bench/measure.py soak --pid "$MILTER_PID" --milter minimilter \
    --socket "unix:$SOCK" --conns "$CONNS" --interval "$INTERVAL" \
    --phase "1mib:1048576:$BIG_SECS" --phase "2kib:2048:$SECS" \
    --phase "1mib-again:1048576:$BIG_SECS" \
    --command "scripts/bench/soak.sh" --out "$OUT/soak-minimilter.json"

if [ -z "${SOAK_NO_REPORT:-}" ]; then
    "$PY" scripts/bench/measure.py report --dir "$OUT" --out "$DOC"
    echo "== wrote $DOC"
fi
