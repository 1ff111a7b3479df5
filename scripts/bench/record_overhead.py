#!/usr/bin/env python3
"""What `minimilter record` adds between an MTA and a milter; prints the
tables of docs/performance.md ("Overhead of `minimilter record`").

    cargo build --release -p minimilter-cli -p minimilter \
        --example null_milter --example action_milter --example step_latency
    cargo build --release -p minimilter-cli --bin minimilter
    scripts/bench/record_overhead.py [target/release] [ROUNDS] [MESSAGES] \
        [--baseline OTHER_MINIMILTER] [--latency-only] \
        [--args "RECORD OPTIONS"] [--baseline-args "RECORD OPTIONS"]

With --baseline, every proxy is also run with another build of `minimilter`
(e.g. main's, copied to target/release/minimilter.main before building), and
each round measures both builds back to back (which goes first alternates by
round), so an A/B comparison sees the same machine load. --latency-only skips
part 2. --args and --baseline-args add options to this build's and the
baseline's `record` (e.g. --baseline target/release/minimilter
--baseline-args "--spin-us 0" compares one build with and without spinning).

Two milters: the null milter (one awaited step per message: end of message;
it declines every optional step) and the action milter (6 awaited steps: 4
headers, the body, end of message), each served directly and through two
`record` proxies (--bodies keep and hash).

1. Latency per step, as the MTA sees it. The `step_latency` example holds
   one connection straight to the milter and one through the proxy and
   alternates messages between them (and which path goes first), so both
   paths see the same machine load at the same moments. It times every
   awaited step from writing the command to reading the final answer, and
   reports per path the quantiles over all steps, "added" = quantile through
   the proxy - the same quantile direct, and the quantiles of the paired
   differences (each step through the proxy minus the same step of the
   direct message sent next to it). Each of ROUNDS rounds runs MESSAGES
   messages per path for every proxy (proxies in rotating order); the table
   shows the median over rounds and the range.
2. Throughput and CPU with `minimilter bench` (1 connection x 5000 messages,
   32 x 300), direct and through each proxy, interleaved rounds, the run
   with the median msgs/s shown. The proxy's CPU is the time its threads
   spent on a CPU per message (utime + stime of /proc/PID/stat, which keeps
   the threads that have ended, as a relay's do with their connection; in
   10 ms clock ticks), and in parentheses the transcript writer thread's
   share (/proc/PID/task/*/schedstat, exact; it runs behind the relay, so a
   run's share may include transcripts of the run before).

Everything runs under /tmp and is bounded: at most 300 MB of transcripts per
proxy, every run capped at 60 s."""
import json, os, re, shlex, statistics, subprocess, sys, time

ARGV = sys.argv[1:]
BASELINE = None
if "--baseline" in ARGV:
    i = ARGV.index("--baseline")
    BASELINE = ARGV[i + 1]
    del ARGV[i:i + 2]
EXTRA = {"": [], "baseline ": []}
for opt, label in (("--args", ""), ("--baseline-args", "baseline ")):
    if opt in ARGV:
        i = ARGV.index(opt)
        EXTRA[label] = shlex.split(ARGV[i + 1])
        del ARGV[i:i + 2]
LATENCY_ONLY = "--latency-only" in ARGV
ARGV = [a for a in ARGV if a != "--latency-only"]
R = ARGV[0] if len(ARGV) > 0 else "target/release"
ROUNDS = int(ARGV[1]) if len(ARGV) > 1 else 3
MESSAGES = int(ARGV[2]) if len(ARGV) > 2 else 3000
BUILDS = [("", f"{R}/minimilter")] + ([("baseline ", BASELINE)] if BASELINE else [])
M = "/tmp/minimilter-record-bench"
os.makedirs(M, exist_ok=True)
TDIRS = [f"{M}/t-{m}-{b}{x}" for m in ("null", "action") for b in ("keep", "hash")
         for x in ("", "-baseline")]


def cpu_ns(pid, writer_only=False):
    """Nanoseconds the process (all its threads, those that have ended
    included: a relay's threads end with their connection) or only the
    transcript writer (a thread named "transcripts") spent running. The
    writer's figure is exact (schedstat); the process's is utime + stime
    in clock ticks (10 ms), the only figure that keeps ended threads."""
    if writer_only:
        total = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                if open(f"/proc/{pid}/task/{t}/comm").read().strip() == "transcripts":
                    total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a relay thread that ended meanwhile
        return total
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e9 / os.sysconf("SC_CLK_TCK")


def start(args, log):
    # record's end-of-run counts (spins) are logged at info; the writer's
    # per-transaction lines are not wanted.
    level = "warn,minimilter_cli::record::writer=warn,minimilter_cli::record=info"
    return subprocess.Popen(args, stderr=open(log, "w"), stdout=subprocess.DEVNULL,
                            env=dict(os.environ, RUST_LOG=level))


def wait_socket(path):
    for _ in range(100):
        if os.path.exists(path):
            return
        time.sleep(0.05)
    sys.exit(f"no socket {path}")


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


for f in os.listdir(M):
    if f.endswith(".sock"):
        os.remove(os.path.join(M, f))
subprocess.run(["rm", "-rf", *TDIRS])
print("uptime at start:", uptime(), flush=True)
print("this build:", BUILDS[0][1], *EXTRA[""], flush=True)
if BASELINE:
    print("baseline:", BASELINE, *EXTRA["baseline "], flush=True)
procs = []
targets = {}
for milter, steps in (("null_milter", 1), ("action_milter", 6)):
    short = milter.split("_")[0]
    sock = f"{M}/{short}.sock"
    procs.append(start([f"{R}/examples/{milter}", "--listen", f"unix:{sock}"], f"{M}/{short}.log"))
    wait_socket(sock)
    targets[(short, "direct")] = (sock, None, steps)
    for bodies in ("keep", "hash"):
        for label, binary in BUILDS:
            x = "-baseline" if label else ""
            psock = f"{M}/{short}-{bodies}{x}.sock"
            p = start([binary, "record", "--listen", f"unix:{psock}", "--to",
                       f"unix:{sock}", "--dir", f"{M}/t-{short}-{bodies}{x}", "--bodies", bodies,
                       "--max-bytes", "300000000", *EXTRA[label]], f"{M}/{short}-{bodies}{x}.log")
            procs.append(p)
            wait_socket(psock)
            targets[(short, f"{label}record --bodies {bodies}")] = (psock, p.pid, steps)

# 1. Latency per step, both paths side by side.
# Proxies in groups of the builds of one configuration, measured back to back.
proxies = [(k, v) for k, v in targets.items() if v[1]]
groups = [proxies[i:i + len(BUILDS)] for i in range(0, len(proxies), len(BUILDS))]
steps_res = {}
for rnd in range(ROUNDS):
    order = groups[rnd % len(groups):] + groups[:rnd % len(groups)]
    order = [p for g in order for p in (g if rnd % 2 == 0 else g[::-1])]
    for (milter, path), (psock, _, _) in order:
        direct = targets[(milter, "direct")][0]
        out = subprocess.run([f"{R}/examples/step_latency", f"unix:{direct}", f"unix:{psock}",
                              "--messages", str(MESSAGES)],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            sys.exit(f"step_latency {milter} {path}: {out.stderr}")
        steps_res.setdefault((milter, path), []).append(json.loads(out.stdout))
print("uptime after the latency runs:", uptime(), flush=True)

# 2. Throughput and CPU.
if LATENCY_ONLY:
    ROUNDS_2 = 0
else:
    ROUNDS_2 = ROUNDS
scen = [("1 connection", ["--conns", "1", "--messages", "5000"]),
        ("32 connections", ["--conns", "32", "--messages", "300"])]
res = {}
for rnd in range(ROUNDS_2):
    for sname, sargs in scen:
        for (milter, path), (sock, pid, steps) in targets.items():
            c0 = cpu_ns(pid) if pid else 0
            w0 = cpu_ns(pid, True) if pid else 0
            out = subprocess.run([f"{R}/minimilter", "bench", f"unix:{sock}", *sargs,
                                  "--body-bytes", "2048", "--expect", "accept", "--json",
                                  "--quiet", "--duration", "60"],
                                 capture_output=True, text=True)
            c1 = cpu_ns(pid) if pid else 0
            w1 = cpu_ns(pid, True) if pid else 0
            j = json.loads(out.stdout)
            errs = sum(j["errors"].values()) if j.get("errors") else 0
            n = max(j["messages"], 1)
            res.setdefault((milter, sname, path), []).append(
                (j["msgs_per_s"], j["latency_ms"]["p50"], j["latency_ms"]["p99"],
                 (c1 - c0) / 1e3 / n, errs, steps, (w1 - w0) / 1e3 / n))
for p in procs:
    p.terminate()
    p.wait()
print("uptime at end:", uptime())


def med(runs, *keys):
    v = sorted(r[keys[0]][keys[1]] for r in runs)
    return v, statistics.median(v)


print()
print(f"Latency per awaited step (µs), median of {ROUNDS} rounds [min–max], "
      f"{MESSAGES} messages per path and round:")
print()
print("| milter (awaited steps per message) | path | direct p50 | direct p99 | record p50 "
      "| record p99 | added p50 | **added p99** | added p99.9 | paired difference p99 |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (milter, path), runs in steps_res.items():
    cells = []
    for k in (("direct_us", "p50"), ("direct_us", "p99"), ("record_us", "p50"),
              ("record_us", "p99"), ("added_us", "p50"), ("added_us", "p99"),
              ("added_us", "p99.9"), ("paired_difference_us", "p99")):
        v, m = med(runs, *k)
        cells.append(f"{m:.0f} [{v[0]:.0f}–{v[-1]:.0f}]")
    print(f"| {milter} ({runs[0]['awaited_steps_per_message']}) | {path} | " + " | ".join(cells) + " |")
if BASELINE:
    # Rounds are paired: both builds of a configuration ran back to back.
    print()
    print(f"A/B per round (this build {R}/minimilter vs baseline {BASELINE}): µs per "
          "step, each round in order; rounds this build was lower / all rounds")
    print()
    print("| milter | --bodies | figure | this build | baseline | lower in |")
    print("|---|---|---|---|---|---:|")
    for (milter, path), runs in steps_res.items():
        if path.startswith("baseline"):
            continue
        base = steps_res[(milter, "baseline " + path)]
        for figure, key in (("added p99", "added_us"), ("paired difference p99",
                                                        "paired_difference_us")):
            a = [r[key]["p99"] for r in runs]
            b = [r[key]["p99"] for r in base]
            print(f"| {milter} | {path.split()[-1]} | {figure} | {' '.join(f'{x:.0f}' for x in a)} "
                  f"| {' '.join(f'{x:.0f}' for x in b)} | {sum(x < y for x, y in zip(a, b))}/{len(a)} |")
print()
print("| milter (awaited steps per message) | scenario | path | msgs/s (median; min–max) "
      "| p50 ms | p99 ms | proxy CPU µs/msg (of it writer) | errors |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for (milter, sname, path), runs in res.items():
    runs.sort(key=lambda r: r[0])
    m = runs[len(runs) // 2]
    print(f"| {milter} ({m[5]}) | {sname} | {path} | {m[0]:,.0f} ({runs[0][0]:,.0f}–{runs[-1][0]:,.0f}) "
          f"| {m[1]:.3f} | {m[2]:.3f} "
          f"| {'–' if path == 'direct' else f'{m[3]:.1f} ({m[6]:.1f})'} | {sum(r[4] for r in runs)} |")
counts = {os.path.basename(d): sum(len(fs) for _, _, fs in os.walk(d)) for d in TDIRS}
print("\ntranscripts written:", counts)
for short in ("null", "action"):
    for bodies in [b + x for b in ("keep", "hash") for x in ("", "-baseline")]:
        if not os.path.exists(f"{M}/{short}-{bodies}.log"):
            continue
        log = open(f"{M}/{short}-{bodies}.log").read()
        for line in log.splitlines():
            if "spins_found" in line:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                f = dict(w.split("=", 1) for w in line.split() if "=" in w)
                print(f"{short}-{bodies}: relay spins that found the next packet "
                      f"{f.get('spins_found')}, that found nothing {f.get('spins_empty')}")
        stops = log.count("transcript writer is behind")
        resumed = log.count("recording resumed")
        if stops or resumed:
            print(f"{short}-{bodies}: recording stopped {stops} times (writer queue full), "
                  f"resumed {resumed} times")
# Hundreds of thousands of small files: removed now rather than at the next
# start, where it delayed the first measurement by minutes.
subprocess.run(["rm", "-rf", *TDIRS])
