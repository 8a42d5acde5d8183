"""Integration tests of the iptables Service dataplane (src/proxy/ipt.c): kube-proxy's layout
applied with iptables-restore --noflush, checked with the seed's commands and with curl.

Driven by `twill proxy ipt-render` (or, until main.c wires it, any binary given in TWILL_IPT
that takes the same arguments, e.g. a driver calling proxy_ipt_debug_main()).

Topology, all in network namespaces this test creates (prefix tipt<pid>-):

    cli (10.78.100.2) --veth-- node --veth-- b1 (10.78.1.2)   python http.server :8080
                               |   \\--veth-- b2 (10.78.2.2)
                               |    \\-veth-- b3 (10.78.3.2)
    node: 10.78.100.1 (the NodePort address), 10.78.N.1 towards backend N; ip_forward=1.

Rules live in `node`; traffic goes cli -> node (PREROUTING DNAT) -> backend, or from `node`
itself (OUTPUT).  The cluster CIDR given is 10.244.0.0/16, so cli and node traffic to the
ClusterIP is masqueraded (KUBE-MARK-MASQ, KUBE-POSTROUTING).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

import svctopo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWILL = os.environ.get("TWILL", os.path.join(ROOT, "build", "twill"))
PFX = "tipt%d-" % os.getpid()
NODE, CLI = PFX + "node", PFX + "cli"
BACKENDS = {"b1": "10.78.1.2", "b2": "10.78.2.2", "b3": "10.78.3.2"}
VIP = "10.96.8.10"
NODE_IP = "10.78.100.1"


def sh(*args, check=True, ns=None, timeout=20, input=None):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(cmd), p.returncode, p.stdout,
                                                        p.stderr))
    return p


def driver():
    """The command prefix that renders/applies, or None."""
    env = os.environ.get("TWILL_IPT")
    cands = [[env]] if env else []
    cands.append([TWILL, "proxy", "ipt-render"])
    for c in cands:
        if not os.access(c[0], os.X_OK):
            continue
        p = subprocess.run(c + ["--help"], capture_output=True, text=True)
        if p.returncode == 0 and "ipt-render" in p.stdout:
            return c
    return None


DRIVER = driver()


def our_netns():
    return svctopo.netns_with_prefix(PFX)


def cleanup(procs=()):
    svctopo.cleanup(PFX, procs)


def requirements():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if DRIVER is None:
        return ("no `twill proxy ipt-render` in %s (not wired yet; set TWILL_IPT to a "
                "driver binary)" % TWILL)
    for t in ("iptables", "iptables-save", "iptables-restore", "curl", "ip"):
        if not shutil.which(t):
            return "needs %s" % t
    return None


def svc_yaml(name, vip, port, target, node_port=None, affinity=None, annotations=""):
    np = ", nodePort: %d" % node_port if node_port else ""
    typ = "NodePort" if node_port else "ClusterIP"
    aff = ""
    if affinity:
        aff = ("  sessionAffinity: ClientIP\n"
               "  sessionAffinityConfig: {clientIP: {timeoutSeconds: %d}}\n" % affinity)
    ann = ", annotations: {%s}" % annotations if annotations else ""
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default%s}\n"
            "spec:\n  type: %s\n  clusterIP: %s\n%s"
            "  ports: [{name: http, port: %d, protocol: TCP, targetPort: %d%s}]\n"
            % (name, ann, typ, vip, aff, port, target, np))


def eps_yaml(name, ips, port=8080):
    eps = "".join("- {addresses: [%s], nodeName: node}\n" % ip for ip in ips)
    return ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: %s-1, namespace: default, "
            "labels: {kubernetes.io/service-name: %s}}\n"
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

    def args(self):
        return [self.mdir, "--node", "node", "--node-ip", NODE_IP,
                "--cluster-cidr", "10.244.0.0/16"]

    def render(self):
        return sh(*(DRIVER + self.args()), ns=NODE).stdout

    def apply(self):
        p = sh(*(DRIVER + self.args() + ["--apply"]), ns=NODE, check=False)
        assert p.returncode == 0, "apply failed: %s %s" % (p.stdout, p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def ipt(self, *args):
        return sh("iptables", *args, ns=NODE).stdout

    def nat_chains(self):
        out = sh("iptables-save", "-t", "nat", ns=NODE).stdout
        return [l[1:].split()[0] for l in out.splitlines() if l.startswith(":")]

    def get(self, url, ns=CLI, timeout=3):
        t0 = time.monotonic()
        p = sh("curl", "-s", "-m", str(timeout), url, ns=ns, check=False, timeout=timeout + 5)
        return p.returncode, p.stdout.strip(), time.monotonic() - t0

    def spread(self, url, n, ns=CLI):
        counts = {}
        for _ in range(n):
            rc, out, _ = self.get(url, ns=ns)
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
    mdir = tempfile.mkdtemp(prefix="tipt-manifests-")
    try:
        procs += svctopo.build(sh, NODE, CLI, PFX, BACKENDS, "10.78", "tipt", mdir)
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


def svc_chain(table_text):
    m = re.search(r"^(KUBE-SVC-[A-Z2-7]{16})\s", table_text, re.M)
    assert m, table_text
    return m.group(1)


def test_layout_spread_nodeport_and_resync(env):
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, node_port=30080))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    # a chain and a rule that are not ours: they must survive every sync
    sh("iptables", "-t", "nat", "-N", "FOREIGN-TEST", ns=NODE)
    sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-d", "192.0.2.1", "-j", "FOREIGN-TEST",
       ns=NODE)
    st = env.apply()
    assert st["ok"] and st["jumpsAdded"] == 12 and st["endpoints"] == 3, st

    # the seed's commands show the seed's layout
    svcs = env.ipt("-t", "nat", "-L", "KUBE-SERVICES", "-n")
    chain = svc_chain(svcs)
    lines = [l for l in svcs.splitlines() if l.startswith("KUBE-")]
    assert re.search(r"%s\s+(tcp|6)\s+--\s+0\.0\.0\.0/0\s+%s\s+/\* default/web:http cluster IP "
                     r"\*/ tcp dpt:80" % (chain, re.escape(VIP)), lines[0]), svcs
    assert lines[-1].startswith("KUBE-NODEPORTS") and "ADDRTYPE match dst-type LOCAL" in \
        lines[-1], svcs
    sep_lines = [l for l in env.ipt("-t", "nat", "-L", chain, "-n").splitlines()
                 if l.startswith("KUBE-SEP-")]
    assert len(sep_lines) == 3
    assert "statistic mode random probability 0.33333333349" in sep_lines[0]
    assert "statistic mode random probability 0.50000000000" in sep_lines[1]
    assert "statistic" not in sep_lines[2]
    sep = sep_lines[0].split()[0]
    dnat = env.ipt("-t", "nat", "-L", sep, "-n")
    assert re.search(r"DNAT\s+(tcp|6)\s+--\s+0\.0\.0\.0/0\s+0\.0\.0\.0/0\s+.*tcp "
                     r"to:10\.78\.1\.2:8080", dnat), dnat
    assert "KUBE-NODEPORTS" in env.ipt("-t", "nat", "-L", "KUBE-SERVICES", "-n")
    np = env.ipt("-t", "nat", "-L", "KUBE-NODEPORTS", "-n")
    assert "tcp dpt:30080" in np and "KUBE-EXT-" + chain[len("KUBE-SVC-"):] in np, np

    # the ClusterIP spreads over every backend, from a client and from the node itself
    counts = env.spread("http://%s/id" % VIP, 90)
    assert sorted(counts) == ["b1", "b2", "b3"], counts
    assert min(counts.values()) >= 12, counts
    counts = env.spread("http://%s/id" % VIP, 30, ns=NODE)
    assert set(counts) <= {"b1", "b2", "b3"} and len(counts) >= 2, counts
    # the NodePort on the node's address, from the client
    counts = env.spread("http://%s:30080/id" % NODE_IP, 30)
    assert set(counts) <= {"b1", "b2", "b3"} and len(counts) >= 2, counts

    # a second sync is a no-op for the jumps (no duplicates) and leaves foreign rules alone
    st = env.apply()
    assert st["ok"] and st["jumpsAdded"] == 0 and st["deletedChains"] == 0, st
    save = sh("iptables-save", ns=NODE).stdout
    assert save.count('-A PREROUTING -m comment --comment "kubernetes service portals"') == 1
    assert save.count('-A FORWARD -m comment --comment "kubernetes forwarding rules"') == 1
    assert "-A POSTROUTING -d 192.0.2.1/32 -j FOREIGN-TEST" in save

    # an endpoint goes: its KUBE-SEP chain is deleted, traffic stays on the other two
    env.write("web-eps.yaml", eps_yaml("web", ["10.78.1.2", "10.78.2.2"]))
    before = set(env.nat_chains())
    st = env.apply()
    assert st["ok"] and st["deletedChains"] == 1, st
    after = set(env.nat_chains())
    gone = before - after
    assert len(gone) == 1 and next(iter(gone)).startswith("KUBE-SEP-"), (before, after)
    assert "FOREIGN-TEST" in after
    counts = env.spread("http://%s/id" % VIP, 30)
    assert set(counts) == {"b1", "b2"}, counts

    # no endpoints at all: REJECT (a fast refusal, not a timeout)
    env.write("web-eps.yaml", eps_yaml("web", []))
    st = env.apply()
    assert st["ok"], st
    filt = env.ipt("-t", "filter", "-L", "KUBE-SERVICES", "-n")
    assert "REJECT" in filt and "has no endpoints" in filt, filt
    assert not [c for c in env.nat_chains() if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]
    # from the node itself (OUTPUT): the ICMP error is delivered locally, at once
    rc, _, took = env.get("http://%s/id" % VIP, ns=NODE, timeout=5)
    assert rc == 7 and took < 2, (rc, took)
    # forwarded (FORWARD): the kernel rate-limits ICMP errors per peer (a fresh peer gets
    # none for the first second here), so lift that in the test's node namespace
    sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", ns=NODE)
    rc, _, took = env.get("http://%s/id" % VIP, timeout=5)
    assert rc == 7 and took < 2, (rc, took)

    # cleanup removes every chain and jump of ours and nothing else
    sh(*(DRIVER + ["--cleanup"]), ns=NODE)
    save = sh("iptables-save", ns=NODE).stdout
    assert "KUBE-" not in save, save
    assert "-A POSTROUTING -d 192.0.2.1/32 -j FOREIGN-TEST" in save


def test_affinity_sticks(env):
    env.write("sticky.yaml", svc_yaml("sticky", VIP, 80, 8080, affinity=600))
    env.write("sticky-eps.yaml", eps_yaml("sticky", list(BACKENDS.values())))
    st = env.apply()
    assert st["ok"], st
    chain = svc_chain(env.ipt("-t", "nat", "-L", "KUBE-SERVICES", "-n"))
    rules = env.ipt("-t", "nat", "-L", chain, "-n")
    assert rules.count("recent: CHECK seconds: 600 reap") == 3, rules
    counts = env.spread("http://%s/id" % VIP, 20)
    assert len(counts) == 1, counts


def test_round_robin(env):
    """twill.io/lb-scheduler: rr becomes statistic nth: the endpoints take turns exactly."""
    env.write("rr.yaml", svc_yaml("rr", VIP, 80, 8080,
                                  annotations="twill.io/lb-scheduler: rr"))
    env.write("rr-eps.yaml", eps_yaml("rr", list(BACKENDS.values())))
    st = env.apply()
    assert st["ok"], st
    chain = svc_chain(env.ipt("-t", "nat", "-L", "KUBE-SERVICES", "-n"))
    rules = env.ipt("-t", "nat", "-L", chain, "-n")
    assert "statistic mode nth every 3" in rules and "statistic mode nth every 2" in rules, \
        rules
    assert env.spread("http://%s/id" % VIP, 30) == {n: 10 for n in BACKENDS}


def test_render_is_restore_input(env):
    """The printed text is valid iptables-restore input (checked with --test)."""
    env.write("web.yaml", svc_yaml("web", VIP, 80, 8080, node_port=30080))
    env.write("web-eps.yaml", eps_yaml("web", list(BACKENDS.values())))
    text = env.render()
    assert text.startswith("*filter\n") and text.endswith("COMMIT\n")
    assert "--probability 0.3333333333 " in text and "--probability 0.5000000000 " in text
    sh("iptables-restore", "--test", "--noflush", ns=NODE, input=text)
