#!/usr/bin/python3
"""CNI ADD/DEL latency: twill vs the reference bridge + host-local plugins, same run, same setup.

Command (root; after `make`):
    /usr/bin/python3 bench/cni_bench.py [--pods 200] [--twill build/twill] [--json out.json]
                                        [--state-base /dev/shm]

For each plugin configuration (reference bridge+host-local from /usr/lib/cni, twill with the
same bridge wiring, twill routed) the benchmark creates a fresh "node" network namespace and a
fresh state directory, then runs, one after the other, ADD for every one of N pods (the same
N pod namespaces for every configuration, created once), then DEL for every pod, timing each
call.  Latency = wall time from spawning the plugin process to its exit, measured by this
process while it sits in the node namespace (setns), i.e. what a container runtime pays per
call, including exec and process start.  Both plugins keep their leases in the same kind of
directory: a fresh temporary directory under --state-base (default /dev/shm, a tmpfs as a
node's /run usually is; `--state-base /run/twill` measures twill's default state directory,
whatever file system it is on).  Five warm-up ADD/DEL pairs run first.  Prints p50 and p99 per
operation and the reference/twill ratios.

Everything happens in namespaces named bcni<pid>-*, removed at the end (and leftovers of dead
runs at the start); nothing is changed in the caller's own namespace.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PFX = "bcni%d-" % os.getpid()
REF_DIR = "/usr/lib/cni"
POD_CIDR = "10.250.0.0/22"  # room for 1000 pods
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)


def sh(*args, check=True):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and p.returncode:
        sys.exit("%s: %s" % (" ".join(args), p.stderr.strip()))
    return p


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def netns_names():
    d = Path("/run/netns")
    return sorted(n.name for n in d.iterdir()) if d.is_dir() else []


def cleanup(only_ours):
    for n in netns_names():
        m = re.match(r"bcni(\d+)-", n)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or (not only_ours and not Path("/proc/%d" % pid).exists()):
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)


def pct(values, p):
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Config:
    def __init__(self, label, binary, conf):
        self.label, self.binary, self.conf = label, binary, conf


def configs(twill, state):
    def tw(wiring):
        d = state / ("twill-" + wiring)
        d.mkdir(parents=True)
        (d / "node.json").write_text(json.dumps({
            "node": "bench", "podCIDRs": [POD_CIDR], "mtu": 1450, "wiring": wiring,
            "bridge": "cni0", "routing": "vxlan"}))
        return Config("twill " + wiring, twill,
                      {"cniVersion": "1.0.0", "name": "bench", "type": "twill",
                       "stateDir": str(d)})

    ref = Config("reference bridge+host-local", os.path.join(REF_DIR, "bridge"),
                 {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0",
                  "isGateway": True, "isDefaultGateway": True, "mtu": 1450,
                  "ipam": {"type": "host-local", "subnet": POD_CIDR,
                           "dataDir": str(state / "ref")}})
    return [ref, tw("bridge"), tw("routed")]


def call(cfg, cmd, cid, pod, data):
    env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": "/run/netns/" + pod,
           "CNI_IFNAME": "eth0", "CNI_PATH": REF_DIR, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    t0 = time.perf_counter_ns()
    p = subprocess.run([cfg.binary], env=env, input=data, capture_output=True)
    dt = time.perf_counter_ns() - t0
    if p.returncode:
        sys.exit("%s %s %s failed: %s %s" % (cfg.label, cmd, cid, p.stdout.decode(),
                                              p.stderr.decode()))
    return dt / 1e6


def run_config(cfg, pods, host_ns):
    node = PFX + "node-" + re.sub(r"[^a-z]", "", cfg.label)[:12]
    sh("ip", "netns", "add", node)
    setns("/run/netns/" + node)
    try:
        sh("ip", "link", "set", "lo", "up")
        data = json.dumps(cfg.conf).encode()
        for i in range(5):
            call(cfg, "ADD", "warm%d" % i, pods[i], data)
            call(cfg, "DEL", "warm%d" % i, pods[i], data)
        add = [call(cfg, "ADD", "pod%d" % i, pod, data) for i, pod in enumerate(pods)]
        dele = [call(cfg, "DEL", "pod%d" % i, pod, data) for i, pod in enumerate(pods)]
    finally:
        setns(host_ns)
        sh("ip", "netns", "del", node, check=False)
    return add, dele


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--twill", default=os.environ.get("TWILL", str(ROOT / "build" / "twill")))
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--state-base", default="/dev/shm",
                    help="where the state/lease directories go (default /dev/shm, a tmpfs "
                         "as /run is on a normal node; both plugins create a file per ADD, "
                         "which costs far more on a disk file system)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    if not 1 <= a.pods <= 1000:
        sys.exit("--pods must be 1..1000")
    for b in (a.twill, os.path.join(REF_DIR, "bridge"), os.path.join(REF_DIR, "host-local")):
        if not os.access(b, os.X_OK):
            sys.exit("%s missing" % b)

    # A SIGTERM (e.g. from timeout(1)) unwinds through the finally blocks below, so the
    # namespaces and the state directory are removed as on a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("cni_bench: terminated"))
    os.makedirs(a.state_base, exist_ok=True)
    fstype = (sh("findmnt", "-n", "-o", "FSTYPE", "--target", a.state_base, check=False)
              .stdout.split() or ["?"])[0]
    cleanup(only_ours=False)
    # This thread's own namespace, to come back to after each node namespace.
    host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    host_ns = "/proc/self/fd/%d" % host_fd
    state = Path(tempfile.mkdtemp(prefix="cni_bench.", dir=a.state_base))
    results = {}
    try:
        pods = []
        for i in range(a.pods):
            pods.append(PFX + "p%d" % i)
            sh("ip", "netns", "add", pods[-1])
        for cfg in configs(a.twill, state):
            print("running %-30s ..." % cfg.label, end="", flush=True)
            t = time.monotonic()
            add, dele = run_config(cfg, pods, host_ns)
            print(" %.1f s" % (time.monotonic() - t))
            results[cfg.label] = {
                "add_p50_ms": pct(add, 50), "add_p99_ms": pct(add, 99),
                "del_p50_ms": pct(dele, 50), "del_p99_ms": pct(dele, 99)}
    finally:
        os.close(host_fd)
        cleanup(only_ours=True)
        shutil.rmtree(state, ignore_errors=True)

    print("\nCNI latency, %d pods, sequential, ms (spawn to exit), state in %s (%s)\n"
          % (a.pods, a.state_base, fstype))
    print("%-30s %9s %9s %9s %9s" % ("plugin", "ADD p50", "ADD p99", "DEL p50", "DEL p99"))
    for label, r in results.items():
        print("%-30s %9.2f %9.2f %9.2f %9.2f" % (label, r["add_p50_ms"], r["add_p99_ms"],
                                                  r["del_p50_ms"], r["del_p99_ms"]))
    ref = results["reference bridge+host-local"]
    print("\nspeed-up of twill over the reference (reference / twill):")
    for label, r in results.items():
        if label.startswith("twill"):
            print("  %-16s ADD p50 %5.1fx  p99 %5.1fx   DEL p50 %5.1fx  p99 %5.1fx" % (
                label, ref["add_p50_ms"] / r["add_p50_ms"], ref["add_p99_ms"] / r["add_p99_ms"],
                ref["del_p50_ms"] / r["del_p50_ms"], ref["del_p99_ms"] / r["del_p99_ms"]))
    if a.json:
        Path(a.json).write_text(json.dumps({"pods": a.pods, "state_base": a.state_base,
                                             "state_fstype": fstype, "results": results}, indent=2))


if __name__ == "__main__":
    main()
