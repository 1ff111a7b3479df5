#!/usr/bin/env bash
# User-space instructions per message of a milter, counted by callgrind
# (independent of machine load; kernel work is not counted — see
# scripts/bench/syscalls.py for that). Bounded: CONNS x MESSAGES messages.
#
#   scripts/bench/instructions.sh MILTER_BINARY [BENCH_BINARY] [CONNS] [MESSAGES]
#
# MESSAGE=FILE sends that message (e.g. target/bench/gate-2k.eml for the
# gate milter) instead of bench's generated one; NEW_CONN=1 opens a connection
# per message; KEEP=DIR keeps the callgrind
# output there for callgrind_annotate.
set -euo pipefail
MILTER=$1
BENCH=${2:-target/release/minimilter}
CONNS=${3:-8}
MESSAGES=${4:-250}
MSG=()
[ -n "${MESSAGE:-}" ] && MSG=(--message "$MESSAGE")
# NEW_CONN=1: a new connection per message (connect, negotiate, one message, QUIT).
[ -n "${NEW_CONN:-}" ] && MSG+=(--new-connection-per-message)
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$DIR"/cg.*.* "$KEEP"/; rm -rf "$DIR"' EXIT
RUST_LOG=warn valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$DIR/cg.%p" \
    "$MILTER" --listen "unix:$DIR/s.sock" 2>"$DIR/vg.log" &
PID=$!
for _ in $(seq 200); do [ -S "$DIR/s.sock" ] && break; sleep 0.1; done
# Warm up (negotiation paths, buffers, lazy statics), then count from zero.
"$BENCH" bench "unix:$DIR/s.sock" --conns "$CONNS" --messages 20 --duration 60 --expect accept "${MSG[@]}" --quiet >/dev/null
callgrind_control -z "$PID" >/dev/null 2>&1
N=$("$BENCH" bench "unix:$DIR/s.sock" --conns "$CONNS" --messages "$MESSAGES" --duration 120 \
    --expect accept "${MSG[@]}" --json --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')
callgrind_control -d "$PID" >/dev/null 2>&1
sleep 1
IR=$(cat "$DIR"/cg.*.* 2>/dev/null | awk '/^summary:/ {s+=$2} END {print s}')
echo "{\"milter\": \"$(basename "$MILTER")\", \"messages\": $N, \"instructions_per_msg\": $((IR / N))}"
