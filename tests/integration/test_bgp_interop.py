"""twill's BGP speaker against BIRD 2 and FRR.

One network namespace per daemon, joined by a veth pair (10.0.0.0/30 and fd00::/64),
named h2b<pid><role>.  twill runs as `twill bgp run --config FILE`, writes its state to a
JSON file and installs learned routes into its namespace's kernel under protocol 118.
Every wait is a poll with a deadline; every daemon is killed by its pid at the end.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import TWILL, run

PFX = f"h2b{os.getpid() % 100000}"
T_NS, P_NS, R_NS = PFX + "t", PFX + "p", PFX + "r"
RTPROT_BGP = 118

BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"
BGPD = "/usr/lib/frr/bgpd"
VTYSH = shutil.which("vtysh") or "/usr/bin/vtysh"


def need(path, what):
    if not os.access(path, os.X_OK):
        pytest.skip(f"{what} not installed ({path}); scripts/deps.sh installs it")


def wait_for(fn, timeout=20, what="condition", interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ns_cleanup():
    for ns in (T_NS, P_NS, R_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def kroutes(ns, family="-4"):
    p = run(["ip", "-n", ns, "-j", family, "route", "show", "proto", str(RTPROT_BGP)])
    return {r["dst"]: r for r in json.loads(p.stdout or "[]")}


class Daemon:
    def __init__(self, args, ns, log):
        self.log = log
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *args],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Twill:
    """`twill bgp run` in namespace ns with a JSON config we can rewrite + SIGHUP."""

    def __init__(self, ns, tmp, cfg):
        self.ns, self.tmp, self.cfg = ns, tmp, cfg
        self.path = tmp / f"twill-{ns}.json"
        self.state = tmp / f"twill-{ns}.state.json"
        self.daemon = None

    def write(self):
        self.path.write_text(json.dumps(self.cfg))

    def start(self):
        self.write()
        self.daemon = Daemon([TWILL, "bgp", "run", "--config", str(self.path), "--state",
                              str(self.state), "--log-level", "debug"], self.ns,
                             self.tmp / f"twill-{self.ns}.log")

    def reload(self):
        self.write()
        self.daemon.proc.send_signal(signal.SIGHUP)

    def state_json(self):
        try:
            return json.loads(self.state.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def peer(self, name):
        s = self.state_json() or {}
        return next((p for p in s.get("peers", []) if p["name"] == name), None)

    def established(self, name):
        p = self.peer(name)
        return p if p and p["state"] == "Established" else None

    def route(self, prefix):
        s = self.state_json() or {}
        return next((r for r in s.get("routes", []) if r["prefix"] == prefix), None)

    def log(self):
        try:
            return (self.tmp / f"twill-{self.ns}.log").read_text()[-4000:]
        except OSError:
            return ""


@pytest.fixture
def topo():
    """Two namespaces (twill, peer) joined by a veth; yields a dict with a temp dir."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ns_cleanup()
    tmp = Path(tempfile.mkdtemp(prefix=PFX + "-"))
    os.chmod(tmp, 0o777)
    daemons = []
    try:
        for ns in (T_NS, P_NS):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", T_NS, "link", "add", "h2t", "type", "veth", "peer", "name", "h2p",
             "netns", P_NS])
        for ns, dev, n in ((T_NS, "h2t", 1), (P_NS, "h2p", 2)):
            run(["ip", "-n", ns, "addr", "add", f"10.0.0.{n}/30", "dev", dev])
            run(["ip", "-n", ns, "addr", "add", f"fd00::{n}/64", "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        yield {"tmp": tmp, "daemons": daemons}
    finally:
        for d in daemons:
            d.stop()
        ns_cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def twill_cfg(peer_as, password=None, extra_peer=None, **kw):
    peers = [
        {"name": "p4", "address": "10.0.0.2", "as": peer_as, "holdTime": 9,
         "connectRetry": 1, "families": ["ipv4"]},
        {"name": "p6", "address": "fd00::2", "as": peer_as, "holdTime": 9,
         "connectRetry": 1, "families": ["ipv6"]},
    ]
    for p in peers:
        if password:
            p["password"] = password
        p.update(extra_peer or {})
    cfg = {"as": 65001, "routerId": "10.0.0.1", "holdTime": 9, "connectRetry": 1,
           "peers": peers,
           "originate": [{"prefix": "10.1.0.0/24", "communities": ["65001:100"],
                          "largeCommunities": ["65001:1:2"]},
                         "10.1.1.0/24", "fd01::/64"]}
    cfg.update(kw)
    return cfg


# ---------------------------------------------------------------- BIRD ----

def bird_conf(peer_as, password=None, extra=""):
    pw = f'password "{password}"; {extra}' if password else extra
    return f"""
router id 10.0.0.2;
protocol device {{ }}
protocol kernel k4 {{ ipv4 {{ export all; import none; }}; merge paths on; }}
protocol kernel k6 {{ ipv6 {{ export all; import none; }}; }}
protocol static s4 {{ ipv4; route 10.2.0.0/24 blackhole; route 10.2.1.0/24 blackhole; }}
protocol static s6 {{ ipv6; route fd02::/64 blackhole; }}
protocol bgp t4 {{
  local 10.0.0.2 as {peer_as}; neighbor 10.0.0.1 as 65001; {pw}
  hold time 9; connect retry time 1; connect delay time 1; error wait time 1, 5;
  ipv4 {{ import all; export all; next hop self; }};
}}
protocol bgp t6 {{
  local fd00::2 as {peer_as}; neighbor fd00::1 as 65001; {pw}
  hold time 9; connect retry time 1; connect delay time 1; error wait time 1, 5;
  ipv6 {{ import all; export all; next hop self; }};
}}
"""


class Bird:
    def __init__(self, topo, peer_as=65002, password=None, extra="", ns=P_NS, conf=None):
        need(BIRD, "BIRD 2 (bird2)")
        self.tmp = topo["tmp"]
        self.topo = topo
        self.ns = ns
        self.conf = self.tmp / f"bird-{ns}.conf"
        self.sock = self.tmp / f"bird-{ns}.ctl"
        self.conf.write_text(conf or bird_conf(peer_as, password, extra))
        self.start()

    def start(self):
        if self.sock.exists():
            self.sock.unlink()
        self.daemon = Daemon([BIRD, "-f", "-c", str(self.conf), "-s", str(self.sock),
                              "-P", str(self.tmp / f"bird-{self.ns}.pid")], self.ns,
                             self.tmp / f"bird-{self.ns}.log")
        self.topo["daemons"].append(self.daemon)
        wait_for(lambda: self.sock.exists() or self.daemon.proc.poll() is not None, 10,
                 "BIRD's control socket")
        assert self.daemon.proc.poll() is None, self.daemon.log.read_text()

    def c(self, *cmd):
        return run([BIRDC, "-s", str(self.sock), *cmd], check=False).stdout

    def has_route(self, prefix):
        out = self.c("show", "route", prefix, "all")
        return prefix in out and "BGP" in out and out


def start_twill(topo, cfg):
    t = Twill(T_NS, topo["tmp"], cfg)
    t.start()
    topo["daemons"].append(t.daemon)
    return t


def test_bird_ebgp_routes_both_ways(topo):
    bird = Bird(topo)
    t = start_twill(topo, twill_cfg(65002))
    try:
        wait_for(lambda: t.established("p4") and t.established("p6"), 20, "sessions up")
        # BIRD's routes reach twill's RIB and its kernel (protocol 118)
        wait_for(lambda: "10.2.0.0/24" in kroutes(T_NS), 10, "BIRD's IPv4 route in the kernel")
        r4 = kroutes(T_NS)["10.2.0.0/24"]
        assert r4["gateway"] == "10.0.0.2"
        wait_for(lambda: "fd02::/64" in kroutes(T_NS, "-6"), 10, "BIRD's IPv6 route")
        assert kroutes(T_NS, "-6")["fd02::/64"]["gateway"] == "fd00::2"
        best = t.route("10.2.0.0/24")["paths"][0]
        assert best["asPath"] == "65002" and best["from"] == "p4"
        # twill's routes reach BIRD with their attributes, and BIRD's kernel
        out = wait_for(lambda: bird.has_route("10.1.0.0/24"), 10, "twill's route in BIRD")
        assert "(65001,100)" in out and "(65001, 1, 2)" in out, out
        assert "BGP.as_path: 65001" in out, out
        wait_for(lambda: bird.has_route("fd01::/64"), 10, "twill's IPv6 route in BIRD")
        wait_for(lambda: json.loads(run(["ip", "-n", P_NS, "-j", "route", "show",
                                         "10.1.0.0/24"]).stdout), 10, "BIRD's kernel route")
        # BIRD re-exports twill's own routes back; twill must drop them (AS-path loop)
        assert t.route("10.1.0.0/24")["paths"][0]["from"] == "local"
        assert len(t.route("10.1.0.0/24")["paths"]) == 1
        # `twill bgp peers` / `routes` read the state file
        out = run([TWILL, "bgp", "peers", "--state", str(t.state)]).stdout
        assert "Established" in out and "p4" in out
        out = run([TWILL, "bgp", "routes", "--state", str(t.state), "-o", "json"]).stdout
        assert any(r["prefix"] == "10.2.0.0/24" for r in json.loads(out))

        # withdraw from twill's side (config reload)
        t.cfg["originate"] = [o for o in t.cfg["originate"] if o != "10.1.1.0/24"]
        t.reload()
        wait_for(lambda: not bird.has_route("10.1.1.0/24"), 10, "withdraw reaching BIRD")
        assert bird.has_route("10.1.0.0/24")
        # withdraw from BIRD's side
        bird.c("disable", "s4")
        wait_for(lambda: "10.2.0.0/24" not in kroutes(T_NS), 10, "BIRD's withdraw in the kernel")
        wait_for(lambda: t.route("10.2.0.0/24") is None, 5, "withdrawn route leaving the RIB")
        bird.c("enable", "s4")
        wait_for(lambda: "10.2.0.0/24" in kroutes(T_NS), 10, "BIRD's route back")

        # route refresh: BIRD asks (reload in), twill answers; twill asks (SIGUSR1), BIRD answers
        before = t.peer("p4")["refreshIn"]
        bird.c("reload", "in", "t4")
        wait_for(lambda: t.peer("p4")["refreshIn"] > before, 10, "ROUTE-REFRESH from BIRD")
        assert bird.has_route("10.1.0.0/24")
        upd = t.peer("p4")["updatesIn"]
        t.daemon.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: t.peer("p4")["updatesIn"] > upd, 10, "BIRD re-sending its routes")
        assert "10.2.0.0/24" in kroutes(T_NS)

        # session down (BIRD stops the protocol): routes leave twill's kernel
        bird.c("disable", "t4")
        wait_for(lambda: "10.2.0.0/24" not in kroutes(T_NS), 15, "routes removed on session down")
    except AssertionError:
        print(t.log())
        print(bird.daemon.log.read_text()[-3000:] if bird.daemon.log.exists() else "")
        raise


def test_bird_ibgp_and_md5(topo):
    bird = Bird(topo, peer_as=65001, password="s3cret")
    t = start_twill(topo, twill_cfg(65001, password="s3cret"))
    try:
        wait_for(lambda: t.established("p4") and t.established("p6"), 20, "MD5 iBGP sessions")
        assert t.peer("p4")["type"] == "iBGP"
        wait_for(lambda: "10.2.0.0/24" in kroutes(T_NS), 10, "iBGP route in the kernel")
        out = wait_for(lambda: bird.has_route("10.1.0.0/24"), 10, "twill's route in BIRD")
        assert "BGP.local_pref: 100" in out, out
    except AssertionError:
        print(t.log())
        raise


def test_bird_ttl_security(topo):
    """GTSM (RFC 5082) on both sides: up; BIRD without it (TTL 1): twill never accepts."""
    bird = Bird(topo, extra="ttl security on;")
    t = start_twill(topo, twill_cfg(65002, extra_peer={"ttlSecurity": 1}))
    wait_for(lambda: t.established("p4") and t.established("p6"), 20, "GTSM sessions")
    wait_for(lambda: bird.has_route("10.1.0.0/24"), 10, "twill's route in BIRD")
    t.daemon.stop()
    bird.daemon.stop()
    Bird(topo)
    t2 = start_twill(topo, twill_cfg(65002, extra_peer={"ttlSecurity": 1}))
    time.sleep(4)
    assert t2.peer("p4")["state"] != "Established", t2.peer("p4")


def test_md5_mismatch_keeps_session_down(topo):
    Bird(topo, password="right")
    t = start_twill(topo, twill_cfg(65002, password="wrong"))
    time.sleep(4)
    p = t.peer("p4")
    assert p and p["state"] != "Established", p


def test_graceful_restart_twill_restarts(topo):
    """twill restarts gracefully: its kernel routes stay while it is down, BIRD (helper)
    keeps twill's routes, and after the restart a route BIRD dropped meanwhile goes."""
    bird = Bird(topo, extra="graceful restart on; graceful restart time 60;")
    t = start_twill(topo, twill_cfg(65002, gracefulRestart=True, restartTime=60))
    try:
        wait_for(lambda: t.established("p4") and t.established("p6"), 20, "sessions up")
        wait_for(lambda: {"10.2.0.0/24", "10.2.1.0/24"} <= set(kroutes(T_NS)), 10,
                 "BIRD's routes in the kernel")
        wait_for(lambda: bird.has_route("10.1.0.0/24"), 10, "twill's route in BIRD")
        t.daemon.stop()
        # down: the kernel keeps the routes, BIRD keeps twill's (stale) routes
        time.sleep(1.5)
        assert {"10.2.0.0/24", "10.2.1.0/24"} <= set(kroutes(T_NS))
        assert "fd02::/64" in kroutes(T_NS, "-6")
        assert bird.has_route("10.1.0.0/24"), bird.c("show", "protocols", "all", "t4")
        # BIRD drops a route while twill is away
        bird.conf.write_text(bird.conf.read_text().replace(
            "route 10.2.1.0/24 blackhole;", ""))
        bird.c("configure")
        t2 = start_twill(topo, t.cfg)
        wait_for(lambda: t2.established("p4") and t2.established("p6"), 20, "sessions back")
        wait_for(lambda: (t2.state_json() or {}).get("restarting") is False, 15,
                 "End-of-RIB from every peer")
        assert "10.2.0.0/24" in kroutes(T_NS)
        wait_for(lambda: "10.2.1.0/24" not in kroutes(T_NS), 10, "the stale route removed")
        assert bird.has_route("10.1.0.0/24")
    except AssertionError:
        print(t.log())
        raise


def test_graceful_restart_helper(topo):
    """BIRD dies (no NOTIFICATION): twill keeps its routes, stale, until BIRD is back."""
    bird = Bird(topo, extra="graceful restart on; graceful restart time 30;")
    t = start_twill(topo, twill_cfg(65002))
    try:
        wait_for(lambda: t.established("p4"), 20, "session up")
        wait_for(lambda: "10.2.0.0/24" in kroutes(T_NS), 10, "BIRD's route in the kernel")
        bird.daemon.stop(signal.SIGKILL)
        wait_for(lambda: (t.peer("p4") or {}).get("gracefulRestartStale"), 10,
                 "the session down with stale routes")
        time.sleep(1)
        assert "10.2.0.0/24" in kroutes(T_NS)
        assert t.route("10.2.0.0/24")["paths"][0]["stale"]
        bird.start()
        wait_for(lambda: t.established("p4"), 20, "session back")
        wait_for(lambda: not t.route("10.2.0.0/24")["paths"][0]["stale"], 15,
                 "the route refreshed")
        wait_for(lambda: not t.peer("p4")["gracefulRestartStale"], 15, "End-of-RIB")
        assert "10.2.0.0/24" in kroutes(T_NS)
    except AssertionError:
        print(t.log())
        raise


# ----------------------------------------------------------------- FRR ----

def frr_conf(peer_as, password=None):
    pw = ""
    if password:
        pw = f" neighbor 10.0.0.1 password {password}\n neighbor fd00::1 password {password}\n"
    return f"""frr defaults traditional
hostname frr
log stdout debugging
router bgp {peer_as}
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor 10.0.0.1 remote-as 65001
 neighbor 10.0.0.1 timers 3 9
 neighbor 10.0.0.1 timers connect 1
 neighbor fd00::1 remote-as 65001
 neighbor fd00::1 timers 3 9
 neighbor fd00::1 timers connect 1
{pw} address-family ipv4 unicast
  network 10.3.0.0/24
  network 10.3.1.0/24
  neighbor 10.0.0.1 activate
 exit-address-family
 address-family ipv6 unicast
  network fd03::/64
  neighbor fd00::1 activate
 exit-address-family
"""


class Frr:
    def __init__(self, topo, peer_as=65002, password=None, conf_text=None):
        need(BGPD, "FRR (frr)")
        need(VTYSH, "FRR's vtysh")
        self.tmp = topo["tmp"]
        self.vty = self.tmp / "frr"
        self.vty.mkdir(exist_ok=True)
        os.chmod(self.vty, 0o777)
        conf = self.tmp / "bgpd.conf"
        conf.write_text(conf_text or frr_conf(peer_as, password))
        os.chmod(conf, 0o644)
        self.daemon = Daemon([BGPD, "-Z", "-f", str(conf), "-i", str(self.tmp / "bgpd.pid"),
                              "-z", str(self.tmp / "zserv.api"), "--vty_socket", str(self.vty),
                              "-u", "frr", "-g", "frr"], P_NS, self.tmp / "bgpd.log")
        topo["daemons"].append(self.daemon)
        wait_for(lambda: (self.vty / "bgpd.vty").exists(), 10, "bgpd's vty socket")

    def c(self, cmd):
        return run([VTYSH, "--vty_socket", str(self.vty), "-c", cmd], check=False,
                   timeout=20).stdout

    def j(self, cmd):
        try:
            return json.loads(self.c(cmd) or "{}")
        except json.JSONDecodeError:
            return {}

    def route(self, prefix, afi="ipv4"):
        r = self.j(f"show bgp {afi} unicast {prefix} json")
        return r if r.get("paths") else None


def test_frr_ebgp_routes_both_ways(topo):
    frr = Frr(topo)
    t = start_twill(topo, twill_cfg(65002))
    try:
        wait_for(lambda: t.established("p4") and t.established("p6"), 25, "sessions with FRR")
        wait_for(lambda: "10.3.0.0/24" in kroutes(T_NS), 10, "FRR's IPv4 route in the kernel")
        assert kroutes(T_NS)["10.3.0.0/24"]["gateway"] == "10.0.0.2"
        wait_for(lambda: "fd03::/64" in kroutes(T_NS, "-6"), 10, "FRR's IPv6 route")
        r = wait_for(lambda: frr.route("10.1.0.0/24"), 10, "twill's route in FRR")
        path = r["paths"][0]
        assert path["aspath"]["string"] == "65001", path
        assert "65001:100" in json.dumps(path), path
        wait_for(lambda: frr.route("fd01::/64", "ipv6"), 10, "twill's IPv6 route in FRR")
        # withdraw both ways
        t.cfg["originate"] = [o for o in t.cfg["originate"] if o != "10.1.1.0/24"]
        t.reload()
        wait_for(lambda: not frr.route("10.1.1.0/24"), 10, "twill's withdraw in FRR")
        run([VTYSH, "--vty_socket", str(frr.vty), "-c", "configure terminal", "-c",
             "router bgp 65002", "-c", "address-family ipv4 unicast", "-c",
             "no network 10.3.1.0/24"], check=False)
        wait_for(lambda: "10.3.1.0/24" not in kroutes(T_NS), 10, "FRR's withdraw in the kernel")
        # route refresh from FRR (soft in without soft-reconfiguration sends ROUTE-REFRESH)
        before = t.peer("p4")["refreshIn"]
        frr.c("clear bgp ipv4 unicast 10.0.0.1 soft in")
        wait_for(lambda: t.peer("p4")["refreshIn"] > before, 10, "ROUTE-REFRESH from FRR")
        assert frr.route("10.1.0.0/24")
    except AssertionError:
        print(t.log())
        print(frr.daemon.log.read_text()[-3000:])
        raise


def test_frr_md5(topo):
    frr = Frr(topo, password="s3cret")
    t = start_twill(topo, twill_cfg(65002, password="s3cret"))
    try:
        wait_for(lambda: t.established("p4"), 25, "MD5 session with FRR")
        wait_for(lambda: frr.route("10.1.0.0/24"), 10, "twill's route in FRR")
    except AssertionError:
        print(t.log())
        raise


# ------------------------------------------------------- route reflection ----

@pytest.fixture
def topo3(topo):
    """topo plus a third namespace R, linked to P (10.0.1.0/30) and to T (10.0.2.0/30)."""
    run(["ip", "netns", "add", R_NS])
    run(["ip", "-n", R_NS, "link", "set", "lo", "up"])
    run(["ip", "-n", P_NS, "link", "add", "h2pr", "type", "veth", "peer", "name", "h2rp",
         "netns", R_NS])
    run(["ip", "-n", T_NS, "link", "add", "h2tr", "type", "veth", "peer", "name", "h2rt",
         "netns", R_NS])
    for ns, dev, addr in ((P_NS, "h2pr", "10.0.1.1/30"), (R_NS, "h2rp", "10.0.1.2/30"),
                          (T_NS, "h2tr", "10.0.2.1/30"), (R_NS, "h2rt", "10.0.2.2/30")):
        run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    return topo


def bird_ibgp_conf(local, neighbor, other_net):
    """BIRD as an iBGP client; next hops on other_net resolve through `neighbor`."""
    return f"""
router id {local};
protocol device {{ }}
protocol static s4 {{ ipv4; route 10.2.0.0/24 blackhole; }}
protocol static nhs {{ ipv4; route {other_net} via {neighbor}; }}
protocol bgp up {{
  local {local} as 65001; neighbor {neighbor} as 65001;
  hold time 9; connect retry time 1; connect delay time 1; error wait time 1, 5;
  ipv4 {{ import all; export where proto = "s4"; }};
}}
"""


def frr_ibgp_conf(neighbors, rr_clients, network):
    n = "".join(f" neighbor {a} remote-as 65001\n neighbor {a} timers 3 9\n"
                f" neighbor {a} timers connect 1\n" for a in neighbors)
    af = "".join(f"  neighbor {a} activate\n" + (f"  neighbor {a} route-reflector-client\n"
                                                  if rr_clients else "") for a in neighbors)
    return f"""frr defaults traditional
hostname frr
router bgp 65001
 bgp router-id 10.0.0.2
 no bgp network import-check
 no bgp default ipv4-unicast
{n} address-family ipv4 unicast
  network {network}
{af} exit-address-family
"""


def test_frr_reflects_for_twill_and_bird(topo3):
    frr = Frr(topo3, conf_text=frr_ibgp_conf(["10.0.0.1", "10.0.1.2"], True, "10.3.0.0/24"))
    bird = Bird(topo3, ns=R_NS, conf=bird_ibgp_conf("10.0.1.2", "10.0.1.1", "10.0.0.0/30"))
    run(["ip", "-n", T_NS, "route", "add", "10.0.1.0/30", "via", "10.0.0.2"])
    cfg = {"as": 65001, "routerId": "10.0.0.1", "holdTime": 9, "connectRetry": 1,
           "peers": [{"name": "rr", "address": "10.0.0.2", "as": 65001}],
           "originate": ["10.1.0.0/24"]}
    t = start_twill(topo3, cfg)
    try:
        wait_for(lambda: t.established("rr"), 20, "iBGP session with the FRR reflector")
        # BIRD's route, reflected by FRR: ORIGINATOR_ID and CLUSTER_LIST set, next hop kept
        r = wait_for(lambda: t.route("10.2.0.0/24"), 20, "BIRD's route via the reflector")
        best = r["paths"][0]
        assert best["originatorId"] == "10.0.1.2", best
        assert best["clusterList"] == ["10.0.0.2"], best
        assert best["nextHop"] == "10.0.1.2", best
        wait_for(lambda: "10.2.0.0/24" in kroutes(T_NS), 10, "reflected route in the kernel")
        # 10.0.1.2 is not on T's networks: resolved through T's route to it
        assert kroutes(T_NS)["10.2.0.0/24"]["gateway"] == "10.0.0.2"
        # twill's route reaches BIRD through FRR
        out = wait_for(lambda: bird.has_route("10.1.0.0/24"), 20, "twill's route in BIRD")
        assert "BGP.originator_id: 10.0.0.1" in out, out
        assert "BGP.cluster_list: 10.0.0.2" in out, out
    except AssertionError:
        print(t.log())
        print(bird.c("show", "protocols", "all", "up"))
        print(frr.c("show bgp summary"))
        print(frr.c("show bgp ipv4 unicast"))
        raise


def test_twill_reflects_for_frr_and_bird(topo3):
    frr = Frr(topo3, conf_text=frr_ibgp_conf(["10.0.0.1"], False, "10.3.0.0/24"))
    bird = Bird(topo3, ns=R_NS, conf=bird_ibgp_conf("10.0.2.2", "10.0.2.1", "10.0.0.0/30"))
    cfg = {"as": 65001, "routerId": "10.0.0.1", "holdTime": 9, "connectRetry": 1,
           "peers": [{"name": "frr", "address": "10.0.0.2", "as": 65001,
                      "routeReflectorClient": True},
                     {"name": "bird", "address": "10.0.2.2", "as": 65001,
                      "routeReflectorClient": True}],
           "originate": ["10.1.0.0/24"]}
    t = start_twill(topo3, cfg)
    try:
        wait_for(lambda: t.established("frr") and t.established("bird"), 20, "client sessions")
        out = wait_for(lambda: bird.has_route("10.3.0.0/24"), 20, "FRR's route in BIRD")
        assert "BGP.originator_id: 10.0.0.2" in out, out
        assert "BGP.cluster_list: 10.0.0.1" in out, out
        assert "BGP.next_hop: 10.0.0.2" in out, out
        r = wait_for(lambda: frr.route("10.2.0.0/24"), 20, "BIRD's route in FRR")
        text = json.dumps(r["paths"][0])
        assert "10.0.2.2" in text and "10.0.0.1" in text, text
        assert frr.route("10.1.0.0/24")  # and twill's own
    except AssertionError:
        print(t.log())
        print(bird.c("show", "route", "all"))
        raise


def bird_ebgp_conf(local, neighbor, routes):
    static = " ".join(f"route {r} blackhole;" for r in routes)
    return f"""
router id {local};
protocol device {{ }}
protocol static s4 {{ ipv4; {static} }}
protocol bgp up {{
  local {local} as 65002; neighbor {neighbor} as 65001;
  hold time 9; connect retry time 1; connect delay time 1; error wait time 1, 5;
  ipv4 {{ import all; export where proto = "s4"; }};
}}
"""


def test_ecmp_from_two_bird_peers(topo3):
    """The same prefix from two equally good eBGP peers: one kernel route, two next hops."""
    b1 = Bird(topo3, conf=bird_ebgp_conf("10.0.0.2", "10.0.0.1", ["10.5.0.0/24"]))
    b2 = Bird(topo3, ns=R_NS, conf=bird_ebgp_conf("10.0.2.2", "10.0.2.1",
                                                   ["10.5.0.0/24", "10.6.0.0/24"]))
    cfg = {"as": 65001, "routerId": "10.0.0.1", "holdTime": 9, "connectRetry": 1,
           "peers": [{"name": "b1", "address": "10.0.0.2", "as": 65002},
                     {"name": "b2", "address": "10.0.2.2", "as": 65002}]}
    t = start_twill(topo3, cfg)
    try:
        wait_for(lambda: t.established("b1") and t.established("b2"), 20, "both sessions")

        def hops():
            r = kroutes(T_NS).get("10.5.0.0/24")
            if not r:
                return None
            return sorted(h["gateway"] for h in r.get("nexthops", [])) or [r.get("gateway")]
        wait_for(lambda: hops() == ["10.0.0.2", "10.0.2.2"], 15, "an ECMP route")
        assert kroutes(T_NS)["10.6.0.0/24"]["gateway"] == "10.0.2.2"
        wait_for(lambda: t.route("10.5.0.0/24")["installed"] == 2, 5, "the state")
        b2.c("disable", "s4")
        wait_for(lambda: hops() == ["10.0.0.2"], 10, "back to one next hop")
        wait_for(lambda: "10.6.0.0/24" not in kroutes(T_NS), 10, "10.6.0.0/24 withdrawn")
    except AssertionError:
        print(t.log())
        raise


# A scripted peer speaking raw BGP, for what no real daemon sends: malformed UPDATEs.
RAW_PEER = r'''
import socket, struct, sys
def msg(t, body):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body
def recv_msg(c):
    h = b""
    while len(h) < 19:
        d = c.recv(19 - len(h))
        if not d:
            return None, None
        h += d
    n, t = struct.unpack("!HB", h[16:19])
    b = b""
    while len(b) < n - 19:
        d = c.recv(n - 19 - len(b))
        if not d:
            return None, None
        b += d
    return t, b
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.0.2", 179)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20)
# MP IPv4, 4-octet AS, graceful restart 30 s for IPv4 with forwarding kept
caps = bytes([1, 4, 0, 1, 0, 1, 65, 4]) + struct.pack("!I", 65002) + \
    bytes([64, 6, 0x00, 30, 0, 1, 1, 0x80])
def hello(sock):
    sock.sendall(msg(1, struct.pack("!BHHIB", 4, 65002, 9, 0x0a000002, len(caps) + 2) +
                     bytes([2, len(caps)]) + caps))
    sock.sendall(msg(4, b""))
hello(c)
old = []
attrs_ok = bytes([0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea, 0x40, 3, 4, 10, 0, 0, 2])
attrs_bad = bytes([0x40, 1, 1, 5]) + attrs_ok[4:]   # ORIGIN 5: treat-as-withdraw
nlri = bytes([24, 10, 7, 0])
def update(attrs, nl):
    return msg(2, struct.pack("!HH", 0, len(attrs)) + attrs + nl)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "valid":
        c.sendall(update(attrs_ok, nlri))
    elif cmd == "taw":
        c.sendall(update(attrs_bad, nlri))
    elif cmd == "eor":
        c.sendall(msg(2, bytes([0, 0, 0, 0])))
    elif cmd == "reconnect":
        # a second connection while the first stays open and silent, as from a peer
        # that restarted without its old connection being closed
        n = socket.create_connection(("10.0.0.1", 179), timeout=20,
                                     source_address=("10.0.0.2", 0))
        hello(n)
        while True:
            t, b = recv_msg(n)
            if t is None or t in (3, 4):
                break
        if t == 4:
            old.append(c)
            c = n
            print("up", flush=True)
        else:
            print("notification", b[0] if b else -1, b[1] if b else -1, flush=True)
        continue
    elif cmd == "reset":
        c.sendall(update(attrs_ok, bytes([40, 10, 7, 0, 0, 0, 0])))   # /40: NLRI error
        while True:
            t, b = recv_msg(c)
            if t is None or t == 3:
                break
        print("notification", b[0] if b else -1, b[1] if b else -1, flush=True)
        break
    print("ok", flush=True)
'''


def test_peer_reconnects_while_established(topo):
    """A second connection from an established peer: soon after Established it is a
    collision (Cease 6/7, the session stays); later it is a restart (RFC 4724 §4.2: the
    old session ends, its routes stay stale until End-of-RIB on the new one)."""
    cfg = twill_cfg(65002)
    cfg["peers"] = cfg["peers"][:1]
    cfg["peers"][0]["passive"] = False
    raw = subprocess.Popen(["ip", "netns", "exec", P_NS, "/usr/bin/python3", "-c", RAW_PEER],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t = start_twill(topo, cfg)

    def say(cmd):
        raw.stdin.write(cmd + "\n")
        raw.stdin.flush()
        return raw.stdout.readline().split()
    try:
        wait_for(lambda: t.established("p4"), 20, "session with the raw peer")
        up_at = time.monotonic()
        assert say("valid") == ["ok"]
        wait_for(lambda: "10.7.0.0/24" in kroutes(T_NS), 10, "the route")
        assert say("reconnect") == ["notification", "6", "7"]
        assert t.established("p4") and t.peer("p4")["flaps"] == 0
        time.sleep(max(0, up_at + 5.5 - time.monotonic()))
        assert say("reconnect") == ["up"]
        wait_for(lambda: t.peer("p4")["flaps"] == 1 and t.established("p4"), 10,
                 "the new session")
        assert "10.7.0.0/24" in kroutes(T_NS)
        wait_for(lambda: t.route("10.7.0.0/24")["paths"][0]["stale"], 5, "stale route")
        assert say("valid") == ["ok"]
        assert say("eor") == ["ok"]
        wait_for(lambda: not t.peer("p4")["gracefulRestartStale"], 10, "End-of-RIB")
        assert not t.route("10.7.0.0/24")["paths"][0]["stale"]
        assert "10.7.0.0/24" in kroutes(T_NS)
    except AssertionError:
        print(t.log())
        raise
    finally:
        raw.kill()
        raw.wait(timeout=10)


def test_malformed_updates_from_a_peer(topo):
    cfg = twill_cfg(65002)
    cfg["peers"] = cfg["peers"][:1]
    raw = subprocess.Popen(["ip", "netns", "exec", P_NS, "/usr/bin/python3", "-c", RAW_PEER],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t = start_twill(topo, cfg)

    def say(cmd):
        raw.stdin.write(cmd + "\n")
        raw.stdin.flush()
        return raw.stdout.readline().split()
    try:
        wait_for(lambda: t.established("p4"), 20, "session with the raw peer")
        assert say("valid") == ["ok"]
        wait_for(lambda: "10.7.0.0/24" in kroutes(T_NS), 10, "the valid route")
        # RFC 7606: a bad ORIGIN withdraws the route, the session stays up
        assert say("taw") == ["ok"]
        wait_for(lambda: "10.7.0.0/24" not in kroutes(T_NS), 10, "treat-as-withdraw")
        assert t.established("p4")
        assert say("valid") == ["ok"]
        wait_for(lambda: "10.7.0.0/24" in kroutes(T_NS), 10, "the route again")
        # an NLRI that cannot be parsed resets the session with UPDATE error 3/10
        assert say("reset") == ["notification", "3", "10"]
        wait_for(lambda: "10.7.0.0/24" not in kroutes(T_NS), 10, "routes gone with the session")
        wait_for(lambda: "invalid network field" in t.peer("p4")["lastError"], 5,
                 "the reason in the state")
    except AssertionError:
        print(t.log())
        raise
    finally:
        raw.kill()
        raw.wait(timeout=10)


@pytest.mark.parametrize("cfg,msg", [
    ({"routerId": "10.0.0.1"}, "config.as: missing"),
    ({"as": 65001, "routerId": "fd00::1"}, "config.routerId: must be an IPv4 address"),
    ({"as": 65001, "routerId": "10.0.0.1", "peers": [{"address": "10.0.0.300", "as": 1}]},
     "peers[0].address: not an IP address"),
    ({"as": 65001, "routerId": "10.0.0.1", "peers": [{"address": "10.0.0.2"}]},
     "peers[0].as: missing"),
    ({"as": 65001, "routerId": "10.0.0.1", "peers": [{"address": "10.0.0.2", "as": 1,
                                                       "holdTime": 2}]},
     "peers[0].holdTime: 0 or at least 3"),
    ({"as": 65001, "routerId": "10.0.0.1",
      "originate": [{"prefix": "10.1.0.0/24", "communities": ["65001:70000"]}]},
     "originate[0].communities[0]: not ASN:VALUE"),
    ({"as": 65001, "routerId": "10.0.0.1", "originate": ["10.1.0.0/33"]},
     "originate[0].prefix: not a CIDR prefix"),
])
def test_run_config_errors(tmp_path, cfg, msg):
    """A bad config is refused before anything starts, naming the field."""
    path = tmp_path / "bgp.json"
    path.write_text(json.dumps(cfg))
    p = run([TWILL, "bgp", "run", "--config", str(path)], check=False, timeout=10)
    assert p.returncode == 1, p.stdout + p.stderr
    assert msg in p.stderr, p.stderr
