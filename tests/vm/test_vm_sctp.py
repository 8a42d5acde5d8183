"""SCTP Services end to end (`twill agent --proxy nftables | iptables | ipvs`).

Runs inside the VM (make vmcheck VMTESTS=tests/vm/test_vm_sctp.py); skips where the kernel
has no SCTP (the development host's has none).  The topology is svctopo.py's (prefix
h28s<pid>-): a client and three backends around a node namespace.  Each backend runs twill's
pod server listening on 9000/sctp (`twill lab podserver --listen 9000/sctp`, which answers
an HTTP request with `Hostname: <pod>`).  The real agent runs in the node namespace with the
dataplane under test and a Service of protocol SCTP, ClusterIP and NodePort, whose
EndpointSlice names the three backends.  An SCTP client (python's socket with IPPROTO_SCTP,
one association per request) in the client namespace must be answered on the ClusterIP and
on the node's NodePort, every time, by every backend.

    cli 10.81.100.2 --veth-- node 10.81.100.1 --veth-- b1 10.81.1.2  podserver 9000/sctp
                                    |  \\--veth-- b2 10.81.2.2
                                    |   \\-veth-- b3 10.81.3.2
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import TWILL
from test_vm_ipvs6 import kernel_has_ipvs  # modprobe ip_vs, ip_vs_rr, dummy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import svctopo  # noqa: E402
from test_proxy_nft import sh  # noqa: E402  (a command, in a namespace if given)

PFX = "h28s%d-" % os.getpid()
NODE, CLI = PFX + "node", PFX + "cli"
BACKENDS = {"b1": "10.81.1.2", "b2": "10.81.2.2", "b3": "10.81.3.2"}
NODE_IP, VIP, PORT, NODEPORT, TARGET = "10.81.100.1", "10.96.8.10", 80, 30091, 9000
N = 30  # associations per address: a backend missing by chance has odds 3*(2/3)^30 ~ 1e-5

MANIFESTS = {
    "node.yaml": """\
apiVersion: v1
kind: Node
metadata:
  name: node
  labels: {kubernetes.io/hostname: node, kubernetes.io/os: linux}
status:
  addresses:
  - {type: InternalIP, address: %s}
  - {type: Hostname, address: node}
""" % NODE_IP,
    "svc.yaml": """\
apiVersion: v1
kind: Service
metadata: {name: sctpsvc}
spec:
  type: NodePort
  clusterIP: %s
  ports: [{name: s, port: %d, protocol: SCTP, targetPort: %d, nodePort: %d}]
""" % (VIP, PORT, TARGET, NODEPORT),
    "eps.yaml": """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sctpsvc-1, labels: {kubernetes.io/service-name: sctpsvc}}
addressType: IPv4
ports: [{name: s, port: %d, protocol: SCTP}]
endpoints:
%s""" % (TARGET, "".join("- {addresses: [%s], nodeName: node}\n" % ip
                         for ip in BACKENDS.values())),
}

# n SCTP associations to host:port, each sends an HTTP/1.0 request and reads the reply to
# its end; retries until the first answer (at most `wait` seconds: the backends start and
# the agent's first sync), after that every association must be answered.
CLIENT = r"""
import json, socket, sys, time
host, port, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def once():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(3)
    try:
        s.connect((host, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            buf += d
    finally:
        s.close()
    for line in buf.decode(errors="replace").splitlines():
        if line.startswith("Hostname: "):
            return line[10:]
    raise ValueError("no Hostname in %r" % buf[:200])
t0, first, last = time.monotonic(), None, None
while first is None:
    try:
        first = once()
    except Exception as e:
        last = repr(e)
        if time.monotonic() - t0 > wait:
            print(json.dumps({"error": "no answer in %.0f s: %s" % (wait, last)}))
            sys.exit(0)
        time.sleep(0.2)
seen, errors = {first: 1}, []
for _ in range(n - 1):
    try:
        h = once()
        seen[h] = seen.get(h, 0) + 1
    except Exception as e:
        errors.append(repr(e))
print(json.dumps({"seen": seen, "errors": errors, "first_after": time.monotonic() - t0}))
"""


def kernel_has_sctp():
    subprocess.run(["modprobe", "sctp"], capture_output=True)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not kernel_has_sctp(),
                                reason="needs root and a kernel with SCTP (modprobe sctp "
                                       "failed; make vmcheck)")


def client(host, port, n, wait):
    p = sh("python3", "-c", CLIENT, host, str(port), str(n), str(wait), ns=CLI,
           timeout=wait + n * 4 + 30)
    return json.loads(p.stdout)


def write(d, name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))


def dataplane_state(proxy):
    """What the dataplane programmed in the node: its own listing."""
    cmd = {"nftables": ["nft", "list", "ruleset"], "iptables": ["iptables-save", "-t", "nat"],
           "ipvs": ["ipvsadm", "-Ln"]}[proxy]
    p = sh(*cmd, ns=NODE, check=False)
    return p.stdout + p.stderr


# the Service as SCTP in each dataplane's own listing
PROGRAMMED = {
    "nftables": [r"%s \. sctp \. %d\b" % (re.escape(VIP), PORT), r"\bsctp \. %d\b" % NODEPORT],
    "iptables": [r"-d %s/32 -p sctp .*--dport %d\b" % (re.escape(VIP), PORT),
                 r"-p sctp .*--dport %d\b" % NODEPORT],
    "ipvs": [r"(?m)^SCTP\s+%s:%d rr" % (re.escape(VIP), PORT),
             r"(?m)^SCTP\s+%s:%d rr" % (re.escape(NODE_IP), NODEPORT)]
    + [r"(?m)^  -> %s:%d\s+Masq\s+1\s" % (re.escape(ip), TARGET) for ip in BACKENDS.values()],
}


@pytest.mark.parametrize("proxy", ["nftables", "iptables", "ipvs"])
def test_sctp_service(proxy):
    if not os.access(TWILL, os.X_OK):
        pytest.skip(f"{TWILL} is not built")
    if proxy == "ipvs" and not kernel_has_ipvs():
        pytest.skip("needs a kernel with ip_vs and dummy")
    svctopo.cleanup(PFX)
    procs = []
    mdir = tempfile.mkdtemp(prefix="h28-manifests-")
    sdir = tempfile.mkdtemp(prefix="h28-state-")
    log = os.path.join(sdir, "agent.log")
    try:
        # svctopo's python HTTP backends on 8080 stay idle: the pod servers answer SCTP
        procs += svctopo.build(sh, NODE, CLI, PFX, BACKENDS, "10.81", "h28", mdir)
        for b in BACKENDS:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", PFX + b, TWILL, "lab", "podserver", "--pod",
                 "default/" + b, "--node", "node", "--listen", "%d/sctp" % TARGET],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(sdir, b + ".log"), "w")))
        # each pod server answers SCTP directly (no Service in between)
        for b, ip in BACKENDS.items():
            r = client(ip, TARGET, 1, 30)
            assert r.get("seen") == {b: 1}, (b, r, Path(sdir, b + ".log").read_text())
        for name, text in MANIFESTS.items():
            write(mdir, name, text)
        agent = subprocess.Popen(
            ["ip", "netns", "exec", NODE, TWILL, "agent", "--node", "node", "--manifests", mdir,
             "--state-dir", sdir, "--routing", "host-gw", "--policy", "off", "--proxy", proxy,
             "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT)
        procs.append(agent)  # killed by svctopo.cleanup with the pod servers

        for host, port in ((VIP, PORT), (NODE_IP, NODEPORT)):
            r = client(host, port, N, 60)
            why = (host, port, r, dataplane_state(proxy)[-4000:],
                   Path(log).read_text()[-3000:])
            assert "seen" in r, why
            # answered every time, by the three backends and nobody else
            assert r["errors"] == [] and sum(r["seen"].values()) == N, why
            assert set(r["seen"]) == set(BACKENDS), why
        assert agent.poll() is None, Path(log).read_text()[-3000:]
        state = dataplane_state(proxy)
        for pat in PROGRAMMED[proxy]:
            assert re.search(pat, state), (pat, state[-4000:])
    finally:
        svctopo.cleanup(PFX, procs)
        shutil.rmtree(mdir, ignore_errors=True)
        shutil.rmtree(sdir, ignore_errors=True)
        assert not svctopo.netns_with_prefix(PFX)
