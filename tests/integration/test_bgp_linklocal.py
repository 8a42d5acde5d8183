"""IPv6 routes whose BGP next hop is link-local only (RFC 2545: a peer with no global
IPv6 address on the link sends just fe80::...).

Two `twill bgp run` speakers in namespaces h23<pid>l and h23<pid>r, joined by a veth that
has IPv4 (the BGP session, 10.0.0.0/30) and IPv6 link-local addresses only.  Each announces
an IPv6 prefix with its link-local address as next hop (nextHop6); the other must install it
via that address on the session's interface (RTA_OIF), and a ping between the two prefixes'
addresses crosses the link both ways.  Every daemon is stopped by its pid at the end.
"""
import json
import os

import pytest

from conftest import run
from nspair import namespaces, veth
from test_bgp_interop import Twill, kroutes, wait_for

PFX = f"h23{os.getpid() % 100000}"
L_NS, R_NS = PFX + "l", PFX + "r"


@pytest.fixture
def link():
    with namespaces(PFX, (L_NS, R_NS)) as env:
        for ns, n in ((L_NS, 1), (R_NS, 2)):
            # no automatic link-local address: only the fixed ones below, without DAD
            run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                 "net.ipv6.conf.default.addr_gen_mode=1"])
            run(["ip", "-n", ns, "addr", "add", f"fd0{n}::1/128", "dev", "lo"])
        veth((L_NS, "h23l"), (R_NS, "h23r"), ["10.0.0.1/30", ["fe80::1/64", "nodad"]],
             ["10.0.0.2/30", ["fe80::2/64", "nodad"]])
        yield env


def speaker(link, ns, n, other):
    t = Twill(ns, link["tmp"], {
        "as": 65000 + n, "routerId": f"10.0.0.{n}", "holdTime": 9, "connectRetry": 1,
        "nextHop6": f"fe80::{n}",
        "peers": [{"name": "other", "address": f"10.0.0.{other}", "as": 65000 + other,
                   "families": ["ipv4", "ipv6"]}],
        "originate": [f"fd0{n}::1/128"]})
    t.start()
    link["daemons"].append(t.daemon)
    return t


def test_link_local_next_hop_installed_with_interface(link):
    left = speaker(link, L_NS, 1, 2)
    right = speaker(link, R_NS, 2, 1)
    try:
        wait_for(lambda: left.established("other") and right.established("other"), 20,
                 "the session")
        for t, ns, dev, dst, gw in ((left, L_NS, "h23l", "fd02::1", "fe80::2"),
                                    (right, R_NS, "h23r", "fd01::1", "fe80::1")):
            r = wait_for(lambda: kroutes(ns, "-6").get(dst), 10, f"{dst} in {ns}'s kernel")
            assert r["gateway"] == gw and r["dev"] == dev, r
            assert t.route(dst + "/128")["paths"][0]["nextHop"] == gw, t.route(dst + "/128")
            assert not t.peer("other").get("lastError"), t.peer("other")
        assert (left.state_json() or {}).get("fibErrors", 0) == 0, left.state_json()
        # the dataplane: each side's address reaches the other's over link-local next hops
        out = run(["ip", "netns", "exec", L_NS, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2",
                   "-I", "fd01::1", "fd02::1"], check=False)
        assert out.returncode == 0, out.stdout + out.stderr + json.dumps(kroutes(L_NS, "-6"))
    except AssertionError:
        print(left.log())
        print(right.log())
        raise
