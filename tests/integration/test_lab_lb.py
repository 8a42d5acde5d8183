"""LoadBalancer Services in the lab, reached from the external client behind the router.

A MetalLB-shaped IPAddressPool (192.168.50.0/24) lets the standalone controller allocate
the Service's ingress address (written back into the Service's status overlay); `twill lab
up` gives the router a static route for that pool via ctr's underlay address (BGP comes
later), so ext reaches the LB address through ctr.  With externalTrafficPolicy: Local the
pod sees ext's own address, and the health-check node port answers 200 on a node with a
local endpoint and 503 on one without.  All traffic stays inside the lab's namespaces.
"""
import json

import pytest

from conftest import wait_for

EXT_IP = "192.168.30.100"
NODE_IPS = {"ctr": "192.168.10.100", "w1": "192.168.10.101", "w0": "192.168.20.100"}
HC_PORT = 32100

MANIFEST = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab-pool, namespace: metallb-system}
spec:
  addresses: [192.168.50.0/24]
---
apiVersion: v1
kind: Pod
metadata: {name: webpod-ctr, labels: {app: webpod}}
spec:
  nodeName: ctr
  containers: [{name: webpod, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: webpod-w1, labels: {app: webpod}}
spec:
  nodeName: w1
  containers: [{name: webpod, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: webpod}
spec:
  type: LoadBalancer
  selector: {app: webpod}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: weblocal}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: %d
  selector: {app: webpod}
  ports: [{protocol: TCP, port: 80, targetPort: 80}]
""" % HC_PORT

# One HTTP GET with a fresh connection: prints {"code": N, "body": "..."} or {"error": ..}.
GET = r"""
import json, socket, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    print(json.dumps({"code": int(head.split()[1]), "body": body.decode(errors="replace")}))
except OSError as e:
    print(json.dumps({"error": str(e)}))
"""


def get(lb, host, port, path="/"):
    p = lb.exec("ext", "python3", "-c", GET, host, str(port), path, timeout=20)
    return json.loads(p.stdout)


def lb_ip(lb, name):
    """The ingress address the controller wrote into the Service's status overlay."""
    f = lb.manifests / ".twill" / f"service.default.{name}.json"
    try:
        ing = json.loads(f.read_text())["status"]["loadBalancer"]["ingress"]
        return ing[0]["ip"] if ing else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


def node_port(lb, name):
    f = lb.manifests / ".twill" / f"service.default.{name}.json"
    try:
        return json.loads(f.read_text())["spec"]["ports"][0]["nodePort"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def programmed(lb, node, ip, n):
    f = lb.dir / "nodes" / node / "services.json"
    try:
        for e in json.loads(f.read_text())["services"]:
            if e["address"] == ip and e["port"] == 80 and len(e["backends"]) >= n:
                return True
    except (OSError, ValueError, KeyError):
        pass
    return False


@pytest.fixture
def lb_manifest(tmp_path):
    f = tmp_path / "lb.yaml"
    f.write_text(MANIFEST)
    return f


@pytest.mark.parametrize("proxy", ["nftables", "iptables"])
def test_loadbalancer_from_outside(lab, lb_manifest, proxy):
    lb = lab(routing="mixed", wiring="routed", files=[lb_manifest], proxy=proxy)
    ip = wait_for(lambda: lb_ip(lb, "webpod"), 20, 0.1)
    lip = wait_for(lambda: lb_ip(lb, "weblocal"), 20, 0.1)
    assert ip and ip.startswith("192.168.50.") and lip and lip.startswith("192.168.50."), \
        (ip, lip, lb.logs())
    assert ip != lip
    pods = lb.pods()
    webpods = {n: p for n, p in pods.items() if n.startswith("webpod-")}
    assert len(webpods) == 2
    nodes_with = {"ctr", "w1"}  # w0 has no webpod
    assert wait_for(lambda: programmed(lb, "ctr", ip, 2), 20, 0.1), lb.logs()

    # Cluster policy through ctr (the router's static route): every webpod answers, and
    # ctr masquerades so the pod sees a node address, not ext's
    seen = {}
    for _ in range(30):
        r = get(lb, ip, 80)
        assert r.get("code") == 200, r
        fields = dict(l.split(": ", 1) for l in r["body"].splitlines() if ": " in l)
        seen[fields["Hostname"]] = fields["RemoteAddr"]
    assert set(seen) == set(webpods), seen

    # Local policy: the health-check port says which nodes have a local endpoint
    def hc(node):
        r = get(lb, NODE_IPS[node], HC_PORT, "/healthz")
        return r if "code" in r else None
    for node in NODE_IPS:
        r = wait_for(lambda: hc(node), 20, 0.2)
        assert r, (node, lb.logs())
        want = 1 if node in nodes_with else 0
        def right():
            x = hc(node)
            return x and json.loads(x["body"])["localEndpoints"] == want and x
        r = wait_for(right, 10, 0.2) or hc(node)
        body = json.loads(r["body"])
        assert body["service"] == {"namespace": "default", "name": "weblocal"}, body
        assert body["serviceProxyHealthy"] is True
        assert body["localEndpoints"] == want, (node, body)
        assert r["code"] == (200 if want else 503), (node, r)

    # ...and through ctr (which has a local endpoint) the pod sees ext's real address
    assert wait_for(lambda: programmed(lb, "ctr", lip, 1), 20, 0.1)
    for _ in range(5):
        r = get(lb, lip, 80)
        assert r.get("code") == 200, r
        assert "Hostname: webpod-ctr" in r["body"], r  # only ctr's own endpoint
        assert f"RemoteAddr: {EXT_IP}:" in r["body"], r

    # a node without a local endpoint (w0) drops Local-policy traffic (the client should
    # try another node): no answer at all, neither a reset nor an ICMP error, both through
    # the NodePort and through the LoadBalancer address (the router sent there for a moment)
    np = wait_for(lambda: node_port(lb, "weblocal"), 20, 0.1)
    assert np, lb.logs()
    r = wait_for(lambda: (lambda x: x if x.get("code") == 200 else None)(
        get(lb, NODE_IPS["ctr"], np)), 10, 0.2)
    assert r and f"RemoteAddr: {EXT_IP}:" in r["body"], r
    r = get(lb, NODE_IPS["w0"], np)
    assert "timed out" in r.get("error", ""), r
    lb.exec("router", "ip", "route", "replace", lip + "/32", "via", NODE_IPS["w0"])
    try:
        r = get(lb, lip, 80)
        assert "timed out" in r.get("error", ""), r
    finally:
        lb.exec("router", "ip", "route", "del", lip + "/32", "via", NODE_IPS["w0"])
    assert get(lb, lip, 80).get("code") == 200
