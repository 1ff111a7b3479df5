#!/usr/bin/env python3
"""Builds the two messages of the pgp-milter benchmark (scripts/bench/run.sh, section g).

  pgp_messages.py --out-dir target/bench [--recipient bob@example.org]

Writes into --out-dir:
  pgp-msg-encrypted.eml  a small RFC 3156 PGP/MIME encrypted message: GnuPG makes a
                         throw-away key in a temporary GNUPGHOME and encrypts a short
                         text to it (`gpg --encrypt --armor`), wrapped the way
                         crates/pgp-milter/tests/support/mod.rs wraps it (pgp_mime)
  pgp-msg-plain.eml      a small plain text/plain message of about the same size
Both have CRLF line ends. Prints one line per file (name and size).
Needs `gpg` (Debian package gnupg). Standard library only.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def gpg(home, args, data=b""):
    p = subprocess.run(
        ["gpg", "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback",
         "--passphrase", ""] + args,
        input=data, capture_output=True, env=dict(os.environ, GNUPGHOME=home), timeout=120)
    if p.returncode != 0:
        sys.exit(f"pgp_messages.py: gpg {' '.join(args)} failed: "
                 f"{p.stderr.decode(errors='replace')}")
    return p.stdout


def crlf(s):
    return s.replace("\r\n", "\n").replace("\n", "\r\n")


def headers(recipient, subject):
    return (f"From: alice@client.example\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            "Message-ID: <pgp-bench@client.example>\r\nMIME-Version: 1.0\r\n")


def encrypted_message(recipient, armored):
    # The same shape as pgp_mime() in crates/pgp-milter/tests/support/mod.rs.
    return crlf(
        headers(recipient, "encrypted") +
        "Content-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\";\r\n "
        "boundary=\"enc-b0undary\"\r\n\r\n"
        "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
        "--enc-b0undary\r\nContent-Type: application/pgp-encrypted\r\n"
        "Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n"
        "--enc-b0undary\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
        "Content-Description: OpenPGP encrypted message\r\n"
        "Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
        f"{armored.strip()}\r\n--enc-b0undary--\r\n").encode()


def plain_message(recipient, size):
    line = "The eagle lands at midnight; nothing here is encrypted at all.\r\n"
    body = line * max(1, size // len(line))
    return crlf(headers(recipient, "plain") +
                "Content-Type: text/plain; charset=us-ascii\r\n"
                "Content-Transfer-Encoding: 7bit\r\n\r\n" + body).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--recipient", default="bob@example.org")
    args = ap.parse_args()
    if not shutil.which("gpg"):
        sys.exit("pgp_messages.py: `gpg` is needed (Debian package gnupg)")
    os.makedirs(args.out_dir, exist_ok=True)
    home = tempfile.mkdtemp(prefix="pgp-bench-gpg-", dir="/tmp")
    try:
        os.chmod(home, 0o700)
        gpg(home, ["--quick-gen-key", f"Bob <{args.recipient}>", "future-default", "default",
                   "never"])
        armored = gpg(home, ["--trust-model", "always", "--armor", "--encrypt",
                             "-r", args.recipient],
                      b"The eagle lands at midnight.\nBring the small suitcase.\n").decode()
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=dict(os.environ, GNUPGHOME=home),
                       capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    enc = encrypted_message(args.recipient, armored)
    body_len = len(enc) - enc.index(b"\r\n\r\n") - 4
    plain = plain_message(args.recipient, body_len)
    for name, data in (("pgp-msg-encrypted.eml", enc), ("pgp-msg-plain.eml", plain)):
        path = os.path.join(args.out_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        print(f"  {path}: {len(data)} bytes")


if __name__ == "__main__":
    main()
