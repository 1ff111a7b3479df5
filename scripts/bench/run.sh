#!/usr/bin/env bash
# Benchmarks three milters doing the same small job and writes docs/performance.md:
#   minimilter  target/release/examples/action_milter (crates/minimilter/src/interop.rs)
#   libmilter   crates/minimilter/tests/interop/libmilter/action_milter.c (Sendmail's libmilter)
#   pymilter    scripts/bench/action_milter.py (Debian's python3-milter)
# Load: `minimilter bench` on unix sockets (scenarios a-d), plus 10,000 idle
# connections (scripts/bench/idle_connections.py), then the Rust milter's memory
# under 1 MiB bodies and a bounded 5-minute soak (scripts/bench/soak.sh), and
# (g) the pgp-milter daemon on small PGP/MIME encrypted and plain messages
# (made by scripts/bench/pgp_messages.py with GnuPG) at 32 connections.
# Raw JSON goes to target/bench/.
#
# Usage (as root on Debian/Ubuntu if packages are missing):
#   scripts/bench/run.sh              everything, about 15.5 minutes
#   scripts/bench/run.sh --no-soak    without the soak, about 8 minutes
#   scripts/bench/run.sh --soak-only  only the soak (about 7.5 minutes); the other
#                                     tables are regenerated from target/bench/
#   scripts/bench/run.sh --pgp-only   only pgp-milter (g), about 1.5 minutes; the other
#                                     tables are regenerated from target/bench/
#   scripts/bench/run.sh --gate-only  only the same-job comparison (minimilter, indymilter,
#                                     libmilter, pymilter all running the PGP gate of
#                                     crates/minimilter/examples/pgp_gate_milter.rs, and the
#                                     floor, scripts/bench/floor_milter.c) and the
#                                     client yardstick (bench against scripts/bench/loadgen.c
#                                     on the null milter), about 12 minutes; rewrites only
#                                     that section of docs/performance.md
# Everything runs locally: unix sockets only, every load run bounded in messages
# and time.
set -euo pipefail
cd "$(dirname "$0")/../.."

SOAK=1
PGP_ONLY=""
GATE_ONLY=""
case "${1:-}" in
--soak-only) exec scripts/bench/soak.sh ;;
--no-soak) SOAK="" ;;
--pgp-only) PGP_ONLY=1 ;;
--gate-only) GATE_ONLY=1 ;;
"") ;;
*)
    echo "usage: $0 [--soak-only | --no-soak | --pgp-only | --gate-only]" >&2
    exit 2
    ;;
esac

STARTED=$(date +%s)
PY=/usr/bin/python3           # Debian's python, which has python3-milter
OUT=target/bench
DOC=docs/performance.md
SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}   # measured run length the counts are sized for
CAP=${CAP:-12}                          # --duration cap of every measured run
REPEAT=${REPEAT:-3}                     # measured runs per milter and scenario
QUIET_WAIT=${QUIET_WAIT:-8}             # wait at most this long for an idle machine per run
IDLE_CONNS=${IDLE_CONNS:-10000}
PGP_CONNS=${PGP_CONNS:-32}
PGP_RCPT=bob@example.org                # envelope recipient, and the key's user ID

# --- what is needed ----------------------------------------------------------
missing=()
[ -n "$GATE_ONLY" ] || command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
if [ -z "$PGP_ONLY" ]; then
    [ -f /usr/include/libmilter/mfapi.h ] || missing+=(libmilter-dev)
    [ -x "$PY" ] && "$PY" -c 'import Milter' 2>/dev/null || missing+=(python3-milter)
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh: missing ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- build ---------------------------------------------------------------------
echo "== building"
mkdir -p "$OUT"
build_gate() {
    cargo build --release -p minimilter-cli --bins
    cargo build --release -p minimilter --example pgp_gate_milter --example null_milter
    # indymilter is the competitor, not part of the workspace: its own lockfile and target.
    CARGO_TARGET_DIR="$PWD/$OUT/indymilter-target" cargo build --release --locked \
        --manifest-path scripts/bench/indymilter_gate/Cargo.toml
    cc -O2 -o "$OUT/pgp_gate_libmilter" scripts/bench/pgp_gate_libmilter.c -lmilter -lpthread
    cc -O2 -o "$OUT/loadgen" scripts/bench/loadgen.c
    cc -O2 -o "$OUT/floor_milter" scripts/bench/floor_milter.c -lpthread
}
if [ -n "$GATE_ONLY" ]; then
    build_gate
elif [ -n "$PGP_ONLY" ]; then
    cargo build --release -p minimilter-cli -p pgp-milter --bins
else
    cargo build --release -p minimilter -p minimilter-cli -p pgp-milter --examples --bins
    cc -O2 -o "$OUT/action_milter_libmilter" \
        crates/minimilter/tests/interop/libmilter/action_milter.c -lmilter -lpthread
    build_gate
fi
RUST_MILTER=target/release/examples/action_milter
C_MILTER=$OUT/action_milter_libmilter
PGP_MILTER=target/release/pgp-milter
export BENCH_BIN=target/release/minimilter
if [ -n "$GATE_ONLY" ]; then
    :
else
rm -f "$OUT"/pgp-*.json "$OUT"/pgp-msg-*.eml
fi
if [ -z "$PGP_ONLY" ] && [ -z "$GATE_ONLY" ]; then
    rm -f "$OUT"/run-*.json "$OUT"/idle-*.json "$OUT"/*.log
    [ -z "$SOAK" ] || rm -f "$OUT"/soak-*.json
fi

# 10,000 connections need more than the usual 1024 descriptors, in the milters and
# in the opener alike (children inherit this limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

[ -n "$PGP_ONLY" ] || [ -n "$GATE_ONLY" ] || "$PY" - "$OUT/meta.json" "$NOFILE" "$SECONDS_PER_RUN" "$CAP" "$REPEAT" "$QUIET_WAIT" <<'EOF'
import json, os, subprocess, sys
def cmd(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"
json.dump({
    "nproc": cmd("nproc"),
    "rustc": cmd("rustc", "--version"),
    "libmilter": cmd("dpkg-query", "-W", "-f=${Version}", "libmilter1.0.1"),
    "pymilter": cmd("dpkg-query", "-W", "-f=${Version}", "python3-milter"),
    "python": cmd("/usr/bin/python3", "--version"),
    "nofile": sys.argv[2],
    "seconds": sys.argv[3],
    "cap": sys.argv[4],
    "repeat": sys.argv[5],
    "quiet_wait": sys.argv[6],
}, open(sys.argv[1], "w"), indent=1)
EOF

# --- milters -----------------------------------------------------------------
SOCKDIR=$(mktemp -d /tmp/minimilter-bench.XXXXXX)
MILTER_PID=""
SOCK=""

stop_milter() {
    if [ -n "$MILTER_PID" ]; then
        kill "$MILTER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$MILTER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$MILTER_PID" 2>/dev/null || true
        wait "$MILTER_PID" 2>/dev/null || true
        MILTER_PID=""
    fi
    [ -z "$SOCK" ] || rm -f "$SOCK"
}
cleanup() {
    stop_milter
    rm -rf "$SOCKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_milter NAME: starts the milter on a fresh unix socket; sets MILTER_PID and SOCK.
start_milter() {
    local name=$1
    SOCK=$SOCKDIR/$name.sock
    rm -f "$SOCK"
    case $name in
    minimilter)
        RUST_LOG=warn "$RUST_MILTER" --listen "unix:$SOCK" --socket-mode 666 \
            --max-connections 20000 2>>"$OUT/$name.log" &
        ;;
    libmilter)
        # It logs one line per callback to stderr; /dev/null keeps that cheap.
        "$C_MILTER" -p "unix:$SOCK" 2>/dev/null &
        ;;
    libmilter-n)
        "$C_MILTER" -n -p "unix:$SOCK" 2>/dev/null &
        ;;
    pymilter)
        "$PY" scripts/bench/action_milter.py "unix:$SOCK" 2>>"$OUT/$name.log" &
        ;;
    gate-minimilter)
        RUST_LOG=warn target/release/examples/pgp_gate_milter --listen "unix:$SOCK" \
            --socket-mode 666 --max-connections 20000 2>>"$OUT/$name.log" &
        ;;
    gate-indymilter)
        "$OUT/indymilter-target/release/indymilter_gate" "unix:$SOCK" 2>>"$OUT/$name.log" &
        ;;
    gate-libmilter)
        "$OUT/pgp_gate_libmilter" "unix:$SOCK" 2>>"$OUT/$name.log" &
        ;;
    gate-pymilter)
        "$PY" scripts/bench/pgp_gate.py "unix:$SOCK" 2>>"$OUT/$name.log" &
        ;;
    gate-floor)
        "$OUT/floor_milter" "$SOCK" 2>>"$OUT/$name.log" &
        ;;
    null)
        RUST_LOG=warn target/release/examples/null_milter --listen "unix:$SOCK" \
            --socket-mode 666 --max-connections 20000 2>>"$OUT/$name.log" &
        ;;
    pgp-milter)
        # Embedded defaults, default log level: one decision line per message, which
        # would be hundreds of MB over the runs, so it goes to /dev/null.
        "$PGP_MILTER" --listen "unix:$SOCK" --socket-mode 666 2>/dev/null &
        ;;
    esac
    MILTER_PID=$!
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && return 0
        kill -0 "$MILTER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "run.sh: $name did not start (socket $SOCK)" >&2
    exit 1
}

# scenario NAME ID CONNS BODY_BYTES [--new-connection-per-message]
scenario() {
    local name=$1 id=$2 conns=$3 body=$4
    shift 4
    start_milter "$name"
    "$PY" scripts/bench/measure.py scenario --pid "$MILTER_PID" --milter "$name" \
        --scenario "$id" --socket "unix:$SOCK" --conns "$conns" --body-bytes "$body" \
        --seconds "$SECONDS_PER_RUN" --cap "$CAP" --repeat "$REPEAT" --quiet-wait "$QUIET_WAIT" \
        --out "$OUT/run-$id-$name.json" "$@"
    stop_milter
}

# pgp_scenario KIND EXPECT: pgp-milter on $OUT/pgp-msg-KIND.eml (section g).
pgp_scenario() {
    local kind=$1 expect=$2
    start_milter pgp-milter
    "$PY" scripts/bench/measure.py scenario --pid "$MILTER_PID" --milter pgp-milter \
        --scenario "pgp-$kind" --socket "unix:$SOCK" --conns "$PGP_CONNS" \
        --message "$OUT/pgp-msg-$kind.eml" --expect "$expect" --rcpt "$PGP_RCPT" \
        --seconds "$SECONDS_PER_RUN" --cap "$CAP" --repeat "$REPEAT" --quiet-wait "$QUIET_WAIT" \
        --out "$OUT/pgp-$kind.json"
    stop_milter
}

run_pgp() {
    echo "== (g) pgp-milter, $PGP_CONNS connections, small encrypted and plain messages"
    "$PY" scripts/bench/pgp_messages.py --out-dir "$OUT" --recipient "$PGP_RCPT"
    pgp_scenario encrypted accept
    pgp_scenario plain reject
}

# gate_scenario ROUND MILTER ID CONNS MESSAGE_FILE [--new-connection-per-message]
# One measured run, bounded by time only (every connection busy for all of it).
gate_scenario() {
    local round=$1 name=$2 id=$3 conns=$4 message=$5
    shift 5
    start_milter "$name"
    "$PY" scripts/bench/measure.py scenario --pid "$MILTER_PID" --milter "$name" \
        --scenario "$id" --socket "unix:$SOCK" --conns "$conns" --message "$message" \
        --expect accept --seconds "$SECONDS_PER_RUN" --cap "$CAP" --repeat 1 \
        --duration-bound --quiet-wait "$QUIET_WAIT" \
        --out "$OUT/gate-$id-$name-r$round.json" "$@"
    stop_milter
}

# The same job on every runtime (the PGP gate), and the client yardstick.
run_gate() {
    "$PY" scripts/bench/gate_messages.py "$OUT"
    rm -f "$OUT"/gate-*.json "$OUT/yardstick.json" "$OUT/yardstick-new.json"
    uptime >"$OUT/gate-uptime.txt"
    echo "== yardstick: minimilter bench and loadgen against the null milter, 32 connections"
    start_milter null
    "$PY" scripts/bench/measure.py yardstick --pid "$MILTER_PID" --socket "unix:$SOCK" \
        --conns 32 --seconds "$SECONDS_PER_RUN" --repeat "$REPEAT" --quiet-wait "$QUIET_WAIT" \
        --out "$OUT/yardstick.json"
    "$PY" scripts/bench/measure.py yardstick --pid "$MILTER_PID" --socket "unix:$SOCK" \
        --conns 32 --seconds "$SECONDS_PER_RUN" --repeat "$REPEAT" --quiet-wait "$QUIET_WAIT" \
        --new-connection-per-message --out "$OUT/yardstick-new.json"
    stop_milter
    # The milters take turns, round after round, so that a busy spell on a shared
    # machine falls on all of them alike.
    local m round
    for round in $(seq "$REPEAT"); do
        echo "== same job, round $round of $REPEAT"
        for m in gate-minimilter gate-indymilter gate-libmilter gate-pymilter gate-floor; do
            gate_scenario "$round" "$m" g32 32 "$OUT/gate-2k.eml"
            gate_scenario "$round" "$m" g1 1 "$OUT/gate-2k.eml"
            gate_scenario "$round" "$m" gnew 32 "$OUT/gate-2k.eml" --new-connection-per-message
            gate_scenario "$round" "$m" gbig 32 "$OUT/gate-1m.eml"
        done
    done
    uptime >>"$OUT/gate-uptime.txt"
}

if [ -n "$GATE_ONLY" ]; then
    run_gate
    "$PY" scripts/bench/measure.py gate-report --dir "$OUT" --out "$DOC"
    echo "== wrote the same-job section of $DOC ($(($(date +%s) - STARTED)) s)"
    exit 0
fi

if [ -n "$PGP_ONLY" ]; then
    run_pgp
    # The other tables are regenerated from their JSON; meta.json keeps the full run's
    # date and runtime.
    "$PY" scripts/bench/measure.py report --dir "$OUT" --out "$DOC"
    echo "== wrote $DOC ($(($(date +%s) - STARTED)) s for pgp-milter)"
    exit 0
fi

# Connections for the 1 MiB scenario (c); lower one if a milter cannot keep up.
declare -A BIG_CONNS=([minimilter]=32 [libmilter]=32 [pymilter]=32)

echo "== (a) 32 connections, 2 KiB body"
for m in minimilter libmilter libmilter-n pymilter; do scenario "$m" a 32 2048; done
echo "== (b) 1 connection, 2 KiB body"
for m in minimilter libmilter pymilter; do scenario "$m" b 1 2048; done
echo "== (c) 1 MiB body"
for m in minimilter libmilter pymilter; do scenario "$m" c "${BIG_CONNS[$m]}" 1048576; done
echo "== (d) new connection per message, 32 concurrent, 2 KiB body"
for m in minimilter libmilter pymilter; do
    scenario "$m" d 32 2048 --new-connection-per-message
done

echo "== (e) $IDLE_CONNS idle connections (open-file limit $NOFILE)"
for m in minimilter libmilter pymilter; do
    start_milter "$m"
    sleep 0.5
    "$PY" scripts/bench/idle_connections.py --socket "$SOCK" --pid "$MILTER_PID" \
        --milter "$m" --count "$IDLE_CONNS" --hold 2 --deadline 120 --out "$OUT/idle-$m.json"
    stop_milter
done

run_pgp
run_gate

if [ -n "$SOAK" ]; then
    SOAK_NO_BUILD=1 SOAK_NO_REPORT=1 scripts/bench/soak.sh
fi

RUNTIME=$(($(date +%s) - STARTED))
"$PY" scripts/bench/measure.py report --dir "$OUT" --out "$DOC" --runtime "$RUNTIME"
"$PY" scripts/bench/measure.py gate-report --dir "$OUT" --out "$DOC"
echo "== wrote $DOC ($RUNTIME s)"
