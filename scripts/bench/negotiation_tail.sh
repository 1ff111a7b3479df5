#!/usr/bin/env bash
# The slowest option negotiation and the CPU per message of the gate
# milters, run after run: ours (crates/minimilter/examples/pgp_gate_milter.rs),
# indymilter's (scripts/bench/indymilter_gate) and the floor
# (scripts/bench/floor_milter.c: the same conversation answered by one
# epoll thread in C with no policy, the least any milter can cost here).
# A fresh milter per round, each measured by `minimilter bench` in five runs:
# 32 connections twice (the first run of the process, "cold", then again,
# "warm"), a new connection per message (32 at a time), 32 connections with
# 1 MiB bodies, and one connection. Each line also gives the milter's CPU per
# message (utime+stime of the whole process, /proc/PID/stat) and the VM's
# steal time during the run (/proc/stat, 10 ms ticks): a host that takes the
# vCPUs away holds every connection at once.
#
#   scripts/bench/run.sh --gate-only   (or just its build: see build_gate there)
#   scripts/bench/negotiation_tail.sh [ROUNDS] [SECONDS]
#
# Bounded: ROUNDS (default 5) x 3 milters x 5 runs of SECONDS (default 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-5}
S=${2:-4}
OUT=target/bench
SOCK=$PWD/$OUT/negotiation-tail.sock
INDY=$OUT/indymilter-target/release/indymilter_gate
FLOOR=$OUT/floor_milter
mkdir -p "$OUT"
cc -O2 -o "$FLOOR" scripts/bench/floor_milter.c -lpthread
for b in target/release/minimilter target/release/examples/pgp_gate_milter "$INDY"; do
    [ -x "$b" ] || { echo "negotiation_tail.sh: $b is missing; build as scripts/bench/run.sh's build_gate does" >&2; exit 2; }
done
/usr/bin/python3 scripts/bench/gate_messages.py "$OUT"
steal() { awk '/^cpu /{print $9}' /proc/stat; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
run() { # LABEL CONNS BENCH-ARGS...
    local label=$1 conns=$2 s0 s1 t0 t1 res
    shift 2
    s0=$(steal)
    t0=$(ticks)
    res=$(target/release/minimilter bench "unix:$SOCK" --conns "$conns" --messages 100000000 \
        --duration "$S" --expect accept --json --quiet "$@")
    t1=$(ticks)
    s1=$(steal)
    res=$(echo "$res" | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); m=max(d['messages'],1); print('%8.3f ms slowest of %6d negotiations, %7d msgs/s, milter CPU %5.1f us/msg' % (d['slowest_negotiation_ms'], d['negotiations'], int(d['msgs_per_s']), ($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / m))")
    echo "round $r $m $label: $res; steal $((s1 - s0)) ticks; load $(cut -d' ' -f1 /proc/loadavg)"
}
for r in $(seq "$R"); do
    for m in minimilter indymilter floor; do
        rm -f "$SOCK"
        if [ $m = minimilter ]; then
            RUST_LOG=warn target/release/examples/pgp_gate_milter --listen "unix:$SOCK" \
                --socket-mode 666 --max-connections 20000 2>/dev/null &
        elif [ $m = indymilter ]; then
            "$INDY" "unix:$SOCK" 2>/dev/null &
        else
            "$FLOOR" "$SOCK" 2>/dev/null &
        fi
        pid=$!
        for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
        sleep 1
        run g32-cold 32 --message "$OUT/gate-2k.eml"
        run g32-warm 32 --message "$OUT/gate-2k.eml"
        run gnew 32 --message "$OUT/gate-2k.eml" --new-connection-per-message
        run gbig 32 --message "$OUT/gate-1m.eml"
        run g1 1 --message "$OUT/gate-2k.eml"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
