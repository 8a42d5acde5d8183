"""Services in the lab: every agent runs kube-proxy's job with the nftables dataplane (and,
for the ClusterIP spread, NodePort and no-endpoint cases, also with the iptables one:
`twill lab up --proxy iptables`).

The manifest below is seed 003's webpod application with its Service made a NodePort with
a fixed clusterIP (10.96.0.10, nodePort 30080), a Service that selects nothing
(10.96.0.11), curl-pod on ctr and one client pod each on w0 and w1.  Each lab is brought
up by the `lab` fixture (conftest.py) under a unique name and always torn down; all traffic
stays inside the lab's namespaces.
"""
import json
import re
import subprocess
import time

import pytest

from conftest import TWILL, run, wait_for

VIP, NODEPORT, EMPTY_VIP = "10.96.0.10", 30080, "10.96.0.11"
NODE_IPS = {"ctr": "192.168.10.100", "w1": "192.168.10.101", "w0": "192.168.20.100"}

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: webpod}
spec:
  replicas: 3
  selector: {matchLabels: {app: webpod}}
  template:
    metadata: {labels: {app: webpod}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchExpressions: [{key: app, operator: In, values: [webpod]}]
            topologyKey: kubernetes.io/hostname
      containers: [{name: webpod, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: webpod, labels: {app: webpod}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  selector: {app: webpod}
  ports: [{protocol: TCP, port: 80, targetPort: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  clusterIP: 10.96.0.11
  selector: {app: nobody}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: curl-pod, labels: {app: curl}}
spec:
  nodeName: ctr
  containers: [{name: curl, image: nicolaka/netshoot, command: [tail], args: [-f, /dev/null]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-w0, labels: {app: client}}
spec:
  nodeName: w0
  containers: [{name: c, image: nicolaka/netshoot, command: [tail], args: [-f, /dev/null]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-w1, labels: {app: client}}
spec:
  nodeName: w1
  containers: [{name: c, image: nicolaka/netshoot, command: [tail], args: [-f, /dev/null]}]
"""

# N fresh connections (no keep-alive: each one is load-balanced anew); prints one JSON
# object {hostname: count, "errors": n}.
SPREAD = r"""
import json, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = {"errors": 0}
for _ in range(n):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        name = "?"
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("Hostname: "):
                name = line[10:].strip()
        seen[name] = seen.get(name, 0) + 1
    except OSError:
        seen["errors"] += 1
print(json.dumps(seen))
"""

# One keep-alive connection: a request now, another one after a line arrives on stdin.
KEEPALIVE = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
def req():
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(65536)
        if not b:
            raise SystemExit("closed")
        data += b
    head, body = data.split(b"\r\n\r\n", 1)
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(body) < n:
        b = s.recv(65536)
        if not b:
            raise SystemExit("closed")
        body += b
    host = [l for l in body.decode().splitlines() if l.startswith("Hostname: ")]
    print("ok", s.getsockname()[1], host[0][10:] if host else "?", flush=True)
req()
sys.stdin.readline()
req()
"""


@pytest.fixture
def svc_manifest(tmp_path):
    f = tmp_path / "svc.yaml"
    f.write_text(MANIFEST)
    return f


def state_dir(lb, node):
    return lb.dir / "nodes" / node


def svc_list(lb, node, *extra):
    p = lb.exec(node, TWILL, "svc", "list", "--state-dir", str(state_dir(lb, node)), "-o",
                "json", *extra)
    return json.loads(p.stdout)


def entry(listing, address, port):
    for e in listing["services"]:
        if e["address"] == address and e["port"] == port and e["protocol"] == "TCP":
            return e
    return None


def wait_programmed(lb):
    """Every agent lists the webpod Service with three backends (what was programmed)."""
    def ok():
        for node in NODE_IPS:
            f = state_dir(lb, node) / "services.json"
            try:
                e = entry(json.loads(f.read_text()), VIP, 80)
            except (OSError, ValueError):
                return False
            if not e or len(e["backends"]) != 3:
                return False
        return True
    assert wait_for(ok, 20, 0.1), f"services.json not complete\n{lb.logs()}"


def spread(lb, pod, host, port, n=300):
    p = lb.exec(pod, "python3", "-c", SPREAD, host, str(port), str(n), timeout=120)
    return json.loads(p.stdout)


@pytest.mark.parametrize("wiring,proxy", [("routed", "nftables"), ("bridge", "nftables"),
                                          ("routed", "iptables")])
def test_clusterip_spreads_from_every_node(lab, svc_manifest, wiring, proxy):
    lb = lab(routing="mixed", wiring=wiring, files=[svc_manifest], proxy=proxy)
    wait_programmed(lb)
    pods = lb.pods()
    webpods = {n for n in pods if n.startswith("webpod-")}
    assert len(webpods) == 3
    for client in ("curl-pod", "client-w0", "client-w1"):
        seen = spread(lb, client, VIP, 80)
        assert seen.pop("errors") == 0, (client, seen)
        assert set(seen) == webpods, (client, seen)
        for name, count in seen.items():
            assert count >= 60, f"{client}: {name} got {count}/300 ({seen})"


@pytest.mark.parametrize("proxy", ["nftables", "iptables"])
def test_nodeport_from_outside(lab, svc_manifest, proxy):
    lb = lab(routing="mixed", wiring="routed", files=[svc_manifest], proxy=proxy)
    wait_programmed(lb)
    webpods = {n for n in lb.pods() if n.startswith("webpod-")}
    for node, ip in NODE_IPS.items():
        seen = spread(lb, "ext", ip, NODEPORT, n=60)
        assert seen.pop("errors") == 0, (node, seen)
        # Cluster policy: any node forwards to every backend, also on other nodes
        assert set(seen) == webpods, (node, seen)
    st = json.loads((state_dir(lb, "ctr") / "status.json").read_text())
    assert st["proxy"] == proxy and st["services"] == 2, st
    assert not [e for e in st["errors"] if "proxy" in e or "service" in e], st["errors"]


def test_svc_list_shows_backends(lab, svc_manifest):
    lb = lab(routing="mixed", wiring="routed", files=[svc_manifest])
    wait_programmed(lb)
    ips = {p["ip"] for n, p in lb.pods().items() if n.startswith("webpod-")}

    text = lb.exec("ctr", TWILL, "svc", "list", "--state-dir", str(state_dir(lb, "ctr"))).stdout
    assert "Prot LocalAddress:Port Scheduler Flags" in text, text
    assert re.search(r"^TCP  10\.96\.0\.10:80 random", text, re.M), text
    assert re.search(r"^TCP  192\.168\.10\.100:30080 random", text, re.M), text
    assert re.search(r"^TCP  10\.96\.0\.11:80 random reject", text, re.M), text
    for ip in ips:
        assert re.search(rf"^  -> {re.escape(ip)}:80 +Masq +1 +\d+ +\d+$", text, re.M), text

    listing = svc_list(lb, "ctr")
    e = entry(listing, VIP, 80)
    assert e and e["scope"] == "ClusterIP" and e["scheduler"] == "random", listing
    assert {b["ip"] for b in e["backends"]} == ips
    assert entry(listing, NODE_IPS["ctr"], NODEPORT)["scope"] == "NodePort"
    assert entry(listing, EMPTY_VIP, 80)["verdict"] == "reject"

    # planned straight from the manifests, without the agent's file: the same table
    p = run([TWILL, "svc", "list", "--manifests", str(lb.manifests), "--node", "ctr", "-o",
             "json"])
    planned = json.loads(p.stdout)
    key = lambda l: sorted((x["address"], x["port"], tuple(sorted(b["ip"] for b in x["backends"])))
                           for x in l["services"])
    assert key(planned) == key(listing)


def test_established_connection_survives_agent_restart(lab, svc_manifest):
    lb = lab(routing="mixed", wiring="routed", files=[svc_manifest])
    wait_programmed(lb)
    cmd = [TWILL, "lab", "exec", "--name", lb.name, "curl-pod", "--", "python3", "-c",
           KEEPALIVE, VIP, "80"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().split()
        assert first and first[0] == "ok", (first, proc.stderr.read() if proc.poll() else "")

        # svc list counts the open connection as active on its backend (both conntrack readers)
        for source in ("proc", "netlink"):
            e = entry(svc_list(lb, "ctr", "--conntrack", source), VIP, 80)
            active = {b["ip"]: b["activeConn"] for b in e["backends"]}
            assert sum(active.values()) >= 1, (source, e)

        pid_before = {n["name"]: n["agentPid"] for n in lb.status()["nodes"]}["ctr"]
        lb.twill("restart-agent", "ctr")
        # the new agent's first sync found the table as it should be and changed nothing
        log = lb.dir / "log" / "ctr.log"
        syncs = lambda: [l for l in log.read_text().splitlines() if "nftables: full sync" in l]
        assert wait_for(lambda: len(syncs()) >= 2, 20, 0.05), lb.logs()
        assert "elements +0 -0, chains 0 written 0 deleted" in syncs()[1], syncs()
        # the new agent is up and has synced: a Service added now is programmed by it
        extra = lb.manifests / "after-restart.yaml"
        extra.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: again}\n"
                         "spec:\n  clusterIP: 10.96.0.12\n  selector: {app: webpod}\n"
                         "  ports: [{port: 80, targetPort: 80}]\n")
        def synced():
            st = {n["name"]: n for n in lb.status()["nodes"]}["ctr"]
            if not st["agentRunning"] or st["agentPid"] == pid_before:
                return False
            try:
                return entry(json.loads((state_dir(lb, "ctr") / "services.json")
                                        .read_text()), "10.96.0.12", 80)
            except (OSError, ValueError):
                return False
        assert wait_for(synced, 20, 0.1), lb.logs()
        r = lb.exec("curl-pod", "curl", "-s", "-m", "2", "http://10.96.0.12/", check=False)
        assert r.returncode == 0 and "Hostname: webpod-" in r.stdout, r

        out, err = proc.communicate("\n", timeout=10)
        second = out.split()
        assert proc.returncode == 0, err
        assert second[:3] == first[:3], (first, second)  # same socket, same backend
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.parametrize("proxy", ["nftables", "iptables"])
def test_no_endpoints_rejects(lab, svc_manifest, proxy):
    lb = lab(routing="mixed", wiring="routed", files=[svc_manifest], proxy=proxy)
    wait_programmed(lb)
    for pod in ("curl-pod", "client-w0"):
        t0 = time.monotonic()
        r = lb.exec(pod, "curl", "-s", "-m", "5", f"http://{EMPTY_VIP}/", check=False)
        took = time.monotonic() - t0
        assert r.returncode == 7, (pod, r.returncode, r.stderr)  # connection refused
        assert took < 1.0, f"{pod}: reject took {took:.2f} s"
    # and from the node itself (output hook)
    r = lb.exec("w1", "curl", "-s", "-m", "5", f"http://{EMPTY_VIP}/", check=False)
    assert r.returncode == 7, r


def test_conflicting_nodeport_reported(lab, svc_manifest):
    lb = lab(routing="mixed", wiring="routed", files=[svc_manifest])
    wait_programmed(lb)
    (lb.manifests / "dup.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: dup}\nspec:\n  type: NodePort\n"
        "  clusterIP: 10.96.0.13\n  selector: {app: webpod}\n"
        "  ports: [{port: 81, targetPort: 80, nodePort: 30080}]\n")

    def reported():
        st = json.loads((state_dir(lb, "w0") / "status.json").read_text())
        return [e for e in st["errors"] if e.startswith("service default/dup:")]
    errs = wait_for(reported, 20, 0.1)
    assert errs and "30080" in errs[0] and "default/webpod" in errs[0], errs
    # the loser's other entries apply; the winner keeps the NodePort
    def dup_programmed():
        return entry(json.loads((state_dir(lb, "w0") / "services.json").read_text()),
                     "10.96.0.13", 81)
    assert wait_for(dup_programmed, 20, 0.1)
    r = lb.exec("client-w0", "curl", "-s", "-m", "2", "http://10.96.0.13:81/", check=False)
    assert r.returncode == 0 and "Hostname: webpod-" in r.stdout, r
    e = entry(svc_list(lb, "w0"), NODE_IPS["w0"], NODEPORT)
    assert e["service"] == "default/webpod", e
    seen = spread(lb, "ext", NODE_IPS["w0"], NODEPORT, n=10)
    assert seen.pop("errors") == 0, seen


def test_bad_service_input_reported_others_unaffected(lab, svc_manifest):
    """An invalid clusterIP and an unknown protocol: a clear error naming file, line, object
    and field; nothing of the bad Services is programmed; the good one keeps working."""
    lb = lab(routing="mixed", wiring="routed", files=[svc_manifest])
    wait_programmed(lb)
    (lb.manifests / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: badip}\nspec:\n"
        "  clusterIP: 10.96.0.300\n  selector: {app: webpod}\n  ports: [{port: 82}]\n"
        "---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: badproto}\nspec:\n"
        "  clusterIP: 10.96.0.14\n  selector: {app: webpod}\n"
        "  ports: [{port: 83, protocol: ICMP}]\n")

    def reported():
        st = json.loads((state_dir(lb, "ctr") / "status.json").read_text())
        errs = [e for e in st["errors"] if "bad.yaml" in e]
        return errs if len(errs) >= 2 else None
    errs = wait_for(reported, 20, 0.1)
    assert errs, f"no errors reported\n{lb.logs()}"
    text = "\n".join(errs)
    assert "bad.yaml:5:" in text and "Service/default/badip" in text and "clusterIP" in text, text
    assert "Service/default/badproto" in text and "protocol" in text, text
    # nothing of either bad Service reached the dataplane; the good one still answers
    listing = svc_list(lb, "ctr")
    assert entry(listing, "10.96.0.14", 83) is None
    assert not [e for e in listing["services"] if e.get("service", "").endswith("/badip")]
    seen = spread(lb, "curl-pod", VIP, 80, n=30)
    assert seen.pop("errors") == 0, seen
