"""The lab's pod runtime: `twill lab podserver` and the kubelet inside `twill agent --kubelet`.

Everything runs in network namespaces these tests create (prefix "tkl<pid>-"), which are
deleted, and whose processes are killed by pid, before and after each test.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TWILL = os.environ.get("TWILL", str(ROOT / "build" / "twill"))
PREFIX = f"tkl{os.getpid() % 100000}-"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(TWILL, os.X_OK),
    reason="needs root and a built twill binary")


def sh(*args, check=True, timeout=20, **kw):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))}: {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def wait_for(pred, timeout, interval=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


def netns_names():
    d = Path("/run/netns")
    return sorted(n.name for n in d.iterdir() if n.name.startswith(PREFIX)) if d.is_dir() else []


def pid_alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def kill_pid(pid, timeout=3):
    if not pid or not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not pid_alive(pid), timeout):
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), timeout)


def netns_pids(name):
    """Pids of processes living in network namespace `name`."""
    try:
        ino = os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return []
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.stat(d / "ns" / "net").st_ino == ino:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def cleanup():
    for name in netns_names():
        for pid in netns_pids(name):
            if pid != os.getpid():
                kill_pid(pid)
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def clean():
    cleanup()
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(3)
    cleanup()
    assert not netns_names()


def netns_add(name):
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")


def in_ns(ns, *cmd, **kw):
    return sh("ip", "netns", "exec", ns, *cmd, **kw)


def ns_python(ns, code, *args, timeout=10):
    p = in_ns(ns, sys.executable if sys.executable.startswith("/usr/bin") else "/usr/bin/python3",
              "-c", code, *args, timeout=timeout)
    return json.loads(p.stdout)


# A small HTTP/1.1 client: requests on one connection (keep-alive), or pipelined in one write.
HTTP_CLIENT = r"""
import json, socket, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(5)
s.connect((host, port))
buf = b""
def response():
    global buf
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit("closed before a response")
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    n = int(hdrs.get("content-length", "0"))
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    body, buf = buf[:n], buf[n:]
    return {"status": lines[0], "headers": hdrs, "body": body.decode()}
out = {"local": list(s.getsockname()[:2])}
req = lambda path, extra="": (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n{extra}\r\n").encode()
if mode == "keepalive":
    s.sendall(req("/one"))
    r1 = response()
    s.sendall(req("/two"))
    r2 = response()
    out["responses"] = [r1, r2]
elif mode == "pipeline":
    s.sendall(req("/p1") + req("/p2") + req("/p3", "Connection: close\r\n"))
    out["responses"] = [response(), response(), response()]
    out["closed"] = s.recv(10) == b""
elif mode == "bighead":
    s.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n")
    out["responses"] = [response()]
print(json.dumps(out))
"""

UDP_CLIENT = r"""
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello", (host, port))
data, peer = s.recvfrom(4096)
print(json.dumps({"local": list(s.getsockname()[:2]), "reply": data.decode()}))
"""


def body_fields(body):
    f = {}
    for line in body.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            f.setdefault(k, v)
    return f


def start_podserver(ns, procs, *args):
    r, w = os.pipe()
    p = subprocess.Popen(["ip", "netns", "exec", ns, TWILL, "lab", "podserver", *args,
                          "--ready-fd", str(w)], pass_fds=(w,), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    os.close(w)
    procs.append(p)
    ready = b""
    with os.fdopen(r, "rb") as f:
        ready = f.read()  # EOF once the server wrote "ready" and closed it (or died)
    assert ready == b"ready\n", f"server not ready: {p.poll()} {p.stdout.read() if p.poll() is not None else ''}"
    return p


def test_podserver_http_udp(clean):
    srv, cli = PREFIX + "srv", PREFIX + "cli"
    netns_add(srv)
    netns_add(cli)
    sh("ip", "-n", srv, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", cli)
    sh("ip", "-n", srv, "addr", "add", "10.99.0.1/24", "dev", "v0")
    sh("ip", "-n", cli, "addr", "add", "10.99.0.2/24", "dev", "v1")
    sh("ip", "-n", srv, "-6", "addr", "add", "fd99::1/64", "dev", "v0", "nodad")
    sh("ip", "-n", cli, "-6", "addr", "add", "fd99::2/64", "dev", "v1", "nodad")
    sh("ip", "-n", srv, "link", "set", "v0", "up")
    sh("ip", "-n", cli, "link", "set", "v1", "up")

    t0 = time.monotonic()
    p = start_podserver(srv, clean, "--pod", "demo/web-0", "--node", "n1",
                        "--listen", "8080/tcp,5353/udp,9999/sctp")
    assert time.monotonic() - t0 < 2

    # keep-alive: two requests on one connection, client address seen as it is
    out = ns_python(cli, HTTP_CLIENT, "10.99.0.1", "8080", "keepalive")
    r1, r2 = out["responses"]
    for r, path in ((r1, "/one"), (r2, "/two")):
        assert r["status"] == "HTTP/1.1 200 OK"
        f = body_fields(r["body"])
        assert f["Hostname"] == "web-0"
        assert f["Node"] == "n1"
        assert f["RemoteAddr"] == f"10.99.0.2:{out['local'][1]}"
        assert "IP: 10.99.0.1" in r["body"].splitlines()
        assert f"GET {path} HTTP/1.1" in r["body"].splitlines()
        assert "Host: 10.99.0.1" in r["body"].splitlines()
        assert int(r["headers"]["content-length"]) == len(r["body"].encode())

    # pipelined requests in one write; the last asks to close
    out = ns_python(cli, HTTP_CLIENT, "10.99.0.1", "8080", "pipeline")
    assert [body_fields(r["body"])["RemoteAddr"] for r in out["responses"]] == \
        [f"10.99.0.2:{out['local'][1]}"] * 3
    assert "GET /p3 HTTP/1.1" in out["responses"][2]["body"]
    assert out["closed"]

    # IPv6 on the same (dual-stack) socket
    out = ns_python(cli, HTTP_CLIENT, "fd99::1", "8080", "keepalive")
    assert body_fields(out["responses"][0]["body"])["RemoteAddr"] == f"[fd99::2]:{out['local'][1]}"

    # bounded request heads
    out = ns_python(cli, HTTP_CLIENT, "10.99.0.1", "8080", "bighead")
    assert out["responses"][0]["status"].startswith("HTTP/1.1 431")

    # curl from the server's own namespace, reusing its connection
    if sh("which", "curl", check=False).returncode == 0:
        c = in_ns(srv, "curl", "-sv", "http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b")
        assert c.stdout.count("Hostname: web-0") == 2
        assert "Re-using existing connection" in c.stderr or "Reusing existing" in c.stderr
        assert "RemoteAddr: 127.0.0.1:" in c.stdout

    # UDP, both families
    out = ns_python(cli, UDP_CLIENT, "10.99.0.1", "5353")
    assert out["reply"] == f"Hostname: web-0\nRemoteAddr: 10.99.0.2:{out['local'][1]}\n"
    out = ns_python(cli, UDP_CLIENT, "fd99::1", "5353")
    assert out["reply"] == f"Hostname: web-0\nRemoteAddr: [fd99::2]:{out['local'][1]}\n"

    # clean exit on SIGTERM (sent to the server itself: `ip netns exec` execs it)
    p.send_signal(signal.SIGTERM)
    assert p.wait(3) == 0
    log = p.stdout.read()
    assert "SCTP" in log and "skipped" in log


def test_podserver_bad_port(clean):
    ns = PREFIX + "bad"
    netns_add(ns)
    p = subprocess.run(["ip", "netns", "exec", ns, TWILL, "lab", "podserver", "--pod", "x",
                        "--listen", "70000/tcp"], capture_output=True, text=True, timeout=5)
    assert p.returncode != 0 and "bad port" in p.stderr


# ---- the kubelet, in one node namespace with a real agent ----

NODE = "n1"
POD_CIDR = "10.123.1.0/24"


def manifests(mdir, pods=True):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.77.1"},
                                     {"type": "Hostname", "address": NODE}]}}
    (mdir / "node.json").write_text(json.dumps(node))
    if pods:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default",
                                                               "labels": {"app": "web"}},
               "spec": {"nodeName": NODE, "containers": [
                   {"name": "c", "image": "whoami", "ports": [{"containerPort": 8080},
                                                             {"containerPort": 5353,
                                                              "protocol": "UDP"}]}]}}
        (mdir / "pod-web.json").write_text(json.dumps(pod))


class Agent:
    def __init__(self, node_ns, lab, mdir, sdir, log, procs):
        # nsenter enters only the network namespace, as `twill lab` does; `ip netns exec`
        # would also give the agent a private mount namespace, where the pod namespaces'
        # bind mounts would vanish with the agent
        self.args = ["nsenter", f"--net=/run/netns/{node_ns}", TWILL, "agent", "--node", NODE,
                     "--manifests", str(mdir), "--state-dir", str(sdir), "--routing", "host-gw",
                     "--cluster-cidr", "10.123.0.0/16", "--kubelet", "--lab", lab,
                     "--log-level", "debug", "--log-file", str(log)]
        self.procs, self.log, self.p = procs, log, None

    def start(self):
        self.p = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=open(str(self.log) + ".stderr", "a"))
        self.procs.append(self.p)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        assert self.p.wait(5) == 0, self.logtail()

    def logtail(self, n=60):
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_kubelet_lifecycle(clean, tmp_path):
    lab = PREFIX[:-1]
    node_ns = f"{lab}-{NODE}"
    pod_ns = f"{lab}-p-{NODE}-default-web"
    mdir, sdir = tmp_path / "manifests", tmp_path / "state"
    mdir.mkdir()
    sdir.mkdir()
    netns_add(node_ns)
    # an underlay interface for the agent (a veth pair kept inside the node namespace)
    sh("ip", "-n", node_ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    sh("ip", "-n", node_ns, "addr", "add", "192.168.77.1/24", "dev", "eth1")
    sh("ip", "-n", node_ns, "link", "set", "eth1", "up")
    sh("ip", "-n", node_ns, "link", "set", "eth1p", "up")
    manifests(mdir)

    agent = Agent(node_ns, lab, mdir, sdir, tmp_path / "agent.log", clean)
    t0 = time.monotonic()
    agent.start()
    overlay = mdir / ".twill" / "pod.default.web.json"

    def ready():
        o = read_json(overlay)
        if o and o["status"].get("conditions", [{}])[0].get("status") == "True":
            return o
        return None
    o = wait_for(ready, 10)
    assert o, agent.logtail()
    elapsed = time.monotonic() - t0
    assert elapsed < 3, f"pod took {elapsed:.1f}s\n{agent.logtail()}"
    ip = o["status"]["podIP"]
    assert o["status"]["phase"] == "Running"
    assert o["status"]["podIPs"] == [{"ip": ip}]
    assert ip.startswith("10.123.1.")
    assert pod_ns in netns_names()

    state = read_json(sdir / "pods" / "default_web.json")
    assert state["netns"] == pod_ns and state["ips"] == [ip]
    pid = state["pid"]
    assert pid_alive(pid)
    assert int((sdir / "pods" / "default_web.pid").read_text()) == pid
    assert read_json(sdir / "cni.conf") == {"cniVersion": "1.1.0", "name": "twill",
                                            "type": "twill", "stateDir": str(sdir)}

    # the pod answers from the node's namespace, on TCP and UDP
    out = ns_python(node_ns, HTTP_CLIENT, ip, "8080", "keepalive")
    f = body_fields(out["responses"][0]["body"])
    assert f["Hostname"] == "web" and f["Node"] == NODE
    assert f["RemoteAddr"].endswith(f":{out['local'][1]}")
    assert f"IP: {ip}" in out["responses"][0]["body"]
    out = ns_python(node_ns, UDP_CLIENT, ip, "5353")
    assert out["reply"].startswith("Hostname: web\n")

    # restart the agent: the pod is adopted, not recreated
    agent.stop()
    mtime = overlay.stat().st_mtime_ns
    agent.start()
    assert wait_for(lambda: "found running" in agent.logtail(200), 5), agent.logtail()
    time.sleep(0.6)  # a few agent ticks
    state2 = read_json(sdir / "pods" / "default_web.json")
    assert state2["pid"] == pid and state2["ips"] == [ip] and state2["containerId"] == state["containerId"]
    assert pid_alive(pid)
    assert overlay.stat().st_mtime_ns == mtime  # unchanged status is not rewritten
    assert "CNI ADD" not in agent.logtail(200).split("found running")[-1]

    # a server that dies is restarted, with the same IP
    os.kill(pid, signal.SIGKILL)

    def restarted():
        s = read_json(sdir / "pods" / "default_web.json")
        return s if s and s["pid"] != pid and s.get("ready") else None
    s3 = wait_for(restarted, 8)
    assert s3, agent.logtail()
    assert s3["ips"] == [ip] and pid_alive(s3["pid"])
    out = ns_python(node_ns, HTTP_CLIENT, ip, "8080", "keepalive")
    assert body_fields(out["responses"][0]["body"])["Hostname"] == "web"

    # new container ports: the server restarts on them, the sandbox (and IP) stays
    pod = json.loads((mdir / "pod-web.json").read_text())
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = 9090
    (mdir / "pod-web.json").write_text(json.dumps(pod))

    def new_ports():
        s = read_json(sdir / "pods" / "default_web.json")
        return s if s and s.get("ports") == "9090/tcp,5353/udp" and s.get("ready") else None
    s3 = wait_for(new_ports, 8)
    assert s3, agent.logtail()
    assert s3["ips"] == [ip] and s3["containerId"] == state["containerId"]
    out = ns_python(node_ns, HTTP_CLIENT, ip, "9090", "keepalive")
    assert body_fields(out["responses"][0]["body"])["Hostname"] == "web"

    def gone(pid, ip, cid):
        assert wait_for(lambda: pod_ns not in netns_names(), 8), agent.logtail()
        assert wait_for(lambda: not overlay.exists(), 3)
        assert not pid_alive(pid)
        assert not (sdir / "pods" / "default_web.json").exists()
        assert not (sdir / "pods" / "default_web.pid").exists()
        leases = [p for p in (sdir / "ipam").rglob("*") if p.is_file()]
        assert not [p for p in leases
                    if ip in p.name or cid in p.read_text(errors="replace")], leases

    # rescheduled to another node: torn down here
    pod = json.loads((mdir / "pod-web.json").read_text())
    pod["spec"]["nodeName"] = "n2"
    (mdir / "pod-web.json").write_text(json.dumps(pod))
    gone(s3["pid"], ip, state["containerId"])

    # back on this node, then the manifest deleted: server stopped, CNI DEL (lease
    # released), namespace and status gone
    pod["spec"]["nodeName"] = NODE
    (mdir / "pod-web.json").write_text(json.dumps(pod))
    o = wait_for(ready, 5)
    assert o, agent.logtail()
    s4 = read_json(sdir / "pods" / "default_web.json")
    (mdir / "pod-web.json").unlink()
    gone(s4["pid"], o["status"]["podIP"], s4["containerId"])
    agent.stop()


def test_kubelet_orphans_and_burst(clean, tmp_path):
    """A pod removed while the agent is down is torn down on restart; a burst of pods
    comes up quickly."""
    lab = PREFIX[:-1]
    node_ns = f"{lab}-{NODE}"
    mdir, sdir = tmp_path / "manifests", tmp_path / "state"
    mdir.mkdir()
    sdir.mkdir()
    netns_add(node_ns)
    sh("ip", "-n", node_ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    sh("ip", "-n", node_ns, "addr", "add", "192.168.77.1/24", "dev", "eth1")
    sh("ip", "-n", node_ns, "link", "set", "eth1", "up")
    manifests(mdir, pods=False)
    pods = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": f"b{i}", "namespace": "burst"},
             "spec": {"nodeName": NODE, "containers": [{"name": "c"}]}} for i in range(10)]
    (mdir / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    agent = Agent(node_ns, lab, mdir, sdir, tmp_path / "agent.log", clean)
    t0 = time.monotonic()
    agent.start()

    def all_ready():
        n = 0
        for i in range(10):
            o = read_json(mdir / ".twill" / f"pod.burst.b{i}.json")
            n += bool(o and o["status"]["conditions"][0]["status"] == "True")
        return n == 10
    assert wait_for(all_ready, 15), agent.logtail()
    assert time.monotonic() - t0 < 4, agent.logtail()
    ips = {read_json(mdir / ".twill" / f"pod.burst.b{i}.json")["status"]["podIP"] for i in range(10)}
    assert len(ips) == 10
    out = ns_python(node_ns, HTTP_CLIENT, sorted(ips)[0], "80", "keepalive")
    assert out["responses"][0]["status"] == "HTTP/1.1 200 OK"

    agent.stop()
    # while the agent is down, half the pods go away
    (mdir / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                "items": pods[:5]}))
    gone = [f"{lab}-p-{NODE}-burst-b{i}" for i in range(5, 10)]
    agent.start()
    assert wait_for(lambda: not set(gone) & set(netns_names()), 8), agent.logtail()
    assert wait_for(lambda: not any((mdir / ".twill" / f"pod.burst.b{i}.json").exists()
                                    for i in range(5, 10)), 3)
    for i in range(5):
        assert f"{lab}-p-{NODE}-burst-b{i}" in netns_names()
    agent.stop()
