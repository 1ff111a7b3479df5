#!/usr/bin/env python3
"""Per-message kernel work of a milter under `minimilter bench`: figures that
do not depend on how loaded the machine is (syscalls and context switches per
message), plus utime+stime per message as a secondary, load-sensitive figure.

    scripts/bench/syscalls.py MILTER_BINARY [--bench target/release/minimilter]
        [--conns 32] [--messages 2000] [--duration 20] [--strace] [--perf] [--message FILE]

Starts the milter on a unix socket in a temp dir, warms it up with a short
run, then measures one bounded run. Context switches are summed over every
thread from /proc/PID/task/*/status; with --strace a second bounded run is
made under `strace -f -c` (which slows the milter, so its CPU is not used)
for syscall counts by name. Everything is bounded by --duration and by the
messages per connection.

With --perf a further bounded run is counted by `perf stat` on syscall
tracepoints (plus context switches and wake-ups), which costs the milter
little, so the counts are those of a normal run: whether a read ever
returns EAGAIN, how often a worker parks (epoll_wait) or wakes another
(futex). Needs perf and access to tracepoints (root, or
perf_event_paranoid <= -1).
"""
import argparse, glob, json, os, signal, subprocess, sys, tempfile, time

PERF_SYSCALLS = ["recvfrom", "sendto", "read", "write", "readv", "writev", "epoll_wait",
                 "epoll_ctl", "futex", "accept4", "close", "shutdown", "sched_yield"]


def cpu_seconds(pid):
    """(utime, stime) of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def ctx_switches(pid):
    vol = invol = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return vol, invol


def bench(args, sock, conns, messages, duration):
    cmd = [args.bench, "bench", f"unix:{sock}", "--conns", str(conns),
           "--messages", str(messages), "--duration", str(duration),
           "--expect", "accept", "--json", "--quiet"]
    if args.message:
        cmd += ["--message", args.message]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    if out.returncode != 0:
        sys.exit(f"bench failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def messages_done(result):
    for key in ("messages", "completed", "ok", "total"):
        if isinstance(result.get(key), int):
            return result[key]
    sys.exit(f"cannot find the message count in {sorted(result)}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("milter")
    p.add_argument("--bench", default="target/release/minimilter")
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--strace", action="store_true")
    p.add_argument("--perf", action="store_true",
                   help="count syscalls with perf tracepoints in a further run")
    p.add_argument("--message", help="message file for bench (default: its generated one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "milter.sock")
        env = dict(os.environ, RUST_LOG="warn")
        m = subprocess.Popen([args.milter, "--listen", f"unix:{sock}"], env=env)
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            else:
                sys.exit("milter did not create its socket")
            bench(args, sock, args.conns, 20, 10)  # warm-up
            c0, (v0, i0) = cpu_seconds(m.pid), ctx_switches(m.pid)
            r = bench(args, sock, args.conns, args.messages, args.duration)
            c1, (v1, i1) = cpu_seconds(m.pid), ctx_switches(m.pid)
            n = messages_done(r)
            report = {
                "milter": os.path.basename(args.milter),
                "messages": n,
                "threads": len(os.listdir(f"/proc/{m.pid}/task")),
                "cpu_us_per_msg": round((sum(c1) - sum(c0)) * 1e6 / n, 2),
                "user_us_per_msg": round((c1[0] - c0[0]) * 1e6 / n, 2),
                "system_us_per_msg": round((c1[1] - c0[1]) * 1e6 / n, 2),
                "voluntary_cs_per_msg": round((v1 - v0) / n, 2),
                "involuntary_cs_per_msg": round((i1 - i0) / n, 2),
            }
            if args.strace:
                out = os.path.join(d, "strace.txt")
                s = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(m.pid)],
                                     stderr=subprocess.DEVNULL)
                time.sleep(1)
                r = bench(args, sock, args.conns, max(args.messages // 4, 1), args.duration)
                n = messages_done(r)
                s.send_signal(signal.SIGINT)
                s.wait(timeout=30)
                calls = {}
                with open(out) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                            calls[parts[-1]] = int(parts[3])
                report["strace_messages"] = n
                report["syscalls_per_msg"] = round(sum(calls.values()) / n, 2)
                report["by_name_per_msg"] = {k: round(v / n, 2) for k, v in
                                             sorted(calls.items(), key=lambda kv: -kv[1])}
            if args.perf:
                out = os.path.join(d, "perf.txt")
                events = [f"syscalls:sys_enter_{c}" for c in PERF_SYSCALLS]
                events += ["context-switches", "sched:sched_wakeup"]
                cmd = ["perf", "stat", "-x", ",", "-o", out, "-p", str(m.pid)]
                for e in events:
                    cmd += ["-e", e]
                s = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
                time.sleep(1)
                r = bench(args, sock, args.conns, args.messages, args.duration)
                n = messages_done(r)
                s.send_signal(signal.SIGINT)
                s.wait(timeout=30)
                counts = {}
                with open(out) as f:
                    for line in f:
                        parts = line.strip().split(",")
                        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                            name = parts[2].replace("syscalls:sys_enter_", "")
                            counts[name] = int(float(parts[0]))
                report["perf_messages"] = n
                report["perf_per_msg"] = {k: round(v / n, 3) for k, v in counts.items() if v}
            print(json.dumps(report, indent=1))
        finally:
            m.send_signal(signal.SIGTERM)
            try:
                m.wait(timeout=15)
            except subprocess.TimeoutExpired:
                m.kill()


if __name__ == "__main__":
    main()
