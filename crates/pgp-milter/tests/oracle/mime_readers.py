#!/usr/bin/python3
"""What two independent mail readers see in each message of a directory.

Usage: mime_readers.py ARMOR_FILE BINARY_FILE DIR

For every file in DIR (sorted), prints one line:
    NAME PY_MARKER PY_WELLFORMED PY_DEFECTS GM_MARKER GM_WELLFORMED
(0/1 each). The readers are Python's `email` (policy default) and GMime 3
(the parser of Evolution and mu), both in-process.

* MARKER: some leaf part (anything a reader shows or lets the user open),
  after its transfer encoding is undone, contains the word "marker" (the
  tests plant it in every piece of plaintext).
* WELLFORMED: the reader sees a well-formed encrypted message: either
  RFC 3156 multipart/encrypted (protocol application/pgp-encrypted) with
  exactly the control part ("Version: 1") and an application/octet-stream
  part holding exactly ARMOR, or a single text/plain part holding exactly
  ARMOR, or a multipart/mixed or multipart/alternative of single parts
  each holding ARMOR (text/plain, application/octet-stream), BINARY_FILE's
  bytes (application/octet-stream), or ARMOR in `<html><body><pre>`
  (text/html, next to a text/plain ARMOR); and no marker anywhere.
* PY_DEFECTS: Python's parser registered a defect on some part.
"""

import email
import email.policy
import os
import sys

import gi

gi.require_version("GMime", "3.0")
from gi.repository import GMime  # noqa: E402

GMime.init()


def squeeze(data):
    return b"".join(data.split())


def kind(data, armor):
    n = squeeze(data)
    if not n:
        return "empty"
    if n.lower() == b"version:1":
        return "version1"
    if n == armor:
        return "armor"
    if data == BINARY:
        return "binary"
    if n == b"<html><body><pre>" + armor + b"</pre></body></html>":
        return "htmlarmor"
    return "other"


BINARY = b""

# The leaves a well-formed multipart/mixed or alternative may hold.
GOOD_LEAVES = {
    "multipart/mixed": {("text/plain", "armor"), ("application/octet-stream", "armor"),
                        ("application/octet-stream", "binary")},
    "multipart/alternative": {("text/plain", "armor"), ("text/html", "htmlarmor")},
}


def good_container(top, leaves):
    """leaves: (type, kind) of the single parts directly inside `top`."""
    allowed = GOOD_LEAVES.get(top)
    if not allowed or not leaves or any(leaf not in allowed for leaf in leaves):
        return False
    if top == "multipart/alternative":
        return ("text/plain", "armor") in leaves
    return True


def has_marker(data):
    return b"marker" in data.lower()


def python_view(raw, armor):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = list(msg.walk())
    leaves = [p for p in parts if not p.is_multipart()]
    datas = []
    for p in leaves:
        d = p.get_payload(decode=True)
        datas.append(d if isinstance(d, bytes) else b"")
    marker = any(has_marker(d) for d in datas)
    defects = any(len(p.defects) > 0 for p in parts)
    top = msg.get_content_type()
    wf = False
    if top == "multipart/encrypted" and (
        str(msg.get_param("protocol") or "").lower() == "application/pgp-encrypted"
    ):
        kids = msg.get_payload()
        if isinstance(kids, list) and len(kids) == 2 and not any(k.is_multipart() for k in kids):
            types = [k.get_content_type() for k in kids]
            kinds = [kind(k.get_payload(decode=True) or b"", armor) for k in kids]
            wf = types == ["application/pgp-encrypted", "application/octet-stream"] and kinds == [
                "version1",
                "armor",
            ]
    elif top == "text/plain" and not msg.is_multipart():
        wf = kind(datas[0], armor) == "armor"
    elif top in GOOD_LEAVES:
        kids = msg.get_payload()
        if isinstance(kids, list) and not any(k.is_multipart() for k in kids):
            wf = good_container(
                top,
                [(k.get_content_type(), kind(k.get_payload(decode=True) or b"", armor)) for k in kids],
            )
    return marker, wf and not marker, defects


def gmime_data(part):
    wrapper = part.get_content()
    if wrapper is None:
        return b""
    out = GMime.StreamMem.new()
    wrapper.write_to_stream(out)
    return bytes(out.get_byte_array())


def gmime_view(raw, armor):
    parser = GMime.Parser.new_with_stream(GMime.StreamMem.new_with_buffer(raw))
    msg = parser.construct_message(None)
    if msg is None or msg.get_mime_part() is None:
        return False, False
    leaves = []

    def walk(obj, depth):
        if depth > 50:
            return
        if isinstance(obj, GMime.Multipart):
            for i in range(obj.get_count()):
                walk(obj.get_part(i), depth + 1)
        elif isinstance(obj, GMime.MessagePart):
            m = obj.get_message()
            if m is not None and m.get_mime_part() is not None:
                walk(m.get_mime_part(), depth + 1)
        elif isinstance(obj, GMime.Part):
            leaves.append((obj, gmime_data(obj)))

    top = msg.get_mime_part()
    walk(top, 0)
    marker = any(has_marker(d) for _, d in leaves)
    mime = lambda o: o.get_content_type().get_mime_type().lower()
    wf = False
    if isinstance(top, GMime.Multipart) and mime(top) == "multipart/encrypted":
        protocol = (top.get_content_type().get_parameter("protocol") or "").lower()
        kids = [top.get_part(i) for i in range(top.get_count())]
        if protocol == "application/pgp-encrypted" and len(kids) == 2 and all(
            isinstance(k, GMime.Part) for k in kids
        ):
            types = [mime(k) for k in kids]
            kinds = [kind(gmime_data(k), armor) for k in kids]
            wf = types == ["application/pgp-encrypted", "application/octet-stream"] and kinds == [
                "version1",
                "armor",
            ]
    elif isinstance(top, GMime.Part) and mime(top) == "text/plain":
        wf = kind(leaves[0][1], armor) == "armor"
    elif isinstance(top, GMime.Multipart) and mime(top) in GOOD_LEAVES:
        kids = [top.get_part(i) for i in range(top.get_count())]
        if all(isinstance(k, GMime.Part) for k in kids):
            wf = good_container(mime(top), [(mime(k), kind(gmime_data(k), armor)) for k in kids])
    return marker, wf and not marker


def main():
    global BINARY
    armor = squeeze(open(sys.argv[1], "rb").read())
    BINARY = open(sys.argv[2], "rb").read()
    directory = sys.argv[3]
    for name in sorted(os.listdir(directory)):
        raw = open(os.path.join(directory, name), "rb").read()
        pm, pw, pd = python_view(raw, armor)
        gm, gw = gmime_view(raw, armor)
        print(name, int(pm), int(pw), int(pd), int(gm), int(gw))


if __name__ == "__main__":
    main()
