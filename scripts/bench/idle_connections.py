#!/usr/bin/env python3
"""Opens N idle milter connections and reports how many a milter keeps, and its RSS.

  idle_connections.py --socket /path/to/sock --pid MILTER_PID --milter NAME
                      [--count 10000] [--hold 2] [--deadline 120] --out FILE

Each connection sends the MTA's option negotiation (13-byte packet: length 13,
'O', version 6, actions 0x1FF, protocol 0x1FFFFF) and reads the reply; then all
are held for --hold seconds, the milter's VmRSS/VmHWM/Threads are read from /proc,
and each connection is checked for being still open. Bounded: stops after
--deadline seconds or 50 failures in a row. Raise `ulimit -n` first.
"""
import argparse
import json
import os
import socket
import struct
import time

OPTNEG = struct.pack(">IcIII", 13, b"O", 6, 0x1FF, 0x1FFFFF)


def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by the milter")
        buf += chunk
    return buf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--milter", required=True)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--hold", type=float, default=2.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    before = status(a.pid)
    started = time.monotonic()
    socks, errors = [], {}
    attempted = connected = 0
    failures_in_a_row = 0
    first_failure = None
    while attempted < a.count and time.monotonic() - started < a.deadline and failures_in_a_row < 50:
        attempted += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5.0)
        stage = "connect"
        try:
            s.connect(a.socket)
            connected += 1
            stage = "negotiate"
            s.sendall(OPTNEG)
            (length,) = struct.unpack(">I", recv_exact(s, 4))
            body = recv_exact(s, length)
            if body[:1] != b"O":
                raise ConnectionError(f"reply {body[:1]!r}, not 'O'")
            socks.append(s)
            failures_in_a_row = 0
        except (OSError, ConnectionError, struct.error) as e:
            key = f"{stage}: {type(e).__name__}: {e}"[:100]
            errors[key] = errors.get(key, 0) + 1
            if first_failure is None:
                first_failure = {"connection": attempted, "error": key}
            failures_in_a_row += 1
            s.close()
    open_s = time.monotonic() - started
    time.sleep(a.hold)
    during = status(a.pid)

    # Still open: readable with EOF (or an error) means the milter closed it.
    still_open = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue
            still_open += 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    for s in socks:
        s.close()

    notes = []
    if first_failure:
        notes.append(f"first failure at connection {first_failure['connection']}: "
                     f"{first_failure['error']}")
    if len(socks) > still_open:
        notes.append(f"{len(socks) - still_open} negotiated connections were closed by the milter")
    result = {
        "milter": a.milter,
        "attempted": attempted,
        "connected": connected,
        "negotiated": len(socks),
        "still_open": still_open,
        "open_seconds": open_s,
        "rss_before_kib": before.get("VmRSS"),
        "rss_kib": during.get("VmRSS"),
        "hwm_kib": during.get("VmHWM"),
        "threads": during.get("Threads"),
        "errors": errors,
        "notes": "; ".join(notes),
        "nofile": os.sysconf("SC_OPEN_MAX"),
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"  {a.milter:<14} idle: {len(socks)}/{attempted} negotiated, {still_open} still open, "
          f"VmRSS {during.get('VmRSS', 0) / 1024:.1f} MiB, threads {during.get('Threads')}"
          + (f"; {result['notes']}" if notes else ""))


if __name__ == "__main__":
    main()
