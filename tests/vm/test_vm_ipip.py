"""IPIP routing (--routing ipip, ipip-crosssubnet) against a kernel that has the ipip module.

Runs inside the VM (make vmcheck); skips where the kernel cannot make an ipip device.
The agent-level tests reuse tests/integration/test_route.py's three-node topology
(namespaces trt<pid>-*: a and b on 10.99.1.0/24, c on 10.99.2.0/24 behind a router) and
check the kernel state, the agents' status and pod->pod pings; an nftables counter on the
router proves the packets crossed it as IPIP (protocol 4).  The lab test needs
`twill lab up --routing ipip` and skips until the lab accepts that mode.
"""
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import TWILL, run

_spec = importlib.util.spec_from_file_location(
    "twill_test_route", Path(__file__).resolve().parents[1] / "integration" / "test_route.py")
tr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tr)
NODES, pod_cidr, sh, wait_for = tr.NODES, tr.pod_cidr, tr.sh, tr.wait_for


def kernel_has_ipip():
    """Make an ipip device in a throwaway namespace (loads the module where it exists)."""
    ns = f"tvmi{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        return False
    try:
        # (with endpoints: one without would clash with the fallback device tunl0)
        p = subprocess.run(["ip", "-n", ns, "link", "add", "probe0", "type", "ipip", "local",
                            "10.0.0.1", "remote", "10.0.0.2"], capture_output=True)
        return p.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not kernel_has_ipip(),
                                reason="needs root and a kernel with ipip (make vmcheck)")


@pytest.fixture
def cl():
    if not os.access(TWILL, os.X_OK):
        pytest.skip(f"{TWILL} is not built")
    tr.cleanup_stale()
    tmp = tempfile.mkdtemp(prefix="twill-ipip-")
    c = tr.Cluster(tmp)
    try:
        c.build()
        yield c
    finally:
        c.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


def ipip_route_ok(cl, n, peer):
    r = cl.twill_routes(n).get(pod_cidr(peer))
    return (r and r.get("gateway") == NODES[peer][0] and r.get("dev") == "tunl0"
            and "onlink" in r.get("flags", []))


def hostgw_route_ok(cl, n, peer):
    return tr.hostgw_route_ok(cl, n, peer)


def check_tunl0(cl, n):
    ln = cl.link(n, "tunl0")
    assert ln, f"no tunl0 on {n}"
    assert ln["linkinfo"]["info_kind"] == "ipip"
    assert ln["mtu"] == 1500 - 20
    assert "UP" in ln["flags"]
    addrs = tr.jq(cl.ns(n), "ip", "-j", "addr", "show", "dev", "tunl0")
    locs = [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"] if a["family"] == "inet"]
    assert locs == [(pod_cidr(n).split("/")[0], 32)], locs


def count_ipip_on_router(cl):
    """An nftables counter of forwarded IPIP packets in the router namespace."""
    rules = ("table ip tvmipip {\n chain count4 {\n"
             "  type filter hook forward priority 0; policy accept;\n"
             "  ip protocol 4 counter\n }\n}\n")
    run(["ip", "netns", "exec", cl.router, "nft", "-f", "-"], input=rules)

    def packets():
        out = run(["ip", "netns", "exec", cl.router, "nft", "list", "table", "ip",
                   "tvmipip"]).stdout
        return int(out.split("counter packets ")[1].split()[0])
    return packets


def ping_all(cl):
    for n in NODES:
        for peer in NODES:
            if peer != n:
                wait_for(f"ping {n} -> {peer}", lambda n=n, peer=peer: cl.ping(n, peer))


def test_ipip(cl):
    packets = count_ipip_on_router(cl)
    cl.start_all("ipip")
    for n in NODES:
        for peer in NODES:
            if peer != n:
                wait_for(f"{n} -> {peer} via tunl0",
                         lambda n=n, peer=peer: ipip_route_ok(cl, n, peer))
        check_tunl0(cl, n)
        # no VXLAN device in this mode
        assert cl.link(n, "twill.1") is None
    before = packets()
    ping_all(cl)
    # a <-> c crosses the router: encapsulated
    assert packets() > before
    for n in NODES:
        for p in cl.status(n)["peers"]:
            assert p["via"] == "ipip", p
    assert cl.node_json("a")["routing"] == "ipip"


def test_ipip_crosssubnet(cl):
    packets = count_ipip_on_router(cl)
    cl.start_all("ipip-crosssubnet")
    wait_for("a -> b direct", lambda: hostgw_route_ok(cl, "a", "b"))
    wait_for("b -> a direct", lambda: hostgw_route_ok(cl, "b", "a"))
    for n in ("a", "b"):
        wait_for(f"{n} -> c ipip", lambda n=n: ipip_route_ok(cl, n, "c"))
        wait_for(f"c -> {n} ipip", lambda n=n: ipip_route_ok(cl, "c", n))
        check_tunl0(cl, n)
    before = packets()
    ping_all(cl)
    assert packets() > before
    assert cl.peer("a", "b")["via"] == "host-gw"
    assert cl.peer("a", "c")["via"] == "ipip"
    assert cl.peer("c", "a")["via"] == "ipip"


def test_switch_ipip_to_vxlan(cl):
    cl.start_all("ipip")
    wait_for("a -> c via tunl0", lambda: ipip_route_ok(cl, "a", "c"))
    cl.stop_all()
    cl.start_all("vxlan")
    wait_for("a -> c vxlan", lambda: tr.vxlan_peer_ok(cl, "a", "c"))
    # nothing of twill's goes through tunl0 any more (the device stays: the module's own)
    assert not any(r.get("dev") == "tunl0" for r in cl.twill_routes("a").values())
    ping_all(cl)


def test_ipip_pod_mtu(cl):
    cl.start_all("ipip")
    wait_for("node.json", lambda: cl.node_json("a").get("mtu"))
    assert cl.node_json("a")["mtu"] == 1500 - 20


def lab_accepts_ipip():
    p = subprocess.run([TWILL, "lab", "--help"], capture_output=True, text=True)
    return "ipip" in p.stdout + p.stderr


@pytest.mark.skipif(not lab_accepts_ipip(), reason="`twill lab up` does not accept "
                    "--routing ipip yet")
@pytest.mark.parametrize("routing", ["ipip", "ipip-crosssubnet"])
def test_lab_ipip(lab, routing):
    lb = lab(routing=routing, files=[tr.ROOT + "/examples/webpod.yaml"])
    lb.probe(check=True)
    # w0 is alone on its subnet: every other node's podCIDR is behind tunl0 in both modes
    out = lb.exec("w0", "ip", "route", "show", "proto", "116").stdout
    tunneled = [ln for ln in out.splitlines() if "dev tunl0" in ln and "onlink" in ln]
    assert len(tunneled) == 2, out
