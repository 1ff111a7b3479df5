#!/bin/bash
# Milter CPU per small message for pgp-milter (docs/performance.md, (g)):
# starts the given pgp-milter binary (embedded defaults, decision lines to
# /dev/null), then for the two messages of scripts/bench/pgp_messages.py
# (made in DIR beforehand) one 5 s warm-up and three 10 s runs of
# `minimilter bench` at 32 connections; milter CPU is utime+stime from
# /proc/PID/stat before and after each run, divided by the messages done.
#
#   cargo build --release -p pgp-milter -p minimilter-cli
#   /usr/bin/python3 scripts/bench/pgp_messages.py --out-dir DIR --recipient bob@example.org
#   scripts/bench/pgp-small-cpu.sh target/release/pgp-milter DIR
#
# CPU time here depends on the machine's load; the instructions per message
# (user space, callgrind) do not, and are what tells whether a change helps:
#
#   MESSAGE=DIR/pgp-msg-encrypted.eml scripts/bench/instructions.sh target/release/pgp-milter
set -eu
BIN=$1
DIR=$2
CLI=${MINIMILTER:-$(dirname "$0")/../../target/release/minimilter}
SOCK=$DIR/pgp-small-cpu.sock
rm -f "$SOCK"
"$BIN" --listen "unix:$SOCK" --socket-mode 666 >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
for kind in encrypted plain; do
    expect=accept
    [ "$kind" = plain ] && expect=reject
    args=(bench "unix:$SOCK" --conns 32 --messages 100000 --message "$DIR/pgp-msg-$kind.eml"
        --rcpt bob@example.org --expect "$expect" --json --quiet)
    "$CLI" "${args[@]}" --duration 5 >/dev/null
    for run in 1 2 3; do
        c0=$(cpu)
        out=$("$CLI" "${args[@]}" --duration 10)
        c1=$(cpu)
        echo "$out" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
kind, run, ticks, tck = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
us = ticks / tck * 1e6 / max(j["messages"], 1)
n, rate, p50, bad = j["messages"], j["msgs_per_s"], j["latency_ms"]["p50"], j["unexpected_verdicts"]
print(f"{kind} run {run}: {n} messages, {rate:.0f} msgs/s, p50 {p50} ms, "
      f"unexpected {bad}, milter CPU {us:.1f} us/msg")
' "$kind" "$run" "$((c1 - c0))" "$TCK"
    done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(grep VmHWM /proc/$PID/status)"
