"""WireGuard encryption (`twill lab up --encrypt wireguard`) against a kernel that has the
wireguard module.

Runs inside the VM (make vmcheck); skips where the kernel cannot make a wireguard device.
The lab's w0 (192.168.20.0/24) reaches ctr and w1 (192.168.10.0/24) only through the
router, so whatever w0's pods exchange with the others crosses it.  A raw packet capture
(an AF_PACKET socket, what tcpdump uses) in the router's namespace counts the packets that
carry a unique marker string anywhere in their bytes, and the WireGuard packets (UDP
51820).  Pods on w0 send the marker to pods on ctr and w1 -- UDP datagrams, HTTP requests
to the pods and to a ClusterIP, whose answers echo the request line back.  Without
encryption (the control: mixed routing, VXLAN across the router) the router sees the
marker; with WireGuard it never does, and it sees UDP 51820 instead.
"""
import importlib.util
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import TWILL, wait_for


def kernel_has_wireguard():
    ns = f"tvmw{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        return False
    try:
        p = subprocess.run(["ip", "-n", ns, "link", "add", "wgprobe", "type", "wireguard"],
                           capture_output=True)
        return p.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not kernel_has_wireguard(),
                                reason="needs root and a kernel with wireguard (make vmcheck)")

# seed 003's webpod application with a ClusterIP (10.96.0.10) and client pods on every
# node: the manifest of test_lab_svc.py
_spec = importlib.util.spec_from_file_location(
    "twill_test_lab_svc", Path(__file__).resolve().parents[1] / "integration" / "test_lab_svc.py")
svc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(svc)
VIP = svc.VIP
NODES = ("ctr", "w1", "w0")

# Every packet on every interface of the namespace it runs in, until stdin closes (at most
# argv[2] seconds): how many hold the marker, how many are IPv4 UDP to or from port 51820.
CAPTURE = r"""
import json, select, socket, sys, time
marker, limit = sys.argv[1].encode(), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
n = {"packets": 0, "marker": 0, "wg": 0}
print("ready", flush=True)
end = time.monotonic() + limit
while time.monotonic() < end:
    r, _, _ = select.select([s, sys.stdin], [], [], 0.2)
    if sys.stdin in r and not sys.stdin.readline():
        break
    if s not in r:
        continue
    pkt = s.recv(65535)
    n["packets"] += 1
    if marker in pkt:
        n["marker"] += 1
    if len(pkt) >= 42 and pkt[12:14] == b"\x08\x00" and pkt[23] == 17:
        ihl = (pkt[14] & 15) * 4
        sport = int.from_bytes(pkt[14 + ihl:16 + ihl], "big")
        dport = int.from_bytes(pkt[16 + ihl:18 + ihl], "big")
        if 51820 in (sport, dport):
            n["wg"] += 1
print(json.dumps(n), flush=True)
"""

# From a pod: the marker in UDP datagrams to each target, in HTTP requests to each target
# and to the ClusterIP (30 times; prints how often each Hostname: answered).
SEND = r"""
import http.client, json, socket, sys
marker, vip, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for t in targets:
    for _ in range(3):
        u.sendto(("udp " + marker).encode(), (t, 9))
def get(host):
    c = http.client.HTTPConnection(host, 80, timeout=10)
    c.request("GET", "/" + marker)
    text = c.getresponse().read().decode(errors="replace")
    c.close()
    assert marker in text, text
    return [l[10:].strip() for l in text.splitlines() if l.startswith("Hostname: ")][0]
seen = {}
for t in targets:
    get(t)
for _ in range(30):
    h = get(vip)
    seen[h] = seen.get(h, 0) + 1
print(json.dumps(seen))
"""


class Capture:
    def __init__(self, lb, marker, limit=120):
        self.p = subprocess.Popen([*lab_exec(lb, "router"), "python3", "-c", CAPTURE, marker,
                                   str(limit)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def stop(self):
        out, _ = self.p.communicate(timeout=30)
        return json.loads(out)


def lab_exec(lb, target):
    return [TWILL, "lab", "exec", "--name", lb.name, target, "--"]


@pytest.fixture
def manifest(tmp_path):
    f = tmp_path / "svc.yaml"
    f.write_text(svc.MANIFEST)
    return f


def pods_by_node(lb):
    pods = lb.pods()
    return {p["node"]: p for n, p in pods.items() if n.startswith("webpod-")}


def marker_across_router(lb):
    """client-w0 sends a fresh marker to the webpods on ctr and w1 and to the ClusterIP
    while the router captures: (capture counts, who answered the ClusterIP, pods by
    node)."""
    by_node = pods_by_node(lb)
    targets = [by_node[n]["ip"] for n in ("ctr", "w1")]
    marker = "twill-" + uuid.uuid4().hex
    cap = Capture(lb, marker)
    try:
        p = lb.exec("client-w0", "python3", "-c", SEND, marker, VIP, *targets, timeout=120)
    finally:
        counts = cap.stop()
    return counts, json.loads(p.stdout), by_node


def node_status(lb, n):
    return json.loads((svc.state_dir(lb, n) / "status.json").read_text())


def wg_link(lb, n):
    out = lb.exec(n, "ip", "-d", "-j", "link", "show", "dev", "twill.wg", check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def peer_via(lb, n, peer):
    return {p["node"]: p["via"] for p in node_status(lb, n)["peers"]}.get(peer)


def all_encrypted(lb):
    for n in NODES:
        st = node_status(lb, n)
        if len(st["peers"]) != 2 or any(p["via"] != "wireguard" for p in st["peers"]):
            return False
    return True


# A WireGuard session starts with the first packet to a peer, and its handshake takes ~1 s
# of emulated CPU here (TCG), more on a loaded host: longer than the probe's default
# timeout (500 ms).
PROBE_TIMEOUT = ("--timeout-ms", "5000")


def converge(lb):
    """Every pod reaches every pod (soon)."""
    wait_for(lambda: lb.probe(*PROBE_TIMEOUT, timeout=60)["rc"] == 0, 60, 0.5)
    lb.probe(*PROBE_TIMEOUT, check=True, timeout=60)


def agent_log_since_start(lb, n):
    """w0's log from its agent's last start."""
    log = (lb.dir / "log" / f"{n}.log").read_text()
    return log[log.rindex("starting:"):]


def set_lab_encrypt(lb, value):
    cfg = json.loads((lb.dir / "lab.json").read_text())
    cfg["encrypt"] = value
    (lb.dir / "lab.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("routing", ["mixed", "host-gw", "ipip"])
def test_lab_wireguard(lab, manifest, routing):
    lb = lab(routing=routing, encrypt="wireguard", files=[manifest], timeout=90)
    assert wait_for(lambda: all_encrypted(lb), 60, 0.2), \
        [node_status(lb, n)["peers"] for n in NODES]
    converge(lb)
    svc.wait_programmed(lb)

    keys = {}
    for n in NODES:
        # the key pair: private key in the state dir, 0600; public key on the Node
        kf = svc.state_dir(lb, n) / "wireguard.key"
        assert kf.stat().st_mode & 0o777 == 0o600
        assert len(kf.read_text().strip()) == 44
        ov = json.loads((lb.manifests / ".twill" / f"wireguard.{n}.json").read_text())
        pub = ov["metadata"]["annotations"]["twill.io/wireguard-public-key"]
        assert pub == node_status(lb, n)["wireguardPublicKey"]
        keys[n] = (kf.read_text(), pub)
        # the device: MTU 60 below the underlay's 1500, up; the pods' MTU follows
        ln = wg_link(lb, n)
        assert ln and ln["linkinfo"]["info_kind"] == "wireguard", ln
        assert ln["mtu"] == 1440 and "UP" in ln["flags"], ln
        assert json.loads((svc.state_dir(lb, n) / "node.json").read_text())["mtu"] == 1440
        # every remote podCIDR goes into twill.wg (proto 116), none via the mode
        out = lb.exec(n, "ip", "-j", "route", "show", "proto", "116").stdout
        routes = json.loads(out)
        assert len(routes) == 2 and all(r["dev"] == "twill.wg" for r in routes), routes
    assert len({k[1] for k in keys.values()}) == 3

    n, seen, by_node = marker_across_router(lb)
    print(f"router capture ({routing}, encrypted): {n}, ClusterIP answers {seen}")
    # pod -> Service reached the backends across the router (and the local one)
    assert {by_node["ctr"]["name"], by_node["w1"]["name"]} <= set(seen), seen
    assert n["marker"] == 0, n
    assert n["wg"] > 0, n

    # a restart keeps the key and the device, changes nothing, and traffic keeps flowing
    idx = wg_link(lb, "w0")["ifindex"]
    lb.twill("restart-agent", "w0")
    assert wait_for(lambda: "synced:" in agent_log_since_start(lb, "w0"), 30, 0.2)
    lb.probe(*PROBE_TIMEOUT, check=True, timeout=60)
    assert wg_link(lb, "w0")["ifindex"] == idx
    assert (svc.state_dir(lb, "w0") / "wireguard.key").read_text() == keys["w0"][0]
    assert node_status(lb, "w0")["wireguardPublicKey"] == keys["w0"][1]
    log = agent_log_since_start(lb, "w0")
    assert "key loaded" in log and "kept the key" not in log, log
    for what in ("created twill.wg", "peers set", "set the key", "added route",
                 "replaced route", "deleted route"):
        assert what not in log, log
    assert all_encrypted(lb)
    if routing != "mixed":
        return

    # encryption off on w0: its device and published key go, the others stop encrypting
    # to it (peer removed, routes by the mode again) and everything still answers
    set_lab_encrypt(lb, "none")
    lb.twill("restart-agent", "w0")
    assert wait_for(lambda: wg_link(lb, "w0") is None, 15, 0.2)
    assert not (lb.manifests / ".twill" / "wireguard.w0.json").exists()
    assert wait_for(lambda: peer_via(lb, "ctr", "w0") == "vxlan", 15, 0.2), \
        node_status(lb, "ctr")["peers"]
    assert "1 removed" in (lb.dir / "log" / "ctr.log").read_text()
    converge(lb)
    # and on again: the same key, encrypted again
    set_lab_encrypt(lb, "wireguard")
    lb.twill("restart-agent", "w0")
    assert wait_for(lambda: all_encrypted(lb), 60, 0.2), \
        [node_status(lb, n)["peers"] for n in NODES]
    assert node_status(lb, "w0")["wireguardPublicKey"] == keys["w0"][1]
    converge(lb)


def test_lab_clear_control(lab, manifest):
    """The same traffic without encryption: the router does see the marker."""
    lb = lab(routing="mixed", files=[manifest], timeout=90)
    lb.probe(*PROBE_TIMEOUT, check=True, timeout=60)
    svc.wait_programmed(lb)
    n, _, _ = marker_across_router(lb)
    print(f"router capture (mixed, clear): {n}")
    assert n["marker"] > 0, n
    assert n["wg"] == 0, n
    assert wg_link(lb, "w0") is None
