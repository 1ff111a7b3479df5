#!/usr/bin/python3
"""The benchmark job of docs/performance.md on pymilter (Debian's
python3-milter, which runs on libmilter), to compare runtimes on the same
work: refuse a message unless "-----BEGIN PGP MESSAGE-----" lies within the
first 5000 bytes of its body; add one header when accepting; skip the rest of
the body once decided. The same rule as
crates/minimilter/examples/pgp_gate_milter.rs.

Only body and end of message are implemented, so pymilter's negotiation
declines the other steps; it enables SKIP itself; the actions granted are cut
down to adding headers, as in the other implementations.

Usage: /usr/bin/python3 pgp_gate.py unix:/path/to/socket
"""
import os
import sys

import Milter

MARKER = b"-----BEGIN PGP MESSAGE-----"
WINDOW = 5000


class PgpGate(Milter.Base):
    def __init__(self):
        self.reset()

    def reset(self):
        self.seen = 0
        self.tail = b""
        self.decided = None

    def negotiate(self, opts):
        status = super().negotiate(opts)
        opts[0] &= Milter.ADDHDRS
        return status

    def body(self, chunk):
        if self.decided is None:
            part = chunk[: WINDOW - self.seen]
            # The marker may straddle the previous chunk and this one.
            found = MARKER in (self.tail + part[: len(MARKER) - 1]) or MARKER in part
            self.seen += len(part)
            if found:
                self.decided = True
            elif self.seen >= WINDOW:
                self.decided = False
            else:
                self.tail = part[-(len(MARKER) - 1):]
        return Milter.SKIP if self.decided is not None else Milter.CONTINUE

    def eom(self):
        accept = self.decided is True
        self.reset()
        if accept:
            self.addheader("X-PGP-Gate", "encrypted")
            return Milter.CONTINUE
        self.setreply("550", "5.7.1", "Only PGP-encrypted mail is accepted here")
        return Milter.REJECT

    def abort(self):
        self.reset()
        return Milter.CONTINUE


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: pgp_gate.py unix:/path/to/socket")
    os.umask(0)
    Milter.factory = PgpGate
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("pgp_gate_py", sys.argv[1], timeout=600)
