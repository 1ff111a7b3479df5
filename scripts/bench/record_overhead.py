#!/usr/bin/env python3
"""What `minimilter record` adds: `minimilter bench` straight to the action
milter (release build) and through `record` (--bodies keep and hash), three
interleaved rounds of two scenarios; prints the table in docs/performance.md.

    cargo build --release -p minimilter-cli -p minimilter --example action_milter
    scripts/bench/record_overhead.py [target/release]

The proxy's CPU is utime+stime of the record process (relay and transcript
writer) over each run, per message. Everything runs under /tmp and is bounded:
3000 messages on 1 connection, 32 x 150 messages, 300 MB of transcripts."""
import json, os, subprocess, sys, time, statistics
R = sys.argv[1] if len(sys.argv) > 1 else "target/release"
M = "/tmp/minimilter-record-bench"
os.makedirs(M, exist_ok=True)
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def start(args, log):
    p = subprocess.Popen(args, stderr=open(log, "w"), stdout=subprocess.DEVNULL)
    return p
for f in os.listdir(M):
    if f.endswith(".sock"): os.remove(os.path.join(M, f))
subprocess.run(["rm", "-rf", f"{M}/t-keep", f"{M}/t-hash"])
milter = start([f"{R}/examples/action_milter", "--listen", f"unix:{M}/milter.sock"], f"{M}/milter.log")
time.sleep(0.5)
keep = start([f"{R}/minimilter", "record", "--listen", f"unix:{M}/keep.sock", "--to", f"unix:{M}/milter.sock", "--dir", f"{M}/t-keep", "--max-bytes", "300000000"], f"{M}/keep.log")
hashp = start([f"{R}/minimilter", "record", "--listen", f"unix:{M}/hash.sock", "--to", f"unix:{M}/milter.sock", "--dir", f"{M}/t-hash", "--bodies", "hash", "--max-bytes", "300000000"], f"{M}/hash.log")
time.sleep(0.5)
targets = {"direct": (f"{M}/milter.sock", None), "record --bodies keep": (f"{M}/keep.sock", keep.pid), "record --bodies hash": (f"{M}/hash.sock", hashp.pid)}
scen = [("1 connection", ["--conns", "1", "--messages", "3000"]), ("32 connections", ["--conns", "32", "--messages", "150"])]
res = {}
for rnd in range(3):
    for sname, sargs in scen:
        for tname, (sock, pid) in targets.items():
            c0 = cpu(pid) if pid else 0
            out = subprocess.run([f"{R}/minimilter", "bench", f"unix:{sock}", *sargs, "--body-bytes", "2048", "--expect", "accept", "--json"], capture_output=True, text=True)
            c1 = cpu(pid) if pid else 0
            j = json.loads(out.stdout)
            res.setdefault((sname, tname), []).append((j["msgs_per_s"], j["latency_ms"]["p50"], j["latency_ms"]["p99"], (c1 - c0) * 1e6 / max(j["messages"], 1), j["messages"], sum(j["errors"].values()) if j["errors"] else 0))
for p in (milter, keep, hashp):
    p.terminate(); p.wait()
print("| scenario | path | msgs/s (median of 3; min–max) | p50 ms | p99 ms | proxy CPU µs/msg | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
for (s, t), runs in res.items():
    runs.sort(key=lambda r: r[0]); med = runs[1]
    print(f"| {s} | {t} | {med[0]:,.0f} ({runs[0][0]:,.0f}–{runs[2][0]:,.0f}) | {med[1]:.3f} | {med[2]:.3f} | {'–' if t=='direct' else f'{med[3]:.1f}'} | {sum(r[5] for r in runs)} |")
print("transcripts written (keep, hash):", sum(len(fs) for _, _, fs in os.walk(f"{M}/t-keep")), sum(len(fs) for _, _, fs in os.walk(f"{M}/t-hash")))
