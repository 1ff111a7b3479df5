#!/usr/bin/env bash
# The slowest option negotiation of the gate milters, run after run: ours
# (crates/minimilter/examples/pgp_gate_milter.rs) and indymilter's
# (scripts/bench/indymilter_gate), a fresh milter per round, each measured by
# `minimilter bench` in four runs: 32 connections twice (the first run of the
# process, "cold", then again, "warm"), a new connection per message (32 at a
# time), and 32 connections with 1 MiB bodies. Each line also gives the VM's
# steal time during the run (/proc/stat, 10 ms ticks): a host that takes the
# vCPUs away holds every connection at once.
#
#   scripts/bench/run.sh --gate-only   (or just its build: see build_gate there)
#   scripts/bench/negotiation_tail.sh [ROUNDS] [SECONDS]
#
# Bounded: ROUNDS (default 5) x 2 milters x 4 runs of SECONDS (default 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-5}
S=${2:-4}
OUT=target/bench
SOCK=$PWD/$OUT/negotiation-tail.sock
INDY=$OUT/indymilter-target/release/indymilter_gate
for b in target/release/minimilter target/release/examples/pgp_gate_milter "$INDY"; do
    [ -x "$b" ] || { echo "negotiation_tail.sh: $b is missing; build as scripts/bench/run.sh's build_gate does" >&2; exit 2; }
done
mkdir -p "$OUT"
/usr/bin/python3 scripts/bench/gate_messages.py "$OUT"
steal() { awk '/^cpu /{print $9}' /proc/stat; }
run() { # LABEL BENCH-ARGS...
    local label=$1 s0 s1 res
    shift
    s0=$(steal)
    res=$(target/release/minimilter bench "unix:$SOCK" --conns 32 --messages 100000000 \
        --duration "$S" --expect accept --json --quiet "$@" |
        /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print('%8.3f ms slowest of %6d negotiations, %7d msgs/s' % (d['slowest_negotiation_ms'], d['negotiations'], int(d['msgs_per_s'])))")
    s1=$(steal)
    echo "round $r $m $label: $res; steal $((s1 - s0)) ticks; load $(cut -d' ' -f1 /proc/loadavg)"
}
for r in $(seq "$R"); do
    for m in minimilter indymilter; do
        rm -f "$SOCK"
        if [ $m = minimilter ]; then
            RUST_LOG=warn target/release/examples/pgp_gate_milter --listen "unix:$SOCK" \
                --socket-mode 666 --max-connections 20000 2>/dev/null &
        else
            "$INDY" "unix:$SOCK" 2>/dev/null &
        fi
        pid=$!
        for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
        sleep 1
        run g32-cold --message "$OUT/gate-2k.eml"
        run g32-warm --message "$OUT/gate-2k.eml"
        run gnew --message "$OUT/gate-2k.eml" --new-connection-per-message
        run gbig --message "$OUT/gate-1m.eml"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
