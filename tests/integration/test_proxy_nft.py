"""Integration tests of the nftables Service dataplane (src/proxy) through the hidden
`twill proxy-debug` driver (reads a manifest dir, programs table `ip twill` once).

Topology, all in network namespaces this test creates (prefix tpx<pid>-):

    cli (10.77.100.2) --veth-- node --veth-- b1 (10.77.1.2)   python http.server :8080
                               |   \\--veth-- b2 (10.77.2.2)
                               |    \\-veth-- b3 (10.77.3.2)
    node: 10.77.100.1 (the NodePort address), 10.77.N.1 towards backend N; ip_forward=1.

Services are programmed in `node`; traffic goes cli -> node (DNAT) -> backend and back, or
from `node` itself (output hook).  The table is read with `nft -j list table ip twill`.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import svctopo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWILL = os.environ.get("TWILL_PROXY", os.environ.get("TWILL", os.path.join(ROOT, "build", "twill")))
PFX = "tpx%d-" % os.getpid()
NODE, CLI = PFX + "node", PFX + "cli"
BACKENDS = {"b1": "10.77.1.2", "b2": "10.77.2.2", "b3": "10.77.3.2"}
VIP = "10.96.7.10"


def sh(*args, check=True, ns=None, timeout=20):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(cmd), p.returncode, p.stdout,
                                                        p.stderr))
    return p


def our_netns():
    return svctopo.netns_with_prefix(PFX)


def cleanup(procs=()):
    svctopo.cleanup(PFX, procs)


def requirements():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not os.access(TWILL, os.X_OK):
        return "%s not built" % TWILL
    p = subprocess.run([TWILL, "proxy-debug", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        return "%s has no proxy-debug subcommand (not wired yet; set TWILL_PROXY)" % TWILL
    for t in ("nft", "curl", "ip"):
        if not shutil.which(t):
            return "needs %s" % t
    return None


def svc_yaml(name, vip, port, target, node_port=None, proto="TCP", affinity=None,
             annotations=None):
    np = ", nodePort: %d" % node_port if node_port else ""
    ann = (", annotations: {%s}" % ", ".join("%s: '%s'" % kv for kv in annotations.items())
           if annotations else "")
    typ = "NodePort" if node_port else "ClusterIP"
    aff = ("  sessionAffinity: ClientIP\n"
           "  sessionAffinityConfig: {clientIP: {timeoutSeconds: %d}}\n" % affinity
           if affinity else "")
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: %s%s}\n"
            "spec:\n  type: %s\n  clusterIP: %s\n%s"
            "  ports: [{name: http, port: %d, protocol: %s, targetPort: %d%s}]\n"
            % (name, ann, typ, vip, aff, port, proto, target, np))


def eps_yaml(name, ips, port=8080, proto="TCP"):
    eps = "".join("- {addresses: [%s], nodeName: node}\n" % ip for ip in ips)
    return ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: %s-1, labels: {kubernetes.io/service-name: %s}}\n"
            "addressType: IPv4\nports: [{name: http, port: %d, protocol: %s}]\n"
            "endpoints:\n%s" % (name, name, port, proto, eps if eps else "[]\n"))


class Env:
    def __init__(self, mdir):
        self.mdir = mdir

    def write(self, fname, text):
        path = os.path.join(self.mdir, fname)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def remove(self, fname):
        os.unlink(os.path.join(self.mdir, fname))

    def apply(self):
        p = sh(TWILL, "proxy-debug", "--manifests", self.mdir, "--node", "node",
               "--node-ip", "10.77.100.1", ns=NODE, check=False,
               timeout=60)  # closing the inotify fd can take seconds on a loaded machine
        assert p.returncode == 0, "proxy-debug failed: %s %s" % (p.stdout, p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def table(self):
        p = sh("nft", "-j", "list", "table", "ip", "twill", ns=NODE)
        return json.loads(p.stdout)["nftables"]

    def chains(self):
        return sorted(o["chain"]["name"] for o in self.table() if "chain" in o)

    def map_elems(self, name, kind="map"):
        p = sh("nft", "-j", "list", kind, "ip", "twill", name, ns=NODE)
        for o in json.loads(p.stdout)["nftables"]:
            if kind in o:
                return o[kind].get("elem", [])
        return []

    def get(self, url, ns=CLI, timeout=3, src=None):
        opt = ["--interface", src] if src else []
        p = sh("curl", "-s", "-m", str(timeout), *opt, url, ns=ns, check=False,
               timeout=timeout + 5)
        return p.returncode, p.stdout.strip()

    def spread(self, url, n, ns=CLI, src=None):
        counts = {}
        for _ in range(n):
            rc, out = self.get(url, ns=ns, src=src)
            assert rc == 0, "curl %s failed rc=%d" % (url, rc)
            counts[out] = counts.get(out, 0) + 1
        return counts


@pytest.fixture
def env():
    why = requirements()
    if why:
        pytest.skip(why)
    cleanup()
    procs = []
    mdir = tempfile.mkdtemp(prefix="tpx-manifests-")
    try:
        procs += svctopo.build(sh, NODE, CLI, PFX, BACKENDS, "10.77", "tpx", mdir)
        e = Env(mdir)
        e.procs = procs  # tests add their own processes; the fixture kills them
        deadline = time.monotonic() + 10
        for ip in BACKENDS.values():
            while e.get("http://%s:8080/id" % ip, timeout=1)[0] != 0:
                assert time.monotonic() < deadline, "backend %s did not start" % ip
                time.sleep(0.1)
        yield e
    finally:
        cleanup(procs)
        shutil.rmtree(mdir, ignore_errors=True)
        assert not our_netns()


def test_layout_and_reconcile(env):
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, node_port=30080))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    st = env.apply()
    assert st["ok"] and st["full"]
    assert st["elemsAdded"] == 2  # ClusterIP + NodePort
    # no chain per Service or endpoint: the entries go to the shared pick chain for 3
    # backends (through its masquerading twin for the NodePort), the backends are elements
    chains = env.chains()
    for c in ("nat-prerouting", "nat-output", "nat-postrouting", "services",
              "pick-random-3", "ext-pick-random-3"):
        assert c in chains, chains
    assert not [c for c in chains if "web" in c], chains
    elems = env.map_elems("services")
    keys = sorted(tuple(e[0]["concat"]) for e in elems)
    assert keys == sorted([(VIP, "tcp", 80), ("10.77.100.1", "tcp", 30080)]), elems
    assert st["backendsAdded"] == 6, st
    backends = sorted((tuple(e[0]["concat"][1:]), tuple(e[1]["concat"]))
                      for e in env.map_elems("backends"))
    assert backends == sorted([(k, (ip, 8080)) for ip in BACKENDS.values()
                               for k in ((VIP, "tcp", 80), ("10.77.100.1", "tcp", 30080))])

    # a restart with nothing changed: no element or chain is touched
    st = env.apply()
    assert st["ok"]
    assert (st["elemsAdded"], st["elemsDeleted"], st["chainsWritten"], st["chainsDeleted"],
            st["backendsAdded"], st["backendsDeleted"]) == (0, 0, 0, 0, 0, 0), st


def test_clusterip_spreads_and_incremental(env):
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, node_port=30080))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    env.apply()
    counts = env.spread("http://%s/id" % VIP, 90)
    assert set(counts) == set(BACKENDS), counts
    assert min(counts.values()) >= 10, counts
    # from the node itself (output hook) and through the NodePort from the client
    assert set(env.spread("http://%s/id" % VIP, 30, ns=NODE)) <= set(BACKENDS)
    assert set(env.spread("http://10.77.100.1:30080/id", 30)) <= set(BACKENDS)

    # one endpoint goes: its backend element of each entry goes, the entries move to the
    # shared chains for 2 backends (created; those for 3 are unused now and deleted)
    env.write("web-eps.yaml", eps_yaml("web", [BACKENDS["b1"], BACKENDS["b2"]]))
    st = env.apply()
    assert st["ok"]
    assert (st["backendsAdded"], st["backendsDeleted"]) == (0, 2), st
    assert (st["elemsAdded"], st["elemsDeleted"]) == (2, 2), st
    assert st["chainsWritten"] == 2 and st["chainsDeleted"] == 2, st
    chains = env.chains()
    assert "pick-random-2" in chains and "pick-random-3" not in chains, chains
    counts = env.spread("http://%s/id" % VIP, 40)
    assert set(counts) == {"b1", "b2"}, counts

    # one endpoint replaced by another: one backend element per entry, nothing else
    env.write("web-eps.yaml", eps_yaml("web", [BACKENDS["b1"], BACKENDS["b3"]]))
    st = env.apply()
    assert st["ok"]
    assert (st["backendsAdded"], st["backendsDeleted"], st["elemsAdded"], st["elemsDeleted"],
            st["chainsWritten"], st["chainsDeleted"]) == (2, 2, 0, 0, 0, 0), st
    counts = env.spread("http://%s/id" % VIP, 40)
    assert set(counts) == {"b1", "b3"}, counts

    # a backend reaching itself through the Service is masqueraded (hairpin), so the
    # reply goes back through the node and the DNAT is undone: it works
    assert set(env.spread("http://%s/id" % VIP, 10, ns=PFX + "b1")) <= {"b1", "b3"}

    # the Service goes: its elements and chains go, the base layout stays
    env.remove("web.yaml")
    st = env.apply()
    assert st["ok"] and st["elemsDeleted"] == 2 and st["backendsDeleted"] == 4, st
    assert not [c for c in env.chains() if "pick" in c or "/web/" in c], env.chains()
    assert env.map_elems("services") == [] and env.map_elems("backends") == []
    assert env.map_elems("hairpin", kind="set") == []
    rc, _ = env.get("http://%s/id" % VIP, timeout=1)
    assert rc != 0


def test_no_endpoints_rejects(env):
    env.write("empty.yaml", svc_yaml("empty", "10.96.7.11", 80, 8080))
    env.write("empty-eps.yaml", eps_yaml("empty", []))
    st = env.apply()
    assert st["ok"]
    elems = env.map_elems("no-endpoint-services")
    assert len(elems) == 1, elems
    t0 = time.monotonic()
    rc, _ = env.get("http://10.96.7.11/id", timeout=5)
    # curl exit 7 = connection refused (TCP reset), not 28 = timeout (black hole)
    assert rc == 7, rc
    assert time.monotonic() - t0 < 3

    # endpoints arrive: the entry moves from no-endpoint-services to services
    env.write("empty-eps.yaml", eps_yaml("empty", [BACKENDS["b2"]]))
    st = env.apply()
    assert st["elemsAdded"] == 1 and st["elemsDeleted"] == 1, st
    assert env.map_elems("no-endpoint-services") == []
    assert env.spread("http://10.96.7.11/id", 5) == {"b2": 5}


def test_delete_table(env):
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080))
    env.write("web-eps.yaml", eps_yaml("web", [BACKENDS["b1"]]))
    env.apply()
    sh(TWILL, "proxy-debug", "--delete", ns=NODE)
    p = sh("nft", "list", "table", "ip", "twill", ns=NODE, check=False)
    assert p.returncode != 0
    sh(TWILL, "proxy-debug", "--delete", ns=NODE)  # absent is fine


def aff_maps(env):
    """{map name: {client address: slot}} of the affinity maps in the table."""
    out = {}
    for o in env.table():
        if "map" in o and o["map"]["name"].startswith("aff-"):
            m = out.setdefault(o["map"]["name"], {})
            for k, v in o["map"].get("elem", []):
                m[k["elem"]["val"] if isinstance(k, dict) else k] = v
    return out


def pinned_clients(env, url, hosts, n):
    """Adds client addresses 10.77.100.<h> and sends n requests from each; every client must
    stay on one backend.  Returns the set of backends they landed on."""
    seen = set()
    for h in hosts:
        a = "10.77.100.%d" % h
        sh("ip", "addr", "add", a + "/24", "dev", "eth0", ns=CLI)
        c = env.spread(url, n, src=a)
        assert len(c) == 1, (a, c)
        seen |= set(c)
    return seen


def test_session_affinity(env):
    T = 3
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, affinity=T))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    st = env.apply()
    assert st["ok"], st
    AFF = "aff-default/web/tcp/80"
    assert aff_maps(env) == {AFF: {}}
    assert "svc-default/web/tcp/80" in env.chains()
    # a restart with nothing changed touches nothing (maps included)
    st = env.apply()
    assert (st["elemsAdded"], st["chainsWritten"], st["chainsDeleted"], st["backendsAdded"]) \
        == (0, 0, 0, 0), st

    url = "http://%s/id" % VIP
    def sticky(n):
        """n requests; also when the last one started (its SYN refreshed the entry later)"""
        c = env.spread(url, n - 1)
        t = time.monotonic()
        rc, out = env.get(url)
        assert rc == 0
        c[out] = c.get(out, 0) + 1
        return c, t

    counts, t_first = sticky(20)
    assert len(counts) == 1, counts
    first = next(iter(counts))
    maps = aff_maps(env)
    assert list(maps[AFF]) == ["10.77.100.2"], maps

    # other clients are pinned independently: 8 client addresses land on >= 2 backends
    # (all on one: probability 3 * (1/3)^8)
    assert len(pinned_clients(env, url, range(11, 19), 3)) >= 2

    # the timeout: once the client's element expires, the next connection picks afresh.
    # A fresh pick sticks again, so each round waits out the timeout; within 8 rounds a
    # second backend shows up (all on one: (1/3)^8).
    def wait_expired(t_last):
        deadline = t_last + T + 3
        while "10.77.100.2" in aff_maps(env)[AFF]:
            assert time.monotonic() < deadline, "affinity entry did not expire"
            time.sleep(0.2)
        # not before the timeout (t_last is before the last request's SYN)
        assert time.monotonic() - t_last >= T - 0.2

    picks = [first]
    t_last = t_first
    for _ in range(8):
        wait_expired(t_last)
        c, t_last = sticky(4)
        assert len(c) == 1, c  # sticky again within the new period
        picks.append(next(iter(c)))
        if len(set(picks)) >= 2:
            break
    assert len(set(picks)) >= 2, picks

    # an endpoint goes: the group's clients pick again (the map is emptied), never the
    # removed backend
    assert aff_maps(env)[AFF]
    gone = BACKENDS[env.spread(url, 1).popitem()[0]]
    env.write("web-eps.yaml", eps_yaml("web", [ip for ip in BACKENDS.values() if ip != gone]))
    st = env.apply()
    assert st["ok"] and st["backendsDeleted"] in (1, 2), st  # 2: the last slot moved
    assert aff_maps(env)[AFF] == {}
    name_of = {ip: n for n, ip in BACKENDS.items()}
    assert name_of[gone] not in env.spread(url, 10)

    # affinity switched off: the map goes, the entry moves to the shared chains
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    st = env.apply()
    assert st["ok"], st
    assert aff_maps(env) == {}
    assert "svc-default/web/tcp/80" not in env.chains()
    counts = env.spread(url, 45)
    assert len(counts) >= 2, counts


def test_schedulers(env):
    """twill.io/lb-scheduler: rr takes turns exactly, weights too; sh pins each client."""
    url = "http://%s/id" % VIP
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080,
                                   annotations={"twill.io/lb-scheduler": "rr"}))
    st = env.apply()
    assert st["ok"], st
    assert "pick-rr-3" in env.chains()
    assert env.spread(url, 30) == {"b1": 10, "b2": 10, "b3": 10}

    # weighted round robin: b1 has 2 slots of 4
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, annotations={
        "twill.io/lb-scheduler": "wrr", "twill.io/lb-weights": BACKENDS["b1"] + "=2"}))
    st = env.apply()
    assert st["ok"] and st["backendsAdded"] >= 1, st
    assert env.spread(url, 40) == {"b1": 20, "b2": 10, "b3": 10}

    # source hash: every client address always lands on the same backend; 8 addresses do
    # not all land on one
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080,
                                   annotations={"twill.io/lb-scheduler": "sh"}))
    st = env.apply()
    assert st["ok"], st
    assert len(pinned_clients(env, url, range(21, 29), 4)) >= 2

    # an unknown scheduler: a clear error, the Service still works (random, as before)
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080,
                                   annotations={"twill.io/lb-scheduler": "lc"}))
    p = sh(TWILL, "proxy-debug", "--manifests", env.mdir, "--node", "node", "--print",
           "--node-ip", "10.77.100.1", ns=NODE, check=False, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "annotation twill.io/lb-scheduler: unknown scheduler 'lc'" in p.stderr, p.stderr
    assert len(env.spread(url, 30)) >= 2


UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5353))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[2].encode(), peer)
"""

# Sends a datagram every 50 ms from a fixed source port to each target for at most `secs`;
# prints "<monotonic time> <target index> <reply>" for every reply.
UDP_CLIENT = """
import socket, sys, time
secs = float(sys.argv[1])
socks = []
for i, t in enumerate(sys.argv[2:]):
    host, port = t.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 41000 + i))
    s.settimeout(0.04)
    socks.append((s, (host, int(port))))
end = time.monotonic() + secs
while time.monotonic() < end:
    for i, (s, dst) in enumerate(socks):
        s.sendto(b"ping", dst)
        try:
            data, _ = s.recvfrom(2048)
            print("%.3f %d %s" % (time.monotonic(), i, data.decode()), flush=True)
        except OSError:
            pass
    time.sleep(0.05)
"""


def read_replies(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    out.append((float(parts[0]), int(parts[1]), parts[2]))
    except FileNotFoundError:
        pass
    return out


def conntrack_udp(ns):
    """[(orig dst, orig dport, reply src, reply sport)] of the UDP entries in ns."""
    if shutil.which("conntrack"):
        text = sh("conntrack", "-L", "-p", "udp", ns=ns, check=False).stdout
    else:
        text = sh("cat", "/proc/net/nf_conntrack", ns=ns, check=False).stdout
    out = []
    for line in text.splitlines():
        if "udp" not in line.split()[:3]:
            continue
        kv = [w.split("=", 1) for w in line.split() if "=" in w]
        src = [v for k, v in kv if k == "src"]
        dst = [v for k, v in kv if k == "dst"]
        sp = [v for k, v in kv if k == "sport"]
        dp = [v for k, v in kv if k == "dport"]
        if len(src) >= 2 and len(dst) >= 2 and len(sp) >= 2 and len(dp) >= 2:
            out.append((dst[0], int(dp[0]), src[1], int(sp[1])))
    return out


def test_udp_endpoint_removal_clears_conntrack(env):
    b = {k: BACKENDS[k] for k in ("b1", "b2")}
    for name, ip in b.items():
        env.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", PFX + name, "/usr/bin/python3", "-c", UDP_SERVER, ip, name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    env.write("dns.yaml", svc_yaml("dns", "10.96.7.53", 53, 5353, node_port=30053,
                                   proto="UDP"))
    env.write("dns-eps.yaml", eps_yaml("dns", list(b.values()), port=5353, proto="UDP"))
    st = env.apply()
    assert st["ok"], st

    out = os.path.join(env.mdir, ".udp-client.out")
    targets = ["10.96.7.53:53", "10.77.100.1:30053"]
    with open(out, "w") as f:
        client = subprocess.Popen(
            ["ip", "netns", "exec", CLI, "/usr/bin/python3", "-c", UDP_CLIENT, "25"] + targets,
            stdout=f, stderr=subprocess.DEVNULL)
    env.procs.append(client)
    # both flows answered (the servers may take a moment to start)
    deadline = time.monotonic() + 10
    while {i for _, i, _ in read_replies(out)} != {0, 1}:
        assert time.monotonic() < deadline, read_replies(out)[-5:]
        time.sleep(0.1)
    time.sleep(0.5)
    # each flow sticks to one backend (one conntrack entry per 5-tuple)
    sticky = {}
    for i in (0, 1):
        last = [r for _, j, r in read_replies(out) if j == i][-5:]
        assert len(set(last)) == 1, (i, last)
        sticky[i] = last[0]
    # remove the backend the ClusterIP flow sticks to
    gone = sticky[0]
    keep = [n for n in b if n != gone][0]
    assert any(e[2] == b[gone] for e in conntrack_udp(NODE)), conntrack_udp(NODE)
    env.write("dns-eps.yaml", eps_yaml("dns", [b[keep]], port=5353, proto="UDP"))
    st = env.apply()
    t0 = time.monotonic()
    assert st["ok"], st
    assert st["backendsDeleted"] >= 2, st  # at least one per entry (ClusterIP, NodePort)
    # within 1 s every flow gets its replies from the remaining backend only
    deadline = t0 + 1.0
    while True:
        recent = [(t, i, r) for t, i, r in read_replies(out) if t > t0 + 0.2]
        flows_moved = {i for _, i, r in recent if r == keep}
        stale = [x for x in recent if x[2] == gone]
        if flows_moved == {0, 1} and not stale:
            break
        assert time.monotonic() < deadline, ("traffic did not move", gone, recent[-10:])
        time.sleep(0.05)
    assert not [e for e in conntrack_udp(NODE) if e[2] == b[gone]], conntrack_udp(NODE)
    # and it stays there
    time.sleep(0.5)
    later = [r for t, _, r in read_replies(out) if t > t0 + 0.3]
    assert later and set(later) == {keep}, later[-10:]


ECHO_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
def serve(c):
    while True:
        d = c.recv(100)
        if not d:
            return
        c.sendall(d)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""

# one line in, the echo (or ERR) out, on one TCP connection kept open
ECHO_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
for line in sys.stdin:
    try:
        c.sendall(line.encode()); print(c.recv(100).decode().strip(), flush=True)
    except OSError as e:
        print("ERR", e, flush=True)
"""


def set_sizes(env):
    return {o["map" if "map" in o else "set"]["name"]: o["map" if "map" in o else "set"].get("size")
            for o in env.table() if "map" in o or "set" in o}


def test_sets_recreated_when_outgrown(env):
    """The element sets are created with a size (the kernel's fixed-size hash, no resizing
    while elements are added); a restart that needs more elements than a set's size
    recreates it in one transaction, and an established connection through the Service
    keeps working; a restart with the same state recreates nothing."""
    ECHO_VIP = "10.96.7.20"
    env.procs.append(subprocess.Popen(
        ["ip", "netns", "exec", PFX + "b1", "/usr/bin/python3", "-c", ECHO_SERVER,
         BACKENDS["b1"], "9000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    env.write("echo.yaml", svc_yaml("echo", ECHO_VIP, 9000, 9000))
    env.write("echo-eps.yaml", eps_yaml("echo", [BACKENDS["b1"]], port=9000))
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, affinity=60))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    st = env.apply()
    assert st["ok"], st
    small = set_sizes(env)
    assert small["services"] == small["backends"] == small["hairpin"] == 512, small

    client = subprocess.Popen(["ip", "netns", "exec", CLI, "/usr/bin/python3", "-c",
                               ECHO_CLIENT, ECHO_VIP, "9000"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    env.procs.append(client)
    deadline = time.monotonic() + 10
    while True:  # the server may take a moment to start
        client.stdin.write("one\n")
        client.stdin.flush()
        if client.stdout.readline().strip() == "one":
            break
        assert time.monotonic() < deadline, "no echo through %s" % ECHO_VIP
        client = subprocess.Popen(["ip", "netns", "exec", CLI, "/usr/bin/python3", "-c",
                                   ECHO_CLIENT, ECHO_VIP, "9000"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        env.procs.append(client)
        time.sleep(0.2)
    assert env.get("http://%s/id" % VIP)[0] == 0

    # 600 more Services with one endpoint each: 600+ entries and backends exceed 512
    ips = list(BACKENDS.values())
    env.write("many.yaml", "---\n".join(
        svc_yaml("s%d" % i, "10.97.%d.%d" % (i // 250, i % 250 + 1), 80, 8080)
        for i in range(600)))
    env.write("many-eps.yaml", "---\n".join(eps_yaml("s%d" % i, [ips[i % 3]])
                                            for i in range(600)))
    st = env.apply()
    assert st["ok"], st
    big = set_sizes(env)
    assert big["services"] == big["backends"] == 2048 and big["hairpin"] == 512, big
    assert len(env.map_elems("services")) == 602
    assert len(env.map_elems("backends")) == 604
    assert len(env.map_elems("hairpin", kind="set")) == 3
    assert "aff-default/web/tcp/80" in aff_maps(env)
    # the established connection kept its NAT, the old and new Services answer
    client.stdin.write("two\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "two"
    assert env.get("http://%s/id" % VIP)[0] == 0
    assert env.get("http://10.97.2.100/id")[0] == 0  # s599
    assert env.get("http://10.97.1.1/id")[0] == 0  # s250

    # the same state again: nothing recreated or rewritten
    st = env.apply()
    assert (st["elemsAdded"], st["backendsAdded"], st["chainsWritten"]) == (0, 0, 0), st
    assert set_sizes(env) == big
    client.stdin.write("three\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "three"
    client.stdin.close()
