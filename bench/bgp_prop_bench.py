#!/usr/bin/python3
"""BGP speakers under load: ingest, FIB install, propagation and failure detection.
twill vs BIRD 2 (and FRR for ingest/propagation/fib), fed the same in the same run.

Command (root; after `make`):
    /usr/bin/python3 bench/bgp_prop_bench.py [--tests ingest,fib,prop,failure]
        [--speakers twill,bird,frr] [--twill build/twill] [--repeat 1] [--timeout 120]
        [--ingest-n 1000000] [--fib-n 100000] [--prop-n 100000] [--fail-n 1000]
        [--json out.json]

Two namespaces per trial, h22p<pid>x (the outside: bench/bgp_feed.py, one Python process
that is feeder and sink) and h22p<pid>s (the speaker under test, AS 65001), joined by two
veth pairs: 10.22.1.1 (feeder, AS 65002) - 10.22.1.2 and 10.22.2.1 (sink, AS 65003) -
10.22.2.2.  All eBGP, IPv4 /32s from 100.64.0.0/10, one attribute set, 808 prefixes per
UPDATE (bgp_feed.py prepares them before the session).  The speaker connects (retry 1 s).

  ingest   feeder -> speaker, --ingest-n prefixes, no kernel FIB (twill "install": false,
           BIRD without a kernel protocol, FRR bgpd -Z without zebra).  rate = N / (end -
           the feeder's session up).  end: once the feeder has written its last UPDATE,
           the last 10 ms sample in which the speaker used > 0.5 ms of CPU (schedstat,
           all threads) before 0.3 s without; then all N routes must be in its RIB
           (twill: routesTotal in its state file; BIRD: `birdc show route count`; FRR:
           `show bgp ipv4 unicast summary json`).  Per route: (RSS 0.5 s after end - RSS
           idle) / N.
  fib      as ingest with --fib-n prefixes, into the speaker's kernel table: time from
           session up until the N-th route is in the kernel (a netlink listener in the
           speaker's namespace, as bench/bgp_bench.py).
  prop     feeder -> speaker -> sink, --prop-n prefixes, no kernel FIB.  total = the
           sink's last prefix - the feeder's first UPDATE; per prefix delay = arrival at the
           sink - send time of the UPDATE that carried it (p50/p99/max).  The feed starts
           when both sessions are up.  CPU: all the speaker used since it started.
  failure  a node (`twill bgp run`, --fail-n prefixes originated, hold time 9 s) -> the
           speaker, which installs them; then every packet of the node's namespace is
           dropped (nftables, table inet h22cut) and the time until the last route left
           the speaker's kernel is measured; with BFD (100 ms x 3 on both ends) and
           without (hold time 9 s on both ends).  FRR not run here (bfdd: see
           tests/integration/test_bfd_interop.py).

Namespaces of dead runs (h22p<dead pid>*) are removed at start, ours at exit; every
process is killed by its pid; every wait is bounded by --timeout.
"""

import argparse
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
import bgp_bench as bb  # noqa: E402  (helpers: sh, Proc, wait_for, cpu_ticks, vm_kb, MONITOR)

ROOT = Path(__file__).resolve().parents[1]
PFX = f"h22p{os.getpid()}"
X_NS, S_NS = PFX + "x", PFX + "s"
FEED, FEED_S, SINK, SINK_S = "10.22.1.1", "10.22.1.2", "10.22.2.1", "10.22.2.2"
FEEDPY = str(Path(__file__).resolve().parent / "bgp_feed.py")
PROTO = {"twill": 118, "before": 118, "bird": 12, "frr": 186}


def runtime_ns(pids):
    """CPU time of every thread of pids, in ns (/proc/PID/task/TID/schedstat, field 1):
    finer than utime + stime, which move in 10 ms ticks."""
    t = 0
    for pid in pids:
        for st in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                t += int(st.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return t


def cleanup_stale():
    bb.cleanup_stale("h22p", "xs")


def ns_down():
    bb.ns_down((X_NS, S_NS))


def ns_up():
    ns_down()
    for ns in (X_NS, S_NS):
        bb.sh(["ip", "netns", "add", ns])
        bb.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    for i, (x, s) in enumerate(((FEED, FEED_S), (SINK, SINK_S)), 1):
        bb.sh(["ip", "-n", X_NS, "link", "add", f"h22x{i}", "type", "veth", "peer", "name",
               f"h22s{i}", "netns", S_NS])
        bb.sh(["ip", "-n", X_NS, "addr", "add", x + "/24", "dev", f"h22x{i}"])
        bb.sh(["ip", "-n", S_NS, "addr", "add", s + "/24", "dev", f"h22s{i}"])
        bb.sh(["ip", "-n", X_NS, "link", "set", f"h22x{i}", "up"])
        bb.sh(["ip", "-n", S_NS, "link", "set", f"h22s{i}", "up"])


# ------------------------------------------------------------------ speakers ----

class Speaker(bb.Receiver):
    """The speaker under test (pids, alive, stop, logs: bgp_bench's Receiver)."""

    def __init__(self, name, tmp, args, install, sink, hold=90, bfd=False):
        super().__init__(tmp)
        self.name, self.args = name, args
        self.install, self.sink, self.hold, self.bfd = install, sink, hold, bfd

    def start(self):
        getattr(self, "start_" + self.name)()

    # twill (and "before": another twill binary, --twill-before) ----------
    def start_before(self):
        self.start_twill(self.args.twill_before)

    def count_before(self):
        return self.count_twill()

    def start_twill(self, binary=None):
        peer = {"name": "feed", "address": FEED, "as": 65002, "families": ["ipv4"],
                "holdTime": self.hold}
        if self.bfd:
            peer["bfd"] = {"minTx": 100, "minRx": 100, "multiplier": 3}
        peers = [peer]
        if self.sink:
            peers.append({"name": "sink", "address": SINK, "as": 65003, "families": ["ipv4"]})
        cfg = {"as": 65001, "routerId": FEED_S, "holdTime": self.hold, "connectRetry": 1,
               "install": self.install, "peers": peers}
        path = self.tmp / "twill.json"
        path.write_text(json.dumps(cfg))
        self.state = self.tmp / "twill.state.json"
        self.procs.append(bb.Proc(S_NS, [binary or self.args.twill, "bgp", "run", "--config",
                                         str(path),
                                         "--state", str(self.state)], self.tmp / "twill.log"))

    def count_twill(self):
        try:
            return json.loads(self.state.read_text()).get("routesTotal", 0)
        except (OSError, ValueError):
            return 0

    # BIRD ----------------------------------------------------------------
    def start_bird(self):
        conf = self.tmp / "bird.conf"
        kernel = "protocol kernel k4 { ipv4 { export all; import none; }; }" \
            if self.install else ""
        bfd = ("protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval "
               "100 ms; multiplier 3; }; }") if self.bfd else ""
        sink = f"""protocol bgp sink {{
  local {SINK_S} as 65001; neighbor {SINK} as 65003;
  hold time 90; connect retry time 1; connect delay time 1; graceful restart off;
  ipv4 {{ import none; export all; }};
}}""" if self.sink else ""
        conf.write_text(f"""router id {FEED_S};
protocol device {{ }}
{kernel}
{bfd}
protocol bgp feed {{
  local {FEED_S} as 65001; neighbor {FEED} as 65002;
  hold time {self.hold}; connect retry time 1; connect delay time 1; graceful restart off;
  {"bfd on;" if self.bfd else ""}
  ipv4 {{ import all; export none; }};
}}
{sink}
""")
        self.ctl = self.tmp / "bird.ctl"
        self.procs.append(bb.Proc(S_NS, [bb.BIRD, "-f", "-c", str(conf), "-s", str(self.ctl),
                                         "-P", str(self.tmp / "bird.pid")],
                                  self.tmp / "bird.log"))

    def count_bird(self):
        out = bb.sh([bb.BIRDC, "-s", str(self.ctl), "show", "route", "count"], check=False,
                    timeout=20).stdout
        m = re.search(r"(\d+) of \d+ routes for (\d+) networks", out)
        return int(m.group(2)) if m else 0

    # FRR (bgpd only, -Z: no zebra; or with zebra for the FIB) --------------
    def start_frr(self):
        vty = self.tmp / "frr"
        vty.mkdir(exist_ok=True)
        os.chmod(vty, 0o777)
        zs = str(self.tmp / "zserv.api")
        common = ["-z", zs, "--vty_socket", str(vty), "-P", "0", "-u", "frr", "-g", "frr"]
        sink = f""" neighbor {SINK} remote-as 65003
 neighbor {SINK} timers connect 1
""" if self.sink else ""
        sink_af = f"  neighbor {SINK} activate\n" if self.sink else ""
        bgpd = f"""frr defaults traditional
hostname s
router bgp 65001
 bgp router-id {FEED_S}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart-disable
 neighbor {FEED} remote-as 65002
 neighbor {FEED} timers connect 1
{sink} address-family ipv4 unicast
  neighbor {FEED} activate
  neighbor {FEED} route-map NONE out
{sink_af} exit-address-family
route-map NONE deny 10
"""
        daemons = [("bgpd", bb.BGPD, bgpd, [] if self.install else ["-Z"])]
        if self.install:
            daemons.insert(0, ("zebra", bb.ZEBRA, "hostname s\n", []))
        for name, binary, conf, extra in daemons:
            cf = self.tmp / f"{name}.conf"
            cf.write_text(conf)
            os.chmod(cf, 0o644)
            p = bb.Proc(S_NS, [binary, "-f", str(cf), "-i", str(self.tmp / f"{name}.pid"),
                               *common, *extra], self.tmp / f"{name}.log")
            self.procs.append(p)
            ok = bb.wait_for(lambda n=name, q=p: (vty / f"{n}.vty").exists() or not q.alive(),
                             10)
            if not ok or not p.alive():
                raise RuntimeError(f"{name} did not start: {self.logs()}")
        self.vty = vty

    def count_frr(self):
        out = bb.sh(["ip", "netns", "exec", S_NS, "vtysh", "--vty_socket", str(self.vty), "-c",
                     "show bgp ipv4 unicast summary json"], check=False, timeout=30).stdout
        try:
            return json.loads(out)["peers"][FEED]["pfxRcd"]
        except (ValueError, KeyError, TypeError):
            return 0

    def count(self):
        return getattr(self, "count_" + self.name)()


# --------------------------------------------------------------------- feeder ----

class Feeder:
    def __init__(self, tmp, n, sink, timeout):
        args = ["ip", "netns", "exec", X_NS, sys.executable, FEEDPY, "--feed", FEED, "-n",
                str(n), "--timeout", str(timeout), "--linger", str(timeout)]
        if sink:
            args += ["--sink", SINK]
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(tmp / "feed.err", "w"),
                                  text=True)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf, self.ev = "", []

    def poll(self):
        lines, self.buf = bb.read_lines(self.p, self.buf)
        for line in lines:
            try:
                self.ev.append(json.loads(line))
            except ValueError:
                pass
        return self.ev

    def get(self, ev, role=None):
        self.poll()
        return next((e for e in self.ev if e.get("ev") == ev and
                     (role is None or e.get("role") == role)), None)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)


# ---------------------------------------------------------------------- trials ----

def guarded(res, body):
    """Fresh namespaces, body(res, stop) (it appends what it starts to stop), then every
    process stopped (by pid) and the namespaces removed, also on failure."""
    ns_up()
    stop = []
    try:
        body(res, stop)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        res["error"] = str(e)[-1500:]
    finally:
        for x in reversed(stop):
            x.stop()
        ns_down()
    return res


def start_pair(name, n, args, tmp, stop, install, sink):
    """bgp_feed.py listening (feeder of n prefixes, and sink), then the speaker."""
    fd = Feeder(tmp, n, sink, args.timeout + 30)
    stop.append(fd)
    if not bb.wait_for(lambda: fd.get("listening"), 60, 0.1):
        raise RuntimeError("feeder did not start: " + (tmp / "feed.err").read_text()[-500:])
    sp = Speaker(name, tmp, args, install, sink)
    stop.append(sp)
    sp.start()
    return fd, sp


def trial_ingest(name, n, args, tmp, install=False):
    res = {"test": "fib" if install else "ingest", "speaker": name, "prefixes": n}

    def body(res, stop):
        if install:
            mon = bb.Monitor(PROTO[name], n, tmp / "monitor.err", S_NS)
            stop.append(mon)
            if not bb.wait_for(lambda: (mon.poll(), mon.ready)[1], 10):
                raise RuntimeError("route monitor did not start")
        bb.sh(["ip", "-n", S_NS, "link", "set", "h22s1", "down"])
        fd, sp = start_pair(name, n, args, tmp, stop, install, False)
        time.sleep(1.5)
        if not sp.alive():
            raise RuntimeError(f"{name} died at start: {sp.logs()}")
        res["rss_idle_kb"] = bb.vm_kb(sp.pids(), "VmRSS")
        cpu0 = bb.cpu_ticks(sp.pids())
        bb.sh(["ip", "-n", S_NS, "link", "set", "h22s1", "up"])
        up = bb.wait_for(lambda: fd.get("up", "feed"), 30, 0.05)
        if not up:
            raise RuntimeError(f"no session: {sp.logs()}")
        t_up = up["t"]
        peak, ticks, last_busy = 0, runtime_ns(sp.pids()), None
        deadline = t_up + args.timeout
        done = None
        while time.time() < deadline and sp.alive():
            now = time.time()
            rt = runtime_ns(sp.pids())
            peak = max(peak, bb.vm_kb(sp.pids(), "VmRSS"))
            if rt - ticks > 500000:  # > 0.5 ms of CPU since the last sample: busy
                last_busy = now
            ticks = rt
            if install:
                mon.poll()
                if mon.full is not None:
                    done = mon.full
                    break
            else:
                sent = fd.get("sent")
                # the feed is all in the speaker's socket: the first 0.3 s without work
                # after that is the end of the ingest (its count is checked below)
                if sent and last_busy and now - last_busy >= 0.3 and now - sent["t1"] >= 0.3:
                    done = max(last_busy, sent["t1"])
                    break
            time.sleep(0.01)
        if done is None:
            res["error"] = f"timeout ({sp.count() if not install else mon.count} of {n})"
            return res
        if not install:
            if not bb.wait_for(lambda: sp.count() >= n, 15, 0.3):
                res["error"] = f"quiet with {sp.count()} of {n} routes"
                return res
        res["time_s"] = round(done - t_up, 3)
        res["rate"] = round(n / max(done - t_up, 1e-6))
        time.sleep(0.5)
        res["cpu_s"] = round((bb.cpu_ticks(sp.pids()) - cpu0) / bb.HZ, 2)
        res["rss_full_kb"] = bb.vm_kb(sp.pids(), "VmRSS")
        res["rss_peak_kb"] = max(peak, res["rss_full_kb"], bb.vm_kb(sp.pids(), "VmHWM"))
        res["bytes_per_route"] = round((res["rss_full_kb"] - res["rss_idle_kb"]) * 1024 / n)
        if install:
            res["kernel_routes"] = int(bb.sh(["sh", "-c", f"ip -n {S_NS} -4 route show proto "
                                              f"{PROTO[name]} | wc -l"]).stdout)
            res["monitor_overflows"] = mon.overflow
        else:
            res["rib_routes"] = sp.count()
        return res

    return guarded(res, body)


def trial_prop(name, n, args, tmp):
    res = {"test": "prop", "speaker": name, "prefixes": n}

    def body(res, stop):
        fd, sp = start_pair(name, n, args, tmp, stop, False, True)
        if not bb.wait_for(lambda: fd.get("up", "feed") and fd.get("up", "sink"), 30, 0.05):
            raise RuntimeError(f"sessions not up: {fd.ev} {sp.logs()}")
        end = time.time() + args.timeout
        while time.time() < end and not fd.get("sunk") and sp.alive() and fd.p.poll() is None:
            time.sleep(0.05)
        sunk, sent = fd.get("sunk"), fd.get("sent")
        if not sunk or not sent:
            res["error"] = f"incomplete: {fd.ev[-3:]} {sp.logs()[-800:]}"
            return res
        res["total_s"] = round(sunk["t_last"] - sent["t0"], 3)
        res["first_ms"] = round((sunk["t_first"] - sent["t0"]) * 1000, 1)
        res["feed_s"] = round(sent["t1"] - sent["t0"], 3)
        res["delay_ms"] = sunk["delay_ms"]
        res["cpu_s"] = round(runtime_ns(sp.pids()) / 1e9, 3)  # since its start
        res["rss_kb"] = bb.vm_kb(sp.pids(), "VmRSS")
        return res

    return guarded(res, body)


CUT = """table inet h22cut {
  chain in { type filter hook input priority -300; policy drop; }
  chain out { type filter hook output priority -300; policy drop; }
}
"""


def trial_failure(name, n, bfd, args, tmp):
    res = {"test": "failure", "speaker": name, "prefixes": n, "bfd": bfd}

    def body(res, stop):
        ncfg = {"as": 65002, "routerId": FEED, "holdTime": 9, "install": False,
                "peers": [{"name": "s", "address": FEED_S, "as": 65001, "passive": True,
                           "families": ["ipv4"], "holdTime": 9,
                           **({"bfd": {"minTx": 100, "minRx": 100, "multiplier": 3}}
                              if bfd else {})}],
                "originate": [p + "/32" for p in bb.prefixes(n)]}
        (tmp / "node.json").write_text(json.dumps(ncfg))
        node = bb.Proc(X_NS, [args.twill, "bgp", "run", "--config", str(tmp / "node.json"),
                              "--state", str(tmp / "node.state.json")], tmp / "node.log")
        stop.append(node)
        mon = bb.Monitor(PROTO[name], n, tmp / "monitor.err", S_NS)
        stop.append(mon)
        if not bb.wait_for(lambda: (mon.poll(), mon.ready)[1], 10):
            raise RuntimeError("route monitor did not start")
        sp = Speaker(name, tmp, args, True, False, hold=9, bfd=bfd)
        stop.append(sp)
        sp.start()
        if not bb.wait_for(lambda: (mon.poll(), mon.full)[1], 60, 0.05):
            raise RuntimeError(f"routes not installed ({mon.count}): {sp.logs()}")
        if bfd:  # BFD must be Up before the cut
            def bfd_up():
                if name == "twill":
                    try:
                        st = json.loads((tmp / "twill.state.json").read_text())
                        return any((p.get("bfd") or {}).get("state") == "Up"
                                   for p in st["peers"])
                    except (OSError, ValueError, KeyError):
                        return False
                out = bb.sh([bb.BIRDC, "-s", str(sp.ctl), "show", "bfd", "sessions"],
                            check=False).stdout
                return " Up " in out
            if not bb.wait_for(bfd_up, 20, 0.1):
                raise RuntimeError(f"BFD not up: {sp.logs()}")
        time.sleep(2)  # a keepalive or two (hold 9 s: every 3 s)
        mon.poll()
        t0 = time.time()
        bb.sh(["ip", "netns", "exec", X_NS, "nft", "-f", "-"], input=CUT)
        while time.time() < t0 + args.timeout and mon.empty is None:
            mon.poll()
            time.sleep(0.01)
        if mon.empty is None:
            res["error"] = f"routes still there after {args.timeout} s ({mon.count})"
            return res
        res["detect_s"] = round(mon.empty - t0, 3)
        return res

    return guarded(res, body)


METRIC = {"ingest": ("time_s", "rate", "cpu_s", "bytes_per_route", "rss_peak_kb"),
          "fib": ("time_s", "rate", "cpu_s", "bytes_per_route", "rss_peak_kb"),
          "prop": ("total_s", "p99_ms", "p50_ms", "first_ms", "cpu_s"),
          "failure": ("detect_s",)}


def summarize(results):
    """Medians per test, speaker (and BFD) over the runs that completed; ratios to twill."""
    groups = {}
    for r in results:
        if r.get("delay_ms"):
            r["p99_ms"], r["p50_ms"] = r["delay_ms"]["p99"], r["delay_ms"]["p50"]
        key = (r["test"], r["speaker"], r.get("bfd"))
        groups.setdefault(key, []).append(r)
    out = []
    print("\nmedians (n = runs that completed / runs)")
    for (t, sp, bfd), rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        s = {"test": t, "speaker": sp, "bfd": bfd, "runs": len(rs), "completed": len(ok)}
        for k in METRIC[t]:
            v = bb.median([r[k] for r in ok if r.get(k) is not None])
            if v is not None:
                s[k] = round(v, 3)
        s["errors"] = [r["error"][:200] for r in rs if "error" in r]
        out.append(s)
        print(f"  {t:8} {sp:6} {'' if bfd is None else 'bfd' if bfd else 'no-bfd':7}"
              f" n={len(ok)}/{len(rs)} " + " ".join(f"{k}={s.get(k)}" for k in METRIC[t]) +
              (f" errors={s['errors']}" if s["errors"] else ""))
    for s in out:
        tw = next((x for x in out if x["speaker"] == "twill" and x["test"] == s["test"]
                   and x["bfd"] == s["bfd"]), None)
        if s["speaker"] == "twill" or not tw:
            continue
        k = METRIC[s["test"]][0]
        if tw.get(k) and s.get(k):
            print(f"  ratio {s['test']}{'' if s['bfd'] is None else ' bfd=' + str(s['bfd'])} "
                  f"twill/{s['speaker']} {k}: {tw[k] / s[k]:.2f}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tests", default="ingest,fib,prop,failure")
    ap.add_argument("--speakers", default="twill,bird,frr")
    ap.add_argument("--twill", default=os.environ.get("TWILL", str(ROOT / "build" / "twill")))
    ap.add_argument("--twill-before", help="a second twill binary (e.g. of the last commit), "
                    "run as speaker 'before' when listed in --speakers")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--ingest-n", type=int, default=1000000)
    ap.add_argument("--fib-n", type=int, default=100000)
    ap.add_argument("--prop-n", type=int, default=100000)
    ap.add_argument("--fail-n", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bgp_prop_bench: needs root (network namespaces)")
    args.twill = os.path.abspath(args.twill)
    if args.twill_before:
        args.twill_before = os.path.abspath(args.twill_before)
    tests = [t for t in args.tests.split(",") if t]
    speakers = [s for s in args.speakers.split(",") if s]
    have = {"twill": os.access(args.twill, os.X_OK),
            "before": bool(args.twill_before) and os.access(args.twill_before, os.X_OK),
            "bird": os.access(bb.BIRD, os.X_OK),
            "frr": os.access(bb.BGPD, os.X_OK)}
    cleanup_stale()
    tmp = Path(tempfile.mkdtemp(prefix=PFX + "-"))
    os.chmod(tmp, 0o777)
    bb.build_monitor(tmp)
    results = []
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for rep in range(args.repeat):
            for t in tests:
                for sp in speakers:
                    if not have.get(sp):
                        continue
                    if t == "failure" and sp in ("frr", "before"):
                        continue
                    variants = [True, False] if t == "failure" else [None]
                    for v in variants:
                        d = tmp / f"{t}-{sp}-{rep}-{v}"
                        d.mkdir()
                        os.chmod(d, 0o777)
                        print(f"== {t} {sp}" + (f" bfd={v}" if v is not None else "") +
                              f" run {rep + 1}", flush=True)
                        if t == "ingest":
                            r = trial_ingest(sp, args.ingest_n, args, d)
                        elif t == "fib":
                            r = trial_ingest(sp, args.fib_n, args, d, install=True)
                        elif t == "prop":
                            r = trial_prop(sp, args.prop_n, args, d)
                        else:
                            r = trial_failure(sp, args.fail_n, v, args, d)
                        r["run"] = rep + 1
                        print("   " + json.dumps(r), flush=True)
                        results.append(r)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        ns_down()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "results": results,
                                               "args": vars(args)}, indent=1))
    return 0 if results and not any("error" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
