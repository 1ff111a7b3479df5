#!/usr/bin/python3
"""What two independent mail readers see in each delivery status report.

Usage: report_readers.py ARMOR_FILE DIR

For every file in DIR (sorted), prints one line:
    NAME PY_LEAK PY_WELLFORMED PY_DEFECTS GM_LEAK GM_WELLFORMED
(0/1 each). The readers are Python's `email` (policy default) and GMime 3,
in-process, as in mime_readers.py.

The report rules (pgp-milter's README, "Bounces") allow plaintext in three
places only: the explanation (the first part: inline text/plain, or a
multipart/alternative of inline text/plain and text/html), the
message/delivery-status fields (the second part), and the header lines of a
text/rfc822-headers third part. A returned message/rfc822 must be
ciphertext like any message.

* LEAK: some leaf the reader shows or lets the user open holds the word
  "marker" (the tests plant it in every piece of plaintext) outside those
  places, as this reader places the parts; where the reader does not see
  a multipart/report at all, any leaf with the marker.
* WELLFORMED: the reader sees a report of that shape, no marker anywhere,
  and a returned message (if any) whose leaves are empty, the RFC 3156
  control part, or exactly ARMOR.
* PY_DEFECTS: Python's parser registered a defect on some part.
"""

import email
import email.policy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mime_readers  # noqa: E402  (GMime is initialised there)
from mime_readers import GMime, gmime_data, has_marker, kind  # noqa: E402


def lf(data):
    return data.replace(b"\r\n", b"\n")


def header_lines(data):
    """The part of a text/rfc822-headers body up to its first blank line
    (line ends as LF)."""
    lines = lf(data).split(b"\n")
    out = []
    for line in lines:
        if not line.strip():
            break
        out.append(line)
    return b"\n".join(out)


class View:
    """One reader's walk: leaves as (allowed_text, data), and the shape."""

    def __init__(self):
        self.leak = False
        self.marker = False
        self.shape = True

    def leaf(self, data, allowed=b""):
        """A leaf holding `data`, of which `allowed` may carry text."""
        if has_marker(data):
            self.marker = True
            rest = data.replace(allowed, b"", 1) if allowed else data
            if has_marker(rest):
                self.leak = True


# ---- Python's email ----------------------------------------------------


def py_data(part):
    d = part.get_payload(decode=True)
    return d if isinstance(d, bytes) else b""


def py_inline(part):
    return part.get_content_disposition() in (None, "inline") and part.get_filename() is None


def py_walk_all(part, view, allowed_whole=False):
    """Every leaf under `part`; their text allowed if allowed_whole."""
    for p in part.walk():
        if p.is_multipart():
            continue
        d = py_data(p)
        view.leaf(d, d if allowed_whole else b"")


def py_returned_ok(part, armor):
    kids = part.get_payload()
    if not isinstance(kids, list) or len(kids) != 1:
        return False
    for p in kids[0].walk():
        if p.is_multipart():
            continue
        if kind(py_data(p), armor) not in ("empty", "version1", "armor"):
            return False
    return True


def python_view(raw, armor):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    defects = any(len(p.defects) > 0 for p in msg.walk())
    view = View()
    kids = msg.get_payload() if msg.is_multipart() else None
    report = (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type") or "").lower() == "delivery-status"
        and isinstance(kids, list)
    )
    if not report:
        py_walk_all(msg, view)
        return view.leak, False, defects
    view.shape = 2 <= len(kids) <= 3
    for i, k in enumerate(kids):
        t = k.get_content_type()
        if i == 0 and t == "text/plain" and py_inline(k):
            py_walk_all(k, view, allowed_whole=True)
        elif i == 0 and t == "multipart/alternative":
            leaves = k.get_payload()
            if not isinstance(leaves, list) or not leaves:
                view.shape = False
                leaves = []
            for a in leaves:
                ok = (
                    not a.is_multipart()
                    and a.get_content_type() in ("text/plain", "text/html")
                    and py_inline(a)
                )
                view.shape &= ok
                py_walk_all(a, view, allowed_whole=ok)
        elif i == 1 and t == "message/delivery-status":
            py_walk_all(k, view, allowed_whole=True)
        elif i == 2 and t == "text/rfc822-headers" and not k.is_multipart():
            d = py_data(k)
            view.leaf(lf(d), header_lines(d))
            view.shape &= header_lines(d).strip() == lf(d).strip()
        elif i == 2 and t == "message/rfc822":
            py_walk_all(k, view)
            view.shape &= py_returned_ok(k, armor)
        else:
            view.shape = False
            py_walk_all(k, view)
    return view.leak, view.shape and not view.marker, defects


# ---- GMime ---------------------------------------------------------------


def gm_type(o):
    return o.get_content_type().get_mime_type().lower()


def gm_leaves(obj, depth=0):
    """The single parts under `obj`, into returned messages too."""
    if depth > 50:
        return []
    if isinstance(obj, GMime.Multipart):
        out = []
        for i in range(obj.get_count()):
            out += gm_leaves(obj.get_part(i), depth + 1)
        return out
    if isinstance(obj, GMime.MessagePart):
        m = obj.get_message()
        if m is not None and m.get_mime_part() is not None:
            return gm_leaves(m.get_mime_part(), depth + 1)
        return []
    if isinstance(obj, GMime.Part):
        return [obj]
    return []


def gm_inline(part):
    d = part.get_disposition()
    return (d is None or d.lower() == "inline") and part.get_filename() is None


def gm_walk_all(obj, view, allowed_whole=False):
    for p in gm_leaves(obj):
        d = gmime_data(p)
        view.leaf(d, d if allowed_whole else b"")


def gmime_view(raw, armor):
    parser = GMime.Parser.new_with_stream(GMime.StreamMem.new_with_buffer(raw))
    msg = parser.construct_message(None)
    view = View()
    if msg is None or msg.get_mime_part() is None:
        return False, False
    top = msg.get_mime_part()
    report = (
        isinstance(top, GMime.Multipart)
        and gm_type(top) == "multipart/report"
        and (top.get_content_type().get_parameter("report-type") or "").lower()
        == "delivery-status"
    )
    if not report:
        gm_walk_all(top, view)
        return view.leak, False
    kids = [top.get_part(i) for i in range(top.get_count())]
    view.shape = 2 <= len(kids) <= 3
    for i, k in enumerate(kids):
        t = gm_type(k)
        single = isinstance(k, GMime.Part)
        if i == 0 and t == "text/plain" and single and gm_inline(k):
            gm_walk_all(k, view, allowed_whole=True)
        elif i == 0 and t == "multipart/alternative" and isinstance(k, GMime.Multipart):
            alts = [k.get_part(j) for j in range(k.get_count())]
            view.shape &= len(alts) > 0
            for a in alts:
                ok = (
                    isinstance(a, GMime.Part)
                    and gm_type(a) in ("text/plain", "text/html")
                    and gm_inline(a)
                )
                view.shape &= ok
                gm_walk_all(a, view, allowed_whole=ok)
        elif i == 1 and t == "message/delivery-status":
            gm_walk_all(k, view, allowed_whole=True)
        elif i == 2 and t == "text/rfc822-headers" and single:
            d = gmime_data(k)
            view.leaf(lf(d), header_lines(d))
            view.shape &= header_lines(d).strip() == lf(d).strip()
        elif i == 2 and t == "message/rfc822" and isinstance(k, GMime.MessagePart):
            gm_walk_all(k, view)
            leaves = gm_leaves(k)
            view.shape &= all(
                kind(gmime_data(p), armor) in ("empty", "version1", "armor") for p in leaves
            )
        else:
            view.shape = False
            gm_walk_all(k, view)
    return view.leak, view.shape and not view.marker


def main():
    armor = mime_readers.squeeze(open(sys.argv[1], "rb").read())
    directory = sys.argv[2]
    for name in sorted(os.listdir(directory)):
        raw = open(os.path.join(directory, name), "rb").read()
        pl, pw, pd = python_view(raw, armor)
        gl, gw = gmime_view(raw, armor)
        print(name, int(pl), int(pw), int(pd), int(gl), int(gw))


if __name__ == "__main__":
    main()
