"""Seed 003's story with BGP: `twill lab up --routing bgp` and no static route anywhere.

The nodes (AS 65001, node-to-node iBGP mesh) peer with the router (AS 65002) through the
BGPPeer objects the lab writes; the router runs `twill bgp run` (default), BIRD 2 or FRR
and starts with no pod route and no LoadBalancer route.  Checked against the kernels:
every pod reaches every other across both subnets, the router's routing table holds the
podCIDRs and the LoadBalancer /32s it learned (an externalTrafficPolicy: Local address only
via the nodes with a local endpoint, with the BGPAdvertisement's community), the external
client reaches a LoadBalancer address, an agent restarted with SIGTERM keeps its routes
(graceful restart: a continuous ping loses nothing) and one killed with SIGKILL loses them
after the restart time (10 s in the lab).  `--routing host-gw` across the subnets failing
is covered by test_lab.py.
"""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import TWILL, run, wait_for
from test_lab_lb import NODE_IPS

RTPROT_BGP = 118

# the pool's addresses go out with a community; w0's pod is not behind the Services
MANIFEST = """\
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: lab-pool-community, namespace: metallb-system}
spec:
  ipAddressPools: [lab-pool]
  communities: ["65001:50"]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab-pool, namespace: metallb-system}
spec: {addresses: [192.168.50.0/24]}
"""
for node in NODE_IPS:
    MANIFEST += f"""---
apiVersion: v1
kind: Pod
metadata: {{name: web-{node}, labels: {{app: {'web' if node != 'w0' else 'other'}}}}}
spec:
  nodeName: {node}
  containers: [{{name: web, image: traefik/whoami, ports: [{{containerPort: 80}}]}}]
"""
MANIFEST += """---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
"""


@pytest.fixture
def manifest(tmp_path):
    p = tmp_path / "bgp-lab.yaml"
    p.write_text(MANIFEST)
    return p


def router_routes(lab):
    """{prefix: set of next hops} of the router's learned (non-kernel) IPv4 routes."""
    out = json.loads(lab.exec("router", "ip", "-j", "-4", "route", "show").stdout or "[]")
    routes = {}
    for r in out:
        if r.get("protocol") in ("kernel", "boot", "static") or r.get("scope") == "link":
            continue
        dst = r["dst"] if "/" in r["dst"] else r["dst"] + "/32"
        hops = {h["gateway"] for h in r.get("nexthops", [])} or {r.get("gateway")}
        routes[dst] = hops
    return routes


def node_status(lab, node):
    try:
        return json.loads((lab.dir / "nodes" / node / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def lb_ip(lab, svc):
    def get():
        try:
            o = json.loads((lab.manifests / ".twill" / f"service.default.{svc}.json").read_text())
            return o["status"]["loadBalancer"]["ingress"][0]["ip"]
        except (OSError, KeyError, IndexError, json.JSONDecodeError):
            return None
    ip = wait_for(get, 10, 0.1)
    assert ip, f"no LoadBalancer address for {svc}"
    return ip


def pod_cidrs(lab):
    return {n: node_status(lab, n).get("podCIDRs", [None])[0] for n in NODE_IPS}


def check_routing(lab, kernel_proto):
    """Pods, the router's learned routes, LoadBalancer addresses from ext."""
    cidrs = wait_for(lambda: (lambda c: c if all(c.values()) else None)(pod_cidrs(lab)), 10, 0.1)
    assert cidrs, pod_cidrs(lab)
    # the router learned every podCIDR, via the node that owns it, and nothing static
    want = {cidrs[n]: {NODE_IPS[n]} for n in NODE_IPS}
    got = wait_for(lambda: (lambda r: r if all(r.get(p) == h for p, h in want.items())
                            else None)(router_routes(lab)), 20, 0.2)
    assert got, (router_routes(lab), want)
    raw = lab.exec("router", "ip", "-4", "route", "show", cidrs["w0"]).stdout
    assert f"proto {kernel_proto}" in raw, raw
    # every pod reaches every pod, across both subnets
    data = wait_for(lambda: (lambda d: d if d["reachable"] == d["total"] else None)(lab.probe()),
                    15, 0.3)
    assert data, lab.twill("probe", check=False).stdout
    assert data["total"] == 9
    # LoadBalancer addresses: Cluster policy from every node, Local only from the nodes
    # with a ready local endpoint (ctr, w1: w0's pod is not behind the Service)
    ip_lb, ip_local = lb_ip(lab, "web-lb"), lb_ip(lab, "web-local")
    every = set(NODE_IPS.values())
    local = {NODE_IPS["ctr"], NODE_IPS["w1"]}
    ok = wait_for(lambda: (lambda r: r.get(ip_lb + "/32") == every and
                           r.get(ip_local + "/32") == local)(router_routes(lab)), 15, 0.2)
    assert ok, (ip_lb, ip_local, router_routes(lab))
    for ip in (ip_lb, ip_local):
        out = lab.exec("ext", "curl", "-s", "-m", "3", f"http://{ip}/", check=False).stdout
        assert re.search(r"Hostname: web-(ctr|w1)", out), (ip, out)
    return cidrs, ip_lb


def test_bgp_lab_twill_router(lab, manifest):
    lb = lab(routing="bgp", files=[manifest])
    cidrs, ip_lb = check_routing(lb, RTPROT_BGP)
    state = lb.dir / "router" / "bgp.state.json"
    # `twill bgp peers` on the router and on a node
    out = run([TWILL, "bgp", "peers", "--state", str(state)]).stdout
    assert out.count("Established") == 3, out
    out = run([TWILL, "bgp", "peers", "--state-dir", str(lb.dir / "nodes" / "w0")]).stdout
    assert re.search(r"router-br20 .* eBGP +Established", out), out
    assert re.search(r"\bctr .* iBGP +Established", out), out
    st = node_status(lb, "w0")["bgp"]
    assert st["as"] == 65001 and cidrs["w0"] in st["advertised"], st
    assert not st["errors"], st
    # the BGPAdvertisement's community on the LoadBalancer route
    routes = json.loads(run([TWILL, "bgp", "routes", "--state", str(state), "-o", "json"]).stdout)
    r = next(r for r in routes if r["prefix"] == ip_lb + "/32")
    assert "65001:50" in r["paths"][0]["communities"], r
    # incremental: a new LoadBalancer Service is one UPDATE from each node, nothing else
    def updates_in():
        peers = json.loads(run([TWILL, "bgp", "peers", "--state", str(state), "-o",
                                "json"]).stdout)
        return {p["name"]: p["updatesIn"] for p in peers}
    before = updates_in()
    (lb.manifests / "web-lb2.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-lb2}\nspec:\n"
        "  type: LoadBalancer\n  selector: {app: web}\n"
        "  ports: [{protocol: TCP, port: 80, targetPort: 80}]\n")
    ip2 = lb_ip(lb, "web-lb2")
    assert wait_for(lambda: router_routes(lb).get(ip2 + "/32") == set(NODE_IPS.values()), 10,
                    0.1), router_routes(lb)
    time.sleep(0.5)
    after = updates_in()
    assert {n: after[n] - before[n] for n in before} == {n: 1 for n in before}, (before, after)
    # w0 has no overlay and no static route to the others: what it knows came from BGP
    raw = lb.exec("w0", "ip", "-4", "route", "show", "proto", str(RTPROT_BGP)).stdout
    assert cidrs["ctr"] in raw and cidrs["w1"] in raw, raw
    assert "vxlan" not in lb.exec("w0", "ip", "-d", "link").stdout

    # SIGTERM: graceful restart.  The router keeps w0's routes while its agent is down,
    # and a ping from ctr's pod to w0's pod across the restart loses nothing.
    pod_w0 = lb.pods()["web-w0"]["ip"]
    ping = subprocess.Popen([TWILL, "lab", "exec", "--name", lb.name, "web-ctr", "--", "ping",
                             "-c", "20", "-i", "0.1", "-W", "1", pod_w0],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.3)
        lb.twill("kill-agent", "w0")
        time.sleep(0.5)
        assert router_routes(lb).get(cidrs["w0"]) == {NODE_IPS["w0"]}, router_routes(lb)
        peers = json.loads(run([TWILL, "bgp", "peers", "--state", str(state), "-o",
                                "json"]).stdout)
        w0 = next(p for p in peers if p["name"] == "w0")
        assert w0["state"] != "Established" and w0["gracefulRestartStale"], w0
        lb.twill("start-agent", "w0")
        out, _ = ping.communicate(timeout=15)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    assert " 0% packet loss" in out, out
    assert wait_for(lambda: "w0" in run([TWILL, "bgp", "peers", "--state", str(state)]).stdout
                    and run([TWILL, "bgp", "peers", "--state", str(state)]).stdout.count(
                        "Established") == 3, 15, 0.2)

    # SIGKILL: the session drops at once (the kernel closes the socket); the routes stay
    # for the advertised restart time (10 s, BGPConfiguration nodeMeshMaxRestartTime) and
    # then leave the router; the other nodes' routes stay.
    lb.twill("kill-agent", "--signal", "KILL", "w0")
    t0 = time.monotonic()
    gone = wait_for(lambda: cidrs["w0"] not in router_routes(lb), 16, 0.2)
    took = time.monotonic() - t0
    assert gone, router_routes(lb)
    assert took > 5, f"w0's routes left after {took:.1f} s: graceful restart not honoured"
    r = router_routes(lb)
    assert r.get(cidrs["ctr"]) == {NODE_IPS["ctr"]} and r.get(ip_lb + "/32") == {
        NODE_IPS["ctr"], NODE_IPS["w1"]}, r


@pytest.mark.parametrize("router,proto,binary", [("bird", "bird", "/usr/sbin/bird"),
                                                 ("frr", "bgp", "/usr/lib/frr/bgpd")])
def test_bgp_lab_other_router(lab, manifest, router, proto, binary):
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} not installed (scripts/deps.sh)")
    lb = lab(routing="bgp", router=router, files=[manifest])
    check_routing(lb, proto)
    peers = json.loads(run([TWILL, "bgp", "peers", "--state-dir", str(lb.dir / "nodes" / "ctr"),
                            "-o", "json"]).stdout)
    assert {p["name"]: p["state"] for p in peers} == {
        "router-br10": "Established", "w1": "Established", "w0": "Established"}, peers
    pids = (lb.dir / "router" / "pids").read_text()
    assert (router == "bird") == ("bird " in pids) and (router == "frr") == ("bgpd " in pids)


def test_bgp_lab_bad_router_option(lab):
    p = run([TWILL, "lab", "up", "--name", "h7bad", "--router", "bird"], check=False)
    assert p.returncode == 2 and "--router needs --routing bgp" in p.stderr, p.stderr
    p = run([TWILL, "lab", "up", "--name", "h7bad", "--routing", "bgp", "--router", "quagga"],
            check=False)
    assert p.returncode == 2 and "twill, bird or frr" in p.stderr, p.stderr


BAD_PEER = """\
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {name: bad-selector}
spec:
  peerIP: 192.168.30.100
  asNumber: 65003
  nodeSelector: rack in {'a'}
"""


def peer_states(lab, node):
    return {p["name"]: p["state"] for p in node_status(lab, node).get("bgp", {}).get("peers", [])}


def test_bgp_lab_route_reflector_and_bad_peer(lab, tmp_path):
    """A BGPPeer with an unsupported selector is an error on that peer only; a Node
    annotated twill.io/route-reflector-cluster-id turns the mesh into reflector + clients,
    and pods still reach each other across both subnets."""
    bad = tmp_path / "bad-peer.yaml"
    bad.write_text(BAD_PEER)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lb = lab(routing="bgp", files=[os.path.join(root, "examples", "webpod.yaml"), bad])
    for n in NODE_IPS:
        errs = wait_for(lambda: node_status(lb, n).get("bgp", {}).get("errors"), 10, 0.1)
        assert errs and "BGPPeer bad-selector: nodeSelector: unsupported selector" in errs[0], errs
    assert wait_for(lambda: peer_states(lb, "w1") == {
        "router-br10": "Established", "ctr": "Established", "w0": "Established"}, 15, 0.1), \
        peer_states(lb, "w1")
    # ctr becomes the route reflector (the lab's nodes.yaml is the API server's Node list)
    nodes = lb.manifests / "nodes.yaml"
    text = nodes.read_text().replace(
        "  name: ctr\n", "  name: ctr\n  annotations:\n"
        "    twill.io/route-reflector-cluster-id: 10.0.0.1\n", 1)
    tmp = nodes.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(nodes)
    for n, router in (("w1", "router-br10"), ("w0", "router-br20")):
        assert wait_for(lambda: peer_states(lb, n) == {router: "Established",
                                                      "ctr": "Established"}, 15, 0.1), \
            peer_states(lb, n)
    assert wait_for(lambda: peer_states(lb, "ctr") == {
        "router-br10": "Established", "w1": "Established", "w0": "Established"}, 15, 0.1)
    # w1 learns w0's podCIDR only through the reflector
    w0_cidr = node_status(lb, "w0")["podCIDRs"][0]
    assert wait_for(lambda: w0_cidr in lb.exec("w1", "ip", "route", "show", "proto",
                                               str(RTPROT_BGP)).stdout, 10, 0.1)
    data = wait_for(lambda: (lambda d: d if d["reachable"] == d["total"] else None)(lb.probe()),
                    15, 0.3)
    assert data and data["total"] == 16, lb.twill("probe", check=False).stdout


SVC_EXT = """\
---
apiVersion: v1
kind: Service
metadata: {name: web-ext}
spec:
  clusterIP: 10.96.0.40
  externalIPs: [198.51.100.7]
  selector: {app: web}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
"""


def test_bgp_lab_service_cidrs(lab, tmp_path):
    """Calico service advertisement: with BGPConfiguration serviceClusterIPs and
    serviceExternalIPs every node announces the ranges, the router learns them over all
    three nodes (ECMP), and the external client reaches a ClusterIP and an external IP
    through them; taking the ranges out withdraws them."""
    m = tmp_path / "svc.yaml"
    m.write_text(MANIFEST + SVC_EXT)
    lb = lab(routing="bgp", files=[m])
    conf = lb.manifests / "lab-bgp.yaml"
    plain = conf.read_text()
    assert "  nodeMeshMaxRestartTime: 10s\n" in plain
    tmp = conf.with_suffix(".tmp")
    tmp.write_text(plain.replace("  nodeMeshMaxRestartTime: 10s\n",
                                 "  nodeMeshMaxRestartTime: 10s\n"
                                 "  serviceClusterIPs: [{cidr: 10.96.0.0/16}]\n"
                                 "  serviceExternalIPs: [{cidr: 198.51.100.0/24}]\n", 1))
    tmp.rename(conf)
    every = set(NODE_IPS.values())
    want = ("10.96.0.0/16", "198.51.100.0/24")
    ok = wait_for(lambda: all(router_routes(lb).get(p) == every for p in want), 20, 0.2)
    assert ok, router_routes(lb)
    for n in NODE_IPS:
        st = node_status(lb, n)["bgp"]
        assert set(want) <= set(st["advertised"]) and not st["errors"], st
    for ip in ("10.96.0.40", "198.51.100.7"):
        out = wait_for(lambda: (lambda o: o if re.search(r"Hostname: web-(ctr|w1)", o) else None)(
            lb.exec("ext", "curl", "-s", "-m", "3", f"http://{ip}/", check=False).stdout), 10, 0.3)
        assert out, (ip, lb.exec("ext", "ip", "route", check=False).stdout)
    tmp.write_text(plain)
    tmp.rename(conf)
    assert wait_for(lambda: not any(p in router_routes(lb) for p in want), 15, 0.2), \
        router_routes(lb)
