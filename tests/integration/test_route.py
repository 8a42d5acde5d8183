"""Integration tests of the node agent's cross-node routing (src/route, src/agent).

Topology, all in network namespaces this test creates (prefix trt<pid>-):

    a (10.99.1.1) --+                       podCIDRs: a 10.98.1.0/24
    b (10.99.1.2) --+-- br1 [router] br2 -- c (10.99.2.3)   b 10.98.2.0/24
                        .254        .254                    c 10.98.3.0/24

Each node runs `twill agent` in its namespace and has a fake pod: a namespace with a veth
(pod 10.98.X.10/24, node side 10.98.X.1/24), so the data path is checked with ping. The
kernel state is read with `ip -j route`, `ip -j neigh` and `bridge -j fdb` in the node
namespaces, always by polling with a deadline.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWILL = os.environ.get("TWILL", os.path.join(ROOT, "build", "twill"))
PFX = "trt%d-" % os.getpid()

NODES = {
    # name: (node IP, subnet, podCIDR index)
    "a": ("10.99.1.1", 1, 1),
    "b": ("10.99.1.2", 1, 2),
    "c": ("10.99.2.3", 2, 3),
}
CLUSTER = "10.98.0.0/16"


def pod_cidr(n):
    return "10.98.%d.0/24" % NODES[n][2]


def pod_ip(n):
    return "10.98.%d.10" % NODES[n][2]


def vtep_mac(ip):
    return "0e:74:" + ":".join("%02x" % int(x) for x in ip.split("."))


def sh(*args, check=True, ns=None, timeout=20):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr))
    return p


def jq(ns, *args):
    out = sh(*args, ns=ns).stdout.strip()
    return json.loads(out) if out else []


def wait_for(what, fn, timeout=15.0, interval=0.1):
    """Poll fn until it returns a truthy value; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (AssertionError, ValueError, OSError) as e:  # transient (file being written...)
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def netns_list():
    try:
        return os.listdir("/run/netns")
    except FileNotFoundError:
        return []


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup_stale():
    """Namespaces of earlier runs whose test process is gone."""
    for name in netns_list():
        m = re.match(r"^trt(\d+)-", name)
        if m and (int(m.group(1)) == os.getpid() or not pid_alive(int(m.group(1)))):
            sh("ip", "netns", "del", name, check=False)


class Cluster:
    def __init__(self, tmp):
        self.tmp = tmp
        self.manifests = os.path.join(tmp, "manifests")
        os.makedirs(self.manifests)
        self.procs = {}
        self.router = PFX + "r"

    def ns(self, n):
        return PFX + n

    def pod_ns(self, n):
        return PFX + "p" + n

    def state(self, n):
        return os.path.join(self.tmp, "state", n)

    def log(self, n):
        return os.path.join(self.tmp, "%s.log" % n)

    def build(self):
        r = self.router
        sh("ip", "netns", "add", r)
        sh("ip", "-n", r, "link", "set", "lo", "up")
        for sub in (1, 2):
            sh("ip", "-n", r, "link", "add", "br%d" % sub, "type", "bridge")
            sh("ip", "-n", r, "addr", "add", "10.99.%d.254/24" % sub, "dev", "br%d" % sub)
            sh("ip", "-n", r, "link", "set", "br%d" % sub, "up")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for n, (ip, sub, idx) in NODES.items():
            ns, pns = self.ns(n), self.pod_ns(n)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            # created inside the router namespace, the peer directly in the node's
            sh("ip", "-n", r, "link", "add", "v" + n, "type", "veth", "peer", "name", "eth1",
               "netns", ns)
            sh("ip", "-n", r, "link", "set", "v" + n, "master", "br%d" % sub, "up")
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth1")
            sh("ip", "-n", ns, "link", "set", "eth1", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", "10.99.%d.254" % sub)
            # the fake pod
            sh("ip", "netns", "add", pns)
            sh("ip", "-n", pns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "add", "hpod", "type", "veth", "peer", "name", "eth0",
               "netns", pns)
            sh("ip", "-n", ns, "addr", "add", "10.98.%d.1/24" % idx, "dev", "hpod")
            sh("ip", "-n", ns, "link", "set", "hpod", "up")
            sh("ip", "-n", pns, "addr", "add", "10.98.%d.10/24" % idx, "dev", "eth0")
            sh("ip", "-n", pns, "link", "set", "eth0", "up")
            sh("ip", "-n", pns, "route", "add", "default", "via", "10.98.%d.1" % idx)
            self.write_node(n)

    def write_node(self, n, annotations=None):
        ip, _, _ = NODES[n]
        obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n},
            "spec": {"podCIDR": pod_cidr(n), "podCIDRs": [pod_cidr(n)]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": n}]},
        }
        if annotations:
            obj["metadata"]["annotations"] = annotations
        path = os.path.join(self.manifests, "node-%s.json" % n)
        tmp = path + ".tmp"  # not a manifest suffix: ignored until renamed
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.rename(tmp, path)

    def remove_node(self, n):
        os.unlink(os.path.join(self.manifests, "node-%s.json" % n))

    def start(self, n, mode, extra=()):
        assert n not in self.procs
        logf = open(self.log(n), "a")
        cmd = ["ip", "netns", "exec", self.ns(n), TWILL, "agent", "--node", n,
               "--manifests", self.manifests, "--state-dir", self.state(n),
               "--routing", mode, "--cluster-cidr", CLUSTER, "--log-level", "debug"] + list(extra)
        self.procs[n] = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()

    def start_all(self, mode):
        for n in NODES:
            self.start(n, mode)

    def stop(self, n):
        p = self.procs.pop(n)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        return p.returncode

    def stop_all(self):
        for n in list(self.procs):
            self.stop(n)

    def teardown(self):
        for n in list(self.procs):
            try:
                self.stop(n)
            except Exception:
                pass
        for n in NODES:
            sh("ip", "netns", "del", self.pod_ns(n), check=False)
            sh("ip", "netns", "del", self.ns(n), check=False)
        sh("ip", "netns", "del", self.router, check=False)

    # ---- reading the kernel and the agent's files ----
    def routes(self, n, *sel):
        return jq(self.ns(n), "ip", "-j", "-d", "route", "show", "table", "main", *sel)

    def twill_routes(self, n):
        return {r["dst"]: r for r in self.routes(n, "proto", "116")}

    def neigh(self, n):
        return jq(self.ns(n), "ip", "-j", "neigh", "show", "dev", "twill.1")

    def fdb(self, n):
        return jq(self.ns(n), "bridge", "-j", "fdb", "show", "dev", "twill.1")

    def link(self, n, name):
        p = sh("ip", "-j", "-d", "link", "show", name, ns=self.ns(n), check=False)
        return json.loads(p.stdout)[0] if p.returncode == 0 else None

    def status(self, n):
        with open(os.path.join(self.state(n), "status.json")) as f:
            return json.load(f)

    def node_json(self, n):
        with open(os.path.join(self.state(n), "node.json")) as f:
            return json.load(f)

    def peer(self, n, name):
        for p in self.status(n)["peers"]:
            if p["node"] == name:
                return p
        return None

    def ping(self, src, dst):
        p = sh("ping", "-c", "1", "-W", "1", pod_ip(dst), ns=self.pod_ns(src), check=False)
        return p.returncode == 0

    def log_text(self, n):
        with open(self.log(n)) as f:
            return f.read()

    def alive(self, n):
        p = self.procs[n]
        assert p.poll() is None, "agent %s exited with %s:\n%s" % (n, p.returncode,
                                                                   self.log_text(n))
        return True


@pytest.fixture
def cl():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not os.access(TWILL, os.X_OK):
        pytest.skip("build/twill is not built")
    cleanup_stale()
    tmp = tempfile.mkdtemp(prefix="twill-route-")
    c = Cluster(tmp)
    try:
        c.build()
        yield c
    finally:
        c.teardown()
        if os.environ.get("TWILL_KEEP_LOGS"):
            print("logs kept in", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- expectations ----

def hostgw_route_ok(cl, n, peer):
    r = cl.twill_routes(n).get(pod_cidr(peer))
    return r and r.get("gateway") == NODES[peer][0] and r.get("dev") == "eth1"


def vxlan_route_ok(cl, n, peer):
    r = cl.twill_routes(n).get(pod_cidr(peer))
    vtep = pod_cidr(peer).split("/")[0]
    return (r and r.get("gateway") == vtep and r.get("dev") == "twill.1"
            and "onlink" in r.get("flags", []))


def vxlan_peer_ok(cl, n, peer):
    if not vxlan_route_ok(cl, n, peer):
        return False
    ip = NODES[peer][0]
    vtep = pod_cidr(peer).split("/")[0]
    mac = vtep_mac(ip)
    neigh = [e for e in cl.neigh(n) if e.get("dst") == vtep]
    if not (neigh and neigh[0].get("lladdr") == mac and "PERMANENT" in neigh[0].get("state", [])):
        return False
    fdb = [e for e in cl.fdb(n) if e.get("mac") == mac]
    return bool(fdb) and fdb[0].get("dst") == ip and fdb[0].get("state") == "permanent"


def check_vxlan_device(cl, n):
    ln = cl.link(n, "twill.1")
    assert ln, "no twill.1 on %s" % n
    info = ln["linkinfo"]["info_data"]
    assert ln["linkinfo"]["info_kind"] == "vxlan"
    assert info["id"] == 1
    assert info["port"] == 4789
    assert info["local"] == NODES[n][0]
    assert info.get("link") == "eth1"
    assert not info.get("learning", False)
    assert ln["mtu"] == 1450
    assert ln["address"] == vtep_mac(NODES[n][0])
    assert "UP" in ln["flags"]
    addrs = jq(cl.ns(n), "ip", "-j", "addr", "show", "dev", "twill.1")
    locs = [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"] if a["family"] == "inet"]
    assert locs == [(pod_cidr(n).split("/")[0], 32)], locs


# ---- tests ----

def test_host_gw(cl):
    cl.start_all("host-gw")
    wait_for("a -> b host-gw route", lambda: hostgw_route_ok(cl, "a", "b"))
    wait_for("b -> a host-gw route", lambda: hostgw_route_ok(cl, "b", "a"))
    for n in NODES:
        cl.alive(n)
    # c is behind the router: no route, reported unroutable
    for n in ("a", "b"):
        p = wait_for("%s reports c unroutable" % n,
                     lambda n=n: (cl.peer(n, "c") or {}).get("status", "").startswith(
                         "unroutable") and cl.peer(n, "c"))
        assert p["via"] == "none"
        assert "10.99.2.3 is not on a directly connected subnet" in p["status"]
        assert "use vxlan or mixed" in p["status"]
        assert pod_cidr("c") not in cl.twill_routes(n)
    p = wait_for("a's peer b ok", lambda: (cl.peer("a", "b") or {}).get("status") == "ok"
                 and cl.peer("a", "b"))
    assert p["via"] == "host-gw" and p["ip"] == "10.99.1.2" and p["podCIDRs"] == [pod_cidr("b")]
    assert not cl.twill_routes("c")
    wait_for("c reports a and b unroutable",
             lambda: all((cl.peer("c", x) or {}).get("status", "").startswith("unroutable")
                         for x in ("a", "b")))
    assert "unroutable" in cl.log_text("a")  # warned in the log
    assert cl.link("a", "twill.1") is None
    # data path
    wait_for("ping a -> b", lambda: cl.ping("a", "b"))
    wait_for("ping b -> a", lambda: cl.ping("b", "a"))
    assert not cl.ping("a", "c")
    # ip_forward, node.json, status.json basics
    assert sh("cat", "/proc/sys/net/ipv4/ip_forward", ns=cl.ns("a")).stdout.strip() == "1"
    nj = wait_for("node.json", lambda: cl.node_json("a"))
    assert nj == {"node": "a", "podCIDRs": [pod_cidr("a")], "mtu": 1500, "wiring": "routed",
                  "bridge": "cni0", "routing": "host-gw"}
    st = cl.status("a")
    assert st["node"] == "a" and st["routing"] == "host-gw" and st["wiring"] == "routed"
    assert st["podCIDRs"] == [pod_cidr("a")]
    assert isinstance(st["leader"], bool) and isinstance(st["errors"], list)
    # twill status, as a table and as JSON
    out = sh(TWILL, "status", "--state-dir", cl.state("a")).stdout
    assert re.search(r"^b\s+10\.99\.1\.2\s+10\.98\.2\.0/24\s+host-gw\s+ok$", out, re.M), out
    assert re.search(r"^c\s+10\.99\.2\.3\s+.*unroutable", out, re.M), out
    js = json.loads(sh(TWILL, "status", "--state-dir", cl.state("a"), "-o", "json").stdout)
    assert js["node"] == "a"
    assert sh(TWILL, "status", "--state-dir", os.path.join(cl.tmp, "nope"),
              check=False).returncode == 1


def test_vxlan(cl):
    cl.start_all("vxlan")
    for n in NODES:
        for peer in NODES:
            if peer != n:
                wait_for("%s -> %s vxlan entries" % (n, peer),
                         lambda n=n, peer=peer: vxlan_peer_ok(cl, n, peer))
        check_vxlan_device(cl, n)
        cl.alive(n)
    for n in NODES:
        for peer in NODES:
            if peer != n:
                wait_for("ping %s -> %s" % (n, peer), lambda n=n, peer=peer: cl.ping(n, peer))
    p = wait_for("a's peer c ok", lambda: (cl.peer("a", "c") or {}).get("status") == "ok"
                 and cl.peer("a", "c"))
    assert p["via"] == "vxlan"
    assert wait_for("node.json", lambda: cl.node_json("a"))["mtu"] == 1450


def test_vxlan_mac_annotation(cl):
    mac = "0e:aa:00:00:00:03"
    cl.write_node("c", {"twill.io/vtep-mac": mac})
    cl.start_all("vxlan")
    wait_for("a's neighbour for c uses the annotated MAC",
             lambda: any(e.get("dst") == "10.98.3.0" and e.get("lladdr") == mac
                         for e in cl.neigh("a")))
    wait_for("a's fdb for c", lambda: any(e.get("mac") == mac and e.get("dst") == "10.99.2.3"
                                          for e in cl.fdb("a")))
    wait_for("c's device MAC", lambda: (cl.link("c", "twill.1") or {}).get("address") == mac)
    wait_for("ping a -> c", lambda: cl.ping("a", "c"))


def test_mixed(cl):
    cl.start_all("mixed")
    wait_for("a -> b host-gw", lambda: hostgw_route_ok(cl, "a", "b"))
    wait_for("b -> a host-gw", lambda: hostgw_route_ok(cl, "b", "a"))
    for n in ("a", "b"):
        wait_for("%s -> c vxlan" % n, lambda n=n: vxlan_peer_ok(cl, n, "c"))
        check_vxlan_device(cl, n)
        # the adjacent peer is not in the overlay
        assert not any(e.get("dst") == pod_cidr("b" if n == "a" else "a").split("/")[0]
                       for e in cl.neigh(n))
    for peer in ("a", "b"):
        wait_for("c -> %s vxlan" % peer, lambda peer=peer: vxlan_peer_ok(cl, "c", peer))
    for n in NODES:
        for peer in NODES:
            if peer != n:
                wait_for("ping %s -> %s" % (n, peer), lambda n=n, peer=peer: cl.ping(n, peer))
    assert cl.peer("a", "b")["via"] == "host-gw"
    assert cl.peer("a", "c")["via"] == "vxlan"


def snapshot(cl, n):
    return (cl.routes(n), cl.neigh(n), cl.fdb(n), cl.link(n, "twill.1")["ifindex"])


def test_restart_changes_nothing(cl):
    ns = cl.ns("a")
    # something twill does not own, and a stale route that twill does own
    sh("ip", "route", "add", "10.77.0.0/24", "via", "10.99.1.254", "proto", "static", ns=ns)
    sh("ip", "route", "add", "10.98.200.0/24", "via", "10.99.1.254", "proto", "116", ns=ns)
    cl.start_all("mixed")
    wait_for("a converged", lambda: hostgw_route_ok(cl, "a", "b") and vxlan_peer_ok(cl, "a", "c"))
    wait_for("stale proto 116 route removed",
             lambda: "10.98.200.0/24" not in cl.twill_routes("a"))
    assert cl.routes("a", "10.77.0.0/24"), "a route twill does not own was touched"
    wait_for("first sync logged", lambda: "synced:" in cl.log_text("a"))

    # Watch every link, route and neighbour change in a's namespace during the restart.
    mon_path = os.path.join(cl.tmp, "monitor.txt")
    mon_out = open(mon_path, "w")
    mon = subprocess.Popen(["ip", "netns", "exec", ns, "ip", "monitor", "link", "route", "neigh"],
                           stdout=mon_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    mon_out.close()
    try:
        # a marker proves the monitor is listening before the restart (it may start
        # listening only after the first marker: toggle it until one is seen)
        def marker_seen():
            if "10.77.1.0/24" in open(mon_path).read():
                return True
            sh("ip", "route", "del", "10.77.1.0/24", ns=ns, check=False)
            sh("ip", "route", "add", "10.77.1.0/24", "via", "10.99.1.254", "proto", "static",
               ns=ns)
            return False
        wait_for("monitor ready", marker_seen)
        sh("ip", "route", "replace", "10.77.1.0/24", "via", "10.99.1.254", "proto", "static",
           ns=ns)
        before = snapshot(cl, "a")
        nsyncs = cl.log_text("a").count("synced:")
        assert cl.stop("a") == 0
        # stopping leaves everything in place
        assert snapshot(cl, "a") == before
        cl.start("a", "mixed")
        wait_for("restarted agent synced",
                 lambda: cl.alive("a") and cl.log_text("a").count("synced:") > nsyncs)
        wait_for("status rewritten by the new agent", lambda: cl.status("a")["peers"])
        # a second marker flushes the monitor's output past the restart
        ndel = open(mon_path).read().count("Deleted 10.77.1.0/24")
        sh("ip", "route", "del", "10.77.1.0/24", ns=ns)
        wait_for("monitor caught up",
                 lambda: open(mon_path).read().count("Deleted 10.77.1.0/24") > ndel)
    finally:
        mon.terminate()
        mon.wait(timeout=10)
    after = snapshot(cl, "a")
    sh("ip", "route", "add", "10.77.1.0/24", "via", "10.99.1.254", "proto", "static", ns=ns)
    assert snapshot(cl, "a") == before
    events = [ln for ln in open(mon_path).read().splitlines()
              if ln.strip() and "10.77.1.0/24" not in ln]
    relevant = [ln for ln in events if "twill" in ln or "proto 116" in ln or "10.98." in ln]
    assert not relevant, "the restart changed the kernel:\n" + "\n".join(relevant)
    assert cl.routes("a", "10.77.0.0/24")
    wait_for("ping a -> c after restart", lambda: cl.ping("a", "c"))


def test_node_removed(cl):
    cl.start_all("vxlan")
    for n in ("a", "b"):
        wait_for("%s -> c" % n, lambda n=n: vxlan_peer_ok(cl, n, "c"))
    cl.stop("c")
    cl.remove_node("c")
    mac = vtep_mac(NODES["c"][0])
    for n in ("a", "b"):
        wait_for("%s: c's route, neighbour and FDB entry removed" % n,
                 lambda n=n: pod_cidr("c") not in cl.twill_routes(n)
                 and not any(e.get("dst") == "10.98.3.0" for e in cl.neigh(n))
                 and not any(e.get("mac") == mac for e in cl.fdb(n)))
        wait_for("%s: c gone from status" % n, lambda n=n: cl.peer(n, "c") is None)
        assert vxlan_peer_ok(cl, n, "b" if n == "a" else "a")
    # and back
    cl.write_node("c")
    wait_for("a -> c again", lambda: vxlan_peer_ok(cl, "a", "c"))


def test_mode_switch(cl):
    for n in ("a", "b"):
        cl.start(n, "host-gw")
    wait_for("a -> b host-gw", lambda: hostgw_route_ok(cl, "a", "b"))
    wait_for("ping a -> b (host-gw)", lambda: cl.ping("a", "b"))
    # host-gw -> vxlan
    for n in ("a", "b"):
        cl.stop(n)
        cl.start(n, "vxlan")
    for n, peer in (("a", "b"), ("b", "a")):
        wait_for("%s -> %s vxlan" % (n, peer), lambda n=n, peer=peer: vxlan_peer_ok(cl, n, peer))
        # the old host-gw routes are gone, nothing left through the underlay
        assert not [r for r in cl.twill_routes(n).values() if r.get("dev") == "eth1"]
    wait_for("ping a -> b (vxlan)", lambda: cl.ping("a", "b"))
    # vxlan -> host-gw: the device and with it its neighbours and FDB go away
    for n in ("a", "b"):
        cl.stop(n)
        cl.start(n, "host-gw")
    for n, peer in (("a", "b"), ("b", "a")):
        wait_for("%s -> %s host-gw" % (n, peer), lambda n=n, peer=peer: hostgw_route_ok(cl, n, peer))
        wait_for("%s: twill.1 removed" % n, lambda n=n: cl.link(n, "twill.1") is None)
    wait_for("ping a -> b (host-gw again)", lambda: cl.ping("a", "b"))


def test_bad_usage(cl):
    p = sh(TWILL, "agent", "--node", "a", check=False)
    assert p.returncode == 2 and "--manifests" in p.stderr
    p = sh(TWILL, "agent", "--node", "a", "--manifests", cl.manifests, "--state-dir",
           cl.state("a"), "--routing", "bogus", check=False)
    assert p.returncode == 2 and "routing" in p.stderr
    p = sh(TWILL, "agent", "--node", "a", "--manifests", os.path.join(cl.tmp, "missing"),
           "--state-dir", cl.state("a"), check=False, ns=cl.ns("a"))
    assert p.returncode == 1 and "missing" in p.stderr


def test_node_not_found_waits(cl):
    cl.remove_node("a")
    cl.start("a", "vxlan")
    wait_for("status says it waits",
             lambda: any("not in the manifests" in e for e in cl.status("a")["errors"]))
    cl.alive("a")
    cl.write_node("a")
    wait_for("a -> b once its Node exists", lambda: vxlan_route_ok(cl, "a", "b"))


def test_drift_repair_on_sighup(cl):
    cl.start_all("vxlan")
    wait_for("a -> b", lambda: vxlan_peer_ok(cl, "a", "b"))
    ns = cl.ns("a")
    sh("ip", "route", "del", pod_cidr("b"), ns=ns)
    sh("ip", "neigh", "del", "10.98.2.0", "dev", "twill.1", ns=ns)
    sh("bridge", "fdb", "del", vtep_mac(NODES["b"][0]), "dev", "twill.1", "dst", NODES["b"][0],
       ns=ns)
    assert not vxlan_route_ok(cl, "a", "b")
    cl.procs["a"].send_signal(signal.SIGHUP)
    wait_for("a repaired its entries for b", lambda: vxlan_peer_ok(cl, "a", "b"))
    wait_for("ping a -> b", lambda: cl.ping("a", "b"))
    cl.alive("a")


def test_foreign_route_is_left_alone(cl):
    ns = cl.ns("a")
    # someone else's route for b's podCIDR: twill reports the conflict and does not touch it
    sh("ip", "route", "add", pod_cidr("b"), "via", "10.99.1.254", "proto", "static", ns=ns)
    cl.start("a", "host-gw")
    wait_for("conflict reported in status.json",
             lambda: any(pod_cidr("b") in e for e in cl.status("a")["errors"]))
    r = cl.routes("a", pod_cidr("b"))
    assert len(r) == 1 and r[0]["gateway"] == "10.99.1.254" and r[0]["protocol"] == "static"
    cl.alive("a")
    # once it is gone, twill's route goes in (retried with backoff)
    sh("ip", "route", "del", pod_cidr("b"), ns=ns)
    wait_for("a -> b host-gw after the conflict", lambda: hostgw_route_ok(cl, "a", "b"))
    wait_for("error cleared", lambda: not cl.status("a")["errors"])
