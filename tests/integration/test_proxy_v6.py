"""Integration tests of the nftables Service dataplane in IPv6 and dual stack (src/proxy/nft.c:
table `ip twill` for IPv4, `ip6 twill` for IPv6, both changed in one transaction), through
the hidden `twill proxy-debug` driver, as test_proxy_nft.py does for IPv4.

Topology (svctopo.py with IPv6), all in network namespaces this test creates (prefix
tp6<pid>-):

    cli 10.78.100.2 fd78:100::2 --veth-- node --veth-- b1 10.78.1.2 fd78:1::2   http :8080
                                          |  \\--veth-- b2 10.78.2.2 fd78:2::2
                                          |   \\-veth-- b3 10.78.3.2 fd78:3::2
    node: 10.78.100.1 and fd78:100::1 (the NodePort addresses); forwarding on.

A dual-stack Service has one ClusterIP per family and one EndpointSlice per family; the
slices differ on purpose (IPv4: b1 b2 b3, IPv6: b1 b2), so a test sees that each family's
entries get that family's endpoints only.
"""

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import svctopo
import test_proxy_nft as v4

PFX = "tp6%d-" % os.getpid()
NODE, CLI = PFX + "node", PFX + "cli"
BACKENDS = {"b1": "10.78.1.2", "b2": "10.78.2.2", "b3": "10.78.3.2"}
BACKENDS6 = {"b1": "fd78:1::2", "b2": "fd78:2::2", "b3": "fd78:3::2"}
NODE4, NODE6 = "10.78.100.1", "fd78:100::1"
VIP4, VIP6 = "10.96.8.10", "fd00:96::8:10"
sh = v4.sh


def url(ip, port=None, path="/id"):
    host = "[%s]" % ip if ":" in ip else ip
    return "http://%s%s%s" % (host, ":%d" % port if port else "", path)


def svc_yaml(name, ips, port, target, node_port=None, proto="TCP", affinity=None,
             annotations=None):
    """A Service with clusterIPs ips (one per family: dual stack when two)."""
    fams = ", ".join("IPv6" if ":" in ip else "IPv4" for ip in ips)
    policy = "PreferDualStack" if len(ips) > 1 else "SingleStack"
    np = ", nodePort: %d" % node_port if node_port else ""
    ann = (", annotations: {%s}" % ", ".join("%s: '%s'" % kv for kv in annotations.items())
           if annotations else "")
    aff = ("  sessionAffinity: ClientIP\n"
           "  sessionAffinityConfig: {clientIP: {timeoutSeconds: %d}}\n" % affinity
           if affinity else "")
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: %s%s}\n"
            "spec:\n  type: %s\n  clusterIP: %s\n  clusterIPs: [%s]\n"
            "  ipFamilyPolicy: %s\n  ipFamilies: [%s]\n%s"
            "  ports: [{name: http, port: %d, protocol: %s, targetPort: %d%s}]\n"
            % (name, ann, "NodePort" if node_port else "ClusterIP", ips[0],
               ", ".join('"%s"' % ip for ip in ips), policy, fams, aff, port, proto, target,
               np))


def eps_yaml(name, ips, family, port=8080, proto="TCP"):
    """The Service's EndpointSlice of one family ("IPv4" or "IPv6")."""
    eps = "".join('- {addresses: ["%s"], nodeName: node}\n' % ip for ip in ips)
    return ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: %s-%s, labels: {kubernetes.io/service-name: %s}}\n"
            "addressType: %s\nports: [{name: http, port: %d, protocol: %s}]\n"
            "endpoints:\n%s" % (name, family.lower(), name, family, port, proto,
                                eps if eps else "[]\n"))


class Env(v4.Env):
    def apply(self):
        p = sh(v4.TWILL, "proxy-debug", "--manifests", self.mdir, "--node", "node",
               "--node-ip", NODE4, "--node-ip", NODE6, ns=NODE, check=False, timeout=60)
        assert p.returncode == 0, "proxy-debug failed: %s %s" % (p.stdout, p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def listing(self, family):
        """`nft list table <family> twill`, as text (for before/after comparisons)."""
        return sh("nft", "list", "table", family, "twill", ns=NODE).stdout

    def table(self, family="ip6"):
        p = sh("nft", "-j", "list", "table", family, "twill", ns=NODE)
        return json.loads(p.stdout)["nftables"]

    def map_elems(self, name, kind="map", family="ip6"):
        p = sh("nft", "-j", "list", kind, family, "twill", name, ns=NODE)
        for o in json.loads(p.stdout)["nftables"]:
            if kind in o:
                return o[kind].get("elem", [])
        return []

    def get(self, u, ns=CLI, timeout=3, src=None):
        return super().get(u, ns=ns, timeout=timeout, src=src)

    def spread(self, u, n, ns=CLI, src=None):
        return super().spread(u, n, ns=ns, src=src)


@pytest.fixture
def env():
    why = v4.requirements()
    if why:
        pytest.skip(why)
    svctopo.cleanup(PFX)
    procs = []
    mdir = tempfile.mkdtemp(prefix="tp6-manifests-")
    try:
        procs += svctopo.build(sh, NODE, CLI, PFX, BACKENDS, "10.78", "tp6", mdir,
                               net6="fd78")
        e = Env(mdir)
        e.procs = procs
        deadline = time.monotonic() + 10
        for ip in list(BACKENDS.values()) + list(BACKENDS6.values()):
            while e.get(url(ip, 8080), timeout=1)[0] != 0:
                assert time.monotonic() < deadline, "backend %s did not start" % ip
                time.sleep(0.1)
        yield e
    finally:
        svctopo.cleanup(PFX, procs)
        shutil.rmtree(mdir, ignore_errors=True)
        assert not svctopo.netns_with_prefix(PFX)


def keys(elems):
    return sorted(tuple(e[0]["concat"]) for e in elems)


def test_dual_stack_spread_nodeport_restart(env):
    env.write("web.yaml", svc_yaml("web", [VIP4, VIP6], 80, 8080, node_port=30080))
    env.write("web-v4.yaml", eps_yaml("web", list(BACKENDS.values()), "IPv4"))
    env.write("web-v6.yaml", eps_yaml("web", [BACKENDS6["b1"], BACKENDS6["b2"]], "IPv6"))
    st = env.apply()
    assert st["ok"] and st["full"], st
    assert st["elemsAdded"] == 4, st  # per family: ClusterIP + NodePort
    # each family's table holds that family's entries, with that family's endpoints
    assert keys(env.map_elems("services")) == sorted([(VIP6, "tcp", 80), (NODE6, "tcp", 30080)])
    assert keys(env.map_elems("services", family="ip")) == \
        sorted([(VIP4, "tcp", 80), (NODE4, "tcp", 30080)])
    be6 = sorted((tuple(e[0]["concat"][1:]), tuple(e[1]["concat"]))
                 for e in env.map_elems("backends"))
    assert be6 == sorted([(k, (BACKENDS6[b], 8080)) for b in ("b1", "b2")
                          for k in ((VIP6, "tcp", 80), (NODE6, "tcp", 30080))]), be6
    chains6 = sorted(o["chain"]["name"] for o in env.table() if "chain" in o)
    assert "pick-random-2" in chains6 and "ext-pick-random-2" in chains6, chains6
    assert st["backendsAdded"] == 3 * 2 + 2 * 2, st

    # IPv6 ClusterIP spreads over the IPv6 endpoints only; IPv4 over the IPv4 ones
    counts = env.spread(url(VIP6), 60)
    assert set(counts) == {"b1", "b2"} and min(counts.values()) >= 15, counts
    assert set(env.spread(url(VIP4), 30)) == set(BACKENDS)
    # NodePort over the node's IPv6 address, from the client (masqueraded) and from the
    # node itself (output hook)
    assert set(env.spread(url(NODE6, 30080), 30)) == {"b1", "b2"}
    assert set(env.spread(url(VIP6), 20, ns=NODE)) == {"b1", "b2"}
    # hairpin: a backend reaching itself through the IPv6 Service
    assert env.map_elems("hairpin", kind="set")
    assert set(env.spread(url(VIP6), 10, ns=PFX + "b1")) <= {"b1", "b2"}

    # a restart with nothing changed touches nothing, in either table
    before = (env.listing("ip"), env.listing("ip6"))
    st = env.apply()
    assert st["ok"], st
    assert (st["elemsAdded"], st["elemsDeleted"], st["chainsWritten"], st["chainsDeleted"],
            st["backendsAdded"], st["backendsDeleted"]) == (0, 0, 0, 0, 0, 0), st
    assert (env.listing("ip"), env.listing("ip6")) == before

    # an IPv6 endpoint changes: only the ip6 table's elements change
    env.write("web-v6.yaml", eps_yaml("web", [BACKENDS6["b1"], BACKENDS6["b3"]], "IPv6"))
    st = env.apply()
    assert (st["backendsAdded"], st["backendsDeleted"], st["elemsAdded"], st["elemsDeleted"],
            st["chainsWritten"]) == (2, 2, 0, 0, 0), st
    assert env.listing("ip") == before[0]
    assert set(env.spread(url(VIP6), 30)) == {"b1", "b3"}

    # the Service goes: both tables are left with their fixed layout only
    env.remove("web.yaml")
    st = env.apply()
    assert st["ok"] and st["elemsDeleted"] == 4, st
    for fam in ("ip", "ip6"):
        assert env.map_elems("services", family=fam) == []
        assert env.map_elems("backends", family=fam) == []
    assert env.get(url(VIP6), timeout=1)[0] != 0

    # --delete removes both tables
    sh(v4.TWILL, "proxy-debug", "--delete", ns=NODE)
    for fam in ("ip", "ip6"):
        assert sh("nft", "list", "table", fam, "twill", ns=NODE, check=False).returncode != 0


UDP_PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"ping")
try:
    s.recv(100)
    print("reply")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"""


def test_v6_no_endpoints_rejects(env):
    vip = "fd00:96::8:11"
    env.write("empty.yaml", svc_yaml("empty", [vip], 80, 8080))
    env.write("empty-eps.yaml", eps_yaml("empty", [], "IPv6"))
    env.write("udp.yaml", svc_yaml("udp", [vip], 53, 5353, proto="UDP"))
    env.write("udp-eps.yaml", eps_yaml("udp", [], "IPv6", port=5353, proto="UDP"))
    st = env.apply()
    assert st["ok"], st
    assert keys(env.map_elems("no-endpoint-services")) == [(vip, "tcp", 80), (vip, "udp", 53)]
    # no IPv4 entry exists for an IPv6-only Service
    assert env.map_elems("no-endpoint-services", family="ip") == []
    t0 = time.monotonic()
    rc, _ = env.get(url(vip), timeout=5)
    assert rc == 7, rc  # connection refused (TCP reset), not 28 (timeout)
    assert time.monotonic() - t0 < 3
    # UDP: ICMPv6 port unreachable, seen by the client as ECONNREFUSED
    out = sh("/usr/bin/python3", "-c", UDP_PROBE, vip, "53", ns=CLI).stdout.strip()
    assert out == "refused", out

    env.write("empty-eps.yaml", eps_yaml("empty", [BACKENDS6["b2"]], "IPv6"))
    st = env.apply()
    assert st["elemsAdded"] == 1 and st["elemsDeleted"] == 1, st
    assert env.spread(url(vip), 5) == {"b2": 5}


def test_v6_affinity_and_source_hash(env):
    env.write("web.yaml", svc_yaml("web", [VIP6], 80, 8080, affinity=30))
    env.write("web-v6.yaml", eps_yaml("web", list(BACKENDS6.values()), "IPv6"))
    st = env.apply()
    assert st["ok"], st
    counts = env.spread(url(VIP6), 15)
    assert len(counts) == 1, counts
    aff = [o["map"] for o in env.table() if "map" in o and o["map"]["name"].startswith("aff-")]
    assert len(aff) == 1 and aff[0]["type"] == "ipv6_addr", aff
    clients = [k["elem"]["val"] if isinstance(k, dict) else k for k, _ in aff[0]["elem"]]
    assert clients == ["fd78:100::2"], aff

    # source hash: each client address always lands on one backend; 6 addresses not all
    # on one (probability 3 * (1/3)^6)
    env.write("web.yaml", svc_yaml("web", [VIP6], 80, 8080,
                                   annotations={"twill.io/lb-scheduler": "sh"}))
    st = env.apply()
    assert st["ok"], st
    seen = set()
    for h in range(0x11, 0x17):
        a = "fd78:100::%x" % h
        sh("ip", "addr", "add", a + "/64", "dev", "eth0", "nodad", ns=CLI)
        c = env.spread(url(VIP6), 3, src=a)
        assert len(c) == 1, (a, c)
        seen |= set(c)
    assert len(seen) >= 2, seen


UDP_SERVER6 = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 5353))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[1].encode(), peer)
"""

# A datagram every 50 ms from one source port for at most argv[1] s; prints
# "<monotonic time> <reply>" for every reply.
UDP_CLIENT6 = """
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 41000))
s.settimeout(0.04)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    s.sendto(b"ping", (sys.argv[2], int(sys.argv[3])))
    try:
        data, _ = s.recvfrom(2048)
        print("%.3f 0 %s" % (time.monotonic(), data.decode()), flush=True)
    except OSError:
        pass
    time.sleep(0.05)
"""


def conntrack6_udp():
    """[(orig dst, orig dport, reply src, reply sport)] of the node's IPv6 UDP entries."""
    out = []
    for line in sh("cat", "/proc/net/nf_conntrack", ns=NODE, check=False).stdout.splitlines():
        w = line.split()
        if w[:1] != ["ipv6"] or "udp" not in w[:3]:
            continue
        kv = [x.split("=", 1) for x in w if "=" in x]
        get = lambda k: [v for kk, v in kv if kk == k]  # noqa: E731
        src, dst, sp, dp = get("src"), get("dst"), get("sport"), get("dport")
        if len(src) >= 2 and len(dst) >= 2 and len(sp) >= 2 and len(dp) >= 2:
            out.append((str(ipaddress.ip_address(dst[0])), int(dp[0]),
                        str(ipaddress.ip_address(src[1])), int(sp[1])))
    return out


def test_v6_udp_endpoint_removal_clears_conntrack(env):
    vip = "fd00:96::8:53"
    for name in ("b1", "b2"):
        env.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", PFX + name, "/usr/bin/python3", "-c", UDP_SERVER6, name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    env.write("dns.yaml", svc_yaml("dns", [vip], 53, 5353, proto="UDP"))
    env.write("dns-eps.yaml", eps_yaml("dns", [BACKENDS6["b1"], BACKENDS6["b2"]], "IPv6",
                                       port=5353, proto="UDP"))
    assert env.apply()["ok"]
    out = os.path.join(env.mdir, ".udp6-client.out")
    with open(out, "w") as f:
        env.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", CLI, "/usr/bin/python3", "-c", UDP_CLIENT6, "20", vip,
             "53"], stdout=f, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 10
    while len(v4.read_replies(out)) < 5:
        assert time.monotonic() < deadline, v4.read_replies(out)
        time.sleep(0.1)
    last = [r for _, _, r in v4.read_replies(out)][-5:]
    assert len(set(last)) == 1, last  # one conntrack entry: one backend
    gone = last[0]
    keep = "b2" if gone == "b1" else "b1"
    assert any(e[2] == BACKENDS6[gone] for e in conntrack6_udp()), conntrack6_udp()
    env.write("dns-eps.yaml", eps_yaml("dns", [BACKENDS6[keep]], "IPv6", port=5353,
                                       proto="UDP"))
    st = env.apply()
    t0 = time.monotonic()
    assert st["ok"] and st["backendsDeleted"] >= 1, st
    deadline = t0 + 1.0
    while True:
        recent = [r for t, _, r in v4.read_replies(out) if t > t0 + 0.2]
        if recent and set(recent) == {keep}:
            break
        assert time.monotonic() < deadline, ("traffic did not move", gone, recent[-10:])
        time.sleep(0.05)
    assert not [e for e in conntrack6_udp() if e[2] == BACKENDS6[gone]], conntrack6_udp()
