"""kube-lb0: LoadBalancer addresses held on a dummy device on every node (PureLB style).

Runs inside the VM (make vmcheck VMTESTS=tests/vm/test_vm_lbdev.py); skips where the kernel
has no dummy device.  The lab holds test_lab_lb's pool, two webpods (ctr, w1), a
Cluster-policy LoadBalancer Service and a Local-policy one.  The test reads each node's
kube-lb0 with `ip -j addr` (kind dummy, up, NOARP, each address /32 with nothing else), adds
a third LoadBalancer Service and removes it again, restarts an agent, and sends real
traffic from the external client behind the router.  Everything stays inside the lab's
namespaces.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_for

# test_lab_lb's manifest and client (its `from conftest import` finds ours)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import test_lab_lb as lbt  # noqa: E402
NODES = ("ctr", "w1", "w0")
DEV = "kube-lb0"

# an IPv6 ingress address given by the manifest's own status: held as /128, not tentative
V6 = "2001:db8:50::1"
V6SVC = """\
---
apiVersion: v1
kind: Service
metadata: {name: webv6}
spec:
  type: LoadBalancer
  selector: {app: webpod}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
status:
  loadBalancer:
    ingress: [{ip: "%s"}]
""" % V6

EXTRA = """\
apiVersion: v1
kind: Service
metadata: {name: webextra}
spec:
  type: LoadBalancer
  selector: {app: webpod}
  ports: [{protocol: TCP, port: 8080, targetPort: 80}]
"""


def kernel_has_dummy():
    subprocess.run(["modprobe", "dummy"], capture_output=True)
    return Path("/sys/module/dummy").exists()


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not kernel_has_dummy(),
                                reason="needs root and a kernel with dummy (make vmcheck)")


def device(lb, node):
    """kube-lb0 of the node as `ip -j -d addr` shows it, or None."""
    p = lb.exec(node, "ip", "-j", "-d", "addr", "show", "dev", DEV, check=False)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)[0]


def addrs(lb, node):
    d = device(lb, node)
    if d is None:
        return None
    return {f"{a['local']}/{a['prefixlen']}" for a in d.get("addr_info", [])
            if a.get("family") in ("inet", "inet6") and a.get("scope") != "link"}


def status(lb, node):
    try:
        return json.loads((lb.dir / "nodes" / node / "status.json").read_text())
    except (OSError, ValueError):
        return None


def held_everywhere(lb, want):
    """The set of addresses on kube-lb0 equals want on every node."""
    got = {n: addrs(lb, n) for n in NODES}
    return got if all(g == want[n] for n, g in got.items()) else None


def test_kube_lb0(lab, tmp_path):
    f = tmp_path / "lb.yaml"
    f.write_text(lbt.MANIFEST + V6SVC)
    lb = lab(routing="mixed", wiring="routed", files=[f], proxy="nftables")
    ip = wait_for(lambda: lbt.lb_ip(lb, "webpod"), 20, 0.1)
    lip = wait_for(lambda: lbt.lb_ip(lb, "weblocal"), 20, 0.1)
    assert ip and lip, lb.logs()

    # Cluster policy: on every node; Local policy: only where a webpod runs (not w0)
    v6 = V6 + "/128"
    want = {"ctr": {ip + "/32", lip + "/32", v6}, "w1": {ip + "/32", lip + "/32", v6},
            "w0": {ip + "/32", v6}}
    got = wait_for(lambda: held_everywhere(lb, want), 60, 0.2)
    assert got, ({n: addrs(lb, n) for n in NODES}, lb.logs())
    for n in NODES:
        d = device(lb, n)
        assert d["linkinfo"]["info_kind"] == "dummy", d
        assert "UP" in d["flags"] and "NOARP" in d["flags"], d
        a6 = [a for a in d["addr_info"] if a["local"] == V6]
        assert a6 and not a6[0].get("tentative"), d
        r = lb.exec(n, "ip", "-6", "route", "show", "table", "local", V6).stdout
        assert r.startswith("local " + V6) and "dev " + DEV in r, (n, r)
        # ARP is answered only for the receiving interface's addresses, so no node
        # answers the router for a pool address
        v = lb.exec(n, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore").stdout.strip()
        assert v == "1", (n, v)
        st = status(lb, n)
        assert st and st.get("lbDevice") == "ok", st

    # the external client still reaches the address through ctr (the router's route)
    for _ in range(5):
        r = lbt.get(lb, ip, 80)
        assert r.get("code") == 200, r

    # a new LoadBalancer Service: its address appears on every node, then goes with it
    extra = lb.manifests / "extra.yaml"
    tmp = lb.manifests / ".extra.yaml.tmp"
    tmp.write_text(EXTRA)
    tmp.rename(extra)
    xip = wait_for(lambda: lbt.lb_ip(lb, "webextra"), 20, 0.1)
    assert xip and xip not in (ip, lip), (xip, lb.logs())
    with_extra = {n: want[n] | {xip + "/32"} for n in NODES}
    assert wait_for(lambda: held_everywhere(lb, with_extra), 30, 0.2), \
        ({n: addrs(lb, n) for n in NODES}, lb.logs())
    r = wait_for(lambda: (lambda x: x if x.get("code") == 200 else None)(
        lbt.get(lb, xip, 8080)), 20, 0.2)
    assert r, lb.logs()
    extra.unlink()
    assert wait_for(lambda: held_everywhere(lb, want), 30, 0.2), \
        ({n: addrs(lb, n) for n in NODES}, lb.logs())

    # an agent restart keeps the device and its addresses (no flush) and owns by name: a
    # stranger address on kube-lb0 goes, what the node serves stays
    index = device(lb, "w1")["ifindex"]
    lb.exec("w1", "ip", "addr", "add", "198.51.100.1/32", "dev", DEV)
    lb.twill("restart-agent", "w1")
    assert wait_for(lambda: addrs(lb, "w1") == want["w1"], 30, 0.2), \
        (addrs(lb, "w1"), lb.logs())
    assert device(lb, "w1")["ifindex"] == index
    assert lbt.get(lb, ip, 80).get("code") == 200
