"""Integration tests of twill's CNI plugin (src/cni), side by side with the reference plugins.

Every case runs the same steps against `twill` (CNI_COMMAND set, config type "twill") and,
where the reference can do it, against Debian's reference plugins (/usr/lib/cni/bridge with
ipam host-local, CNI_PATH=/usr/lib/cni) as the baseline, and compares what they do: the
ADD result's shape, the address in the pod, reachability, CHECK, DEL (twice, and after the
pod's netns is gone), error codes, 200 concurrent ADDs, rollback of a failed ADD.  Twill-only:
GC and STATUS (CNI 1.1.0; Debian's bridge supports up to 1.0.0), the routed wiring, and an ADD
killed with SIGKILL halfway followed by GC.

Topology, all in network namespaces this file creates (prefix tcni<pid>-), removed on start
(leftovers of dead runs) and on exit:
    <P>node      the node: the plugin runs here (`ip netns exec`); lo has 10.99.0.1/32
    <P>pod...    pods, one per attachment
No link, address, route or sysctl is touched outside these namespaces.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_cni.py   (root; TWILL=path or
build/twill)
"""

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TWILL = os.environ.get("TWILL", str(ROOT / "build" / "twill"))
REF_DIR = "/usr/lib/cni"
PFX = "tcni%d-" % os.getpid()
POD_CIDR = "10.250.0.0/24"
NODE_ADDR = "10.99.0.1"
MTU = 1450
NET = "tnet"


# ---------------------------------------------------------------- helpers ----

def sh(*args, ns=None, check=True, timeout=30, input=None):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(cmd), p.returncode,
                                                       p.stdout, p.stderr))
    return p


def netns_names():
    d = Path("/run/netns")
    return sorted(n.name for n in d.iterdir()) if d.is_dir() else []


def netns_del(name):
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def cleanup_stale():
    """Namespaces of earlier runs of this file whose process is gone."""
    for n in netns_names():
        m = re.match(r"tcni(\d+)-", n)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not Path("/proc/%d" % pid).exists():
            netns_del(n)


def cleanup_ours():
    for n in netns_names():
        if n.startswith(PFX):
            netns_del(n)


def jaddrs(ns, dev):
    p = sh("ip", "-j", "addr", "show", "dev", dev, ns=ns, check=False)
    if p.returncode:
        return None
    out = []
    for link in json.loads(p.stdout):
        for a in link.get("addr_info", []):
            out.append("%s/%d" % (a["local"], a["prefixlen"]))
    return out


def links(ns):
    return {l["ifname"]: l for l in json.loads(sh("ip", "-j", "-d", "link", ns=ns).stdout)}


def ping(ns, addr):
    return sh("ping", "-c", "1", "-W", "2", addr, ns=ns, check=False).returncode == 0


class Plugin:
    """One CNI plugin in one node namespace, driven the way a runtime would."""

    def __init__(self, kind, node, state, wiring="routed", version="1.0.0"):
        self.kind, self.node, self.state, self.wiring = kind, node, Path(state), wiring
        self.version = version
        if kind == "twill":
            self.binary = TWILL
            self.lease_dir = self.state / "ipam" / NET
        else:
            self.binary = os.path.join(REF_DIR, "bridge")
            self.lease_dir = self.state / "ref" / NET

    def conf(self, version=None, **extra):
        v = version or self.version
        if self.kind == "twill":
            c = {"cniVersion": v, "name": NET, "type": "twill", "stateDir": str(self.state)}
        else:
            c = {"cniVersion": v, "name": NET, "type": "bridge", "bridge": "cni0",
                 "isGateway": True, "isDefaultGateway": extra.pop("default_gw", True),
                 "mtu": MTU,
                 "ipam": {"type": "host-local", "subnet": POD_CIDR,
                          "dataDir": str(self.state / "ref")}}
        c.update(extra)
        return c

    def env(self, cmd, cid=None, netns=None, ifname="eth0", drop=()):
        e = {"CNI_COMMAND": cmd, "CNI_PATH": REF_DIR, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        if cid is not None:
            e["CNI_CONTAINERID"] = cid
        if netns is not None:
            e["CNI_NETNS"] = netns if netns.startswith("/") else "/run/netns/" + netns
        if ifname is not None:
            e["CNI_IFNAME"] = ifname
        for k in drop:
            e.pop(k, None)
        return e

    def argv(self, env):
        return (["ip", "netns", "exec", self.node, "env", "-i"]
                + ["%s=%s" % kv for kv in env.items()] + [self.binary])

    def run(self, cmd, cid=None, netns=None, ifname="eth0", conf=None, stdin=None, drop=(),
            timeout=30):
        """(exit code, parsed stdout or None, raw stdout, stderr)"""
        data = stdin if stdin is not None else json.dumps(conf if conf is not None
                                                          else self.conf())
        p = subprocess.run(self.argv(self.env(cmd, cid, netns, ifname, drop)), input=data,
                           capture_output=True, text=True, timeout=timeout)
        try:
            out = json.loads(p.stdout) if p.stdout.strip() else None
        except json.JSONDecodeError:
            out = None
        return p.returncode, out, p.stdout, p.stderr

    def add(self, cid, netns, ifname="eth0", **kw):
        rc, out, raw, err = self.run("ADD", cid, netns, ifname, **kw)
        assert rc == 0, "%s ADD failed: %s %s" % (self.kind, raw, err)
        return out

    def leases(self):
        if not self.lease_dir.is_dir():
            return {}
        out = {}
        for f in self.lease_dir.iterdir():
            try:
                ipaddress.ip_address(f.name)
            except ValueError:
                continue
            out[f.name] = f.read_text().split()
        return out


def new_node(tag):
    node = PFX + "node" + tag
    netns_del(node)
    sh("ip", "netns", "add", node)
    sh("ip", "link", "set", "lo", "up", ns=node)
    sh("ip", "addr", "add", NODE_ADDR + "/32", "dev", "lo", ns=node)
    return node


def new_pod(name):
    ns = PFX + name
    netns_del(ns)
    sh("ip", "netns", "add", ns)
    return ns


def write_node_json(state, wiring="routed", cidrs=(POD_CIDR,)):
    state.mkdir(parents=True, exist_ok=True)
    (state / "node.json").write_text(json.dumps({
        "node": "n1", "podCIDRs": list(cidrs), "mtu": MTU, "wiring": wiring,
        "bridge": "cni0", "routing": "vxlan"}))


@pytest.fixture(scope="module", autouse=True)
def _env():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not os.access(TWILL, os.X_OK):
        pytest.skip("%s not built (make)" % TWILL)
    if not os.access(os.path.join(REF_DIR, "bridge"), os.X_OK):
        pytest.skip("reference plugins not installed in %s" % REF_DIR)
    cleanup_stale()
    cleanup_ours()
    yield
    cleanup_ours()


_seq = iter(range(1, 1 << 30))


@pytest.fixture
def mk(tmp_path):
    """Factory: mk(kind, wiring) -> Plugin with its own node namespace and state dir."""
    made = []

    def factory(kind, wiring="routed", version="1.0.0", cidrs=(POD_CIDR,)):
        n = next(_seq)
        node = new_node(str(n))
        state = tmp_path / ("state%d" % n)
        write_node_json(state, wiring, cidrs)
        made.append(node)
        return Plugin(kind, node, state, wiring, version)

    yield factory
    for n in netns_names():
        if n.startswith(PFX):
            netns_del(n)


KINDS = [("twill", "routed"), ("twill", "bridge"), ("ref", "bridge")]
IDS = ["twill-routed", "twill-bridge", "reference"]


def check_add_result(res, version, netns, ifname="eth0"):
    """What the spec requires of an ADD result, for any plugin."""
    assert res["cniVersion"] == version
    ifaces = res["interfaces"]
    mac = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
    for i in ifaces:
        assert i["name"] and mac.match(i["mac"]), i
    pod = [k for k, i in enumerate(ifaces) if i.get("sandbox")]
    assert len(pod) == 1, ifaces
    assert ifaces[pod[0]]["sandbox"] == "/run/netns/" + netns
    assert ifaces[pod[0]]["name"] == ifname
    assert any(not i.get("sandbox") for i in ifaces), "no host-side interface"
    assert res["ips"]
    for ip in res["ips"]:
        iface = ipaddress.ip_interface(ip["address"])
        assert iface.ip in ipaddress.ip_network(POD_CIDR)
        assert ipaddress.ip_address(ip["gateway"])
        assert ip["interface"] == pod[0]
        if version == "0.4.0":
            assert ip["version"] == "4"
        else:
            assert "version" not in ip
    return ifaces[pod[0]], res["ips"][0]


# ------------------------------------------------------------------ cases ----

def test_version():
    tw = Plugin("twill", "unused", "/nonexistent")
    ref = Plugin("ref", "unused", "/nonexistent")
    for p in (tw, ref):
        r = subprocess.run([p.binary], env=p.env("VERSION", ifname=None),
                           input='{"cniVersion":"1.0.0"}', capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, r.stderr
        v = json.loads(r.stdout)
        assert set(v) == {"cniVersion", "supportedVersions"}
        assert {"0.4.0", "1.0.0"} <= set(v["supportedVersions"])
        if p is tw:
            assert v == {"cniVersion": "1.1.0",
                         "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("kind,wiring", KINDS, ids=IDS)
def test_add_check_del(mk, kind, wiring):
    p = mk(kind, wiring)
    pod = new_pod("p1")
    res = p.add("c1", pod)
    iface, ip = check_add_result(res, "1.0.0", pod)
    addr = ipaddress.ip_interface(ip["address"])
    # the address and MTU are configured in the pod, the pod reaches the node
    assert ip["address"] in jaddrs(pod, "eth0")
    podlink = links(pod)["eth0"]
    assert podlink["mtu"] == MTU and podlink["address"] == iface["mac"]
    target = NODE_ADDR if wiring == "routed" else ip["gateway"]
    assert ping(pod, target), "pod cannot reach %s" % target
    host = [i["name"] for i in res["interfaces"] if not i.get("sandbox")]
    nodelinks = links(p.node)
    for h in host:
        assert h in nodelinks
    if kind == "twill":
        veth = [h for h in host if h.startswith("tw")]
        assert len(veth) == 1 and len(veth[0]) == 14
        assert nodelinks[veth[0]]["mtu"] == MTU
        if wiring == "routed":
            assert addr.network.prefixlen == 32
            routes = json.loads(sh("ip", "-j", "route", "show", "proto", "117",
                                   ns=p.node).stdout)
            assert {"dst": str(addr.ip), "dev": veth[0]} in [
                {"dst": r["dst"], "dev": r["dev"]} for r in routes]
            assert sh("cat", "/proc/sys/net/ipv4/conf/%s/proxy_arp" % veth[0],
                      ns=p.node).stdout.strip() == "1"
            pr = sh("ip", "route", ns=pod).stdout
            assert "default via 169.254.1.1 dev eth0" in pr
            assert "169.254.1.1 dev eth0 scope link" in pr
        else:
            assert addr.network.prefixlen == 24
            assert nodelinks[veth[0]].get("master") == "cni0"
    assert list(p.leases()) == [str(addr.ip)]
    assert p.leases()[str(addr.ip)][:2] == ["c1", "eth0"]

    # CHECK with the ADD result as prevResult
    rc, out, raw, err = p.run("CHECK", "c1", pod, conf=p.conf(prevResult=res))
    assert rc == 0, raw + err

    # DEL, DEL again: both succeed, nothing left
    for _ in range(2):
        rc, out, raw, err = p.run("DEL", "c1", pod, conf=p.conf(prevResult=res))
        assert rc == 0, raw + err
        assert not p.leases()
        assert "eth0" not in links(pod)
        assert not set(host) - {"cni0"} & set(links(p.node))


@pytest.mark.parametrize("kind,wiring", KINDS, ids=IDS)
def test_check_detects_missing_address(mk, kind, wiring):
    p = mk(kind, wiring)
    pod = new_pod("p1")
    res = p.add("c1", pod)
    sh("ip", "addr", "flush", "dev", "eth0", ns=pod)
    rc, out, raw, err = p.run("CHECK", "c1", pod, conf=p.conf(prevResult=res))
    assert rc != 0 and out and out["code"] >= 1, raw
    p.run("DEL", "c1", pod)


@pytest.mark.parametrize("kind,wiring", KINDS, ids=IDS)
def test_del_after_netns_gone(mk, kind, wiring):
    p = mk(kind, wiring)
    pod = new_pod("p1")
    p.add("c1", pod)
    netns_del(pod)
    rc, out, raw, err = p.run("DEL", "c1", pod)
    assert rc == 0, raw + err
    assert not p.leases()
    # unknown container: success too
    rc, out, raw, err = p.run("DEL", "never-added", pod)
    assert rc == 0, raw + err


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
@pytest.mark.parametrize("kind", ["twill", "ref"])
def test_result_versions(mk, kind, version):
    p = mk(kind, "bridge", version=version)
    pod = new_pod("p1")
    res = p.add("c1", pod)
    check_add_result(res, version, pod)
    assert p.run("DEL", "c1", pod)[0] == 0


def test_result_1_1_0(mk):
    p = mk("twill", "routed", version="1.1.0")
    pod = new_pod("p1")
    res = p.add("c1", pod)
    iface, ip = check_add_result(res, "1.1.0", pod)
    assert iface["mtu"] == MTU
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    assert res["dns"] == {}


ERROR_CASES = [
    # name, how to call, expected code (twill, reference)
    ("version 9.9.9", dict(conf_extra={"cniVersion": "9.9.9"}), 1, 1),
    ("no CNI_NETNS", dict(drop=("CNI_NETNS",)), 4, 4),
    ("no CNI_IFNAME", dict(drop=("CNI_IFNAME",)), 4, 4),
    ("no CNI_CONTAINERID", dict(drop=("CNI_CONTAINERID",)), 4, 4),
    ("malformed JSON", dict(stdin='{"cniVersion": "1.0.0", "name": '), 6, 6),
    ("no name", dict(conf_drop="name"), 7, 7),
    # by design: twill says "container unknown" (3: nothing to clean up); the reference
    # plugin gives a generic 999
    ("netns missing", dict(netns="/run/netns/" + PFX + "does-not-exist"), 3, 999),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors(mk, case):
    name, how, want_tw, want_ref = case
    pod = new_pod("p1")
    codes = {}
    for kind in ("twill", "ref"):
        p = mk(kind, "bridge")
        conf = p.conf(**how.get("conf_extra", {}))
        if "conf_drop" in how:
            conf.pop(how["conf_drop"])
        rc, out, raw, err = p.run("ADD", "c1", how.get("netns", pod), conf=conf,
                                  stdin=how.get("stdin"), drop=how.get("drop", ()))
        assert rc != 0, "%s: %s ADD succeeded: %s" % (name, kind, raw)
        assert out is not None and "code" in out and "msg" in out, raw
        codes[kind] = out["code"]
        assert not p.leases()
        if kind == "twill":
            assert set(out) == {"cniVersion", "code", "msg", "details"}
    assert codes == {"twill": want_tw, "ref": want_ref}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "2.0.0", None])
def test_old_versions_rejected(mk, version):
    """twill speaks 0.4.0 and later; the reference still accepts 0.1.0-0.3.1 (and a
    missing cniVersion, which means 0.1.0), so there is no baseline to compare."""
    p = mk("twill")
    pod = new_pod("p1")
    conf = p.conf(version=version or "x")
    if version is None:
        del conf["cniVersion"]
    rc, out, raw, err = p.run("ADD", "c1", pod, conf=conf)
    assert rc != 0 and out["code"] == 1 and out["msg"] == "incompatible CNI versions"
    assert not p.leases() and "eth0" not in links(pod)


def test_status(mk):
    p = mk("twill", version="1.1.0")
    rc, out, raw, err = p.run("STATUS", ifname=None)
    assert rc == 0 and out is None, raw + err
    (p.state / "node.json").unlink()
    rc, out, raw, err = p.run("STATUS", ifname=None)
    assert rc != 0 and out["code"] == 50, raw
    write_node_json(p.state, cidrs=())
    rc, out, raw, err = p.run("STATUS", ifname=None)
    assert rc != 0 and out["code"] == 50, raw
    # ADD while the agent has not written its podCIDR yet: try again later
    pod = new_pod("p1")
    rc, out, raw, err = p.run("ADD", "c1", pod)
    assert rc != 0 and out["code"] == 11, raw


@pytest.mark.parametrize("wiring", ["routed", "bridge"])
def test_gc(mk, wiring):
    """GC (1.1.0) removes what the runtime no longer lists, and only that.  (Debian's
    reference bridge plugin supports CNI up to 1.0.0, so there is no baseline.)"""
    p = mk("twill", wiring, version="1.1.0")
    pods = [new_pod("p%d" % i) for i in range(3)]
    res = [p.add("c%d" % i, pods[i]) for i in range(3)]
    keep = [{"containerID": "c0", "ifname": "eth0"}, {"containerID": "c2", "ifname": "eth0"}]
    rc, out, raw, err = p.run("GC", ifname=None,
                              conf=p.conf(**{"cni.dev/valid-attachments": keep}))
    assert rc == 0, raw + err
    owners = sorted(v[0] for v in p.leases().values())
    assert owners == ["c0", "c2"]
    assert "eth0" not in links(pods[1])
    for i in (0, 2):
        rc, out, raw, err = p.run("CHECK", "c%d" % i, pods[i], conf=p.conf(prevResult=res[i]))
        assert rc == 0, raw + err
    # an empty list releases everything
    rc, out, raw, err = p.run("GC", ifname=None,
                              conf=p.conf(**{"cni.dev/valid-attachments": []}))
    assert rc == 0, raw + err
    assert not p.leases()
    assert not [n for n in links(p.node) if n.startswith("tw")]
    # GC without the list is refused (it would mean "delete everything")
    rc, out, raw, err = p.run("GC", ifname=None)
    assert rc != 0 and out["code"] == 7


@pytest.mark.parametrize("kind,wiring", KINDS, ids=IDS)
def test_failed_add_rolls_back(mk, kind, wiring):
    p = mk(kind, wiring)
    # 1. the pod already has an interface of that name
    pod = new_pod("p1")
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0", ns=pod)
    before = set(links(p.node))
    rc, out, raw, err = p.run("ADD", "c1", pod)
    assert rc != 0 and out and out["code"], raw
    assert not p.leases()
    assert set(links(p.node)) - before <= {"cni0"}
    # 2. failure late in the sequence: the pod already has a default route (twill fails
    #    there; the reference bridge plugin adds its route anyway, so no baseline)
    if kind != "twill":
        return
    pod2 = new_pod("p2")
    sh("ip", "link", "add", "x1", "type", "veth", "peer", "name", "x2", ns=pod2)
    sh("ip", "link", "set", "x1", "up", ns=pod2)
    sh("ip", "addr", "add", "192.0.2.1/24", "dev", "x1", ns=pod2)
    sh("ip", "route", "add", "default", "via", "192.0.2.254", ns=pod2)
    rc, out, raw, err = p.run("ADD", "c2", pod2)
    assert rc != 0 and out and out["code"], raw
    assert not p.leases()
    assert "eth0" not in links(pod2)
    assert set(links(p.node)) - before <= {"cni0"}
    if kind == "twill":
        assert not sh("ip", "route", "show", "proto", "117", ns=p.node).stdout.strip()


N_CONCURRENT = 200


@pytest.mark.parametrize("kind,wiring", KINDS, ids=IDS)
def test_concurrent_adds(mk, kind, wiring):
    p = mk(kind, wiring)
    pods = [new_pod("c%d" % i) for i in range(N_CONCURRENT)]

    def add(i):
        return p.run("ADD", "k%d" % i, pods[i], timeout=120)

    with ThreadPoolExecutor(max_workers=50) as ex:
        results = list(ex.map(add, range(N_CONCURRENT)))
    failed = [r[2] + r[3] for r in results if r[0] != 0]
    assert not failed, failed[:3]
    addrs = [r[1]["ips"][0]["address"].split("/")[0] for r in results]
    assert len(set(addrs)) == N_CONCURRENT
    assert set(p.leases()) == set(addrs)
    for i in (0, N_CONCURRENT // 2, N_CONCURRENT - 1):
        assert results[i][1]["ips"][0]["address"] in jaddrs(pods[i], "eth0")

    def delete(i):
        return p.run("DEL", "k%d" % i, pods[i], timeout=120)

    with ThreadPoolExecutor(max_workers=50) as ex:
        dels = list(ex.map(delete, range(N_CONCURRENT)))
    assert all(r[0] == 0 for r in dels), [r[2] for r in dels if r[0]][:3]
    assert not p.leases()
    if kind == "twill":
        assert not [n for n in links(p.node) if n.startswith("tw")]


def _count_tw(node):
    return len([n for n in links(node) if n.startswith("tw")])


def test_killed_add_then_gc(mk):
    """An ADD killed with SIGKILL halfway (lease taken, veth created, pod not configured)
    leaks nothing once GC runs."""
    if not shutil.which("strace"):
        pytest.skip("strace needed to stop the ADD halfway")
    p = mk("twill", "routed", version="1.1.0")
    pod = new_pod("p1")
    # Stall the 4th netlink request (after the veth and its lookups) for 20 s.
    env = p.env("ADD", "c1", pod)
    argv = (["ip", "netns", "exec", p.node, "strace", "-qq", "-f", "-o", "/dev/null",
             "-e", "trace=sendto", "-e", "inject=sendto:delay_enter=20000000:when=4",
             "env", "-i"] + ["%s=%s" % kv for kv in env.items()] + [p.binary])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    proc.stdin.write(json.dumps(p.conf()).encode())
    proc.stdin.close()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (p.leases() and _count_tw(p.node)):
            time.sleep(0.02)
        assert p.leases(), "the ADD never took its lease"
        assert _count_tw(p.node) == 1, "the ADD never created its veth"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert p.leases()  # the leak GC must clean
    rc, out, raw, err = p.run("GC", ifname=None,
                              conf=p.conf(**{"cni.dev/valid-attachments": []}))
    assert rc == 0, raw + err
    assert not p.leases()
    assert _count_tw(p.node) == 0
    assert "eth0" not in links(pod)
    assert not sh("ip", "route", "show", "proto", "117", ns=p.node).stdout.strip()


def test_killed_at_random_points_then_gc(mk):
    """SIGKILL at arbitrary moments of many ADDs; afterwards GC leaves no lease, veth or
    route, and the address space is whole again."""
    p = mk("twill", "routed", version="1.1.0")
    pods = [new_pod("r%d" % i) for i in range(20)]
    for i, pod in enumerate(pods):
        proc = subprocess.Popen(p.argv(p.env("ADD", "r%d" % i, pod)), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        proc.stdin.write(json.dumps(p.conf()).encode())
        proc.stdin.close()
        time.sleep(0.0005 * i)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    rc, out, raw, err = p.run("GC", ifname=None,
                              conf=p.conf(**{"cni.dev/valid-attachments": []}))
    assert rc == 0, raw + err
    assert not p.leases()
    assert _count_tw(p.node) == 0
    assert not sh("ip", "route", "show", "proto", "117", ns=p.node).stdout.strip()
    # and the plugin works normally afterwards
    res = p.add("after", pods[0])
    check_add_result(res, "1.1.0", pods[0])


def test_dual_stack(mk):
    p = mk("twill", "routed", version="1.1.0", cidrs=(POD_CIDR, "fd00:250::/64"))
    sh("ip", "addr", "add", "fd00:99::1/128", "dev", "lo", ns=p.node)
    pod = new_pod("p1")
    res = p.add("c1", pod)
    fams = sorted(ipaddress.ip_interface(i["address"]).version for i in res["ips"])
    assert fams == [4, 6]
    v6 = [i for i in res["ips"] if ":" in i["address"]][0]
    assert v6["address"].endswith("/128") and v6["address"] in jaddrs(pod, "eth0")
    assert ping(pod, NODE_ADDR)
    assert sh("ping", "-6", "-c", "1", "-W", "2", "fd00:99::1", ns=pod,
              check=False).returncode == 0
    assert p.run("CHECK", "c1", pod, conf=p.conf(prevResult=res))[0] == 0
    assert p.run("DEL", "c1", pod)[0] == 0
    assert not p.leases()


def test_round_robin_no_immediate_reuse(mk):
    p = mk("twill", "bridge")
    pods = [new_pod("p%d" % i) for i in range(3)]
    a = p.add("a", pods[0])["ips"][0]["address"]
    assert p.run("DEL", "a", pods[0])[0] == 0
    b = p.add("b", pods[1])["ips"][0]["address"]
    assert a != b
    assert a.startswith("10.250.0.2/") and b.startswith("10.250.0.3/")
