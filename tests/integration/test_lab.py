"""`twill lab`: seed 003's cluster in network namespaces, end to end.

Nodes ctr and w1 share 192.168.10.0/24, w0 sits on 192.168.20.0/24 behind a router that
has no pod routes.  host-gw can only reach pods on the same subnet (the seed's failure);
vxlan and mixed reach every pod.  Each lab is brought up by the `lab` fixture
(conftest.py) under a unique name and always torn down.
"""
import json
import threading
import time

import pytest

from conftest import ROOT, TWILL, netns_list, run, wait_for

WEBPOD = ROOT / "examples" / "webpod.yaml"
SUBNET = {"ctr": 10, "w1": 10, "w0": 20}

# Two more pods pinned to ctr and w0, so every node has two pods (same-node traffic is
# part of every matrix) whatever the scheduler does with the webpods.
PAIRS = """\
apiVersion: v1
kind: Pod
metadata: {name: pair-ctr, labels: {app: pair}}
spec:
  nodeName: ctr
  containers: [{name: c, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pair-w0, labels: {app: pair}}
spec:
  nodeName: w0
  containers: [{name: c, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pair-w1, labels: {app: pair}}
spec:
  nodeName: w1
  containers: [{name: c, image: traefik/whoami, ports: [{containerPort: 80}]}]
"""


@pytest.fixture
def pairs(tmp_path):
    f = tmp_path / "pairs.yaml"
    f.write_text(PAIRS)
    return f


def host_snapshot():
    """The host namespace's links, addresses and routes (what a sealed lab must not touch)."""
    links = {l["ifname"] for l in json.loads(run(["ip", "-j", "link", "show"]).stdout)}
    addrs = set()
    for l in json.loads(run(["ip", "-j", "addr", "show"]).stdout):
        for a in l.get("addr_info", []):
            addrs.add((l["ifname"], a.get("local"), a.get("prefixlen")))
    routes = set()
    for fam in ("-4", "-6"):
        for r in json.loads(run(["ip", "-j", fam, "route", "show", "table", "all"]).stdout):
            routes.add((fam, r.get("dst"), r.get("dev"), r.get("gateway"), r.get("table"),
                        r.get("protocol")))
    return links, addrs, routes


def matrix(probe):
    """{(from, to): ok} plus each pod's node."""
    node = {d["name"]: d["node"] for d in probe["destinations"]}
    for s in probe["sources"]:
        node.setdefault(s["name"], s["node"])
    cells = {(r["from"], r["to"]): r["ok"] for r in probe["results"]}
    return cells, node


def show(lab):
    return lab.twill("probe", check=False).stdout + lab.twill("status", check=False).stdout


@pytest.mark.parametrize("wiring", ["routed", "bridge"])
@pytest.mark.parametrize("routing", ["host-gw", "vxlan", "mixed"])
def test_pod_to_pod(lab, pairs, routing, wiring):
    lb = lab(routing=routing, wiring=wiring, files=[WEBPOD, pairs])
    pods = lb.pods()
    assert {"curl-pod", "webpod-0", "webpod-1", "webpod-2", "pair-ctr", "pair-w0"} <= set(pods)
    assert all(p["ip"] and p["node"] for p in pods.values()), pods
    assert {p["node"] for n, p in pods.items() if n.startswith("webpod")} == {"ctr", "w1", "w0"}

    # The agents may still be programming a peer's route when `lab up` returns (it waits
    # for every pod to answer on its own node): poll the matrix until it is what the mode
    # must give, with a deadline, then check it.
    def expected(cells, node):
        if routing == "host-gw":
            return all(ok == (SUBNET[node[s]] == SUBNET[node[d]]) for (s, d), ok in cells.items())
        return all(cells.values())

    deadline = time.monotonic() + 10
    while True:
        probe = lb.probe()
        cells, node = matrix(probe)
        if expected(cells, node) or time.monotonic() > deadline:
            break
    assert len(cells) == len(pods) ** 2
    if routing == "host-gw":
        # seed 003: without pod routes on the router, w0's pods are out of reach of ctr/w1
        for (src, dst), ok in cells.items():
            expect = SUBNET[node[src]] == SUBNET[node[dst]]
            assert ok == expect, f"{src}@{node[src]} -> {dst}@{node[dst]}: {ok}\n{show(lb)}"
        assert probe["rc"] != 0
        st = lb.status()
        for n in st["nodes"]:
            peers = {p["node"]: p for p in n["peers"]}
            if n["name"] in ("ctr", "w1"):
                assert peers["w0"]["status"].startswith("unroutable"), peers
                other = "w1" if n["name"] == "ctr" else "ctr"
                assert peers[other]["status"] == "ok" and peers[other]["via"] == "host-gw"
            else:
                assert all(p["status"].startswith("unroutable") for p in peers.values()), peers
        text = lb.twill("status").stdout
        assert "w0: unroutable" in text
    else:
        assert probe["reachable"] == probe["total"], show(lb)
        assert probe["rc"] == 0
        st = lb.status()
        for n in st["nodes"]:
            for p in n["peers"]:
                assert p["status"] == "ok", (n["name"], p)
                if routing == "vxlan":
                    assert p["via"] == "vxlan"
                else:
                    same = SUBNET[n["name"]] == SUBNET[p["node"]]
                    assert p["via"] == ("host-gw" if same else "vxlan"), (n["name"], p)


def test_topology_sealed_and_down(lab):
    before = host_snapshot()
    lb = lab(routing="vxlan", wiring="bridge", files=[WEBPOD])
    after = host_snapshot()
    for what, b, a in zip(("links", "addresses", "routes"), before, after):
        assert a - b == set(), f"lab up added {what} to the host namespace: {a - b}"

    names = set(netns_list(lb.name + "-"))
    assert {f"{lb.name}-{n}" for n in ("ctr", "w1", "w0", "router", "ext")} <= names
    # the router forwards but knows no pod CIDR (seed 003)
    routes = lb.exec("router", "ip", "-4", "route").stdout
    assert "172.20." not in routes, routes
    assert lb.exec("router", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    addrs = lb.exec("w0", "ip", "-4", "-o", "addr", "show", "dev", "eth1").stdout
    assert "192.168.20.100/24" in addrs
    # ext reaches every node through the router
    for ip in ("192.168.10.100", "192.168.10.101", "192.168.20.100"):
        lb.exec("ext", "ping", "-c", "1", "-W", "2", ip)

    st = lb.status()
    assert all(n["agentRunning"] for n in st["nodes"])
    cidrs = {n["name"]: n["podCIDRs"] for n in st["nodes"]}
    assert all(len(c) == 1 and c[0].startswith("172.20.") for c in cidrs.values()), cidrs
    pids = [n["agentPid"] for n in st["nodes"]]

    lb.twill("down")
    assert netns_list(lb.name + "-") == []
    assert not lb.dir.exists()
    for pid in pids:
        assert not _alive(pid), f"agent {pid} still running"
    assert lb.twill("down").returncode == 0  # idempotent
    final = host_snapshot()
    assert final[0] - before[0] == set() and final[2] - before[2] == set()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _routes(lb):
    return {n["name"]: sorted(r["text"] for r in n["routes"]) for n in lb.status()["nodes"]}


def test_agent_restart_keeps_pods(lab):
    lb = lab(routing="mixed", files=[WEBPOD])
    lb.probe(check=True)
    routes = _routes(lb)
    ips = {n: p["ip"] for n, p in lb.pods().items()}

    # crash: pods keep talking while the agent is gone (the kernel keeps the routes)
    lb.twill("kill-agent", "w1", "--signal", "KILL")
    lb.probe(check=True)
    lb.twill("start-agent", "w1")
    time.sleep(0.5)
    lb.probe(check=True)
    # a clean stop/start as well
    lb.twill("restart-agent", "w0")
    done = threading.Event()
    failures = []

    def traffic():
        while not done.is_set():
            p = lb.probe()
            if p["reachable"] != p["total"]:
                failures.append(p)

    t = threading.Thread(target=traffic)
    t.start()
    time.sleep(1.0)
    done.set()
    t.join()
    assert not failures, failures[0]
    assert all(n["agentRunning"] for n in lb.status()["nodes"])
    assert _routes(lb) == routes
    assert {n: p["ip"] for n, p in lb.pods().items()} == ips


LATE = """\
apiVersion: v1
kind: Pod
metadata: {name: late, labels: {app: late}}
spec:
  nodeName: w0
  containers: [{name: c, image: traefik/whoami, ports: [{containerPort: 8080}]}]
"""


def test_new_pod_reachable_quickly(lab):
    lb = lab(routing="mixed", files=[WEBPOD])
    done = threading.Event()
    failures = []

    def traffic():  # existing pods keep talking while the new one comes up
        while not done.is_set():
            p = lb.probe("--to", "webpod-2")
            bad = [r for r in p["results"] if not r["ok"] and r["from"] != "late"]
            if bad:
                failures.append(bad)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        t0 = time.monotonic()
        tmp = lb.manifests / ".late.yaml.tmp"
        tmp.write_text(LATE)
        tmp.rename(lb.manifests / "late.yaml")

        def reachable():
            p = lb.probe("--from-nodes", "--to", "late", "--timeout-ms", "200")
            rows = [r for r in p["results"] if r["from"].startswith("node/")]
            return len(rows) == 3 and all(r["ok"] for r in rows)

        assert wait_for(reachable, 5.0, 0.02), lb.twill("probe", "--from-nodes").stdout
        elapsed = time.monotonic() - t0
    finally:
        done.set()
        t.join()
    assert not failures, failures[0]
    assert elapsed < 1.0, f"new pod reachable from every node after {elapsed:.2f} s"
    late = lb.pods()["late"]
    assert late["node"] == "w0" and late["port"] == 8080


def test_exec_and_status_text(lab):
    lb = lab(routing="mixed", files=[WEBPOD])
    pods = lb.pods()
    ip = pods["webpod-0"]["ip"]
    # a pod's namespace by name, and the whoami-like answer of the pod server
    out = lb.exec("curl-pod", "curl", "-s", "--max-time", "2", f"http://{ip}/").stdout
    assert "webpod-0" in out, out
    out = lb.exec("default/curl-pod", "ip", "-4", "-o", "addr").stdout
    assert pods["curl-pod"]["ip"] in out
    text = lb.twill("status").stdout
    assert "twill-node" in text and "ctr routes" in text, text
    # nothing listens outside the lab
    assert run([TWILL, "lab", "exec", "--name", lb.name, "nosuchpod", "--", "true"],
               check=False).returncode != 0
