#!/usr/bin/env python3
"""Writes the PGP gate's benchmark messages into DIR: gate-2k.eml and
gate-1m.eml, an armored PGP message of about 2 KiB and of 1 MiB (every gate
milter accepts them and adds its header).

    scripts/bench/gate_messages.py DIR

Used by run.sh (--gate-only and the full run) and negotiation_tail.sh."""
import sys


def message(size):
    head = ("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\n"
            "Subject: encrypted\r\nMessage-ID: <gate@minimilter.invalid>\r\n\r\n")
    body = "-----BEGIN PGP MESSAGE-----\r\n\r\n"
    line = "hQEMA5V3x4x0A1cDAQf/Z2F0ZSBiZW5jaG1hcmsgYm9keSBsaW5lIG9mIGJhc2U2NCB0ZXh0\r\n"
    while len(body) < size - 60:
        body += line
    return head + body + "=abcd\r\n-----END PGP MESSAGE-----\r\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, size in (("gate-2k.eml", 2048), ("gate-1m.eml", 1 << 20)):
        with open(f"{sys.argv[1]}/{name}", "w", newline="") as f:
            f.write(message(size))
