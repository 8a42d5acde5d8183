#!/usr/bin/python3
"""A fast BGP feeder and sink for the BGP benchmarks (bench/bgp_prop_bench.py).

Runs in one network namespace and listens (passive, like a route server) on one or more
local addresses; the speaker under test connects to each.  One process plays:

  feeder  (--feed ADDR): after the OPEN exchange (and, with --sink, once the sink's
          session is up too), sends N IPv4 /32s from --base (100.64.0.0) in UPDATEs
          prepared beforehand, as many NLRI as fit in 4,096 bytes (808 /32s), all with
          the same attributes (ORIGIN IGP, AS_PATH [--feed-as], NEXT_HOP ADDR), then an
          End-of-RIB.  The send time of every UPDATE is kept.
  sink    (--sink ADDR): records when each of the N prefixes arrives (the time of the recv()
          that completed its UPDATE), decoded from the UPDATE's NLRI; withdrawals are counted.

Output, JSON lines on stdout: {"ev": "up", "role", "t"}, {"ev": "sent", "t0", "t1", "updates"},
{"ev": "sunk", "count", "t_last", "delay_ms": {p50, p90, p99, max}} once every prefix
arrived, {"ev": "down", "role", "t", "why"}.  Times are time.time() (wall clock, the same
for feeder and sink: one process).  Every wait is bounded by --timeout.  4-octet AS numbers,
multiprotocol IPv4 unicast; KEEPALIVE every hold/3.
"""

import argparse
import ipaddress
import json
import select
import socket
import struct
import sys
import time

MARKER = b"\xff" * 16


def msg(typ, body):
    return MARKER + struct.pack("!HB", 19 + len(body), typ) + body


def open_msg(asn, rid, hold):
    caps = bytes([1, 4, 0, 1, 0, 1])  # MP: AFI 1 SAFI 1
    caps += bytes([65, 4]) + struct.pack("!I", asn)  # 4-octet AS
    caps += bytes([2, 0])  # route refresh
    opt = bytes([2, len(caps)]) + caps
    my_as = asn if asn < 65536 else 23456
    return msg(1, struct.pack("!BHH4sB", 4, my_as, hold, socket.inet_aton(rid), len(opt)) + opt)


KEEPALIVE = msg(4, b"")


def build_updates(n, base, asn, nh):
    """UPDATEs carrying n /32s from base, and per UPDATE its first index."""
    attrs = bytes([0x40, 1, 1, 0])  # ORIGIN IGP
    attrs += bytes([0x40, 2, 6, 2, 1]) + struct.pack("!I", asn)  # AS_PATH: SEQ [asn]
    attrs += bytes([0x40, 3, 4]) + socket.inet_aton(nh)  # NEXT_HOP
    room = 4096 - 19 - 2 - 2 - len(attrs)
    per = room // 5
    b = int(ipaddress.IPv4Address(base))
    ups, firsts = [], []
    for i in range(0, n, per):
        k = min(per, n - i)
        nlri = b"".join(b"\x20" + struct.pack("!I", b + j) for j in range(i, i + k))
        body = struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri
        ups.append(msg(2, body))
        firsts.append(i)
    return ups, firsts, per


class Sess:
    def __init__(self, role, sock, args):
        self.role, self.s, self.args = role, sock, args
        self.s.setblocking(False)
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.up = False
        self.hold = args.hold
        self.next_ka = 0.0

    def send(self, data):
        self.wbuf += data
        self.flush()

    def flush(self):
        while self.wbuf:
            try:
                w = self.s.send(self.wbuf)
            except BlockingIOError:
                return
            del self.wbuf[:w]


def parse_nlri(data, off, end, base, out_idx):
    """Append the indexes (address - base) of the /32s in data[off:end]."""
    while off < end:
        ln = data[off]
        nb = (ln + 7) // 8
        a = int.from_bytes(data[off + 1:off + 1 + nb].ljust(4, b"\0"), "big")
        if ln == 32:
            out_idx.append(a - base)
        off += 1 + nb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feed")
    ap.add_argument("--sink")
    ap.add_argument("--feed-as", type=int, default=65002)
    ap.add_argument("--sink-as", type=int, default=65003)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--base", default="100.64.0.0")
    ap.add_argument("--hold", type=int, default=90)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--linger", type=float, default=0,
                    help="after the feed (and the sink's last prefix), stay up this long")
    args = ap.parse_args()
    base = int(ipaddress.IPv4Address(args.base))

    def out(**kw):
        print(json.dumps(kw), flush=True)

    ups = firsts = None
    if args.feed:
        ups, firsts, per = build_updates(args.n, args.base, args.feed_as, args.feed)
    listeners = {}
    for role, addr in (("feed", args.feed), ("sink", args.sink)):
        if not addr:
            continue
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, 179))
        ls.listen(4)
        ls.setblocking(False)
        listeners[ls] = role
    out(ev="listening")
    sess = {}
    deadline = time.time() + args.timeout
    sent_t = None
    send_i = 0
    got = None
    if args.sink:
        got = bytearray(args.n)  # 1 once the prefix arrived
        recv_t = [0.0] * args.n
        got_n = 0
        withdrawn = 0
    sunk_at = None
    done_at = None
    while time.time() < deadline:
        now = time.time()
        if done_at and now > done_at + args.linger:
            break
        rl = list(listeners) + [s.s for s in sess.values()]
        wl = [s.s for s in sess.values() if s.wbuf]
        feeding = ("feed" in sess and sess["feed"].up and ups is not None and send_i < len(ups)
                   and (not args.sink or ("sink" in sess and sess["sink"].up)))
        if feeding:
            wl.append(sess["feed"].s)
        r, w, _ = select.select(rl, wl, [], 0.05)
        now = time.time()
        for ls in [x for x in r if x in listeners]:
            c, _ = ls.accept()
            role = listeners[ls]
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = Sess(role, c, args)
            sess[role] = s
            asn = args.feed_as if role == "feed" else args.sink_as
            s.send(open_msg(asn, args.feed if role == "feed" else args.sink, args.hold))
        for s in list(sess.values()):
            if s.s in w:
                s.flush()
            if s.s in r:
                try:
                    data = s.s.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError as e:
                    out(ev="down", role=s.role, t=now, why=str(e))
                    del sess[s.role]
                    continue
                if data == b"":
                    out(ev="down", role=s.role, t=now, why="closed")
                    del sess[s.role]
                    continue
                if data:
                    s.rbuf += data
                while len(s.rbuf) >= 19:
                    ln, typ = struct.unpack_from("!HB", s.rbuf, 16)
                    if len(s.rbuf) < ln:
                        break
                    body = bytes(s.rbuf[19:ln])
                    del s.rbuf[:ln]
                    if typ == 1:  # OPEN
                        s.hold = min(args.hold, struct.unpack_from("!H", body, 3)[0])
                        s.send(KEEPALIVE)
                    elif typ == 4 and not s.up:
                        s.up = True
                        out(ev="up", role=s.role, t=now)
                    elif typ == 3:
                        out(ev="down", role=s.role, t=now, why=f"notification {body[:2].hex()}")
                    elif typ == 2 and s.role == "sink":
                        wl_ = struct.unpack_from("!H", body, 0)[0]
                        idx = []
                        parse_nlri(body, 2, 2 + wl_, base, idx)
                        for i in idx:
                            if 0 <= i < args.n and got[i]:
                                got[i] = 0
                                got_n -= 1
                                withdrawn += 1
                        al = struct.unpack_from("!H", body, 2 + wl_)[0]
                        idx = []
                        parse_nlri(body, 4 + wl_ + al, len(body), base, idx)
                        for i in idx:
                            if 0 <= i < args.n and not got[i]:
                                got[i] = 1
                                recv_t[i] = now
                                got_n += 1
                        if got_n == args.n and sunk_at is None:
                            sunk_at = now
                            d = sorted((recv_t[i] - sent_t[firsts_idx(i, per)]) * 1000
                                       for i in range(args.n)) if sent_t else []
                            pc = (lambda q: round(d[min(len(d) - 1, int(q * len(d)))], 1)) \
                                if d else (lambda q: None)
                            delay = {"p50": pc(0.5), "p90": pc(0.9), "p99": pc(0.99),
                                     "max": round(d[-1], 1) if d else None}
                            out(ev="sunk", count=got_n, t_last=now, t_first=min(recv_t),
                                delay_ms=delay)
                            done_at = now
            if s.role in sess and s.up and now >= s.next_ka:
                s.send(KEEPALIVE)
                s.next_ka = now + max(1, s.hold // 3)
        if feeding and sess["feed"].s in w and not sess["feed"].wbuf:
            f = sess["feed"]
            if sent_t is None:
                sent_t = []
            # a few UPDATEs per round: the sink is read in between
            for _ in range(16):
                if send_i >= len(ups) or f.wbuf:
                    break
                f.send(ups[send_i])
                sent_t.append(time.time())
                send_i += 1
            if send_i == len(ups):
                f.send(msg(2, b"\0\0\0\0"))  # End-of-RIB
                out(ev="sent", t0=sent_t[0], t1=sent_t[-1], updates=len(ups), per_update=per)
                if not args.sink:
                    done_at = time.time()
    else:
        out(ev="timeout", sunk=got_n if got is not None else None)
        return 1
    return 0


def firsts_idx(i, per):
    return i // per


if __name__ == "__main__":
    sys.exit(main())
