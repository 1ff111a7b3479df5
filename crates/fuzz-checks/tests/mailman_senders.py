"""Mailman 3's reading of one sender header, as an oracle for
crates/fuzz-checks/tests/mailman_reader.rs.

Mailman finds the poster in `mailman.email.message.Message.senders`: for each
header named in `[mailman] sender_headers` (from, from_, reply-to, sender) it
decodes RFC 2047 encoded words (`email.header.decode_header`, then
`make_header` and `str`), deletes CR and LF, reads the addresses with
`email.utils.getaddresses`, lowercases them and keeps those its
`mailman.email.validate.Validator` accepts. This script does the same with the
standard library, one header value at a time, so the test needs python3 only
(not an installed Mailman).

Protocol: one JSON object per line on stdin,
    {"value": "<header value>", "found": ["<address>", ...]}
and one JSON object per line on stdout,
    {"error": null | "<exception>",
     "legacy": [...],          # getaddresses(strict=False) or the only one
     "strict": [...] | null,   # getaddresses(strict=True) where it exists
     "valid": [true|false, ...]}  # Mailman's validator on each "found"
"legacy" and "strict" are the senders Mailman finds (lowercased, validated).
Since CVE-2023-27043 (Python 3.13, backported to Debian's 3.11.2-6+deb12u*)
getaddresses is strict by default; older Pythons only have the legacy reader.
"error" is set when decoding the header raises: Mailman's runner then moves
the message to the shunt queue, so it is never distributed.
"""

import email.utils
import inspect
import json
import re
import sys
from email.header import decode_header, make_header

# Mailman's validator (mailman/email/validate.py): a local part of these
# characters, a domain of at least two dot-separated labels of letters, digits
# and '-' (not leading), split at the first '@'; the address is lowercased
# before it is checked.
VALID_LOCAL = re.compile("[-0-9a-z!#$%&'*+./=?@_`{}~]", re.IGNORECASE)
VALID_DOMAIN = re.compile("[-a-z0-9]", re.IGNORECASE)

HAS_STRICT = "strict" in inspect.signature(email.utils.getaddresses).parameters


def valid(address):
    if not address:
        return False
    local, at, domain = address.partition("@")
    if not local or VALID_LOCAL.sub("", local):
        return False
    if not at:
        return False
    labels = domain.split(".")
    if len(labels) < 2:
        return False
    return all(l and l[0] != "-" and not VALID_DOMAIN.sub("", l) for l in labels)


def senders(value, strict):
    kw = {"strict": strict} if HAS_STRICT else {}
    found = [a.lower() for _, a in email.utils.getaddresses([value], **kw)]
    return [a for a in found if valid(a)]


def answer(request):
    value = request["value"]
    out = {"error": None, "legacy": [], "strict": None}
    try:
        decoded = re.sub("[\r\n]", "", str(make_header(decode_header(value))))
    except Exception as e:  # what Mailman's runner would catch and shunt
        out["error"] = "%s: %s" % (type(e).__name__, e)
    else:
        out["legacy"] = senders(decoded, False)
        if HAS_STRICT:
            out["strict"] = senders(decoded, True)
    out["valid"] = [valid(a) for a in request.get("found", [])]
    return out


def main():
    for line in sys.stdin:
        print(json.dumps(answer(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
