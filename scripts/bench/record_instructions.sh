#!/usr/bin/env bash
# User-space instructions per message of `minimilter record`, counted by
# callgrind per thread (independent of machine load): the relay (its
# thread per connection, the runtime and the load watcher, those that ended included)
# and the transcript writer thread. Bounded: CONNS x MESSAGES.
#
#   scripts/bench/record_instructions.sh [RECORD_BINARY] [MILTER_BINARY] [CONNS] [MESSAGES] [BODIES]
#
# RECORD_BINARY is the `minimilter` binary whose `record` is measured (load
# comes from target/release/minimilter bench, BENCH=... to change);
# MILTER_BINARY defaults to the action milter (6 awaited steps per message).
# RECORD_ARGS="..." adds options to `record` (e.g. "--spin-us 200"; a spin's
# polls count as instructions too).
set -euo pipefail
RECORD=${1:-target/release/minimilter}
MILTER=${2:-target/release/examples/action_milter}
CONNS=${3:-1}
MESSAGES=${4:-2000}
BODIES=${5:-keep}
BENCH=${BENCH:-target/release/minimilter}
DIR=$(mktemp -d)
trap 'kill "$MPID" "$PID" 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$DIR"/cg.* "$KEEP"; rm -rf "$DIR"' EXIT
RUST_LOG=warn "$MILTER" --listen "unix:$DIR/m.sock" 2>/dev/null &
MPID=$!
for _ in $(seq 100); do [ -S "$DIR/m.sock" ] && break; sleep 0.1; done
RUST_LOG=warn valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$DIR/cg.%p" \
    "$RECORD" record --listen "unix:$DIR/p.sock" --to "unix:$DIR/m.sock" --dir "$DIR/t" \
    --bodies "$BODIES" ${RECORD_ARGS:-} 2>"$DIR/vg.log" &
PID=$!
for _ in $(seq 300); do [ -S "$DIR/p.sock" ] && break; sleep 0.1; done
# The writer runs behind the relay (more so under valgrind): wait until the
# transcript count stops changing before zeroing and before dumping.
settle() {
    local before=-1 now
    for _ in $(seq 120); do
        now=$(find "$DIR/t" -name '*.jsonl' 2>/dev/null | wc -l)
        [ "$now" = "$before" ] && return
        before=$now
        sleep 2
    done
}
"$BENCH" bench "unix:$DIR/p.sock" --conns "$CONNS" --messages 20 --duration 60 --expect accept --quiet >/dev/null
settle
callgrind_control -z "$PID" >/dev/null 2>&1
N=$("$BENCH" bench "unix:$DIR/p.sock" --conns "$CONNS" --messages "$MESSAGES" --duration 300 \
    --expect accept --json --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')
settle
callgrind_control -d "$PID" >/dev/null 2>&1
sleep 1
python3 - "$DIR" "$N" "$RECORD" <<'PY'
import glob, json, sys
d, n = sys.argv[1], int(sys.argv[2])
per = {}
for f in glob.glob(d + "/cg.*"):
    text = open(f, errors="replace").read()
    total = sum(int(l.split()[1]) for l in text.splitlines() if l.startswith("summary:"))
    # The writer thread is the one that ran the writer's loop (a store
    # call can be inlined away; the loop's symbol stays).
    name = "writer" if "record::writer::run" in text else "relay"
    per[name] = per.get(name, 0) + total
print(json.dumps({"record": sys.argv[3], "messages": n,
                  "instructions_per_msg": {k: v // n for k, v in per.items()},
                  "total_per_msg": sum(per.values()) // n}))
PY
