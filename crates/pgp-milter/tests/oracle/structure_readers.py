#!/usr/bin/python3
"""The structure three independent mail readers see in each message of a directory.

Usage: structure_readers.py DIR

For every file in DIR (sorted), prints one line:
    NAME<TAB>PY<TAB>PY32<TAB>GM
where each reader's view is its MIME tree in walk order, one entry per
entity joined by " | ": "depth:type/subtype[;protocol=P]:DIGEST" (DIGEST:
the first 12 hex digits of the SHA-256 of a leaf's content after its transfer
encoding is undone, "-" for a multipart; "M" appended when the content holds
the word "marker"). The readers: Python's `email` with policy=default, with
policy=compat32, and GMime 3 (through python3-gi), all in-process.
Two readers that print the same line agree on the structure, on every
part's type and on every leaf's bytes (so on the effect of its transfer
encoding; the field's text is not compared, since Python keeps a comment
in it that GMime drops).
"""

import email
import email.policy
import hashlib
import os
import sys

import gi

gi.require_version("GMime", "3.0")
from gi.repository import GMime  # noqa: E402

GMime.init()


def leaf(data):
    d = hashlib.sha256(data).hexdigest()[:12]
    return d + ("M" if b"marker" in data.lower() else "")


def python_view(raw, policy):
    msg = email.message_from_bytes(raw, policy=policy)
    out = []

    def walk(p, depth):
        t = p.get_content_type()
        if t == "multipart/encrypted" or t == "multipart/signed":
            t += ";protocol=" + str(p.get_param("protocol") or "").lower()
        if p.is_multipart():
            out.append("%d:%s:-" % (depth, t))
            for k in p.get_payload():
                walk(k, depth + 1)
        else:
            d = p.get_payload(decode=True)
            out.append("%d:%s:%s" % (depth, t, leaf(d if isinstance(d, bytes) else b"")))

    walk(msg, 0)
    return " | ".join(out)


def gmime_data(part):
    wrapper = part.get_content()
    if wrapper is None:
        return b""
    out = GMime.StreamMem.new()
    wrapper.write_to_stream(out)
    return bytes(out.get_byte_array())


def gmime_view(raw):
    parser = GMime.Parser.new_with_stream(GMime.StreamMem.new_with_buffer(raw))
    msg = parser.construct_message(None)
    if msg is None or msg.get_mime_part() is None:
        return "unreadable"
    out = []

    def walk(obj, depth):
        ct = obj.get_content_type()
        t = ct.get_mime_type().lower()
        if t == "multipart/encrypted" or t == "multipart/signed":
            t += ";protocol=" + (ct.get_parameter("protocol") or "").lower()
        if isinstance(obj, GMime.Multipart):
            out.append("%d:%s:-" % (depth, t))
            for i in range(obj.get_count()):
                walk(obj.get_part(i), depth + 1)
        elif isinstance(obj, GMime.MessagePart):
            out.append("%d:%s:-" % (depth, t))
            m = obj.get_message()
            if m is not None and m.get_mime_part() is not None:
                walk(m.get_mime_part(), depth + 1)
        else:
            out.append("%d:%s:%s" % (depth, t, leaf(gmime_data(obj))))

    walk(msg.get_mime_part(), 0)
    return " | ".join(out)


def main():
    directory = sys.argv[1]
    for name in sorted(os.listdir(directory)):
        raw = open(os.path.join(directory, name), "rb").read()
        views = [
            python_view(raw, email.policy.default),
            python_view(raw, email.policy.compat32),
            gmime_view(raw),
        ]
        print("\t".join([name] + views))


if __name__ == "__main__":
    main()
