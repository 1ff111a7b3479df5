#!/usr/bin/env python3
"""What `minimilter record` adds between an MTA and a milter: `minimilter
bench` straight to a milter and through `record` in front of it (--bodies
keep and hash), interleaved rounds; prints the tables of docs/performance.md
("Overhead of `minimilter record`").

    cargo build --release -p minimilter-cli -p minimilter \
        --example null_milter --example action_milter
    scripts/bench/record_overhead.py [target/release] [ROUNDS]

Two milters: the null milter, for which a message is one awaited step (end
of message; it declines every optional step), so a message's latency *is*
a step's, and the action milter (6 awaited steps: 4 headers, the body, end
of message). Added latency per step = (latency through the proxy - latency
direct) / awaited steps per message, with one connection (nothing queues),
at the median and at p99 of each run's messages, from the run with the
median msgs/s of each path. The proxy's CPU is utime+stime of the record
process (relay and transcript writer thread) over each run, per message, and
in parentheses the writer thread's share (it runs behind the relay, so a
run's share may include transcripts of the run before).
Everything runs under /tmp and is bounded: 5000 messages on 1 connection,
32 x 300 messages, 300 MB of transcripts per proxy."""
import json, os, subprocess, sys, time

R = sys.argv[1] if len(sys.argv) > 1 else "target/release"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
M = "/tmp/minimilter-record-bench"
os.makedirs(M, exist_ok=True)


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def writer_cpu(pid):
    """CPU seconds of the transcript writer thread (named "transcripts")."""
    for t in os.listdir(f"/proc/{pid}/task"):
        if open(f"/proc/{pid}/task/{t}/comm").read().strip() == "transcripts":
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def start(args, log):
    return subprocess.Popen(args, stderr=open(log, "w"), stdout=subprocess.DEVNULL,
                            env=dict(os.environ, RUST_LOG="warn"))


def wait_socket(path):
    for _ in range(100):
        if os.path.exists(path):
            return
        time.sleep(0.05)
    sys.exit(f"no socket {path}")


for f in os.listdir(M):
    if f.endswith(".sock"):
        os.remove(os.path.join(M, f))
subprocess.run(["rm", "-rf", f"{M}/t-null-keep", f"{M}/t-null-hash",
                f"{M}/t-action-keep", f"{M}/t-action-hash"])
print("uptime at start:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
      flush=True)
procs = []
targets = {}
for milter, steps in (("null_milter", 1), ("action_milter", 6)):
    short = milter.split("_")[0]
    sock = f"{M}/{short}.sock"
    procs.append(start([f"{R}/examples/{milter}", "--listen", f"unix:{sock}"], f"{M}/{short}.log"))
    wait_socket(sock)
    targets[(short, "direct")] = (sock, None, steps)
    for bodies in ("keep", "hash"):
        psock = f"{M}/{short}-{bodies}.sock"
        p = start([f"{R}/minimilter", "record", "--listen", f"unix:{psock}", "--to",
                   f"unix:{sock}", "--dir", f"{M}/t-{short}-{bodies}", "--bodies", bodies,
                   "--max-bytes", "300000000"], f"{M}/{short}-{bodies}.log")
        procs.append(p)
        wait_socket(psock)
        targets[(short, f"record --bodies {bodies}")] = (psock, p.pid, steps)
scen = [("1 connection", ["--conns", "1", "--messages", "5000"]),
        ("32 connections", ["--conns", "32", "--messages", "300"])]
res = {}
for rnd in range(ROUNDS):
    for sname, sargs in scen:
        for (milter, path), (sock, pid, steps) in targets.items():
            c0 = cpu(pid) if pid else 0
            w0 = writer_cpu(pid) if pid else 0
            out = subprocess.run([f"{R}/minimilter", "bench", f"unix:{sock}", *sargs,
                                  "--body-bytes", "2048", "--expect", "accept", "--json",
                                  "--quiet", "--duration", "60"],
                                 capture_output=True, text=True)
            c1 = cpu(pid) if pid else 0
            w1 = writer_cpu(pid) if pid else 0
            j = json.loads(out.stdout)
            errs = sum(j["errors"].values()) if j.get("errors") else 0
            res.setdefault((milter, sname, path), []).append(
                (j["msgs_per_s"], j["latency_ms"]["p50"], j["latency_ms"]["p99"],
                 (c1 - c0) * 1e6 / max(j["messages"], 1), j["messages"], errs, steps,
                 (w1 - w0) * 1e6 / max(j["messages"], 1)))
for p in procs:
    p.terminate()
    p.wait()
print("uptime at end:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
print()
print("| milter (awaited steps per message) | scenario | path | msgs/s (median; min–max) "
      "| p50 ms | p99 ms | added per step, p50 µs | added per step, p99 µs "
      "| proxy CPU µs/msg (of it writer) | errors |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
med = {}
for key, runs in res.items():
    runs.sort(key=lambda r: r[0])
    med[key] = runs[len(runs) // 2]
for (milter, sname, path), runs in res.items():
    m = med[(milter, sname, path)]
    d = med[(milter, sname, "direct")]
    steps = m[6]
    if path == "direct" or sname != "1 connection":
        a50 = a99 = "–"
    else:
        a50 = f"{(m[1] - d[1]) * 1000 / steps:.0f}"
        a99 = f"{(m[2] - d[2]) * 1000 / steps:.0f}"
    print(f"| {milter} ({steps}) | {sname} | {path} | {m[0]:,.0f} ({runs[0][0]:,.0f}–{runs[-1][0]:,.0f}) "
          f"| {m[1]:.3f} | {m[2]:.3f} | {a50} | {a99} "
          f"| {'–' if path == 'direct' else f'{m[3]:.1f} ({m[7]:.1f})'} | {sum(r[5] for r in runs)} |")
counts = {d: sum(len(fs) for _, _, fs in os.walk(f"{M}/{d}"))
          for d in ("t-null-keep", "t-null-hash", "t-action-keep", "t-action-hash")}
print("\ntranscripts written:", counts)
for short in ("null", "action"):
    for bodies in ("keep", "hash"):
        log = open(f"{M}/{short}-{bodies}.log").read()
        stops = log.count("transcript writer is behind")
        resumed = log.count("recording resumed")
        if stops or "dropped" in log:
            print(f"{short}-{bodies}: recording stopped {stops} times (writer queue full), "
                  f"resumed {resumed} times")
# Hundreds of thousands of small files: removed now rather than at the next
# start, where it delayed the first measurement by minutes.
subprocess.run(["rm", "-rf", f"{M}/t-null-keep", f"{M}/t-null-hash",
                f"{M}/t-action-keep", f"{M}/t-action-hash"])
