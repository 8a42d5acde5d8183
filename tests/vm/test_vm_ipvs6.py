"""The IPVS Service dataplane with IPv6 and dual stack (`twill agent --proxy ipvs`).

Runs inside the VM (make vmcheck VMTESTS=tests/vm/test_vm_ipvs6.py); skips where the kernel
has no IPVS or no dummy device.  The topology is test_proxy_v6's (svctopo.py with IPv6,
prefix tv6<pid>-): a client and three HTTP backends around a node namespace, each with an
IPv4 and an IPv6 address.  The real agent runs in the node namespace with IPVS; the test
reads the kernel's IPVS table with `ipvsadm -Ln`, kube-ipvs0's IPv6 addresses and the table
`ip6 twill-ipvs`, and sends real traffic from the client and from the node.

    cli 10.79.100.2 fd79:100::2 --veth-- node --veth-- b1 10.79.1.2 fd79:1::2   http :8080
                                          |  \\--veth-- b2 ...         fd79:2::2
                                          |   \\-veth-- b3 ...         fd79:3::2
"""
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import TWILL, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import svctopo  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(
        "twill_vm6_" + name, Path(__file__).resolve().parents[1] / "integration" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


v6 = _load("test_proxy_v6")  # svc_yaml, eps_yaml, url
PFX = "tv6%d-" % os.getpid()
NODE, CLI = PFX + "node", PFX + "cli"
BACKENDS = {"b1": "10.79.1.2", "b2": "10.79.2.2", "b3": "10.79.3.2"}
BACKENDS6 = {"b1": "fd79:1::2", "b2": "fd79:2::2", "b3": "fd79:3::2"}
NODE4, NODE6 = "10.79.100.1", "fd79:100::1"
VIP4, VIP6, EMPTY6 = "10.96.9.10", "fd00:96::9:10", "fd00:96::9:11"
NODEPORT = 30090
NODE_DOC = """\
apiVersion: v1
kind: Node
metadata:
  name: node
  labels: {kubernetes.io/hostname: node, kubernetes.io/os: linux}
status:
  addresses:
  - {type: InternalIP, address: %s}
  - {type: InternalIP, address: %s}
  - {type: Hostname, address: node}
""" % (NODE4, NODE6)


def kernel_has_ipvs():
    for mod in ("ip_vs", "ip_vs_rr", "dummy"):
        subprocess.run(["modprobe", mod], capture_output=True)
    return Path("/proc/net/ip_vs").exists() and Path("/sys/module/dummy").exists()


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not kernel_has_ipvs(),
                                reason="needs root and a kernel with ip_vs and dummy "
                                       "(make vmcheck)")


sh = v6.sh


def ipvsadm():
    """`ipvsadm -Ln` in the node: {"TCP [addr]:port": {"sched": ..., "dests": {ip: weight}}}."""
    out = sh("ipvsadm", "-Ln", ns=NODE).stdout
    table, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^(TCP|UDP)\s+(\S+)\s+(\S+)", line)
        if m:
            cur = table[m.group(1) + " " + m.group(2)] = {"sched": m.group(3), "dests": {}}
            continue
        m = re.match(r"^\s+->\s+\[?([0-9a-f.:]+?)\]?:(\d+)\s+(\S+)\s+(\d+)", line)
        if m and cur is not None:
            cur["dests"][m.group(1)] = (m.group(3), int(m.group(4)))
    return table, out


_client = v6.Env(None)  # curl in a namespace: get() -> (rc, body), spread() -> {body: n}


def get(u, ns=CLI, timeout=3):
    return _client.get(u, ns=ns, timeout=timeout)


def spread(u, n, ns=CLI):
    return _client.spread(u, n, ns=ns)


def write(d, name, text):
    v6.Env(d).write(name, text)


@pytest.fixture
def node6():
    if not os.access(TWILL, os.X_OK):
        pytest.skip(f"{TWILL} is not built")
    svctopo.cleanup(PFX)
    procs, agent = [], None
    mdir = tempfile.mkdtemp(prefix="tv6-manifests-")
    sdir = tempfile.mkdtemp(prefix="tv6-state-")
    try:
        procs += svctopo.build(sh, NODE, CLI, PFX, BACKENDS, "10.79", "tv6", mdir,
                               net6="fd79")
        write(mdir, "node.yaml", NODE_DOC)
        write(mdir, "web.yaml", v6.svc_yaml("web", [VIP4, VIP6], 80, 8080, node_port=NODEPORT))
        write(mdir, "web-v4.yaml", v6.eps_yaml("web", [BACKENDS["b1"], BACKENDS["b2"]], "IPv4"))
        write(mdir, "web-v6.yaml", v6.eps_yaml("web", list(BACKENDS6.values()), "IPv6"))
        write(mdir, "empty.yaml", v6.svc_yaml("empty6", [EMPTY6], 80, 8080))
        write(mdir, "empty-v6.yaml", v6.eps_yaml("empty6", [], "IPv6"))
        for ip in list(BACKENDS.values()) + list(BACKENDS6.values()):  # python under TCG
            assert wait_for(lambda: get(v6.url(ip, 8080), timeout=1)[0] == 0, 60, 0.2), ip
        log = open(os.path.join(sdir, "agent.log"), "w")
        agent = subprocess.Popen(
            ["ip", "netns", "exec", NODE, TWILL, "agent", "--node", "node", "--manifests", mdir,
             "--state-dir", sdir, "--routing", "host-gw", "--policy", "off", "--proxy", "ipvs",
             "--cluster-cidr", "10.244.0.0/16", "--cluster-cidr", "fd44::/48",
             "--service-cidr", "10.96.0.0/16", "--service-cidr", "fd00:96::/108",
             "--log-level", "debug"], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

        def programmed():  # the first sync (its nftables modules load under TCG: seconds)
            t, _ = ipvsadm()
            return len(t.get("TCP [%s]:80" % VIP6, {}).get("dests", {})) == 3 and \
                "ipvs: full sync" in Path(sdir, "agent.log").read_text()
        assert wait_for(programmed, 60, 0.5), (ipvsadm()[1], Path(sdir, "agent.log").read_text())
        yield mdir, sdir, agent
    finally:
        if agent:
            os.killpg(agent.pid, signal.SIGTERM)
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()
        svctopo.cleanup(PFX, procs)
        shutil.rmtree(mdir, ignore_errors=True)
        shutil.rmtree(sdir, ignore_errors=True)
        assert not svctopo.netns_with_prefix(PFX)


def test_ipvs_v6_clusterip_spread_nodeport(node6):
    mdir, sdir, agent = node6
    t, text = ipvsadm()
    # one AF_INET6 virtual service per ClusterIP and node address, masquerading IPv6 real
    # servers (that family's endpoints only), beside the IPv4 one with its own
    e = t["TCP [%s]:80" % VIP6]
    assert e["sched"] == "rr" and e["dests"] == {ip: ("Masq", 1) for ip in BACKENDS6.values()}, text
    assert set(t["TCP [%s]:%d" % (NODE6, NODEPORT)]["dests"]) == set(BACKENDS6.values()), text
    assert set(t["TCP %s:80" % VIP4]["dests"]) == {BACKENDS["b1"], BACKENDS["b2"]}, text
    assert t["TCP [%s]:80" % EMPTY6]["dests"] == {}, text
    # the ClusterIPs on kube-ipvs0: IPv6 /128, not tentative
    addrs = sh("ip", "-o", "-6", "addr", "show", "dev", "kube-ipvs0", ns=NODE).stdout
    for vip in (VIP6, EMPTY6):
        assert re.search(r"inet6 %s/128 .*scope global(?!.*tentative)" % re.escape(vip),
                         addrs), addrs
    assert NODE6 not in addrs
    # the rules beside IPVS in ip6 twill-ipvs: Services as set elements
    p = sh("nft", "list", "table", "ip6", "twill-ipvs", ns=NODE, check=False)
    assert p.returncode == 0, (p.stderr, sh("nft", "list", "tables", ns=NODE).stdout)
    nft = p.stdout
    assert re.search(r"%s \. tcp \. 80" % re.escape(VIP6), nft), nft
    assert "masquerade" in nft and "@no-endpoints" in nft, nft
    # traffic: the IPv6 ClusterIP spreads over the three pods, rr: 10 each
    seen = spread(v6.url(VIP6, 80), 30)
    assert seen == {"b1": 10, "b2": 10, "b3": 10}, seen
    # and IPVS counted them (its estimator copies the per-CPU counters every 2 s)
    def counted():
        return re.search(r"TCP\s+\[%s\]:80\s+30\s" % re.escape(VIP6),
                         sh("ipvsadm", "-Ln", "--stats", ns=NODE).stdout)
    assert wait_for(counted, 10, 0.5), sh("ipvsadm", "-Ln", "--stats", ns=NODE).stdout
    # the IPv4 ClusterIP of the same Service: its own endpoints
    assert set(spread(v6.url(VIP4, 80), 6)) == {"b1", "b2"}
    # NodePort on the node's IPv6 address, from outside
    seen = spread(v6.url(NODE6, NODEPORT), 6)
    assert set(seen) <= set(BACKENDS6) and sum(seen.values()) == 6, seen
    # from the node itself (output hook)
    rc, out = get(v6.url(VIP6, 80), ns=NODE)
    assert rc == 0 and out in BACKENDS6, (rc, out)
    # no endpoints: rejected at once (TCP reset: curl's "connection refused"), no timeout
    t0 = time.monotonic()
    rc, _ = get(v6.url(EMPTY6, 80), timeout=5)
    assert rc == 7 and time.monotonic() - t0 < 4, rc
    # one endpoint less: one real server less, the others stay
    write(mdir, "web-v6.yaml", v6.eps_yaml("web", [BACKENDS6["b1"], BACKENDS6["b2"]], "IPv6"))

    def two():
        return set(ipvsadm()[0]["TCP [%s]:80" % VIP6]["dests"]) == {BACKENDS6["b1"],
                                                                    BACKENDS6["b2"]}
    assert wait_for(two, 30, 0.3), ipvsadm()[1]
    assert set(spread(v6.url(VIP6, 80), 6)) == {"b1", "b2"}
    # a resync (SIGHUP: dump the kernel, diff) finds nothing to change: the kernel's IPv6
    # services, real servers and addresses read back equal to what was written
    log = Path(sdir, "agent.log")
    seen = len(log.read_text().splitlines())
    os.kill(agent.pid, signal.SIGHUP)

    def resynced():
        return [x for x in log.read_text().splitlines()[seen:] if "ipvs: full sync" in x]
    lines = wait_for(resynced, 30, 0.3)
    assert lines and "services +0 ~0 -0, real servers +0 ~0 -0, addresses +0 -0" in lines[0], \
        lines
    log = log.read_text()
    assert " error " not in log, log[-3000:]
