#!/usr/bin/python3
"""rogue.py — a misbehaving client for R11: speaks NNG's REQ protocol over the
agent's ipc socket itself (SP handshake, ipc framing), one request at a time,
and sends random bytes, valid batches with random mutations, and now and then
hangs up in the middle of the handshake or of a request.

    rogue.py --socket PATH --requests N --seed S --out FILE.json

Every reply is classified (ack, error by code, status, empty) and the counts
are written to --out as JSON. Requests that the agent never received whole (the
hang-ups, the far-oversize frame) expect no reply and are counted apart; a
request the agent cut off before it was sent whole (the connection closed
under the rogue: the agent listening anew after a hang-up wedged NNG 1.5.2's
listener closes every connection) is counted as `cut_before_sent`: the agent
never received it. A request sent whole whose reply never came is the one case
the rogue cannot classify alone: it asks for a status (on a new connection, so
the agent is done with the lost request) and reads the agent's rejection
counters by reason from the metrics endpoint; they may exceed its own tally by
that one request (`lost_reply_counted`) or not at all (`lost_reply_uncounted`:
not yet, as far as it can tell — the status can overtake the lost request in
the agent's worker queue, so the test allows each of these to be counted by
the end); anything else is a `reconcile_mismatch` (the test fails on it).

Requests carrying a Query (Request field 4) are not sent: the agent answers a
valid query with an error of its own (NOT_FOUND, an unknown kind) that is not a
rejected request, and the rogue cannot tell the two apart. Status requests and
pings may come out of the mutations; they are answered and counted as such.
"""
import argparse
import json
import os
import random
import socket
import struct
import sys
import time
import urllib.request

# ---- protobuf, as a tree the mutations can edit ----------------------------
# A message is a list of fields: (kind, number, payload), kind "v" varint,
# "d" fixed64, "s" length-delimited bytes, "m" submessage (payload: a list).
# An optional 4th element overrides the wire type written in the tag.


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


WIRE = {"v": 0, "d": 1, "s": 2, "m": 2}


def encode(msg):
    out = bytearray()
    for f in msg:
        kind, num, payload = f[0], f[1], f[2]
        wt = f[3] if len(f) > 3 else WIRE[kind]
        out += varint((num << 3) | wt)
        if kind == "v":
            out += varint(payload)
        elif kind == "d":
            out += payload
        elif kind == "s":
            out += varint(len(payload)) + payload
        else:
            body = encode(payload)
            out += varint(len(body)) + body
    return bytes(out)


def scan_top_fields(buf):
    """Field numbers of the top-level fields, as far as they parse."""
    nums, i = [], 0
    try:
        while i < len(buf):
            tag, i = read_varint(buf, i)
            num, wt = tag >> 3, tag & 7
            nums.append((num, wt))
            if wt == 0:
                _, i = read_varint(buf, i)
            elif wt == 1:
                i += 8
            elif wt == 2:
                n, i = read_varint(buf, i)
                i += n
            elif wt == 5:
                i += 4
            else:
                break
    except IndexError:
        pass
    return nums


def read_varint(buf, i):
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i
        if shift > 70:
            raise IndexError("varint too long")


def parse(buf):
    """{field number: [values]} of one message (varints as ints, others as bytes)."""
    out, i = {}, 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


# ---- valid requests ---------------------------------------------------------

ALPHABET = "abcdefghijklmnopqrstuvwxyz_0123456789éλ中"


def text(rng, n):
    return "".join(rng.choice(ALPHABET) for _ in range(n)).encode()


def value(rng, depth=0):
    k = rng.randrange(5 if depth < 2 else 4)
    if k == 0:
        return [("d", 1, struct.pack("<d", rng.uniform(-1e6, 1e6)))]
    if k == 1:
        return [("v", 2, rng.randrange(-(1 << 40), 1 << 40))]
    if k == 2:
        return [("v", 3, rng.randrange(2))]
    if k == 3:
        return [("s", 4, text(rng, rng.randrange(1, 30)))]
    return [("m", 5, [("m", 1, item(rng, depth + 1)) for _ in range(rng.randrange(1, 4))])]


def item(rng, depth=0):
    return [("s", 1, text(rng, rng.randrange(1, 12))), ("m", 2, value(rng, depth))]


class Runs:
    """The rogue's own runs, in its own project, far from the fleet's."""

    def __init__(self, rng):
        self.rng = rng
        self.session = rng.randbytes(16)
        self.seq = 0
        self.runs = []
        self.n = 0

    def record(self):
        rng = self.rng
        if not self.runs or rng.random() < 0.05:
            self.n += 1
            rid = f"rogue-{os.getpid()}-{self.n}".encode()
            self.runs.append([rid, 0])
            return [("s", 1, rid), ("m", 2, [("s", 1, b"rogue-project"),
                                              ("s", 3, text(rng, 8)), ("v", 10, os.getpid()),
                                              ("m", 4, [("m", 1, item(rng))])])]
        run = rng.choice(self.runs)
        k = rng.randrange(10)
        if k < 7:
            run[1] += 1
            return [("s", 1, run[0]), ("m", 3, [("v", 1, run[1])] +
                                      [("m", 4, item(rng)) for _ in range(rng.randrange(1, 6))])]
        if k == 7:
            return [("s", 1, run[0]), ("m", 4, [("m", 1, item(rng)), ("s", 2, b"gone")])]
        if k == 8:
            return [("s", 1, run[0]), ("m", 6, [("v", 1, 1), ("s", 2, text(rng, 40))])]
        return [("s", 1, run[0]), ("m", 8, [("s", 1, b"loss"), ("v", 2, 1)])]

    def batch_request(self):
        self.seq += 1
        recs = [("m", 3, self.record()) for _ in range(self.rng.randrange(1, 8))]
        return [("v", 1, 1), ("m", 2, [("s", 1, self.session), ("v", 2, self.seq)] + recs)]


# ---- mutations --------------------------------------------------------------

BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80",
            b"\x80", b"\xf4\x90\x80\x80", b"a\x00b"]


def nodes(msg):
    """(container list, index) of every field in the tree."""
    for i, f in enumerate(msg):
        yield msg, i
        if f[0] == "m":
            yield from nodes(f[2])


def batch_fields(req):
    """The field list of the request's (first) batch; an IndexError if none is left."""
    return [f for f in req if f[0] == "m" and f[1] == 2][0][2]


def mutate_tree(rng, req, limits):
    """One random edit; an edit that no longer applies (its field was removed
    by an earlier one) is skipped."""
    try:
        edit(rng, req, limits)
    except IndexError:
        pass


def edit(rng, req, limits):
    all_nodes = list(nodes(req))
    op = rng.choice(["remove", "duplicate", "wiretype", "badutf8", "oversize", "version",
                     "bignum", "renumber", "deep", "wide", "session", "empty"])
    parent, i = rng.choice(all_nodes)
    f = parent[i]
    if op == "remove":
        del parent[i]
    elif op == "duplicate":
        parent.insert(i, f)
    elif op == "wiretype":
        parent[i] = (f[0], f[1], f[2], rng.choice([w for w in (0, 1, 2, 3, 4, 5, 6, 7)
                                                   if w != WIRE[f[0]]]))
    elif op == "badutf8":
        strings = [(p, j) for p, j in all_nodes if p[j][0] == "s"]
        p, j = rng.choice(strings)
        s = p[j][2]
        k = rng.randrange(len(s) + 1)
        p[j] = ("s", p[j][1], s[:k] + rng.choice(BAD_UTF8) + s[k:])
    elif op == "oversize":
        strings = [(p, j) for p, j in all_nodes if p[j][0] == "s"]
        p, j = rng.choice(strings)
        n = rng.choice([limits["key"] + 1, 65, 129, limits["string"] + 1])
        p[j] = ("s", p[j][1], b"o" * n)
    elif op == "version":
        req[:] = [f for f in req if f[1] != 1]
        req.insert(0, ("v", 1, rng.choice([0, 2, 3, 255, 1 << 32, (1 << 64) - 1])))
    elif op == "bignum":
        ints = [(p, j) for p, j in all_nodes if p[j][0] == "v"]
        p, j = rng.choice(ints)
        p[j] = ("v", p[j][1], rng.choice([0, (1 << 63), (1 << 64) - 1, (1 << 31), -1]))
    elif op == "renumber":
        parent[i] = (f[0], rng.choice([0, 3, 5, 9, 15, 16, 100, 536870911]), *f[2:])
    elif op == "deep":
        v = [("v", 2, 1)]
        for _ in range(rng.choice([limits["depth"], limits["depth"] + 1, 40])):
            v = [("m", 5, [("m", 1, [("s", 1, b"k"), ("m", 2, v)])])]
        batch_fields(req).append(("m", 3, [("s", 1, b"deep"), ("m", 3, [
            ("m", 4, [("s", 1, b"d"), ("m", 2, v)])])]))
    elif op == "wide":
        n = rng.choice([limits["items"], limits["items"] + 1])
        batch_fields(req).append(("m", 3, [("s", 1, b"wide"), ("m", 3, [("m", 4, [
            ("s", 1, b"w%d" % k), ("m", 2, [("v", 2, k)])]) for k in range(n)])]))
    elif op == "session":
        b = batch_fields(req)
        b[:] = [("s", 1, rng.randbytes(rng.choice([0, 1, 15, 17, 64])))] + [
            f for f in b if f[1] != 1]
    elif op == "empty":
        b = batch_fields(req)
        b[:] = [f for f in b if f[1] != 3]


def mutate_bytes(rng, buf):
    buf = bytearray(buf)
    op = rng.randrange(4)
    if op == 0 and buf:
        for _ in range(rng.randrange(1, 5)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == 1 and buf:
        del buf[rng.randrange(len(buf)):]
    elif op == 2:
        k = rng.randrange(len(buf) + 1)
        buf[k:k] = rng.randbytes(rng.randrange(1, 16))
    else:
        if buf:
            k = rng.randrange(len(buf))
            buf[k] = rng.randrange(256)
    return bytes(buf)


# ---- NNG REQ over ipc --------------------------------------------------------

HANDSHAKE_REQ = b"\x00SP\x00\x00\x30\x00\x00"  # SP, protocol 48 (req0), reserved
REP0 = 0x31


class Conn:
    def __init__(self, path, timeout):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.s.sendall(HANDSHAKE_REQ)
        peer = self.recv_exact(8)
        if peer[:4] != b"\x00SP\x00" or struct.unpack(">H", peer[4:6])[0] != REP0:
            raise ConnectionError(f"unexpected SP handshake {peer!r}")
        self.rid = random.randrange(1 << 30)

    def recv_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed")
            out += chunk
        return bytes(out)

    def request(self, body):
        """Sends one request and returns the body of its reply."""
        return self.receive(self.send(body))

    def send(self, body):
        self.rid = (self.rid + 1) & 0x7FFFFFFF
        head = struct.pack(">I", self.rid | 0x80000000)
        msg = head + body
        self.sent_whole = False
        self.s.sendall(b"\x01" + struct.pack(">Q", len(msg)) + msg)
        self.sent_whole = True
        return head

    def receive(self, head):
        while True:
            kind = self.recv_exact(1)
            n = struct.unpack(">Q", self.recv_exact(8))[0]
            data = self.recv_exact(n)
            if kind == b"\x01" and data[:4] == head:
                return data[4:]

    def close(self):
        self.s.close()


# ErrorCode → the reason label of trackd_requests_rejected_total (agent/cmd/collect.c).
REASONS = {1: "unsupported_version", 2: "malformed", 3: "invalid", 4: "too_large",
           6: "permission"}
STATUS_REQUEST = b"\x08\x01\x1a\x00"


def rejected_by_reason(metrics_url):
    with urllib.request.urlopen(metrics_url, timeout=30) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("trackd_requests_rejected_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('reason="', 1)[1].split('"', 1)[0]] = int(float(value))
    return out


def connect(path, counts, timeout):
    """A new connection. The handshake may not be answered (a listener another
    hang-up wedged, until the agent listens anew): nothing was sent yet, so the
    rogue just tries again."""
    for _ in range(300):
        try:
            conn = Conn(path, 5)
            conn.s.settimeout(timeout)
            return conn
        except OSError:
            counts["reconnects"] += 1
            time.sleep(0.1)
    sys.exit("rogue: cannot connect")


def reconcile(a, counts, baseline):
    """A request was sent whole and its reply lost: whether the agent counted it
    as rejected, from its counters (only the rogue's requests are rejected)."""
    for _ in range(20):
        conn = connect(a.socket, counts, a.timeout)
        try:
            kind, _ = classify(conn.request(STATUS_REQUEST))
        except OSError:
            kind = None
        conn.close()
        if kind == "status":
            break
    else:
        sys.exit("rogue: no status to reconcile a lost reply with")
    now = rejected_by_reason(a.metrics_url)
    mine = {}
    for code, n in counts["errors_by_code"].items():
        r = REASONS.get(int(code), f"code {code}")
        mine[r] = mine.get(r, 0) + n
    for r, n in counts["lost_reply_counted"].items():
        mine[r] = mine.get(r, 0) + n
    diff = {r: now.get(r, 0) - baseline.get(r, 0) - mine.get(r, 0)
            for r in set(now) | set(mine)}
    diff = {r: n for r, n in diff.items() if n}
    if not diff:
        counts["lost_reply_uncounted"] += 1
    elif len(diff) == 1 and list(diff.values()) == [1]:
        r = next(iter(diff))
        counts["lost_reply_counted"][r] = counts["lost_reply_counted"].get(r, 0) + 1
    else:
        counts["reconcile_mismatch"].append(diff)


def classify(reply):
    """('ack'|'error'|'status'|'query'|'empty'|'undecodable', error code)."""
    if reply == b"":
        return "empty", None
    try:
        r = parse(reply)
        if 1 in r:
            return "ack", None
        if 2 in r:
            e = parse(r[2][0])
            return "error", e.get(1, [0])[0]
        if 3 in r:
            return "status", None
        if 4 in r:
            return "query", None
    except (IndexError, ValueError):
        pass
    return "undecodable", None


def hang_up(path, rng, counts):
    """Connects and leaves in the middle: of the handshake, of a frame header,
    of a frame (one that claims far more than the agent takes, too)."""
    how = rng.choice(["connect", "handshake", "header", "body", "huge"])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        if how == "handshake":
            s.sendall(HANDSHAKE_REQ[:rng.randrange(1, 8)])
        elif how in ("header", "body", "huge"):
            s.sendall(HANDSHAKE_REQ)
            s.recv(8)
            if how == "header":
                s.sendall(b"\x01" + struct.pack(">Q", 100)[:rng.randrange(0, 8)])
            elif how == "body":
                s.sendall(b"\x01" + struct.pack(">Q", 1000) +
                          rng.randbytes(rng.randrange(4, 900)))
            else:
                s.sendall(b"\x01" + struct.pack(">Q", 1 << 30) + rng.randbytes(4096))
    except OSError:
        pass
    finally:
        s.close()
    counts["hangups"][how] = counts["hangups"].get(how, 0) + 1


def near_limit(rng, runs, limits):
    """A valid batch of max_message_bytes minus 0..15 bytes (console lines of at
    most limits["string"] each): must be acknowledged."""
    want = limits["message"] - rng.randrange(16)
    req = runs.batch_request()
    run_id = runs.runs[-1][0]
    lines = [("m", 3, [("s", 1, run_id), ("m", 6, [("s", 2, b"n" * (limits["string"] // 2))])])
             for _ in range(want // (limits["string"] // 2))]
    batch = batch_fields(req)
    batch += lines
    last = lines[-1][2][1][2]
    for _ in range(4):  # the length prefixes change size with the text
        n = len(encode(req))
        if n == want:
            break
        last[0] = ("s", 2, b"n" * (len(last[0][2]) + want - n))
    return encode(req)


def one_request(rng, runs, limits):
    """The bytes of one request and what it is ("valid", "mutated", "random")."""
    r = rng.random()
    if r < 0.10:
        return encode(runs.batch_request()), "valid"
    if r < 0.25:
        return rng.randbytes(rng.randrange(0, 300)), "random"
    if r < 0.27:
        # Over max_message_bytes but within what the transport takes (twice it).
        req = runs.batch_request()
        req[1][2].append(("m", 3, [("s", 1, b"big"), ("m", 6, [
            ("s", 2, b"x" * (limits["message"] + rng.randrange(1, 1 << 16)))])]))
        return encode(req), "mutated"
    if r < 0.273:
        return near_limit(rng, runs, limits), "valid"
    req = runs.batch_request()
    if rng.random() < 0.8:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutate_tree(rng, req, limits)
    buf = encode(req)
    if rng.random() < 0.4:
        buf = mutate_bytes(rng, buf)
    return buf, "mutated"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hangup-every", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--max-message-bytes", type=int, default=4 << 20)
    ap.add_argument("--metrics-url", required=True,
                    help="the agent's /metrics, to reconcile lost replies")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    limits = {"message": a.max_message_bytes, "string": 1 << 20, "key": 256, "items": 10000,
              "depth": 16}
    runs = Runs(rng)
    counts = {"sent": 0, "ack": 0, "ack_duplicate": 0, "error": 0, "errors_by_code": {},
              "status": 0, "query": 0, "empty": 0, "undecodable": 0, "cut_before_sent": 0,
              "lost_reply_counted": {}, "lost_reply_uncounted": 0, "reconcile_mismatch": [],
              "skipped_query_shaped": 0, "reconnects": 0, "hangups": {}, "by_origin": {}}
    baseline = rejected_by_reason(a.metrics_url)
    conn = None
    t0 = time.monotonic()
    while counts["sent"] < a.requests:
        if a.hangup_every and rng.randrange(a.hangup_every) == 0:
            hang_up(a.socket, rng, counts)
        body, origin = one_request(rng, runs, limits)
        if (4, 2) in scan_top_fields(body):
            counts["skipped_query_shaped"] += 1
            continue
        if conn is None:
            conn = connect(a.socket, counts, a.timeout)
        counts["sent"] += 1
        try:
            reply = conn.request(body)
        except OSError:
            whole = conn.sent_whole
            conn.close()
            conn = None
            if whole:
                reconcile(a, counts, baseline)
            else:
                counts["cut_before_sent"] += 1
            continue
        kind, code = classify(reply)
        if kind == "ack" and origin != "valid":
            # A mutated batch that was still valid may have stored a seq far
            # ahead (a flipped bit): later batches of that session would all be
            # duplicates, so the rogue starts a new one.
            runs.session, runs.seq = runs.rng.randbytes(16), 0
        counts[kind] += 1
        o = counts["by_origin"].setdefault(origin, {})
        o[kind] = o.get(kind, 0) + 1
        if kind == "error":
            counts["errors_by_code"][str(code)] = counts["errors_by_code"].get(str(code), 0) + 1
        elif kind == "ack" and parse(parse(reply)[1][0]).get(2, [0])[0]:
            counts["ack_duplicate"] += 1
    if conn:
        conn.close()
    counts["seconds"] = round(time.monotonic() - t0, 1)
    with open(a.out, "w") as f:
        json.dump(counts, f)


if __name__ == "__main__":
    main()
