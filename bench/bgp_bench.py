#!/usr/bin/python3
"""BGP receivers into the kernel FIB: twill vs BIRD 2 vs FRR (zebra + bgpd), same run.

Command (root; after `make`):
    /usr/bin/python3 bench/bgp_bench.py [--sizes 10000,100000] [--receivers twill,bird,frr]
        [--twill build/twill] [--feeder twill|bird] [--timeout 120] [--repeat 3]
        [--json out.json] [--verbose]

For every size N and every receiver, in turn, two fresh network namespaces h22b<pid>f (the
feeder) and h22b<pid>r (the receiver) are joined by a veth pair (192.168.255.1/30 feeder,
.2 receiver).  The feeder (AS 65002, passive, no graceful restart, next hop self) announces
N /32 routes from 100.64.0.0/10 over eBGP: by default a second `twill bgp run` with them in
its `originate` list and no kernel install; with --feeder bird, BIRD 2 with N static routes.
(BIRD as the feeder sometimes holds the last few routes back for 2-3 s, probably until its
main loop's 3 s poll timeout, e.g. 9,985 of 10,000 at once and 15 three seconds later,
whichever daemon receives; twill's feeder did not, so it is the default.)  The
receiver (AS 65001, connect retry 1 s) starts with its end of the veth down, idles for 1 s
(its baseline CPU and RSS are read then), then the link goes up and its next connect gets
through; it learns the N routes and installs them into its own namespace's kernel:

  twill   `twill bgp run` (kernel protocol 118)
  bird    BIRD 2 with `protocol kernel { ipv4 { export all; }; }` (protocol bird, 12)
  frr     zebra + bgpd (protocol bgp, 186); bgpd exports nothing (route-map deny out)

No receiver exports anything back.  Measured for each:

  install   from the feeder's "established" (its log: twill ms, BIRD µs timestamps) to the
            moment the N-th route of the receiver's protocol is in the receiver's main table.
            The kernel's route notifications are counted by a listener in the receiver's
            namespace (a netlink socket on RTNLGRP_IPV4_ROUTE with a 256 MB buffer; a
            buffer overrun is reported), and the final count is checked with a dump
            (`ip -4 route show proto P`).  rate = N / install time.
  withdraw  from the feeder stopping (SIGTERM to twill, `birdc disable` of BIRD's BGP
            protocol; both send a Cease NOTIFICATION) to the last of the N routes leaving the
            receiver's kernel.
  CPU       utime + stime of the receiver's process(es) (/proc/PID/stat, threads included)
            spent during install and during withdraw; for FRR zebra + bgpd.
  RSS       VmRSS before the session and when full; peak = the largest of VmRSS sampled
            every ~20 ms and VmHWM (which the kernel updates lazily); FRR: zebra + bgpd.

Each receiver and size is run --repeat times (default 3), the receivers interleaved, so a
burst of load from elsewhere on the machine does not land on one of them only; the summary
shows medians (peak RSS: the largest) and twill/BIRD, twill/FRR ratios of those medians.
Every wait is bounded by --timeout (default 120 s), reported as "timeout (k of N)".
Namespaces are named h22b<pid>f/r; leftovers of dead runs (h22b<dead pid>*) are removed at
start, ours at exit; every daemon is killed by its pid.  Nothing touches the caller's own
namespace.
"""

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PFX = f"h22b{os.getpid()}"
F_NS, R_NS = PFX + "f", PFX + "r"
F_IP, R_IP = "192.168.255.1", "192.168.255.2"
BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"
ZEBRA, BGPD = "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd"
PROTO = {"twill": 118, "bird": 12, "frr": 186}
HZ = os.sysconf("SC_CLK_TCK")

# Runs in the receiver's namespace: counts the routes of protocol P in the main table from
# the kernel's notifications; prints "n COUNT TIME" every 0.5 s, "full TIME" when COUNT
# first reaches N and "empty TIME" when it is back at 0 after that.
MONITOR = r'''
import os, socket, struct, sys, time
proto, want = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE
s.bind((0, 0x40))  # RTMGRP_IPV4_ROUTE
have, full, last = set(), False, 0.0
print("ready", flush=True)
while True:
    try:
        data = s.recv(1 << 20)
    except OSError as e:
        print("overflow", e.errno, flush=True)
        continue
    now = time.time()
    off = 0
    while off + 16 <= len(data):
        ln, typ = struct.unpack_from("=IH", data, off)
        if ln < 16:
            break
        if typ in (24, 25) and ln >= 28:
            fam, dlen, _, _, table, rp = struct.unpack_from("=BBBBBB", data, off + 16)
            if rp == proto and table == 254:
                a, dst = off + 28, b""
                while a + 4 <= off + ln:
                    alen, atyp = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atyp == 1:
                        dst = data[a + 4:a + alen]
                    a += (alen + 3) & ~3
                if typ == 24:
                    have.add((dst, dlen))
                else:
                    have.discard((dst, dlen))
        off += (ln + 3) & ~3
    if not full and len(have) >= want:
        full = True
        print("full", repr(now), flush=True)
    elif full and not have:
        print("empty", repr(now), flush=True)
        full = False
    if now - last >= 0.5:
        print("n", len(have), repr(now), flush=True)
        last = now
'''


def sh(args, check=True, timeout=60, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def ns_names(prefix):
    d = Path("/run/netns")
    return sorted(n.name for n in d.iterdir() if n.name.startswith(prefix)) if d.is_dir() else []


def cleanup_stale(prefix="h22b", suffixes="fr"):
    """Namespaces of dead runs of this benchmark (<prefix><pid><suffix>, pid no longer
    alive)."""
    for n in ns_names(prefix):
        m = re.match(rf"{prefix}(\d+)[{suffixes}]$", n)
        if m and int(m.group(1)) != os.getpid() and not Path(f"/proc/{m.group(1)}").exists():
            sh(["ip", "netns", "del", n], check=False)


def ns_down(names=None):
    for ns in names or (F_NS, R_NS):
        if ns in ns_names(ns):
            sh(["ip", "netns", "del", ns], check=False)


def ns_up():
    ns_down()
    for ns in (F_NS, R_NS):
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    sh(["ip", "-n", F_NS, "link", "add", "h22f", "type", "veth", "peer", "name", "h22r",
        "netns", R_NS])
    for ns, dev, ip in ((F_NS, "h22f", F_IP), (R_NS, "h22r", R_IP)):
        sh(["ip", "-n", ns, "addr", "add", ip + "/30", "dev", dev])
    sh(["ip", "-n", F_NS, "link", "set", "h22f", "up"])  # h22r: when the receiver is idle


class Proc:
    def __init__(self, ns, args, log, **kw):
        self.log = log
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=open(log, "w"),
                                  stderr=subprocess.STDOUT, **kw)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)


def wait_for(fn, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return None


def cpu_ticks(pids):
    t = 0
    for pid in pids:
        f = Path(f"/proc/{pid}/stat").read_text()
        fields = f[f.rindex(")") + 2:].split()
        t += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return t


def vm_kb(pids, key):
    total = 0
    for pid in pids:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        total += int(m.group(1)) if m else 0
    return total


def prefixes(n):
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    if n > 1 << 22:
        raise SystemExit("bgp_bench: at most 4194304 prefixes (100.64.0.0/10 as /32s)")
    return (str(ipaddress.IPv4Address(base + i)) for i in range(n))


def feeder_conf(n, log):
    routes = "\n".join(f"  route {p}/32 blackhole;" for p in prefixes(n))
    return f"""log "{log}" all;
timeformat log "%F %T.%6f";
router id {F_IP};
debug protocols {{ states }};
protocol device {{ }}
protocol static s4 {{ ipv4;
{routes}
}}
protocol bgp feed {{
  local {F_IP} as 65002; neighbor {R_IP} as 65001; passive on;
  hold time 90; graceful restart off;
  ipv4 {{ import none; export all; next hop self; }};
}}
"""


# ------------------------------------------------------------------ receivers ----

class Receiver:
    name = "?"

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def pids(self):
        return [p.pid for p in self.procs]

    def alive(self):
        return all(p.alive() for p in self.procs)

    def stop(self):
        for p in reversed(self.procs):
            p.stop()

    def logs(self):
        return "\n".join(f"--- {p.log.name}\n" + p.log.read_text(errors="replace")[-1500:]
                         for p in self.procs if p.log.exists())


class TwillRx(Receiver):
    name = "twill"

    def __init__(self, tmp, binary):
        super().__init__(tmp)
        self.binary = binary

    def start(self):
        cfg = {"as": 65001, "routerId": R_IP, "holdTime": 90, "connectRetry": 1,
               "peers": [{"name": "feed", "address": F_IP, "as": 65002,
                          "families": ["ipv4"]}]}
        path = self.tmp / "twill.json"
        path.write_text(json.dumps(cfg))
        self.procs.append(Proc(R_NS, [self.binary, "bgp", "run", "--config", str(path),
                                      "--state", str(self.tmp / "twill.state.json")],
                               self.tmp / "twill.log"))


class BirdRx(Receiver):
    name = "bird"

    def start(self):
        conf = self.tmp / "bird-rx.conf"
        conf.write_text(f"""router id {R_IP};
protocol device {{ }}
protocol kernel k4 {{ ipv4 {{ export all; import none; }}; }}
protocol bgp feed {{
  local {R_IP} as 65001; neighbor {F_IP} as 65002;
  hold time 90; connect retry time 1; connect delay time 1; graceful restart off;
  ipv4 {{ import all; export none; }};
}}
""")
        self.procs.append(Proc(R_NS, [BIRD, "-f", "-c", str(conf), "-s",
                                      str(self.tmp / "bird-rx.ctl"), "-P",
                                      str(self.tmp / "bird-rx.pid")], self.tmp / "bird-rx.log"))


class FrrRx(Receiver):
    name = "frr"

    def start(self):
        vty = self.tmp / "frr"
        vty.mkdir(exist_ok=True)
        os.chmod(vty, 0o777)
        zs = str(self.tmp / "zserv.api")
        common = ["-z", zs, "--vty_socket", str(vty), "-P", "0", "-u", "frr", "-g", "frr"]
        bgpd = f"""frr defaults traditional
hostname rx
router bgp 65001
 bgp router-id {R_IP}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart-disable
 neighbor {F_IP} remote-as 65002
 neighbor {F_IP} timers 30 90
 neighbor {F_IP} timers connect 1
 address-family ipv4 unicast
  neighbor {F_IP} activate
  neighbor {F_IP} route-map NONE out
 exit-address-family
route-map NONE deny 10
"""
        for name, binary, conf in (("zebra", ZEBRA, "hostname rx\n"), ("bgpd", BGPD, bgpd)):
            cf = self.tmp / f"{name}.conf"
            cf.write_text(conf)
            os.chmod(cf, 0o644)
            p = Proc(R_NS, [binary, "-f", str(cf), "-i", str(self.tmp / f"{name}.pid"),
                            *common], self.tmp / f"{name}.log")
            self.procs.append(p)
            ok = wait_for(lambda n=name, q=p: (vty / f"{n}.vty").exists() or not q.alive(), 10)
            if not ok or not p.alive():
                raise RuntimeError(f"{name} did not start: {self.logs()}")


def receiver(name, tmp, args):
    if name == "twill":
        return TwillRx(tmp, args.twill)
    if name == "bird":
        return BirdRx(tmp)
    return FrrRx(tmp)


def missing(name, args):
    need = {"twill": [args.twill], "bird": [BIRD], "frr": [ZEBRA, BGPD]}[name]
    return [b for b in need if not os.access(b, os.X_OK)]


# ---------------------------------------------------------------------- trial ----

def read_lines(p, buf):
    """The complete lines a child wrote to its non-blocking stdout pipe since the last call
    (and what is left of an incomplete one)."""
    try:
        chunk = p.stdout.read()
    except (BlockingIOError, TypeError):
        chunk = None
    buf += chunk or ""
    *lines, rest = buf.split("\n")
    return lines, rest


MONITOR_BIN = None  # bench/route_monitor.c, built by build_monitor()


def build_monitor(tmp):
    """Compile bench/route_monitor.c into tmp: it keeps up with 100,000+ routes/s, where the
    Python listener above lagged ~0.8 s per 100,000 notifications (one recv each).  Without
    a C compiler the Python one is used."""
    global MONITOR_BIN
    out = Path(tmp) / "route_monitor"
    p = subprocess.run(["cc", "-O2", "-o", str(out), str(ROOT / "bench" / "route_monitor.c")],
                       capture_output=True, text=True)
    if p.returncode == 0:
        MONITOR_BIN = str(out)
    else:
        print("bgp_bench: no C route monitor (Python one used): " + p.stderr[-300:],
              file=sys.stderr)


class Monitor:
    def __init__(self, proto, n, log, ns=None):
        cmd = [MONITOR_BIN] if MONITOR_BIN else [sys.executable, "-c", MONITOR]
        self.p = subprocess.Popen(["ip", "netns", "exec", ns or R_NS, *cmd,
                                   str(proto), str(n)], stdout=subprocess.PIPE,
                                  stderr=open(log, "w"), text=True)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf, self.full, self.empty, self.count, self.overflow = "", None, None, 0, 0
        self.ready = False
        self.timeline = []  # (wall time, routes in the kernel), every 0.5 s of events

    def poll(self):
        lines, self.buf = read_lines(self.p, self.buf)
        for line in lines:
            w = line.split()
            if not w:
                continue
            if w[0] == "ready":
                self.ready = True
            elif w[0] == "full":
                self.full = float(w[1])
            elif w[0] == "empty":
                self.empty = float(w[1])
            elif w[0] == "n":
                self.count = int(w[1])
                self.timeline.append((float(w[2]), self.count))
            elif w[0] == "overflow":
                self.overflow += 1

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)


def established_at(log):
    """Wall time of the feeder's 'BGP session established' (BIRD's log, µs timestamps, or
    twill's, ms, UTC)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if "bgp: peer feed: established" in line:
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if m:
                return datetime.strptime(m.group(1) + "+0000",
                                         "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        if "feed: BGP session established" in line or "feed: State changed to up" in line:
            m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
            if m:
                return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


def tcp_retrans(ns):
    """TcpRetransSegs of namespace ns (a stall of ~1-3 s in a timeline is a retransmit)."""
    lines = [ln.split() for ln in sh(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                                     check=False).stdout.splitlines() if ln.startswith("Tcp:")]
    return int(lines[1][lines[0].index("RetransSegs")]) if len(lines) >= 2 else None


def kernel_count(proto):
    out = sh(["ip", "-n", R_NS, "-4", "route", "show", "table", "main", "proto", str(proto)],
             timeout=60).stdout
    return out.count("\n")


def trial(name, n, args, tmp):
    """One receiver, one size: a dict of results (or with "error")."""
    res = {"receiver": name, "prefixes": n}
    ns_up()
    feeder = rx = mon = None
    try:
        fsock, fstate = tmp / "feeder.ctl", tmp / "feeder.state.json"
        t = time.monotonic()
        if args.feeder == "bird":
            fconf, flog = tmp / "feeder.conf", tmp / "feeder-bird.log"
            fconf.write_text(feeder_conf(n, flog))
            feeder = Proc(F_NS, [BIRD, "-f", "-c", str(fconf), "-s", str(fsock), "-P",
                                 str(tmp / "feeder.pid")], tmp / "feeder.log")
        else:
            fconf, flog = tmp / "feeder.json", tmp / "feeder.log"
            fconf.write_text(json.dumps({
                "as": 65002, "routerId": F_IP, "holdTime": 90, "install": False,
                "peers": [{"name": "feed", "address": R_IP, "as": 65001, "passive": True,
                           "families": ["ipv4"]}],
                "originate": [p + "/32" for p in prefixes(n)]}))
            feeder = Proc(F_NS, [args.twill, "bgp", "run", "--config", str(fconf), "--state",
                                 str(fstate)], flog)

        def feeder_ready():
            if not feeder.alive():
                raise RuntimeError("feeder died: " + feeder.log.read_text()[-1500:])
            if args.feeder == "twill":
                return fstate.exists()
            if not fsock.exists():
                return False
            out = sh([BIRDC, "-s", str(fsock), "show", "protocols", "s4"], check=False).stdout
            return re.search(r"s4\s+Static\s+master4\s+up", out)
        if not wait_for(feeder_ready, args.timeout, 0.2):
            raise RuntimeError("feeder BIRD not ready")
        res["feeder_start_s"] = round(time.monotonic() - t, 3)

        proto = PROTO[name]
        mon = Monitor(proto, n, tmp / f"monitor-{name}.log")
        if not wait_for(lambda: (mon.poll(), mon.ready)[1], 10):
            raise RuntimeError("route monitor did not start")
        rx = receiver(name, tmp, args)
        rx.start()
        time.sleep(1)  # settle: the baseline below is the idle daemon, no session yet
        if not rx.alive():
            raise RuntimeError(f"{name} died at start: {rx.logs()}")
        res["rss_idle_kb"] = vm_kb(rx.pids(), "VmRSS")
        cpu0 = cpu_ticks(rx.pids())
        sh(["ip", "-n", R_NS, "link", "set", "h22r", "up"])  # the next connect retry gets through
        peak = [0]

        def sample():
            """VmHWM is only updated lazily by the kernel: sample VmRSS as well."""
            mon.poll()
            peak[0] = max(peak[0], vm_kb(rx.pids(), "VmRSS"))

        est = wait_for(lambda: established_at(flog), 30, 0.1)
        if est is None:
            raise RuntimeError(f"no session with {name}: {rx.logs()}")
        # install: until the monitor saw N routes (or the timeout)
        deadline = est + args.timeout
        while time.time() < deadline and mon.full is None and rx.alive():
            sample()
            time.sleep(0.02)
        mon.poll()
        if mon.full is None:
            res["install"] = f"timeout ({mon.count} of {n})"
            res["error"] = "install did not complete" if rx.alive() else rx.logs()
            return res
        res["install_s"] = round(mon.full - est, 3)
        res["install_rate"] = round(n / max(mon.full - est, 1e-6))
        time.sleep(0.5)  # let trailing work (e.g. twill's state file) show in the CPU
        res["kernel_routes"] = kernel_count(proto)
        res["feeder_tcp_retrans"] = tcp_retrans(F_NS)
        cpu1 = cpu_ticks(rx.pids())
        res["install_cpu_s"] = round((cpu1 - cpu0) / HZ, 2)
        res["rss_full_kb"] = vm_kb(rx.pids(), "VmRSS")

        # withdraw: the feeder stops (Cease NOTIFICATION)
        t0 = time.time()
        if args.feeder == "bird":
            sh([BIRDC, "-s", str(fsock), "disable", "feed"])
        else:
            feeder.p.send_signal(signal.SIGTERM)  # twill's bgp_free: a Cease to its peers
        while time.time() < t0 + args.timeout and mon.empty is None and rx.alive():
            sample()
            time.sleep(0.02)
        mon.poll()
        if mon.empty is None:
            res["withdraw"] = f"timeout ({mon.count} left of {n})"
        else:
            res["withdraw_s"] = round(mon.empty - t0, 3)
            res["withdraw_rate"] = round(n / max(mon.empty - t0, 1e-6))
        time.sleep(0.3)
        res["kernel_routes_after"] = kernel_count(proto)
        res["withdraw_cpu_s"] = round((cpu_ticks(rx.pids()) - cpu1) / HZ, 2)
        res["rss_peak_kb"] = max(peak[0], res["rss_full_kb"], vm_kb(rx.pids(), "VmHWM"))
        res["monitor_overflows"] = mon.overflow
        res["timeline"] = [(round(t - est, 2), c) for t, c in mon.timeline]
        return res
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        res["error"] = str(e)[-2000:]
        return res
    finally:
        if mon:
            mon.stop()
        if rx:
            rx.stop()
        if feeder:
            feeder.stop()
        ns_down()


KEYS = ("install_s", "install_rate", "install_cpu_s", "withdraw_s", "withdraw_rate",
        "withdraw_cpu_s", "rss_idle_kb", "rss_full_kb")


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return (xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2) if k else None


def summarize(results, sizes, names):
    """Per receiver and size: medians over the runs that completed, the max peak RSS, and
    what failed (errors, timeouts, wrong final counts)."""
    out = []
    for n in sizes:
        for nm in names:
            rs = [r for r in results if r["receiver"] == nm and r["prefixes"] == n]
            if not rs:
                continue
            ok = [r for r in rs if "install_s" in r]
            s = {"receiver": nm, "prefixes": n, "runs": len(rs), "completed": len(ok)}
            for k in KEYS:
                v = median([r[k] for r in ok if r.get(k) is not None])
                if v is not None:
                    s[k] = round(v, 3)
            if ok:
                s["rss_peak_kb"] = max(r.get("rss_peak_kb", 0) for r in ok)
                s["install_s_all"] = [r["install_s"] for r in ok]
                s["withdraw_s_all"] = [r.get("withdraw_s") for r in ok]
            probs = [r.get("error") or r.get("install") or r.get("withdraw") for r in rs
                     if r.get("error") or "install" in r or "withdraw" in r]
            probs += [f"run {r['run']}: dump found {r.get('kernel_routes')} routes when full, "
                      f"{r.get('kernel_routes_after')} after the withdraw" for r in ok
                      if r.get("kernel_routes") != n or r.get("kernel_routes_after")]
            probs += [f"run {r['run']}: monitor overrun" for r in ok
                      if r.get("monitor_overflows")]
            if probs:
                s["problems"] = [str(p)[:300] for p in probs]
            out.append(s)
    return out


def fmt(r, key, unit=""):
    v = r.get(key)
    return "-" if v is None else f"{v:g}{unit}" if isinstance(v, float) else f"{v}{unit}"


def report(summary, sizes, names, repeat, feeder):
    print(f"\nBGP receivers: feeder {feeder} -> receiver -> its kernel FIB (main table); "
          f"median of {repeat} runs (peak RSS: max)")
    print(f"  {'receiver':8} {'N':>7} {'ok':>3} {'install s':>9} {'routes/s':>9} {'cpu s':>6} "
          f"{'withdraw s':>10} {'routes/s':>9} {'cpu s':>6} {'RSS idle':>9} {'RSS full':>9} "
          f"{'RSS peak':>9}")
    for r in summary:
        print(f"  {r['receiver']:8} {r['prefixes']:>7} {r['completed']:>3} "
              f"{fmt(r, 'install_s'):>9} {fmt(r, 'install_rate'):>9} "
              f"{fmt(r, 'install_cpu_s'):>6} {fmt(r, 'withdraw_s'):>10} "
              f"{fmt(r, 'withdraw_rate'):>9} {fmt(r, 'withdraw_cpu_s'):>6} "
              f"{fmt(r, 'rss_idle_kb', 'k'):>9} {fmt(r, 'rss_full_kb', 'k'):>9} "
              f"{fmt(r, 'rss_peak_kb', 'k'):>9}")
        if r.get("install_s_all"):
            print(f"  {'':8} {'':>7} runs: install {r['install_s_all']} withdraw "
                  f"{r['withdraw_s_all']}")
        for p in r.get("problems", []):
            print(f"    problem: {p}")
    print("  ratios twill/other, same run (time, CPU: < 1 means twill is faster / cheaper; "
          "RSS: < 1 means smaller)")
    for n in sizes:
        tw = next((r for r in summary if r["receiver"] == "twill" and r["prefixes"] == n), None)
        for other in names:
            o = next((r for r in summary if r["receiver"] == other and r["prefixes"] == n),
                     None)
            if other == "twill" or not tw or not o:
                continue
            parts = []
            for key, label in (("install_s", "install time"), ("install_cpu_s", "install CPU"),
                               ("withdraw_s", "withdraw time"),
                               ("withdraw_cpu_s", "withdraw CPU"), ("rss_peak_kb", "peak RSS")):
                if tw.get(key) and o.get(key):
                    parts.append(f"{label} {tw[key] / o[key]:.2f}")
            print(f"  N={n:<7} twill/{other}: " + (", ".join(parts) or "n/a"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--receivers", default="twill,bird,frr")
    ap.add_argument("--twill", default=os.environ.get("TWILL", str(ROOT / "build" / "twill")))
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--repeat", type=int, default=3, help="runs per receiver and size")
    ap.add_argument("--feeder", choices=("twill", "bird"), default="twill")
    ap.add_argument("--json")
    ap.add_argument("--verbose", action="store_true",
                    help="print each trial's raw result, with a timeline of kernel route counts")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bgp_bench: needs root (network namespaces)")
    args.twill = os.path.abspath(args.twill)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    names = [s for s in args.receivers.split(",") if s]
    for nm in names:
        if nm not in PROTO:
            raise SystemExit(f"bgp_bench: --receivers: unknown '{nm}' (twill, bird, frr)")
    if not os.access(BIRD, os.X_OK):
        raise SystemExit(f"bgp_bench: the feeder needs BIRD 2 ({BIRD}); Debian package bird2")
    cleanup_stale()
    tmp = Path(tempfile.mkdtemp(prefix=PFX + "-"))
    os.chmod(tmp, 0o777)
    build_monitor(tmp)
    results = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signum)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for n in sizes:
            for rep in range(args.repeat):
                for nm in names:  # interleaved: load from others spreads over all three
                    miss = missing(nm, args)
                    if miss:
                        if rep == 0:
                            results.append({"receiver": nm, "prefixes": n,
                                            "error": f"not installed: {', '.join(miss)}"})
                        continue
                    d = tmp / f"{nm}-{n}-{rep}"
                    d.mkdir()
                    os.chmod(d, 0o777)
                    print(f"== {nm}, {n} prefixes, run {rep + 1}/{args.repeat}", flush=True)
                    r = trial(nm, n, args, d)
                    r["run"] = rep + 1
                    if args.verbose or r.get("error"):
                        print("   " + json.dumps(r), flush=True)
                    results.append(r)
    except KeyboardInterrupt:
        print("bgp_bench: interrupted", file=sys.stderr)
    finally:
        ns_down()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(results, sizes, names)
    report(summary, sizes, names, args.repeat, args.feeder)
    versions = {"bird": sh([BIRD, "--version"], check=False).stderr.strip(),
                "frr": sh([BGPD, "--version"], check=False).stdout.split("\n")[0].strip()
                if os.access(BGPD, os.X_OK) else None}
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes, "versions": versions,
                                               "timeout_s": args.timeout,
                                               "feeder": args.feeder,
                                               "repeat": args.repeat, "summary": summary,
                                               "results": results}, indent=1))
    return 0 if summary and all(s.get("completed") for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
