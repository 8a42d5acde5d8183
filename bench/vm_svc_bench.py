#!/usr/bin/python3
"""Service dataplanes in the VM: IPVS vs nftables vs iptables, the agent itself, same run.

Run inside the VM (Debian's cloud kernel has ip_vs; the development host's kernel does not):
    make B=build/x vmbench        (or vmcheck VMTESTS='bench/vm_bench_test.py -s')
(bench/vm_bench_test.py calls main() with the arguments in $VM_SVC_BENCH_ARGS, which
scripts/vm/vm.py passes into the VM).  It also runs on any kernel, root only, with
--dataplanes nft,ipt:
    /usr/bin/python3 bench/vm_svc_bench.py [--sizes 10,100,1000,3000,10000] [--endpoints 10]
        [--dataplanes ipvs,nft,ipt] [--ipt-max-services 1000] [--timeout 600]
        [--latency-sizes all] [--connects 300] [--sync-period 0] [--twill build/twill]
        [--json F]

The Services and EndpointSlices are bench/svc_bench.py's (its gen_manifests: N Services x E
endpoints, the first 2000 NodePort, the slice of Service N/2 alone in change.yaml), plus one
Node object "node" (InternalIP 10.201.0.1).  `twill proxy-debug` drives only the nftables
writer, so here all three dataplanes are driven the same way, by the real agent:

    twill agent --node node --manifests DIR --state-dir S --routing host-gw --policy off
          --proxy ipvs|nftables|iptables --sync-period 0 --log-level debug
          --log-file S/agent.log

started directly in a fresh namespace tsvb<pid>-node (setns in the forked child; the client
and backend namespaces of svc_bench's connect test hang off it).  Times come from the agent's
own log lines (UTC timestamps, 1 ms resolution, the same clock as this script):

  full sync   from the agent's exec to its first "<dataplane>: full sync" line: scan and
              parse the manifests, plan, program the kernel (IPVS: the generic-netlink
              services and real servers, the ClusterIPs on kube-ipvs0 and the nftables sets
              beside them; iptables: iptables-save + iptables-restore --noflush).
  one change  one endpoint of change.yaml replaced (one removed, one added) by a rename,
              to the agent's first sync line that applied it: "<dataplane>: incremental
              sync" with real servers (IPVS) or elements (nftables) changed; iptables: its
              next "full sync" (every iptables sync rewrites the ruleset).  The kind of the
              sync that applied it is recorded ("incremental" or "full": a change absorbed
              by a periodic resync is told apart).  The agent runs with --sync-period 0
              (no periodic resync, as --sync-period says: at 10,000 Services under TCG a
              resync takes most of kube-proxy's 30 s and would absorb the change and slow
              the connect test).
  resync      SIGHUP to the agent (re-read the manifests, dump the kernel, diff, write
              nothing) to its next "<dataplane>: full sync" line: what the periodic resync
              costs, plus the re-parse (not for iptables: its every sync is the full one
              measured as "one change").
  connect     svc_bench's measure_latency: a client namespace connects --connects times to the
              ClusterIP of the last Service (one endpoint: a listener in a backend namespace,
              routed through the node), p50/p99 of connect().
  RSS         the agent's VmHWM and VmRSS from /proc before it is stopped, and ru_maxrss
              from wait4() (iptables: with iptables-save/-restore).
  kernel      ipvs: virtual services and real servers in /proc/net/ip_vs, addresses on
              kube-ipvs0; nft: svc_bench's nft_counts; iptables: its ipt_counts.

Every phase of an agent run is bounded by --timeout (its process group is killed and the
result says "timeout"); iptables is skipped above --ipt-max-services (reported as "skipped").
Namespaces are svc_bench's tsvb<pid>-*, removed at start (dead pids) and at exit.
"""
import argparse
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import svc_bench as sb  # noqa: E402  (the manifests, namespaces, connect test and counts)

ROOT = Path(__file__).resolve().parents[1]
AGENT_DP = {"ipvs": "ipvs", "nft": "nftables", "ipt": "iptables"}
NODE_DOC = ("apiVersion: v1\nkind: Node\nmetadata:\n  name: node\n  labels: "
            "{kubernetes.io/hostname: node, kubernetes.io/os: linux}\nstatus:\n  addresses:\n"
            "  - {type: InternalIP, address: %s}\n  - {type: Hostname, address: node}\n")
log_time = sb.log_ts  # the agent log line's UTC time, seconds


class Agent:
    """One `twill agent` in the node namespace, its log read as it grows."""

    def __init__(self, tw, dp, mdir, sdir, timeout, sync_period):
        self.log = sdir / "agent.log"
        self.pos = 0
        self.deadline = time.monotonic() + timeout
        cmd = [tw, "agent", "--node", "node", "--manifests", str(mdir), "--state-dir",
               str(sdir), "--routing", "host-gw", "--policy", "off", "--proxy", AGENT_DP[dp],
               "--cluster-cidr", "10.244.0.0/16", "--sync-period", str(sync_period),
               "--log-level", "debug",
               "--log-file", str(self.log)]
        nspath = "/run/netns/" + sb.NODE
        self.t0 = time.time()
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=lambda: sb.setns(nspath))
        sb.RUNNING.append(self.p.pid)
        self.status = self.rusage = None
        self.errors, self.lines = [], []

    def wait_line(self, pattern, accept=None):
        """The time (log clock) of the first new log line matching pattern (and accept(line)
        when given), or None when the agent exits or the run's deadline passes; error lines
        are collected, the matching line is kept in self.match."""
        rx = re.compile(pattern)
        self.match = None
        while time.monotonic() < self.deadline:
            try:
                with open(self.log, "rb") as f:
                    f.seek(self.pos)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            for raw in data.split(b"\n")[:-1]:  # complete lines only
                self.pos += len(raw) + 1
                line = raw.decode(errors="replace")
                if " error " in line[:40]:
                    self.errors.append(line[:300])
                if len(self.lines) < 200:
                    self.lines.append(line)
                if rx.search(line) and (accept is None or accept(line)):
                    self.match = line
                    return log_time(line)
            if self.exited():
                return None
            time.sleep(0.02)
        return None

    def exited(self):
        if self.status is None:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                self.status, self.rusage = os.waitstatus_to_exitcode(status), ru
        return self.status is not None

    def busy(self):
        """The agent's CPU time so far and whether it has children (iptables-restore)."""
        try:
            st = open("/proc/%d/stat" % self.p.pid).read().rsplit(")", 1)[1].split()
            kids = "".join(open(t + "/children").read() for t in
                           map(str, Path("/proc/%d/task" % self.p.pid).glob("*")))
        except OSError:
            return None, False
        return int(st[11]) + int(st[12]), bool(kids.strip())

    def quiet(self, seconds, cap):
        """Wait until the agent is idle: its log has not grown, it had no child and used
        under 5% of a CPU for `seconds` (at most cap seconds; its 250 ms tick costs a
        clock tick now and then)."""
        end, last, since, cpu0 = time.monotonic() + cap, None, time.monotonic(), None
        while time.monotonic() < end and not self.exited():
            cpu, kids = self.busy()
            size = self.log.stat().st_size if self.log.exists() else 0
            now = time.monotonic()
            if size != last or kids or cpu is None or cpu0 is None or \
                    cpu - cpu0 > 5 * max(seconds, now - since):  # 100 ticks/s
                last, since, cpu0 = size, now, cpu
            elif now - since >= seconds:
                return
            time.sleep(0.05)

    def memory(self):
        """VmHWM and VmRSS of the agent in kB (None when it is gone)."""
        try:
            st = open("/proc/%d/status" % self.p.pid).read()
        except OSError:
            return None
        return {k: int(v) for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", st, re.M)}

    def stop(self):
        """SIGTERM (SIGKILL after 20 s); returns the agent's peak RSS in kB (ru_maxrss;
        with its children: iptables-save and iptables-restore)."""
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if self.exited():
                break
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            end = time.monotonic() + wait
            while not self.exited() and time.monotonic() < end:
                time.sleep(0.05)
        sb.RUNNING.remove(self.p.pid)
        self.p.returncode = self.status
        return self.rusage.ru_maxrss if self.rusage else None


def ipvs_counts():
    p = sb.sh("cat", "/proc/net/ip_vs", ns=sb.NODE, check=False, timeout=120)
    lines = p.stdout.splitlines()
    svcs = sum(1 for x in lines if re.match(r"^(TCP|UDP|SCTP)\s", x))
    dests = sum(1 for x in lines if re.match(r"^\s+->\s+[0-9A-F]{8}:[0-9A-F]{4}\s", x))
    a = sb.sh("ip", "-4", "-o", "addr", "show", "dev", "kube-ipvs0", ns=sb.NODE, check=False)
    return {"virtual_services": svcs, "real_servers": dests,
            "kube_ipvs0_addresses": len(a.stdout.splitlines())}


def bench_one(tw, dp, n, e, src, chg, lat, args, work):
    """One agent run on a fresh copy of the manifests in a fresh node namespace."""
    with_pods = n in args.latency_sizes
    mdir = work / ("m-%s-%d" % (dp, n))
    sdir = work / ("s-%s-%d" % (dp, n))
    shutil.rmtree(mdir, ignore_errors=True)
    shutil.rmtree(sdir, ignore_errors=True)
    shutil.copytree(src, mdir)
    sdir.mkdir()
    sb.make_node(with_pods)
    res = {"dataplane": dp, "services": n, "endpoints_per_service": e}
    ag = Agent(tw, dp, mdir, sdir, args.timeout, args.sync_period)
    name = AGENT_DP[dp]
    try:
        t = ag.wait_line(r" %s: full sync" % name)
        if t is None:
            res["full"] = {"timeout": not ag.exited(), "rc": ag.status}
            return res
        # split: process start to the agent's "starting:" line (set-up before the first
        # manifest scan) and from there to the synced kernel
        st = next((log_time(x) for x in ag.lines if " starting: " in x), None)
        res["full"] = {"wall_ms": (t - ag.t0) * 1e3,
                       "setup_ms": (st - ag.t0) * 1e3 if st else None,
                       "sync_ms": (t - st) * 1e3 if st else None}
        if n == min(args.sizes):
            # where the time of a small run goes: the log up to the first sync, offsets in ms
            res["log_head"] = ["+%d %s" % ((log_time(x) - ag.t0) * 1e3, x[24:160])
                               for x in ag.lines[:40] if log_time(x)]
        # the controller's podCIDR for the Node and the status files: let the agent settle
        ag.quiet(1.0, 90)
        print("%s %d: full sync %s" % (dp, n, json.dumps(res["full"])), flush=True)
        try:  # `nft -j list` of 230k elements takes > 120 s under TCG: counted up to 1000
            if dp == "ipvs":
                res["counts"] = ipvs_counts()
            elif dp == "nft" and n <= 1000:
                res["counts"] = sb.nft_counts()
            elif dp == "ipt":
                res["counts"] = sb.ipt_counts(sb.cluster_ip(lat))
        except (subprocess.TimeoutExpired, RuntimeError) as ex:
            res["counts"] = {"error": str(ex)[:200]}
        if with_pods:
            res["latency"] = sb.measure_latency(sb.cluster_ip(lat), args.connects)
        ag.quiet(0.5, 10)
        ag.pos = ag.log.stat().st_size
        ag.deadline = time.monotonic() + args.timeout
        t1 = time.time()
        sb.change_one(mdir, chg, lat, e)
        t = ag.wait_line(r" %s: (full|incremental) sync" % name, applied(dp))
        res["change"] = ({"wall_ms": (t - t1) * 1e3, "kind": sync_kind(ag.match)}
                         if t is not None else {"timeout": not ag.exited(), "rc": ag.status})
        print("%s %d: one change %s" % (dp, n, json.dumps(res["change"])), flush=True)
        if t is None or dp == "ipt":  # iptables: a resync is the same full sync
            return res
        ag.quiet(0.5, 10)
        ag.pos = ag.log.stat().st_size
        ag.deadline = time.monotonic() + args.timeout
        t1 = time.time()
        os.kill(ag.p.pid, signal.SIGHUP)
        t = ag.wait_line(r" %s: full sync" % name)
        res["resync"] = ({"wall_ms": (t - t1) * 1e3} if t is not None else
                         {"timeout": not ag.exited(), "rc": ag.status})
        return res
    finally:
        res["rss_kb"] = ag.memory()
        res["maxrss_kb"] = ag.stop()
        res["errors"] = ag.errors[:5]
        if time.monotonic() > ag.deadline:
            res.setdefault("note", "run deadline (--timeout %s s) reached" % args.timeout)
        sb.cleanup_netns()
        shutil.rmtree(mdir, ignore_errors=True)


def applied(dp):
    """Whether a sync line shows the change: a Service changed (IPVS, nftables; a sync of
    other objects, e.g. the Node's status, does not count); iptables' every sync rewrites
    everything."""
    if dp == "ipt":
        return None

    def shows(line):
        m = re.search(r"(\d+) Services changed", line)
        return bool(m) and int(m.group(1)) > 0
    return shows


def sync_kind(line):
    m = re.search(r": (full|incremental) sync", line or "")
    return m.group(1) if m else None


def fmt(r, key):
    d = r.get(key)
    if d is None:
        return "-"
    if d.get("timeout"):
        return "TIMEOUT"
    if d.get("wall_ms") is None:
        return "FAIL(rc %s)" % d.get("rc")
    return sb.fmt_ms(d["wall_ms"])


def summarize(results, skipped):
    print("\n%-5s %7s %11s %12s %10s %15s %9s  %s" % (
        "dp", "svcs", "full ms", "change ms", "resync ms", "connect p50/p99", "RSS MB",
        "kernel"), flush=True)
    for r in results:
        lt = r.get("latency") or {}
        con = ("%.0f/%.0f us" % (lt["p50_us"], lt["p99_us"]) if lt.get("p50_us") is not None
               else (lt.get("error", "-")[:15] if lt else "-"))
        chg = fmt(r, "change")
        if (r.get("change") or {}).get("kind") == "full" and r["dataplane"] != "ipt":
            chg += "(full)"
        rss = (r.get("rss_kb") or {}).get("VmHWM") or r.get("maxrss_kb")
        print("%-5s %7d %11s %12s %10s %15s %9s  %s" % (
            r["dataplane"], r["services"], fmt(r, "full"), chg, fmt(r, "resync"), con,
            "%.0f" % (rss / 1024) if rss else "-", json.dumps(r.get("counts", {}))),
            flush=True)
    for dp, n in skipped:
        print("%-5s %7d %11s" % (dp, n, "skipped"), flush=True)
    by = {(r["dataplane"], r["services"]): r for r in results}

    def val(dp, n, key):
        d = (by.get((dp, n)) or {}).get(key) or {}
        if key == "latency":
            return d.get("p50_us")
        return d.get("wall_ms")
    # ratios at the same size
    for n in sorted({r["services"] for r in results}):
        parts = []
        for a, b in (("ipt", "ipvs"), ("ipt", "nft"), ("ipvs", "nft")):
            for key in ("full", "change", "latency"):
                x, y = val(a, n, key), val(b, n, key)
                if x and y:
                    parts.append("%s/%s %s %.2fx" % (a, b, key, x / y))
        if parts:
            print("ratios at %d: %s" % (n, "; ".join(parts)), flush=True)
    # the curves: growth per added Service between neighbouring sizes
    for dp in AGENT_DP:
        ns = sorted(n for (d, n) in by if d == dp)
        for key, unit in (("full", "ms"), ("change", "ms"), ("latency", "us")):
            pts = [(n, val(dp, n, key)) for n in ns if val(dp, n, key)]
            if len(pts) > 1:
                print("curve %s %s: %s; per added Service: %s" % (
                    dp, key, ", ".join("%d:%.0f%s" % (n, v, unit) for n, v in pts),
                    ", ".join("%.3g%s" % ((v2 - v1) / (n2 - n1), unit) for (n1, v1), (n2, v2)
                              in zip(pts, pts[1:]))), flush=True)


def kill_runs(signum, frame):
    """On SIGTERM/SIGINT: the agents under way (their process groups) die with us."""
    for pgid in list(sb.RUNNING):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    sys.exit(128 + signum)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,3000,10000")
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--dataplanes", default="ipvs,nft,ipt")
    ap.add_argument("--ipt-max-services", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per phase")
    ap.add_argument("--latency-sizes", default="all")
    ap.add_argument("--sync-period", type=int, default=0,
                    help="the agent's --sync-period (0: no periodic resync)")
    ap.add_argument("--connects", type=int, default=300)
    ap.add_argument("--twill", default=os.environ.get("TWILL", str(ROOT / "build" / "twill")))
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the uncounted first run per dataplane (module loading)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sizes = args.sizes = [int(x) for x in args.sizes.split(",") if x]
    args.latency_sizes = (set(sizes) if args.latency_sizes == "all" else
                          {int(x) for x in args.latency_sizes.split(",") if x})
    dps = [x for x in args.dataplanes.split(",") if x]
    for dp in dps:
        if dp not in AGENT_DP:
            sys.exit("vm_svc_bench: unknown dataplane %s (ipvs, nft, ipt)" % dp)
    if os.geteuid() != 0:
        sys.exit("vm_svc_bench: needs root (network namespaces)")
    if "ipvs" in dps:
        subprocess.run(["modprobe", "ip_vs"], capture_output=True)
        subprocess.run(["modprobe", "dummy"], capture_output=True)
        if not os.path.exists("/proc/net/ip_vs"):
            sys.exit("vm_svc_bench: this kernel has no IPVS (run it in the VM, or drop ipvs "
                     "from --dataplanes)")
    tw = os.path.abspath(args.twill)
    sb.cleanup_netns(dead_too=True)
    work = Path(tempfile.mkdtemp(prefix="tsvb-vm-"))
    results, skipped = [], []

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, kill_runs)
    print("twill %s (%s); kernel %s; iptables: %s; nft: %s; %s CPUs" % (
        sb.sh(tw, "version", check=False).stdout.strip(), tw, os.uname().release,
        sb.sh("iptables", "-V").stdout.strip(), sb.sh("nft", "-v").stdout.strip(),
        os.cpu_count()), flush=True)
    t_all = time.perf_counter()
    try:
        if args.warmup:
            # the first run of a dataplane loads its kernel modules (ip_vs_rr, nf_tables'
            # expressions, xt matches: seconds under TCG): once each, not counted
            src = work / "warmup"
            src.mkdir()
            chg, lat = sb.gen_manifests(src, 2, 2)
            sb.write(src / "node.yaml", NODE_DOC % sb.NODE_IP)
            for dp in dps:
                r = bench_one(tw, dp, 2, 2, src, chg, lat, args, work)
                print("warm-up %s: %s" % (dp, json.dumps(r.get("full"))), flush=True)
            shutil.rmtree(src, ignore_errors=True)
        for n in sizes:
            src = work / ("n%d" % n)
            src.mkdir()
            t = time.perf_counter()
            chg, lat = sb.gen_manifests(src, n, args.endpoints)
            sb.write(src / "node.yaml", NODE_DOC % sb.NODE_IP)
            print("\n== %d Services x %d endpoints, generated in %.1f s" %
                  (n, args.endpoints, time.perf_counter() - t), flush=True)
            for dp in dps:
                if dp == "ipt" and args.ipt_max_services and n > args.ipt_max_services:
                    skipped.append((dp, n))
                    print("ipt: skipped at %d Services (--ipt-max-services %d)" %
                          (n, args.ipt_max_services), flush=True)
                    continue
                t = time.perf_counter()
                r = bench_one(tw, dp, n, args.endpoints, src, chg, lat, args, work)
                r["run_s"] = round(time.perf_counter() - t, 1)
                results.append(r)
                print(json.dumps(r), flush=True)
            shutil.rmtree(src, ignore_errors=True)
        summarize(results, skipped)
        print("total %.0f s" % (time.perf_counter() - t_all), flush=True)
        if args.json:
            sb.write(args.json, json.dumps({"results": results, "skipped": skipped}, indent=1))
    finally:
        sb.cleanup_netns()
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
