"""Drives three real Delta Chat accounts (deltachat-rpc-server, the core
as a binary) against a private Postfix + Dovecot with pgp-milter on both
SMTP services. Run by tests/deltachat.rs, which starts the servers and
judges pgp-milter's log; this script only makes Delta Chat do things and
checks that each one arrives.

Usage: driver.py CONFIG.json   (keys: workdir, rpc_server, imap_port,
smtp_port, password, accounts: [local parts], domain, timeout)

Every wait has a timeout; a watchdog ends the whole script after
`timeout` seconds. A message the core reports failed (MsgFailed, e.g.
refused at SMTP) fails the run with the message's info saved under
workdir/failed/. Prints one `STEP name ok` line per step.
"""

import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from queue import Empty

from deltachat_rpc_client import DeltaChat, Rpc

CONFIG = json.load(open(sys.argv[1]))
WORKDIR = CONFIG["workdir"]
STEP_TIMEOUT = 60


def watchdog():
    time.sleep(CONFIG["timeout"])
    print(f"FAIL watchdog: the run took more than {CONFIG['timeout']} s", flush=True)
    os._exit(3)


threading.Thread(target=watchdog, daemon=True).start()


class Failed(Exception):
    pass


def step(name):
    print(f"STEP {name} ok", flush=True)


class Accounts:
    """The accounts and every event each has seen, in order."""

    def __init__(self, rpc):
        self.rpc = rpc
        self.events = {}

    def drain(self, account_id, wait):
        queue = self.rpc.get_queue(account_id)
        got = []
        try:
            got.append(queue.get(timeout=wait))
            while True:
                got.append(queue.get_nowait())
        except Empty:
            pass
        for e in got:
            self.events.setdefault(account_id, []).append(e)
            if e["kind"] == "MsgFailed":
                self.save_failed(account_id, e["msgId"])
                raise Failed(f"account {account_id}: message {e['msgId']} failed")
            if e["kind"] in ("Error", "Warning") and "smtp" in e.get("msg", "").lower():
                print(f"  {e['kind']} account {account_id}: {e['msg']}", flush=True)

    def save_failed(self, account_id, msg_id):
        os.makedirs(os.path.join(WORKDIR, "failed"), exist_ok=True)
        info = self.rpc.get_message_info(account_id, msg_id)
        path = os.path.join(WORKDIR, "failed", f"{account_id}-{msg_id}.txt")
        with open(path, "w") as f:
            f.write(info)
        print(f"FAILED MESSAGE saved to {path}:\n{info}", flush=True)

    def until(self, what, ids, check, timeout=STEP_TIMEOUT):
        """Waits until check() is true, reading the events of `ids`."""
        deadline = time.monotonic() + timeout
        while True:
            for i in ids:
                self.drain(i, 0.05)
            if check():
                return
            if time.monotonic() > deadline:
                raise Failed(f"timeout ({timeout} s) waiting for {what}")
            time.sleep(0.1)

    def saw(self, account_id, kind, **fields):
        return any(
            e["kind"] == kind and all(e.get(k) == v for k, v in fields.items())
            for e in self.events.get(account_id, [])
        )


def incoming(rpc, account_id, chat_id, pred):
    """A message in chat `chat_id` of `account_id` matching pred, or None."""
    for mid in rpc.get_message_ids(account_id, chat_id, False, False):
        m = rpc.get_message(account_id, mid)
        if not m["isInfo"] and m["fromId"] != 1 and pred(m):
            return m
    return None


def chat_with(rpc, account_id, name):
    """The 1:1 chat of `account_id` with the account called `name`."""
    for chat_id in rpc.get_chatlist_entries(account_id, None, None, None):
        c = rpc.get_basic_chat_info(account_id, chat_id)
        if c["name"] == name.capitalize() and c["chatType"] == "Single":
            return chat_id
    raise Failed(f"account {account_id} has no chat with {name}")


def contact_in(rpc, account_id, chat_id):
    """The other member of a 1:1 chat."""
    return [c for c in rpc.get_chat_contacts(account_id, chat_id) if c != 1][0]


def securejoin(acs, rpc, inviter, joiner, qr, label):
    rpc.secure_join(joiner, qr)
    acs.until(
        f"SecureJoin ({label}) progress 1000 on both sides",
        [inviter, joiner],
        lambda: acs.saw(inviter, "SecurejoinInviterProgress", progress=1000)
        and acs.saw(joiner, "SecurejoinJoinerProgress", progress=1000),
    )


def main():
    rpc = Rpc(
        accounts_dir=os.path.join(WORKDIR, "accounts"),
        rpc_server_path=CONFIG["rpc_server"],
    )
    with rpc:
        run(rpc)


def run(rpc):
    dc = DeltaChat(rpc)
    acs = Accounts(rpc)
    domain = CONFIG["domain"]
    ids = {}
    for name in CONFIG["accounts"]:
        a = dc.add_account()
        rpc.set_config(a.id, "displayname", name.capitalize())
        rpc.add_or_update_transport(
            a.id,
            {
                "addr": f"{name}@{domain}",
                "password": CONFIG["password"],
                "imapServer": "127.0.0.1",
                "imapPort": CONFIG["imap_port"],
                "imapSecurity": "plain",
                "smtpServer": "127.0.0.1",
                "smtpPort": CONFIG["smtp_port"],
                "smtpSecurity": "plain",
                "certificateChecks": "acceptInvalidCertificates",
            },
        )
        rpc.start_io(a.id)
        ids[name] = a.id
    alice, bob, carol = ids["alice"], ids["bob"], ids["carol"]
    step("configure")

    # SecureJoin as issued (v=3: the first step is encrypted with a password).
    qr = rpc.get_chat_securejoin_qr_code(alice, None)
    print(f"  invite link: {qr}", flush=True)
    securejoin(acs, rpc, alice, bob, qr, "v=3")
    step("securejoin-v3")

    # Without v=3: the first step (vc-request) goes out unencrypted.
    old = re.sub(r"&v=3(?=&|$)", "", qr)
    if old == qr:
        raise Failed(f"no v=3 parameter in {qr!r}")
    securejoin(acs, rpc, alice, carol, old, "without v=3")
    step("securejoin-old")

    for who, other in [(bob, "alice"), (carol, "alice"), (alice, "bob"), (alice, "carol")]:
        chat = chat_with(rpc, who, other)
        info = rpc.get_full_chat_by_id(who, chat)
        if not info["isEncrypted"]:
            raise Failed(f"chat of account {who} with {other} is not encrypted: {info}")
    step("chats-encrypted")

    # 1:1 text.
    a_bob = chat_with(rpc, alice, "bob")
    b_alice = chat_with(rpc, bob, "alice")
    sent = rpc.misc_send_text_message(alice, a_bob, "hello bob")
    acs.until(
        "1:1 text at bob",
        [alice, bob],
        lambda: incoming(rpc, bob, b_alice, lambda m: m["text"] == "hello bob"),
    )
    got = incoming(rpc, bob, b_alice, lambda m: m["text"] == "hello bob")
    step("text")

    # A group of three.
    group = rpc.create_group_chat(alice, "three", False)
    for name in ("bob", "carol"):
        rpc.add_contact_to_chat(alice, group, contact_in(rpc, alice, chat_with(rpc, alice, name)))
    rpc.misc_send_text_message(alice, group, "hello group")

    def in_group(who):
        for chat_id in rpc.get_chatlist_entries(who, None, None, None):
            c = rpc.get_basic_chat_info(who, chat_id)
            if c["name"] == "three" and incoming(rpc, who, chat_id, lambda m: m["text"] == "hello group"):
                return chat_id
        return None

    acs.until("group message at bob and carol", [alice, bob, carol], lambda: in_group(bob) and in_group(carol))
    b_group = in_group(bob)
    rpc.misc_send_text_message(bob, b_group, "hello from bob")
    acs.until(
        "group reply at alice and carol",
        [alice, bob, carol],
        lambda: incoming(rpc, alice, group, lambda m: m["text"] == "hello from bob")
        and incoming(rpc, carol, in_group(carol), lambda m: m["text"] == "hello from bob"),
    )
    step("group")

    # An image.
    image = os.path.join(WORKDIR, "image.png")
    write_png(image)
    rpc.send_msg(alice, a_bob, {"text": "a picture", "file": image, "viewtype": "Image"})
    acs.until(
        "image at bob",
        [alice, bob],
        lambda: incoming(rpc, bob, b_alice, lambda m: m["viewType"] == "Image" and m["file"]),
    )
    step("image")

    # A 20 MB file (seeded random bytes: incompressible, like real media).
    big = os.path.join(WORKDIR, "big.bin")
    rng = random.Random(16)
    with open(big, "wb") as f:
        f.write(rng.randbytes(20 * 1024 * 1024))
    digest = hashlib.sha256(open(big, "rb").read()).hexdigest()
    rpc.send_msg(alice, a_bob, {"text": "a big file", "file": big, "filename": "big.bin", "viewtype": "File"})

    def big_arrived():
        m = incoming(rpc, bob, b_alice, lambda m: m["text"] == "a big file")
        if not m or not m["file"] or m["downloadState"] != "Done":
            return False
        return hashlib.sha256(open(m["file"], "rb").read()).hexdigest() == digest

    acs.until("20 MB file at bob, byte for byte", [alice, bob], big_arrived, timeout=120)
    step("file-20mb")

    # A reaction from bob to alice's text.
    rpc.send_reaction(bob, got["id"], ["👍"])
    acs.until(
        "reaction at alice",
        [alice, bob],
        lambda: (rpc.get_message_reactions(alice, sent) or {}).get("reactions"),
    )
    step("reaction")

    # An edit.
    rpc.send_edit_request(alice, sent, "hello bob (edited)")
    acs.until(
        "edit at bob",
        [alice, bob],
        lambda: rpc.get_message(bob, got["id"])["text"] == "hello bob (edited)",
    )
    step("edit")

    # Read receipts: bob reads, alice learns it.
    rpc.markseen_msgs(bob, [got["id"]])
    acs.until(
        "read receipt at alice",
        [alice, bob],
        lambda: acs.saw(alice, "MsgRead", msgId=sent) or rpc.get_message(alice, sent)["state"] == 28,
    )
    step("read-receipt")

    # A deletion for everyone.
    rpc.delete_messages_for_all(alice, [sent])

    def deleted_at_bob():
        try:
            m = rpc.get_message(bob, got["id"])
        except Exception:
            return True
        return m["chatId"] != b_alice or m["text"] == ""

    acs.until("deletion at bob", [alice, bob], deleted_at_bob)
    step("delete")

    # Let the last outgoing messages (read receipts, sync) leave the queues.
    for who in (alice, bob, carol):
        rpc.wait_for_all_work_done(who)
    time.sleep(2)
    for who in (alice, bob, carol):
        acs.drain(who, 0.1)
    print("DONE", flush=True)


def write_png(path):
    """A 64x64 RGB PNG of seeded noise (zlib, no dependencies)."""
    import struct
    import zlib

    rng = random.Random(7)
    w = h = 64
    raw = b"".join(b"\x00" + rng.randbytes(w * 3) for _ in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"FAIL {e}", flush=True)
        os._exit(1)
    os._exit(0)
