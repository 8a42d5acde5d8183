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
    d = "/run/netns"
    return sorted(n for n in os.listdir(d) if n.startswith(PFX)) if os.path.isdir(d) else []


def cleanup(procs=()):
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    for ns in our_netns():
        sh("ip", "netns", "del", ns, check=False)


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


def svc_yaml(name, vip, port, target, node_port=None, proto="TCP"):
    np = ", nodePort: %d" % node_port if node_port else ""
    typ = "NodePort" if node_port else "ClusterIP"
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
            "spec:\n  type: %s\n  clusterIP: %s\n"
            "  ports: [{name: http, port: %d, protocol: %s, targetPort: %d%s}]\n"
            % (name, typ, vip, port, proto, target, np))


def eps_yaml(name, ips, port=8080):
    eps = "".join("- {addresses: [%s], nodeName: node}\n" % ip for ip in ips)
    return ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: %s-1, labels: {kubernetes.io/service-name: %s}}\n"
            "addressType: IPv4\nports: [{name: http, port: %d}]\n"
            "endpoints:\n%s" % (name, name, port, eps if eps else "[]\n"))


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
               "--node-ip", "10.77.100.1", ns=NODE, check=False)
        assert p.returncode == 0, "proxy-debug failed: %s %s" % (p.stdout, p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def table(self):
        p = sh("nft", "-j", "list", "table", "ip", "twill", ns=NODE)
        return json.loads(p.stdout)["nftables"]

    def chains(self):
        return sorted(o["chain"]["name"] for o in self.table() if "chain" in o)

    def map_elems(self, name):
        p = sh("nft", "-j", "list", "map", "ip", "twill", name, ns=NODE)
        for o in json.loads(p.stdout)["nftables"]:
            if "map" in o:
                return o["map"].get("elem", [])
        return []

    def get(self, url, ns=CLI, timeout=3):
        p = sh("curl", "-s", "-m", str(timeout), url, ns=ns, check=False, timeout=timeout + 5)
        return p.returncode, p.stdout.strip()

    def spread(self, url, n, ns=CLI):
        counts = {}
        for _ in range(n):
            rc, out = self.get(url, ns=ns)
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
        for ns in [NODE, CLI] + [PFX + b for b in BACKENDS]:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NODE)
        links = [(CLI, "10.77.100", "c")] + [
            (PFX + b, "10.77.%d" % (i + 1), b) for i, b in enumerate(BACKENDS)]
        for ns, net, tag in links:
            host, peer = "tpx%s%d" % (tag, os.getpid() % 10000), "eth0"
            # the veth is created inside the node namespace, never in the host's
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns,
               ns=NODE)
            sh("ip", "addr", "add", net + ".1/24", "dev", host, ns=NODE)
            sh("ip", "link", "set", host, "up", ns=NODE)
            sh("ip", "addr", "add", net + ".2/24", "dev", peer, ns=ns)
            sh("ip", "link", "set", peer, "up", ns=ns)
            sh("ip", "route", "add", "default", "via", net + ".1", ns=ns)
        # a node has a default route; without one, its own connections to a ClusterIP fail
        # the routing lookup before the nat output hook runs
        sh("ip", "route", "add", "default", "via", "10.77.100.2", ns=NODE)
        for b, ip in BACKENDS.items():
            d = os.path.join(mdir, ".www-" + b)
            os.makedirs(d)
            with open(os.path.join(d, "id"), "w") as f:
                f.write(b)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", PFX + b, "/usr/bin/python3", "-m", "http.server",
                 "8080", "--bind", ip, "--directory", d],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        e = Env(mdir)
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
    chains = env.chains()
    for c in ("nat-prerouting", "nat-output", "nat-postrouting", "services",
              "svc-default/web/tcp/80", "ext-default/web/tcp/80",
              "ep-default/web/tcp/80/10.77.1.2:8080"):
        assert c in chains, chains
    elems = env.map_elems("services")
    keys = sorted(tuple(e[0]["concat"]) for e in elems)
    assert keys == sorted([(VIP, "tcp", 80), ("10.77.100.1", "tcp", 30080)]), elems

    # a restart with nothing changed: no element or chain is touched
    st = env.apply()
    assert st["ok"]
    assert (st["elemsAdded"], st["elemsDeleted"], st["chainsWritten"], st["chainsDeleted"]) \
        == (0, 0, 0, 0), st


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

    # one endpoint goes: only the service chain is rewritten and its endpoint chain deleted
    env.write("web-eps.yaml", eps_yaml("web", [BACKENDS["b1"], BACKENDS["b2"]]))
    st = env.apply()
    assert st["ok"]
    assert (st["elemsAdded"], st["elemsDeleted"]) == (0, 0), st
    assert st["chainsWritten"] == 1 and st["chainsDeleted"] == 1, st
    assert "ep-default/web/tcp/80/10.77.3.2:8080" not in env.chains()
    counts = env.spread("http://%s/id" % VIP, 40)
    assert set(counts) == {"b1", "b2"}, counts

    # the Service goes: its elements and chains go, the base layout stays
    env.remove("web.yaml")
    st = env.apply()
    assert st["ok"] and st["elemsDeleted"] == 2, st
    assert not [c for c in env.chains() if c.endswith("web/tcp/80") or "/web/" in c]
    assert env.map_elems("services") == []
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
