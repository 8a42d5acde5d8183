#!/usr/bin/python3
"""Service dataplanes: twill's nftables writer vs its iptables (kube-proxy layout) writer, same run.

Command (root; after `make`):
    /usr/bin/python3 bench/svc_bench.py [--sizes 10,1000,10000] [--endpoints 10]
        [--twill build/twill] [--timeout 300] [--latency-sizes 10,10000] [--connects 500]
        [--dataplanes nft,ipt] [--ipt-max-services N] [--agent-sizes 10000]
        [--resyncs 3] [--json out.json]

For every size N (Services) the benchmark writes N Services x E endpoints into a temporary
manifest directory: services.yaml (one multi-document YAML file, every Service with an
explicit clusterIP from 10.96.0.0/12, port 80/TCP -> 8080), slices.yaml (their
EndpointSlices, E IPv4 endpoints each, fake addresses from 172.16.0.0/12) and change.yaml
(the EndpointSlice of Service N/2, alone in its file so it can be edited).  Only the first
2000 Services are type NodePort (30000 + i): the default NodePort range 30000-32767 holds
2768 ports; the others are ClusterIP.  Then, for each dataplane, in a fresh network
namespace "tsvb<pid>-node" (created for it, deleted after it):

  full sync    wall time of one `twill proxy-debug --manifests DIR --node node --node-ip IP`
               (nft) or `twill proxy ipt-render DIR --node node --node-ip IP --apply`
               (iptables-restore --noflush) from process start to exit: read and parse the
               manifests, plan, program the kernel.  The twill process is started directly in
               the namespace (setns in the forked child), so no `ip netns exec` is timed.
  front end    `twill proxy ipt-render DIR ... --saved /dev/null` without --apply: parse +
               plan + render the iptables-restore text, no kernel; the same parser and
               planner as both writers, so it shows how much of a run is not the kernel.
  one change   one endpoint of change.yaml replaced by a new address (one removed, one
               added).  nft: the process of the full sync keeps running (`proxy-debug
               --wait-change`) and, like the agent, is woken by inotify, re-reads that one
               file and syncs; the time runs from the file's rename to its report of the
               programmed kernel (its stats split it into loadMs, the re-read, and syncMs,
               plan + diff + transaction).  iptables: the same command again, a new process
               (iptables-restore rewrites the ruleset anyway).
  restart      nft: the command once more, a new process that re-reads every manifest,
               dumps the table and finds nothing to change (the reconcile of an agent
               restart; nothing is flushed).
  peak RSS     nft: twill's own VmHWM (`peakRssKb` in its stats); ru_maxrss from wait4() is
               kept in the JSON but is not the process's own: at exec the kernel keeps the
               forked Python child's high-water mark (~15 MB).  iptables: ru_maxrss (it
               includes iptables-save and iptables-restore: Linux folds waited-for children in).
  agent        (--agent-sizes, default 10000) the whole `twill agent --proxy nftables` (store,
               controller, planner, writer, status files) on a copy of the manifests plus a
               Node, in a fresh node namespace: full sync from exec to its "nftables: full
               sync" log line (log clock), one change to its "incremental sync" line, then
               --resyncs SIGHUP rescans (manifests and kernel) with VmRSS after each (a
               leak would grow it), and peak RSS (ru_maxrss of the agent from wait4()).
  counts       nft: rules, chains and map/set elements in `nft -j list table ip twill`;
               iptables: lines of `iptables-save` and its -A rules.

Every twill run is bounded by --timeout (default 300 s; on timeout its process group is
killed and the result says "timeout").  With --latency-sizes, the benchmark also measures the
connect time of new TCP connections to a ClusterIP: a client namespace (tsvb<pid>-cli,
10.201.0.2) connects to the ClusterIP of the last Service, whose only endpoint is a listener
in a backend namespace (tsvb<pid>-be, 10.202.0.2:8080); both are routed through the node
namespace (ip_forward in that namespace only), so the SYN goes through the dataplane's
prerouting DNAT.  --connects connects one after the other, p50 and p99 of connect() time.

Namespaces are named tsvb<pid>-*; leftovers of dead runs (tsvb<dead pid>-*) are removed at
start, ours at exit.  Nothing is changed in the caller's own namespace.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PID = os.getpid()
PFX = "tsvb%d-" % PID
NODE, CLI, BE = PFX + "node", PFX + "cli", PFX + "be"
NODE_IP = "10.201.0.1"
CLI_IP, BE_IP, BE_PORT = "10.201.0.2", "10.202.0.2", 8080
NODEPORT_MAX = 2000
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
RUNNING = []  # process groups of timed twill runs under way (killed if we are interrupted)


def sh(*args, check=True, ns=None, timeout=60, input=None):
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.strip()))
    return p


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def our_netns(dead_too=False):
    d = "/run/netns"
    if not os.path.isdir(d):
        return []
    out = []
    for n in os.listdir(d):
        if n.startswith(PFX):
            out.append(n)
        elif dead_too:
            m = re.match(r"tsvb(\d+)-", n)
            if m and not os.path.exists("/proc/" + m.group(1)):
                out.append(n)
    return sorted(out)


def cleanup_netns(dead_too=False):
    for ns in our_netns(dead_too):
        sh("ip", "netns", "del", ns, check=False)


def ip4(base, i):
    a = base + i
    return "%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)


def svc_name(i):
    return "svc-%05d" % i


def cluster_ip(i):
    return ip4((10 << 24) | (96 << 16), i + 1)  # 10.96.0.1, ... (10.96.0.0/12)


def ep_ips(i, e, gen=0):
    # 172.16.0.0/12: room for 1M fake endpoint addresses; gen shifts to unused ones
    return [ip4((172 << 24) | (16 << 16), i * e + k + gen * 500000) for k in range(e)]


def svc_doc(i):
    np = i < NODEPORT_MAX
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: bench}\n"
            "spec:\n  type: %s\n  clusterIP: %s\n"
            "  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080%s}]\n"
            % (svc_name(i), "NodePort" if np else "ClusterIP", cluster_ip(i),
               ", nodePort: %d" % (30000 + i) if np else ""))


def slice_doc(i, ips):
    eps = "".join("- {addresses: [%s], nodeName: node, conditions: {ready: true}}\n" % a
                  for a in ips)
    return ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: %s-1, namespace: bench, labels: {kubernetes.io/service-name: %s}}\n"
            "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\n"
            "endpoints:\n%s" % (svc_name(i), svc_name(i), eps))


def write(path, text):
    with open(str(path) + ".tmp", "w") as f:
        f.write(text)
    os.rename(str(path) + ".tmp", path)


def gen_manifests(d, n, e):
    """Write the three files; returns (index of the changed Service, of the latency one)."""
    chg, lat = n // 2, n - 1
    write(d / "services.yaml", "---\n".join(svc_doc(i) for i in range(n)))
    docs = []
    for i in range(n):
        if i == chg:
            continue
        docs.append(slice_doc(i, [BE_IP] if i == lat else ep_ips(i, e)))
    write(d / "slices.yaml", "---\n".join(docs))
    write(d / "change.yaml", slice_doc(chg, [BE_IP] if chg == lat else ep_ips(chg, e)))
    return chg, lat


def change_one(d, chg, lat, e):
    ips = [BE_IP] if chg == lat else ep_ips(chg, e)
    ips = ips[1:] + [ep_ips(chg, 1, gen=1)[0]]  # one endpoint gone, a new one added
    write(d / "change.yaml", slice_doc(chg, ips))


def run_timed(cmd, timeout, ns=NODE):
    """Run cmd in namespace ns (setns in the child); returns dict wall_ms, maxrss_kb, rc,
    stdout, stderr, timeout."""
    nspath = "/run/netns/" + ns
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=lambda: setns(nspath),
                         start_new_session=True)
    killed = []

    def kill():
        killed.append(True)
        try:
            os.killpg(p.pid, signal.SIGKILL)  # the group this run created: twill + its tools
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    RUNNING.append(p.pid)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        RUNNING.remove(p.pid)
    t1 = time.perf_counter()
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    r = {"wall_ms": (t1 - t0) * 1e3, "maxrss_kb": ru.ru_maxrss, "rc": p.returncode,
         "stdout": out.read().decode(errors="replace"),
         "stderr": err.read().decode(errors="replace")[-2000:], "timeout": bool(killed)}
    out.close()
    err.close()
    return r


def run_nft_watch(cmd, timeout, change, ns=NODE):
    """nft: one process that syncs, then waits for the manifest directory to change
    (`proxy-debug --wait-change`, inotify, as the agent does) and syncs again.  change() is
    called once the first sync is done.  Returns (full, change) dicts like run_timed; the
    change's wall_ms runs from the file's rename to twill's report of the programmed kernel."""
    nspath = "/run/netns/" + ns
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd + ["--wait-change", str(int(timeout))], stdout=subprocess.PIPE,
                         stderr=err, preexec_fn=lambda: setns(nspath), start_new_session=True)
    killed = []

    def kill():
        killed.append(True)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    RUNNING.append(p.pid)
    full, chg = {"rc": 0, "timeout": False}, {"rc": 0, "timeout": False}
    try:
        line = p.stdout.readline().decode()
        full["wall_ms"] = (time.perf_counter() - t0) * 1e3
        full["stdout"] = line
        if json.loads(line or "{}").get("ok"):
            t1 = time.perf_counter()
            change()
            line = p.stdout.readline().decode()
            chg["wall_ms"] = (time.perf_counter() - t1) * 1e3
            chg["stdout"] = line
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        RUNNING.remove(p.pid)
        timer.cancel()
    rc = os.waitstatus_to_exitcode(status)
    err.seek(0)
    for d in (full, chg):
        d.update(rc=rc, timeout=bool(killed), maxrss_kb=ru.ru_maxrss,
                 stderr=err.read().decode(errors="replace")[-2000:])
        d.setdefault("stdout", "")
        d.setdefault("wall_ms", None)
    err.close()
    return full, chg


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def make_node(with_pods):
    cleanup_netns()
    sh("ip", "netns", "add", NODE)
    sh("ip", "link", "set", "lo", "up", ns=NODE)
    if not with_pods:
        return
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NODE)
    for ns, net, tag in ((CLI, "10.201.0", "c"), (BE, "10.202.0", "b")):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        host = "sv%d%s" % (PID % 1000000, tag)
        # created inside the node namespace with its peer moved to the pod: never the host's
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns,
           ns=NODE)
        sh("ip", "addr", "add", net + ".1/24", "dev", host, ns=NODE)
        sh("ip", "link", "set", host, "up", ns=NODE)
        sh("ip", "addr", "add", net + ".2/24", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)
        sh("ip", "route", "add", "default", "via", net + ".1", ns=ns)


LISTENER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

CLIENT = r"""
import json, socket, sys, time
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ts, fails = [], 0
deadline = time.monotonic() + 60
for i in range(n):
    if time.monotonic() > deadline:
        break
    s = socket.socket(); s.settimeout(2)
    t = time.perf_counter()
    try:
        s.connect((vip, port)); ts.append((time.perf_counter() - t) * 1e6)
    except OSError:
        fails += 1
    s.close()
print(json.dumps({"us": ts, "fails": fails}))
"""


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else None


def measure_latency(vip, n):
    lst = subprocess.Popen(["ip", "netns", "exec", BE, "/usr/bin/python3", "-c", LISTENER,
                            BE_IP, str(BE_PORT)], stdout=subprocess.PIPE, text=True)
    try:
        if lst.stdout.readline().strip() != "ready":
            return {"error": "listener did not start"}
        p = sh("/usr/bin/python3", "-c", CLIENT, vip, "80", str(n), ns=CLI, timeout=90,
               check=False)
        d = last_json(p.stdout)
        if not d:
            return {"error": "client: %s" % p.stderr.strip()[-300:]}
        us = d["us"]
        return {"connects": len(us), "fails": d["fails"], "p50_us": pct(us, 0.5),
                "p99_us": pct(us, 0.99)}
    finally:
        lst.kill()
        lst.wait(timeout=10)


def nft_counts():
    p = sh("nft", "-j", "list", "table", "ip", "twill", ns=NODE, check=False, timeout=120)
    if p.returncode:
        return {"error": p.stderr.strip()[-200:]}
    objs = json.loads(p.stdout)["nftables"]
    c = {"rules": 0, "chains": 0, "elements": 0, "maps_sets": 0}
    for o in objs:
        if "rule" in o:
            c["rules"] += 1
        elif "chain" in o:
            c["chains"] += 1
        elif "map" in o or "set" in o:
            c["maps_sets"] += 1
            c["elements"] += len((o.get("map") or o.get("set")).get("elem", []))
    return c


def ipt_counts(vip):
    p = sh("iptables-save", ns=NODE, check=False, timeout=300)
    if p.returncode:
        return {"error": p.stderr.strip()[-200:]}
    lines = p.stdout.splitlines()
    svc = [line for line in lines if line.startswith("-A KUBE-SERVICES ")]
    pos = next((k for k, line in enumerate(svc) if (" %s/32 " % vip) in line), None)
    return {"lines": len(lines), "rules": sum(1 for line in lines if line.startswith("-A ")),
            "chains": sum(1 for line in lines if line.startswith(":")),
            "kube_services_rules": len(svc), "latency_vip_position": pos}


def cmds(tw, dp, mdir):
    if dp == "nft":
        return [tw, "proxy-debug", "--manifests", mdir, "--node", "node", "--node-ip", NODE_IP,
                "--log-level", "warn"]
    return [tw, "proxy", "ipt-render", mdir, "--node", "node", "--node-ip", NODE_IP,
            "--log-level", "warn", "--apply"]


def slim(r):
    d = {k: r.get(k) for k in ("wall_ms", "maxrss_kb", "rc", "timeout")}
    d["stats"] = last_json(r["stdout"])
    if r["rc"] and not r["timeout"]:
        d["stderr"] = r["stderr"].strip()[-300:]
    return d


def bench_one(tw, dp, n, e, mdir, chg, lat, args):
    with_pods = n in args.latency_sizes
    make_node(with_pods)
    res = {"dataplane": dp, "services": n, "endpoints_per_service": e}
    try:
        if dp == "nft":
            # full sync, then one endpoint change applied by the same process (as the agent)
            f, c = run_nft_watch(cmds(tw, dp, str(mdir)), args.timeout,
                                 lambda: change_one(mdir, chg, lat, e))
            res["full"], res["change"] = slim(f), slim(c)
            if f["rc"] or f["timeout"]:
                return res
            # a restarted writer: re-reads everything, dumps the table, changes nothing
            res["restart"] = slim(run_timed(cmds(tw, dp, str(mdir)), args.timeout))
        else:
            r = run_timed(cmds(tw, dp, str(mdir)), args.timeout)
            res["full"] = slim(r)
            if r["rc"] or r["timeout"]:
                return res
        res["counts"] = nft_counts() if dp == "nft" else ipt_counts(cluster_ip(lat))
        if with_pods:
            res["latency"] = measure_latency(cluster_ip(lat), args.connects)
        if dp != "nft":
            change_one(mdir, chg, lat, e)
            res["change"] = slim(run_timed(cmds(tw, dp, str(mdir)), args.timeout))
        return res
    finally:
        write(mdir / "change.yaml", slice_doc(chg, [BE_IP] if chg == lat else ep_ips(chg, e)))
        cleanup_netns()


NODE_DOC = ("apiVersion: v1\nkind: Node\nmetadata: {name: node}\n"
            "status:\n  addresses: [{type: InternalIP, address: %s}]\n" % NODE_IP)
LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z ")


def log_ts(line):
    m = LOG_TS.match(line)
    if not m:
        return None
    import datetime
    dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def proc_kb(pid, key):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def bench_agent(tw, n, e, src, chg, lat, args):
    """The whole agent (store, controller, planner, nftables writer, status files), as a
    node runs it: full sync, one change, --resyncs SIGHUP rescans (manifests and kernel),
    peak RSS (ru_maxrss) and the RSS after each rescan (growth would be a leak)."""
    make_node(False)
    work = Path(tempfile.mkdtemp(prefix="tsvb-agent-"))
    mdir, sdir = work / "m", work / "s"
    shutil.copytree(src, mdir)
    sdir.mkdir()
    write(mdir / "node.yaml", NODE_DOC)
    log = sdir / "agent.log"
    cmd = [tw, "agent", "--node", "node", "--manifests", str(mdir), "--state-dir", str(sdir),
           "--routing", "host-gw", "--policy", "off", "--proxy", "nftables",
           "--cluster-cidr", "10.244.0.0/16", "--log-level", "debug", "--log-file", str(log)]
    res = {"dataplane": "agent", "services": n, "endpoints_per_service": e}
    nspath = "/run/netns/" + NODE
    t0 = time.time()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=lambda: setns(nspath))
    RUNNING.append(p.pid)
    pos = [0]
    deadline = time.monotonic() + args.timeout
    done = {}  # status and rusage once reaped (wait4, so ru_maxrss is the agent's)

    def exited():
        if not done:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                done.update(rc=os.waitstatus_to_exitcode(status), ru=ru)
        return bool(done)

    def wait_line(pattern):
        rx = re.compile(pattern)
        while time.monotonic() < deadline and not exited():
            try:
                with open(log, "rb") as f:
                    f.seek(pos[0])
                    data = f.read()
            except FileNotFoundError:
                data = b""
            for raw in data.split(b"\n")[:-1]:
                pos[0] += len(raw) + 1
                line = raw.decode(errors="replace")
                if rx.search(line):
                    return log_ts(line)
            time.sleep(0.01)
        return None

    def quiet(seconds=1.0, cap=60):
        end, last, since = time.monotonic() + cap, None, time.monotonic()
        while time.monotonic() < min(end, deadline) and not exited():
            try:
                st = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
                now = (log.stat().st_size if log.exists() else 0, st[11], st[12])
            except OSError:
                return
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= seconds:
                return
            time.sleep(0.05)

    try:
        t = wait_line(r" nftables: full sync")
        if t is None:
            res["full"] = {"timeout": not exited(), "rc": done.get("rc")}
            return res
        res["full"] = {"wall_ms": (t - t0) * 1e3}
        quiet()
        res["rss_settled_kb"] = proc_kb(p.pid, "VmRSS")
        res["hwm_settled_kb"] = proc_kb(p.pid, "VmHWM")
        pos[0] = log.stat().st_size
        t1 = time.time()
        change_one(mdir, chg, lat, e)
        t = wait_line(r" nftables: incremental sync")
        res["change"] = {"wall_ms": (t - t1) * 1e3} if t else {"timeout": True}
        quiet()
        res["rss_after_resync_kb"] = []
        for _ in range(args.resyncs):
            pos[0] = log.stat().st_size
            os.kill(p.pid, signal.SIGHUP)
            wait_line(r" nftables: full sync")
            quiet()
            res["rss_after_resync_kb"].append(proc_kb(p.pid, "VmRSS"))
        res["hwm_kb"] = proc_kb(p.pid, "VmHWM")
        return res
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if exited():
                break
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            end = time.monotonic() + wait
            while not exited() and time.monotonic() < end:
                time.sleep(0.05)
        RUNNING.remove(p.pid)
        p.returncode = done.get("rc")  # reaped by wait4 above, not by Popen
        # ru_maxrss also holds the forked Python child's RSS from before the exec (the kernel
        # keeps the old mm's high-water mark at exec): the agent's own peak is its VmHWM
        res["ru_maxrss_kb"] = done["ru"].ru_maxrss if done else None
        res["maxrss_kb"] = res.get("hwm_kb")
        res["errors"] = [x[:200] for x in open(log, errors="replace") if " error " in x[:40]][:5]
        cleanup_netns()
        shutil.rmtree(work, ignore_errors=True)


def fmt_ms(x):
    return "-" if x is None else ("%.1f" % x if x >= 10 else "%.2f" % x)


def summarize(all_res, front):
    print("\n%-5s %7s %10s %10s %9s %9s  %s" % ("dp", "svcs", "full ms", "change ms",
                                                "RSS MB", "front ms", "kernel objects / change"))
    for r in all_res:
        f = r.get("full", {})
        c = r.get("change", {})
        fw = "TIMEOUT" if f.get("timeout") else ("FAIL" if f.get("rc") else fmt_ms(f.get("wall_ms")))
        cw = "TIMEOUT" if c.get("timeout") else ("FAIL" if c.get("rc") else fmt_ms(c.get("wall_ms")))
        rss = max(f.get("maxrss_kb") or 0, c.get("maxrss_kb") or 0) / 1024
        # twill's own VmHWM when it reports it (ru_maxrss includes the forked Python
        # child's RSS from before the exec, a floor of ~15 MB)
        own = [(x.get("stats") or {}).get("peakRssKb") for x in (f, c)]
        if any(own):
            rss = max(x or 0 for x in own) / 1024
        cnt = r.get("counts", {})
        if r["dataplane"] == "agent":
            rss = (r.get("maxrss_kb") or 0) / 1024
            objs = ("whole agent: RSS settled %s MB, after %d resyncs %s MB" % (
                "%.1f" % (r["rss_settled_kb"] / 1024) if r.get("rss_settled_kb") else "-",
                len(r.get("rss_after_resync_kb") or []),
                ", ".join("%.1f" % (x / 1024) for x in r.get("rss_after_resync_kb") or [] if x)))
        elif r["dataplane"] == "nft":
            st = (c.get("stats") or {})
            fs = (f.get("stats") or {})
            rs = r.get("restart", {})
            objs = ("%s rules, %s chains, %s elems; full: load %s + sync %s ms; change: sync "
                    "%s ms, +%s/-%s backends, %s msgs; restart %s ms" % (
                        cnt.get("rules"), cnt.get("chains"), cnt.get("elements"),
                        fs.get("loadMs"), fs.get("syncMs"), st.get("syncMs"),
                        st.get("backendsAdded"), st.get("backendsDeleted"), st.get("messages"),
                        fmt_ms(rs.get("wall_ms"))))
        else:
            objs = "%s save lines, %s rules, %s chains" % (cnt.get("lines"), cnt.get("rules"),
                                                             cnt.get("chains"))
        print("%-5s %7d %10s %10s %9.1f %9s  %s" % (r["dataplane"], r["services"], fw, cw, rss,
                                                    fmt_ms(front.get(r["services"])), objs))
        lt = r.get("latency")
        if lt:
            if "error" in lt:
                print("      first-packet: %s" % lt["error"])
            else:
                print("      connect to ClusterIP: p50 %.0f us, p99 %.0f us (%d connects, %d "
                      "failed)" % (lt["p50_us"], lt["p99_us"], lt["connects"], lt["fails"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--twill", default=str(ROOT / "build" / "twill"))
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--latency-sizes", default="10,10000")
    ap.add_argument("--connects", type=int, default=500)
    ap.add_argument("--dataplanes", default="nft,ipt")
    ap.add_argument("--ipt-max-services", type=int, default=0,
                    help="skip the iptables dataplane above this many Services (0: never)")
    ap.add_argument("--agent-sizes", default="10000",
                    help="sizes (of --sizes) at which the whole agent is measured too")
    ap.add_argument("--resyncs", type=int, default=3,
                    help="SIGHUP rescans of the agent run (RSS after each)")
    ap.add_argument("--json")
    args = ap.parse_args()
    agent_sizes = {int(x) for x in args.agent_sizes.split(",") if x}
    sizes = [int(x) for x in args.sizes.split(",") if x]
    args.latency_sizes = {int(x) for x in args.latency_sizes.split(",") if x}
    dps = [x for x in args.dataplanes.split(",") if x]
    if os.geteuid() != 0:
        sys.exit("svc_bench: needs root (network namespaces)")
    for t in ("nft", "iptables-save", "iptables-restore", "ip"):
        if not shutil.which(t):
            sys.exit("svc_bench: needs %s" % t)
    if max(sizes) * args.endpoints > 500000:
        sys.exit("svc_bench: at most 500,000 endpoints (address plan)")
    tw = os.path.abspath(args.twill)
    cleanup_netns(dead_too=True)
    base = Path(tempfile.mkdtemp(prefix="tsvb-manifests-"))
    all_res, front = [], {}
    def on_signal(signum, frame):
        for pgid in list(RUNNING):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    ver = sh(tw, "version", check=False).stdout.strip()
    print("twill %s (%s); iptables: %s; nft: %s" % (ver, tw, sh("iptables", "-V").stdout.strip(),
                                                 sh("nft", "-v").stdout.strip()))
    try:
        for n in sizes:
            mdir = base / ("n%d" % n)
            mdir.mkdir()
            t = time.perf_counter()
            chg, lat = gen_manifests(mdir, n, args.endpoints)
            mb = sum(f.stat().st_size for f in mdir.iterdir()) / 1e6
            print("\n== %d Services x %d endpoints (%d NodePort), manifests %.1f MB, generated "
                  "in %.1f s" % (n, args.endpoints, min(n, NODEPORT_MAX), mb,
                                 time.perf_counter() - t), flush=True)
            make_node(False)
            try:
                r = run_timed([tw, "proxy", "ipt-render", str(mdir), "--node", "node",
                               "--node-ip", NODE_IP, "--saved", "/dev/null", "--log-level",
                               "warn"], args.timeout)
                front[n] = None if r["rc"] else r["wall_ms"]
                print("front end (parse + plan + render, no kernel): %s ms" %
                      fmt_ms(front[n]), flush=True)
            finally:
                cleanup_netns()
            for dp in dps:
                if dp == "ipt" and args.ipt_max_services and n > args.ipt_max_services:
                    print("ipt: skipped at %d Services (--ipt-max-services %d)" %
                          (n, args.ipt_max_services), flush=True)
                    continue
                res = bench_one(tw, dp, n, args.endpoints, mdir, chg, lat, args)
                res["manifest_mb"] = mb
                all_res.append(res)
                print(json.dumps(res), flush=True)
            if n in agent_sizes:
                res = bench_agent(tw, n, args.endpoints, mdir, chg, lat, args)
                res["manifest_mb"] = mb
                all_res.append(res)
                print(json.dumps(res), flush=True)
            shutil.rmtree(mdir, ignore_errors=True)
        summarize(all_res, front)
        if args.json:
            write(args.json, json.dumps({"endpoints_per_service": args.endpoints,
                                         "nodeport_services_max": NODEPORT_MAX,
                                         "front_end_ms": front, "results": all_res}, indent=1))
    finally:
        cleanup_netns()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
