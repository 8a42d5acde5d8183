"""The IPVS Service dataplane (`twill lab up --proxy ipvs`) against a kernel with ip_vs.

Runs inside the VM (make vmcheck VMTESTS=tests/vm/test_vm_ipvs.py); skips where the kernel
has no IPVS or no dummy device.  One lab (module-scoped, torn down at the end) holds seed
003's webpod (3 pods, one per node) behind a NodePort Service, a Service without endpoints,
one with sessionAffinity ClientIP, one scheduled `lc` by annotation, a LoadBalancer pair
(Cluster and Local policy, addresses from a MetalLB-shaped pool) and client pods on every
node.  The tests read the kernel's own IPVS table (/proc/net/ip_vs, what `ipvsadm -Ln`
prints, in hex), kube-ipvs0 and the nftables table beside it, and send real traffic from the
pods, the nodes and the external client.  Everything stays inside the lab's namespaces.
"""
import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TWILL, Lab, netns_list, wait_for

_HERE = Path(__file__).resolve().parent


def _load(name):
    spec = importlib.util.spec_from_file_location(
        "twill_vm_" + name, _HERE.parent / "integration" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


svc, lbt = _load("test_lab_svc"), _load("test_lab_lb")  # their manifests and clients
SPREAD, KEEPALIVE, GET = svc.SPREAD, svc.KEEPALIVE, lbt.GET

VIP, NODEPORT, EMPTY_VIP, AFF_VIP, LC_VIP = "10.96.0.10", 30080, "10.96.0.11", "10.96.0.12", \
    "10.96.0.13"
NODE_IPS = {"ctr": "192.168.10.100", "w1": "192.168.10.101", "w0": "192.168.20.100"}
EXT_IP = "192.168.30.100"

MANIFEST = svc.MANIFEST + """\
---
apiVersion: v1
kind: Service
metadata: {name: webaff}
spec:
  clusterIP: 10.96.0.12
  selector: {app: webpod}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: weblc
  annotations: {twill.io/lb-scheduler: lc}
spec:
  clusterIP: 10.96.0.13
  selector: {app: webpod}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
---
"""
# the LoadBalancer test's pool, its Local-policy Service and its Cluster one (renamed: the
# name webpod is the NodePort Service's here)
_LB_DOCS = lbt.MANIFEST.split("---\n")
assert "IPAddressPool" in _LB_DOCS[0] and "{name: webpod}" in _LB_DOCS[3] and \
    "externalTrafficPolicy: Local" in _LB_DOCS[4], "test_lab_lb.MANIFEST changed its order"
MANIFEST += "---\n".join([_LB_DOCS[0], _LB_DOCS[3].replace("{name: webpod}", "{name: weblb}"),
                          _LB_DOCS[4]])


def kernel_has_ipvs():
    for mod in ("ip_vs", "ip_vs_rr", "ip_vs_lc", "dummy"):
        subprocess.run(["modprobe", mod], capture_output=True)
    return Path("/proc/net/ip_vs").exists() and Path("/sys/module/dummy").exists()


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not kernel_has_ipvs(),
                                reason="needs root and a kernel with ip_vs and dummy "
                                       "(make vmcheck)")


# ---- the kernel's view ----

def hexaddr(h):
    ip, port = h.split(":")
    return ".".join(str(int(ip[i:i + 2], 16)) for i in range(0, 8, 2)), int(port, 16)


def ipvs_table(lb, node):
    """/proc/net/ip_vs of the node: {(proto, ip, port): {"sched", "flags", "dests":
    {(ip, port): (weight, active, inactive)}}}."""
    text = lb.exec(node, "cat", "/proc/net/ip_vs").stdout
    table, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^(TCP|UDP|SCTP)\s+([0-9A-F]{8}:[0-9A-F]{4})\s+(\S+)\s*(.*)$", line)
        if m:
            ip, port = hexaddr(m.group(2))
            cur = table[(m.group(1), ip, port)] = {"sched": m.group(3),
                                                   "flags": m.group(4).strip(), "dests": {}}
            continue
        m = re.match(r"^\s+->\s+([0-9A-F]{8}:[0-9A-F]{4})\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)", line)
        if m and cur is not None:
            cur["dests"][hexaddr(m.group(1))] = (int(m.group(3)), int(m.group(4)),
                                                 int(m.group(5)))
    return table


def shape(table):
    """The table without connection counts: what a sync may not change."""
    return {k: (v["sched"], v["flags"], {d: w[0] for d, w in v["dests"].items()})
            for k, v in table.items()}


state_dir, svc_list, lb_ip = svc.state_dir, svc.svc_list, lbt.lb_ip


def spread(lb, client, host, port, n):
    p = lb.exec(client, "python3", "-c", SPREAD, host, str(port), str(n), timeout=240)
    return json.loads(p.stdout)


def get(lb, client, host, port):
    p = lb.exec(client, "python3", "-c", GET, host, str(port), "/", timeout=30)
    r = json.loads(p.stdout)
    if "body" in r:
        r["fields"] = dict(l.split(": ", 1) for l in r["body"].splitlines() if ": " in l)
    return r


@pytest.fixture(scope="module")
def ipvs_lab(tmp_path_factory):
    if not os.access(TWILL, os.X_OK):
        pytest.skip(f"{TWILL} is not built")
    f = tmp_path_factory.mktemp("ipvs") / "svc.yaml"
    f.write_text(MANIFEST)
    lb = Lab(f"tv{os.getpid() % 100000}")
    lb.down()
    try:
        lb.up(routing="mixed", wiring="routed", files=[f], proxy="ipvs", timeout=120)
        webpods = {n: p for n, p in lb.pods().items() if n.startswith("webpod-")}
        assert len(webpods) == 3, lb.pods()
        lb.webpods = webpods

        def programmed():
            for node in NODE_IPS:
                t = ipvs_table(lb, node)
                for vip in (VIP, AFF_VIP, LC_VIP):
                    if len(t.get(("TCP", vip, 80), {}).get("dests", {})) != 3:
                        return False
            return True
        assert wait_for(programmed, 60, 0.5), lb.logs()
        yield lb
    except BaseException:
        print(lb.logs(60))
        raise
    finally:
        lb.down()
        assert not netns_list(lb.name + "-")


def test_kernel_state(ipvs_lab):
    lb = ipvs_lab
    ips = {p["ip"] for p in lb.webpods.values()}
    for node, nip in NODE_IPS.items():
        t = ipvs_table(lb, node)
        e = t[("TCP", VIP, 80)]
        assert e["sched"] == "rr" and set(ip for ip, _ in e["dests"]) == ips, e
        assert all(w[0] == 1 for w in e["dests"].values()), e
        # NodePort: a virtual service on the node's address
        assert ("TCP", nip, NODEPORT) in t, (node, sorted(t))
        # (/proc/net/ip_vs prints the persistence timeout in jiffies; svc list below: seconds)
        assert t[("TCP", AFF_VIP, 80)]["flags"].startswith("persistent "), t[("TCP", AFF_VIP, 80)]
        assert t[("TCP", LC_VIP, 80)]["sched"] == "lc"
        assert t[("TCP", EMPTY_VIP, 80)]["dests"] == {}
        # kube-ipvs0: a dummy device, down, NOARP, holding the ClusterIPs (not node addresses)
        link = lb.exec(node, "ip", "-d", "-o", "link", "show", "kube-ipvs0").stdout
        assert "dummy" in link and "NOARP" in link and "state DOWN" in link, link
        addrs = lb.exec(node, "ip", "-o", "-4", "addr", "show", "dev", "kube-ipvs0").stdout
        for vip in (VIP, EMPTY_VIP, AFF_VIP, LC_VIP):
            assert f"inet {vip}/32" in addrs, (node, addrs)
        assert nip not in addrs
        assert lb.exec(node, "sysctl", "-n", "net.ipv4.vs.conntrack").stdout.strip() == "1"
        # the rules beside IPVS: a fixed number of rules, Services as set elements
        nft = lb.exec(node, "nft", "list", "table", "ip", "twill-ipvs").stdout
        assert re.search(r"10\.96\.0\.10 \. tcp \. 80", nft), nft
        assert "masquerade" in nft and "@cluster-ips" in nft, nft
    # ipvsadm, IPVS's own tool, shows the same virtual services and real servers
    adm = lb.exec("ctr", "ipvsadm", "-Ln").stdout
    assert re.search(r"^TCP  10\.96\.0\.10:80 rr\s*$", adm, re.M), adm
    for ip in ips:
        assert re.search(rf"^  -> {re.escape(ip)}:\d+\s+Masq\s+1\s", adm, re.M), adm
    assert re.search(r"^TCP  10\.96\.0\.12:80 rr persistent 60", adm, re.M), adm
    # twill svc list: IPVS's own view
    listing = svc_list(lb, "ctr")
    assert listing["dataplane"] == "ipvs"
    e = [x for x in listing["services"] if x["address"] == LC_VIP][0]
    assert e["scheduler"] == "lc" and e["ipvs"]["scheduler"] == "lc", e
    assert all(b["inIpvs"] for b in e["backends"]), e
    e = [x for x in listing["services"] if x["address"] == AFF_VIP][0]
    assert e["ipvs"]["persistent"] and e["ipvs"]["timeout"] == 60, e
    text = lb.exec("ctr", TWILL, "svc", "list", "--state-dir", str(state_dir(lb, "ctr"))).stdout
    assert re.search(r"^TCP  10\.96\.0\.12:80 rr persistent 60", text, re.M), text


def test_clusterip_spreads_from_every_node(ipvs_lab):
    lb = ipvs_lab
    for client in ("curl-pod", "client-w0", "client-w1"):
        seen = spread(lb, client, VIP, 80, 45)
        assert seen.pop("errors") == 0, (client, seen)
        assert set(seen) == set(lb.webpods), (client, seen)
        for name, count in seen.items():
            assert count >= 9, f"{client}: {name} got {count}/45 ({seen})"  # rr: ~15 each
    # from a node itself (output path: masqueraded, the source is not a pod)
    seen = spread(lb, "w1", VIP, 80, 15)
    assert seen.pop("errors") == 0 and set(seen) == set(lb.webpods), seen
    # hairpin: a backend reaching its own Service, sent back to itself a third of the time
    me = sorted(lb.webpods)[0]
    seen = spread(lb, me, VIP, 80, 15)
    assert seen.pop("errors") == 0 and seen.get(me, 0) >= 3, (me, seen)


def test_no_endpoints_rejects(ipvs_lab):
    lb = ipvs_lab
    for target in ("curl-pod", "w1"):
        t0 = time.monotonic()
        r = lb.exec(target, "curl", "-s", "-m", "5", f"http://{EMPTY_VIP}/", check=False)
        assert r.returncode == 7, (target, r.returncode, r.stderr)  # refused
        assert time.monotonic() - t0 < 2
    # a Service address on a port no Service has: refused too (no node listener exposed)
    r = lb.exec("curl-pod", "curl", "-s", "-m", "5", f"http://{VIP}:81/", check=False)
    assert r.returncode == 7, r


def test_nodeport_from_outside(ipvs_lab):
    lb = ipvs_lab
    for node, ip in NODE_IPS.items():
        seen = spread(lb, "ext", ip, NODEPORT, 15)
        assert seen.pop("errors") == 0, (node, seen)
        assert set(seen) == set(lb.webpods), (node, seen)


def test_loadbalancer_and_local_policy(ipvs_lab):
    lb = ipvs_lab
    ip = wait_for(lambda: lb_ip(lb, "weblb"), 30, 0.2)
    lip = wait_for(lambda: lb_ip(lb, "weblocal"), 30, 0.2)
    assert ip and lip, lb.logs()
    assert wait_for(lambda: ("TCP", lip, 80) in ipvs_table(lb, "ctr"), 30, 0.5)
    addrs = lb.exec("ctr", "ip", "-o", "-4", "addr", "show", "dev", "kube-ipvs0").stdout
    assert f"inet {ip}/32" in addrs and f"inet {lip}/32" in addrs, addrs
    # Cluster policy: every pod answers, seeing a node address (masqueraded)
    seen = {}
    for _ in range(9):
        r = get(lb, "ext", ip, 80)
        assert r.get("code") == 200, r
        seen[r["fields"]["Hostname"]] = r["fields"]["RemoteAddr"]
    assert set(seen) == set(lb.webpods), seen
    assert not any(a.startswith(EXT_IP + ":") for a in seen.values()), seen
    # Local policy: only ctr's own pod, which sees the client's real address
    ctr_pod = [n for n, p in lb.webpods.items() if p.get("node") == "ctr"]
    local = ipvs_table(lb, "ctr")[("TCP", lip, 80)]["dests"]
    assert len(local) == 1, local
    for _ in range(3):
        r = get(lb, "ext", lip, 80)
        assert r.get("code") == 200, r
        assert r["fields"]["RemoteAddr"].startswith(EXT_IP + ":"), r
        if ctr_pod:
            assert r["fields"]["Hostname"] == ctr_pod[0], r


def test_affinity_sticks(ipvs_lab):
    lb = ipvs_lab
    for client in ("curl-pod", "client-w0"):
        seen = spread(lb, client, AFF_VIP, 80, 10)
        assert seen.pop("errors") == 0, seen
        assert len(seen) == 1, (client, seen)


HOLD = r"""
import socket, sys, time
conns = []
for _ in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    conns.append(s)
    time.sleep(0.2)
print("held", flush=True)
sys.stdin.readline()
"""


def test_lc_prefers_fewest_active(ipvs_lab):
    lb = ipvs_lab
    # two connections held open through the lc Service land on two different backends
    # (each new one goes to a backend with no active connection) ...
    proc = subprocess.Popen([TWILL, "lab", "exec", "--name", lb.name, "client-w1", "--",
                             "python3", "-c", HOLD, LC_VIP, "80", "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        def two_active():
            dests = ipvs_table(lb, "w1")[("TCP", LC_VIP, 80)]["dests"]
            busy = [d for d, w in dests.items() if w[1] >= 1]
            return busy if len(busy) == 2 else None
        busy = wait_for(two_active, 10, 0.2)
        assert busy, ipvs_table(lb, "w1")[("TCP", LC_VIP, 80)]
        idle = {p["ip"] for p in lb.webpods.values()} - {ip for ip, _ in busy}
        assert len(idle) == 1
        # ... and every new connection goes to the one without any (rr would spread them)
        by_ip = {p["ip"]: n for n, p in lb.webpods.items()}
        seen = spread(lb, "client-w1", LC_VIP, 80, 8)
        assert seen.pop("errors") == 0, seen
        assert seen == {by_ip[idle.pop()]: 8}, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_one_endpoint_adds_one_real_server(ipvs_lab):
    lb = ipvs_lab
    (lb.manifests / "inc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: webinc}\nspec:\n"
        "  clusterIP: 10.96.0.20\n  selector: {tier: inc}\n  ports: [{port: 80, targetPort: 80}]\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: inc1, labels: {tier: inc}}\n"
        "spec:\n  nodeName: w1\n  containers: [{name: c, image: traefik/whoami}]\n")
    key = ("TCP", "10.96.0.20", 80)
    assert wait_for(lambda: len(ipvs_table(lb, "ctr").get(key, {}).get("dests", {})) == 1,
                    60, 0.5), lb.logs()
    seen = spread(lb, "curl-pod", "10.96.0.20", 80, 5)
    assert seen.pop("errors") == 0, seen
    entry = lambda: [x for x in svc_list(lb, "ctr")["services"] if x["address"] == "10.96.0.20"][0]
    # (IPVS folds its per-CPU counters into the totals every 2 s)
    e0 = wait_for(lambda: (lambda e: e if e["ipvs"]["conns"] >= 5 else None)(entry()), 10, 0.5)
    assert e0, entry()
    with open(lb.manifests / "inc.yaml", "a") as f:
        f.write("---\napiVersion: v1\nkind: Pod\nmetadata: {name: inc2, labels: {tier: inc}}\n"
                "spec:\n  nodeName: w0\n  containers: [{name: c, image: traefik/whoami}]\n")
    assert wait_for(lambda: len(ipvs_table(lb, "ctr").get(key, {}).get("dests", {})) == 2,
                    60, 0.5), lb.logs()
    # the virtual service and its first real server were not recreated: counters kept
    e1 = entry()
    assert e1["ipvs"]["conns"] >= e0["ipvs"]["conns"], (e0, e1)
    b0 = {b["ip"]: b for b in e0["backends"]}
    for b in e1["backends"]:
        if b["ip"] in b0:
            assert b["conns"] >= b0[b["ip"]]["conns"] >= 5, (b0, e1)
    log = (lb.dir / "log" / "ctr.log").read_text()
    assert "ipvs: full sync" in log


def test_restart_keeps_connection_and_table(ipvs_lab):
    lb = ipvs_lab
    proc = subprocess.Popen([TWILL, "lab", "exec", "--name", lb.name, "curl-pod", "--",
                             "python3", "-c", KEEPALIVE, VIP, "80"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().split()
        assert first and first[0] == "ok", (first, proc.stderr.read() if proc.poll() else "")
        before = {n: shape(ipvs_table(lb, n)) for n in NODE_IPS}
        addrs_before = lb.exec("ctr", "ip", "-o", "addr", "show", "dev", "kube-ipvs0").stdout
        log = lb.dir / "log" / "ctr.log"
        nsyncs = lambda: len([l for l in log.read_text().splitlines() if "ipvs: full sync" in l])
        n0 = nsyncs()
        lb.twill("restart-agent", "ctr")
        assert wait_for(lambda: nsyncs() > n0, 30, 0.1), lb.logs()
        last = [l for l in log.read_text().splitlines() if "ipvs: full sync" in l][-1]
        assert "services +0 ~0 -0, real servers +0 ~0 -0, addresses +0 -0" in last, last
        assert {n: shape(ipvs_table(lb, n)) for n in NODE_IPS} == before
        assert lb.exec("ctr", "ip", "-o", "addr", "show", "dev", "kube-ipvs0").stdout == \
            addrs_before
        out, err = proc.communicate("\n", timeout=20)
        assert proc.returncode == 0, err
        assert out.split()[:3] == first[:3], (first, out)  # same socket, same backend
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


UDP_CLIENT = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    try:
        data = s.recv(2048).decode(errors="replace")
        print("ok", data.split("\n")[0].split(": ", 1)[-1], flush=True)
    except OSError:
        print("none", flush=True)
    time.sleep(0.1)
"""

UDP_PODS = """\
apiVersion: v1
kind: Service
metadata: {name: dnsu}
spec:
  clusterIP: 10.96.0.30
  selector: {tier: dns}
  ports: [{protocol: UDP, port: 53, targetPort: 53}]
"""


def udp_pod(name, node):
    return (f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{tier: dns}}}}\n"
            f"spec:\n  nodeName: {node}\n  containers: [{{name: c, image: whoami, "
            f"ports: [{{containerPort: 53, protocol: UDP}}]}}]\n")


def conntrack_udp(lb, node, vip):
    """Reply sources of the node's UDP conntrack entries sent to vip:53."""
    out = []
    for line in lb.exec(node, "cat", "/proc/net/nf_conntrack").stdout.splitlines():
        f = line.split()
        if "udp" not in f[:3]:
            continue
        kv = [x.split("=", 1) for x in f if "=" in x]
        src = [v for k, v in kv if k == "src"]
        dst = [v for k, v in kv if k == "dst"]
        if len(dst) >= 1 and dst[0] == vip and len(src) >= 2:
            out.append(src[1])
    return out


def test_udp_endpoint_removal_clears_conntrack(ipvs_lab):
    lb = ipvs_lab
    vip, key = "10.96.0.30", ("UDP", "10.96.0.30", 53)
    f = lb.manifests / "dnsu.yaml"
    f.write_text(UDP_PODS + udp_pod("dns1", "w1") + udp_pod("dns2", "w0"))
    assert wait_for(lambda: len(ipvs_table(lb, "ctr").get(key, {}).get("dests", {})) == 2,
                    60, 0.5), lb.logs()
    ips = {n: p["ip"] for n, p in lb.pods().items() if n in ("dns1", "dns2")}
    proc = subprocess.Popen([TWILL, "lab", "exec", "--name", lb.name, "curl-pod", "--",
                             "python3", "-u", "-c", UDP_CLIENT, vip, "53", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = None
        for _ in range(50):
            line = proc.stdout.readline().split()
            if line and line[0] == "ok":
                first = line[1]
                break
        assert first in ips, (first, ips)
        other = ({"dns1", "dns2"} - {first}).pop()
        assert ips[first] in conntrack_udp(lb, "ctr", vip)
        # the client's pod goes away: its endpoint and real server with it
        f.write_text(UDP_PODS + udp_pod(other, "w1" if other == "dns1" else "w0"))
        assert wait_for(lambda: len(ipvs_table(lb, "ctr").get(key, {}).get("dests", {})) == 1,
                        30, 0.2), lb.logs()
        t0 = time.monotonic()
        # no entry keeps sending the same 5-tuple to the dead pod, and the flow moves
        assert wait_for(lambda: ips[first] not in conntrack_udp(lb, "ctr", vip), 2, 0.1), \
            conntrack_udp(lb, "ctr", vip)
        moved = False
        while time.monotonic() - t0 < 5 and not moved:
            line = proc.stdout.readline().split()
            moved = line[:2] == ["ok", other]
        assert moved, "the UDP flow did not move to the remaining pod within 5 s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
