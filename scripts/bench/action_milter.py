#!/usr/bin/python3
"""The benchmark's pymilter milter: the part of minimilter's interop
ActionMilter (crates/minimilter/src/interop.rs) that the benchmark message
exercises. Collects `X-Action` headers (the benchmark message has none, so no
action is performed), counts body bytes and, at end of message, adds
`X-Action-Body-Bytes: N` and continues.

Steps other than header, body and end of message are declined at negotiation
(pymilter's default for callbacks a subclass does not override), as the Rust
milter does.

Usage: /usr/bin/python3 action_milter.py unix:/path/to/socket   (Debian's python3-milter)
"""
import os
import sys

import Milter


class ActionMilter(Milter.Base):
    def __init__(self):
        self.actions = []
        self.body_bytes = 0

    def header(self, name, value):
        if name.lower() == "x-action":
            self.actions.append(value.strip())
        return Milter.CONTINUE

    def body(self, chunk):
        self.body_bytes += len(chunk)
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Action-Body-Bytes", str(self.body_bytes))
        self.actions, self.body_bytes = [], 0
        return Milter.CONTINUE

    def abort(self):
        self.actions, self.body_bytes = [], 0
        return Milter.CONTINUE


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: action_milter.py unix:/path/to/socket")
    os.umask(0)
    Milter.factory = ActionMilter
    Milter.runmilter("action_milter_py", sys.argv[1], timeout=600)
