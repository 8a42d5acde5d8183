"""BFD (RFC 5880/5881) tied to twill's BGP sessions, against BIRD 2 and FRR's bfdd.

Two namespaces (twill, peer) joined by a veth, named h8f<pid>t / h8f<pid>p.  The peer
runs BIRD 2 (`protocol bfd` + `bfd on`) or FRR (zebra + bfdd + bgpd, `neighbor X bfd`),
both at 300 ms x 3 like twill's default; the BGP hold time is 30 s.  Once BFD is Up and
BGP established, the link is cut silently (an nftables drop rule in the peer's
namespace, both directions): twill's session must go down and the learned route leave
its kernel in well under the hold time (< 1.5 s), and the peer must see BFD and BGP go
down too.  Removing the rule brings everything back.  Helpers come from
test_bgp_interop.py; every wait has a deadline and every daemon is killed by its pid.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import TWILL, run
from test_bgp_interop import BGPD, BIRD, VTYSH, Bird, Daemon, Twill, kroutes, need, wait_for

PFX = f"h8f{os.getpid() % 100000}"
T_NS, P_NS = PFX + "t", PFX + "p"
ZEBRA, BFDD = "/usr/lib/frr/zebra", "/usr/lib/frr/bfdd"
CUT_LIMIT = 1.5  # seconds from the cut to the route leaving twill's kernel


def ns_cleanup():
    for ns in (T_NS, P_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


SETUP = ["netns add {t}", "netns add {p}", "-n {t} link set lo up", "-n {p} link set lo up",
         "-n {t} link add h8t type veth peer name h8p netns {p}",
         "-n {t} addr add 10.0.0.1/30 dev h8t", "-n {p} addr add 10.0.0.2/30 dev h8p",
         "-n {t} addr add fd00::1/64 dev h8t nodad", "-n {p} addr add fd00::2/64 dev h8p nodad",
         "-n {t} link set h8t up", "-n {p} link set h8p up"]


@pytest.fixture
def topo():
    """The twill and peer namespaces joined by a veth (10.0.0.0/30, fd00::/64)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ns_cleanup()
    tmp = Path(tempfile.mkdtemp(prefix=PFX + "-"))
    os.chmod(tmp, 0o777)
    daemons = []
    try:
        for cmd in SETUP:
            run(["ip", *cmd.format(t=T_NS, p=P_NS).split()])
        yield {"tmp": tmp, "daemons": daemons}
    finally:
        for d in reversed(daemons):
            d.stop()
        ns_cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def start_twill(topo, peer_as, v6=False):
    peers = [{"name": "p4", "address": "10.0.0.2", "as": peer_as, "bfd": True,
              "families": ["ipv4"]}]
    if v6:
        peers.append({"name": "p6", "address": "fd00::2", "as": peer_as,
                      "bfd": {"minTx": 300, "minRx": 300, "multiplier": 3},
                      "families": ["ipv6"]})
    cfg = {"as": 65001, "routerId": "10.0.0.1", "holdTime": 30, "connectRetry": 1,
           "peers": peers, "originate": ["10.1.0.0/24", "fd01::/64"]}
    t = Twill(T_NS, topo["tmp"], cfg)
    t.start()
    topo["daemons"].append(t.daemon)
    return t


def bfd_up(t, names=("p4",)):
    for n in names:
        p = t.established(n)
        if not p or (p.get("bfd") or {}).get("state") != "Up":
            return None
    return True


CUT = """table inet h8cut {
  chain in { type filter hook input priority -10; ip saddr 10.0.0.1 drop; ip6 saddr fd00::1 drop; }
  chain out { type filter hook output priority -10; ip daddr 10.0.0.1 drop; ip6 daddr fd00::1 drop; }
}
"""


def cut(on):
    """Drop everything between the peer and twill, in the peer's namespace: no signal."""
    if on:
        run(["ip", "netns", "exec", P_NS, "nft", "-f", "-"], input=CUT)
    else:
        run(["ip", "netns", "exec", P_NS, "nft", "delete", "table", "inet", "h8cut"])


def fast(t, name):
    b = (t.peer(name) or {}).get("bfd") or {}
    return (b.get("txIntervalMs"), b.get("detectTimeMs"), b.get("remoteMultiplier")) == \
        (300, 900, 3)


def learned(prefixes):
    have = set(kroutes(T_NS)) | set(kroutes(T_NS, "-6"))
    return [p for p in prefixes if p in have]


def cut_and_measure(t, prefixes):
    """Cut the link; seconds until all of `prefixes` have left twill's kernel."""
    assert learned(prefixes) == list(prefixes)
    t0 = time.monotonic()
    cut(True)
    deadline = t0 + 10
    while learned(prefixes) and time.monotonic() < deadline:
        time.sleep(0.02)
    took = time.monotonic() - t0
    assert not learned(prefixes), "routes stayed after the cut"
    return took


def check_twill_down(t, took, names=("p4",)):
    assert took < CUT_LIMIT, f"routes left twill's kernel {took:.2f} s after the cut"
    for n in names:
        # the state file follows within 50 ms
        p = wait_for(lambda: (t.peer(n) or {}).get("state") != "Established" and t.peer(n), 1,
                     f"{n} not Established in the state file")
        assert "BFD down" in p["lastError"], p
        assert p["bfd"]["state"] == "Down", p["bfd"]
        assert p["bfd"]["localDiag"] == "Control Detection Time Expired", p["bfd"]


# ---------------------------------------------------------------- BIRD ----

BIRD_CONF = """
router id 10.0.0.2;
protocol device { }
protocol kernel k4 { ipv4 { export all; import none; }; }
protocol kernel k6 { ipv6 { export all; import none; }; }
protocol static s4 { ipv4; route 10.2.0.0/24 blackhole; }
protocol static s6 { ipv6; route fd02::/64 blackhole; }
protocol bfd {
  interface "*" { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; };
}
protocol bgp t4 {
  local 10.0.0.2 as 65002; neighbor 10.0.0.1 as 65001;
  hold time 30; connect retry time 1; connect delay time 1; error wait time 1, 5;
  bfd on;
  ipv4 { import all; export all; next hop self; };
}
protocol bgp t6 {
  local fd00::2 as 65002; neighbor fd00::1 as 65001;
  hold time 30; connect retry time 1; connect delay time 1; error wait time 1, 5;
  bfd on;
  ipv6 { import all; export all; next hop self; };
}
"""


def bird_bfd_states(bird):
    """BIRD's BFD sessions to twill: {address: 'Up' | 'Down' | ...}."""
    out = {}
    for line in bird.c("show", "bfd", "sessions").splitlines():
        f = line.split()
        if f and f[0] in ("10.0.0.1", "fd00::1") and len(f) > 2:
            out[f[0]] = f[2]
    return out


def bird_bgp_up(bird):
    return "Established" in bird.c("show", "protocols", "t4", "t6")


def test_bird_bfd(topo):
    need(BIRD, "BIRD 2 (bird2)")
    bird = Bird(topo, ns=P_NS, conf=BIRD_CONF)
    t = start_twill(topo, 65002, v6=True)
    both, routes = ("p4", "p6"), ("10.2.0.0/24", "fd02::/64")
    try:
        wait_for(lambda: bfd_up(t, both), 20, "BGP established and BFD Up with BIRD")
        wait_for(lambda: set(bird_bfd_states(bird).values()) == {"Up"}, 5,
                 "BIRD's BFD sessions Up")
        assert len(bird_bfd_states(bird)) == 2
        wait_for(lambda: learned(routes) == list(routes), 10, "BIRD's routes in twill's kernel")
        for n in both:  # the Poll Sequences after Up bring both sides to 300 ms x 3
            wait_for(lambda: fast(t, n), 5, f"{n}: 300 ms, detection 900 ms")
        out = run([TWILL, "bgp", "peers", "--state", str(t.state)]).stdout
        assert "BFD" in out.splitlines()[0] and " Up " in out, out

        took = cut_and_measure(t, routes)
        check_twill_down(t, took, both)
        # BIRD sees twill's silence the same way
        wait_for(lambda: set(bird_bfd_states(bird).values()) == {"Down"}, 3,
                 "BIRD's BFD sessions Down")
        wait_for(lambda: not bird_bgp_up(bird), 3, "BIRD's BGP sessions down")
        print(f"BIRD: routes gone from twill's kernel {took:.3f} s after the cut")

        cut(False)
        wait_for(lambda: bfd_up(t, both), 25, "BFD and BGP back after the cut")
        wait_for(lambda: learned(routes) == list(routes), 10, "BIRD's routes back")
    except AssertionError:
        print(t.log())
        print(bird.c("show", "bfd", "sessions"), bird.c("show", "protocols", "all", "t4"))
        raise


# ----------------------------------------------------------------- FRR ----

FRR_CONF = """frr defaults traditional
hostname frr
log stdout informational
router bgp 65002
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.1 remote-as 65001
 neighbor 10.0.0.1 timers 10 30
 neighbor 10.0.0.1 timers connect 1
 neighbor 10.0.0.1 bfd
 address-family ipv4 unicast
  network 10.3.0.0/24
 exit-address-family
"""


class FrrBfd:
    """zebra, bfdd and bgpd in the peer's namespace, sharing one zserv socket."""

    def __init__(self, topo):
        for path, what in ((BGPD, "FRR (frr)"), (ZEBRA, "FRR's zebra"), (BFDD, "FRR's bfdd"),
                           (VTYSH, "FRR's vtysh")):
            need(path, what)
        tmp = topo["tmp"]
        self.vty = tmp / "frr"
        self.vty.mkdir(exist_ok=True)
        os.chmod(self.vty, 0o777)
        zs = str(tmp / "zserv.api")
        common = ["-z", zs, "--vty_socket", str(self.vty), "-u", "frr", "-g", "frr"]
        self.daemons = {}
        for name, conf, extra in (("zebra", "", []),
                                  ("bfdd", "", ["--bfdctl", str(tmp / "bfdd.sock")]),
                                  ("bgpd", FRR_CONF, [])):
            cf = tmp / f"{name}.conf"
            cf.write_text(conf)
            os.chmod(cf, 0o644)
            binary = {"zebra": ZEBRA, "bfdd": BFDD, "bgpd": BGPD}[name]
            d = Daemon([binary, "-f", str(cf), "-i", str(tmp / f"{name}.pid"), *common, *extra],
                       P_NS, tmp / f"{name}.log")
            topo["daemons"].append(d)
            self.daemons[name] = d
            wait_for(lambda n=name: (self.vty / f"{n}.vty").exists()
                     or self.daemons[n].proc.poll() is not None, 10, f"{name}'s vty socket")
            assert d.proc.poll() is None, d.log.read_text()[-2000:]

    def j(self, cmd):
        out = run([VTYSH, "--vty_socket", str(self.vty), "-c", cmd], check=False,
                  timeout=20).stdout
        try:
            return json.loads(out or "{}")
        except json.JSONDecodeError:
            return {}

    def bfd_status(self):
        peers = self.j("show bfd peers json")
        return next((p.get("status") for p in peers if isinstance(peers, list)
                     and p.get("peer") == "10.0.0.1"), None)

    def bgp_state(self):
        return self.j("show bgp neighbors 10.0.0.1 json").get("10.0.0.1", {}).get("bgpState")

    def logs(self):
        return "\n".join(f"--- {n}\n" + d.log.read_text()[-1500:]
                         for n, d in self.daemons.items() if d.log.exists())


def test_frr_bfd(topo):
    frr = FrrBfd(topo)
    t = start_twill(topo, 65002)
    try:
        wait_for(lambda: bfd_up(t), 25, "BGP established and BFD Up with FRR")
        wait_for(lambda: frr.bfd_status() == "up", 5, "bfdd's session up")
        wait_for(lambda: "10.3.0.0/24" in kroutes(T_NS), 10, "FRR's route in twill's kernel")
        wait_for(lambda: fast(t, "p4"), 5, "300 ms, detection 900 ms")

        took = cut_and_measure(t, ["10.3.0.0/24"])
        check_twill_down(t, took)
        wait_for(lambda: frr.bfd_status() == "down", 3, "bfdd's session down")
        wait_for(lambda: frr.bgp_state() != "Established", 3, "FRR's BGP session down")
        print(f"FRR: route gone from twill's kernel {took:.3f} s after the cut")

        cut(False)
        wait_for(lambda: bfd_up(t), 25, "BFD and BGP back after the cut")
        wait_for(lambda: "10.3.0.0/24" in kroutes(T_NS), 10, "FRR's route back")
    except AssertionError:
        print(t.log())
        print(frr.j("show bfd peers json"), frr.logs())
        raise


# -------------------------------------------------------------- config ----

def bad_peer(bfd):
    return {"as": 65001, "routerId": "10.0.0.1",
            "peers": [{"address": "10.0.0.2", "as": 65002, "bfd": bfd}]}


@pytest.mark.parametrize("bfd,msg", [
    ("yes", "peers[0].bfd: true, false or {minTx, minRx, multiplier}"),
    ({"minTx": 5}, "peers[0].bfd.minTx: 5 out of range 10..60000"),
    ({"minRx": "300"}, "peers[0].bfd.minRx: not an integer"),
    ({"multiplier": 0}, "peers[0].bfd.multiplier: 0 out of range 1..255"),
])
def test_bfd_config_errors(tmp_path, bfd, msg):
    """A bad bfd option is refused before anything starts (nothing is bound or sent)."""
    path = tmp_path / "bgp.json"
    path.write_text(json.dumps(bad_peer(bfd)))
    p = run([TWILL, "bgp", "run", "--config", str(path)], check=False, timeout=10)
    assert p.returncode == 1, p.stdout + p.stderr
    assert msg in p.stderr, p.stderr
