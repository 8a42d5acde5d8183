"""RFC 6793 with a 2-octet-AS peer: BIRD 2 speaks to twill (AS 65001) over two sessions,
"new" (BIRD in AS 4200000002, 4-octet capability) and "old" (AS 65002, `enable as4 off`).

On "old", BIRD's AS_PATH carries AS_TRANS (23456) for 4-octet ASes and AS4_PATH the real
ones, and twill must merge them (RFC 6793 §4.2.3); what twill learned over "new" (a path
of 4-octet ASes) goes out on "old" as AS_PATH with AS_TRANS plus AS4_PATH, which BIRD
merges.  Without AS4_PATH handling both sides show 23456 instead of the real ASes.
Namespaces h23<pid>a (twill) and h23<pid>b (BIRD), joined by a veth (10.0.0.0/29: "new" is
.1-.2, "old" .4-.3); every daemon is stopped by its pid at the end.
"""
import os
import re

import pytest

from nspair import namespaces, veth
from test_bgp_interop import Bird, Twill, kroutes, wait_for

PFX = f"h23{os.getpid() % 100000}"
A_NS, B_NS = PFX + "a", PFX + "b"
NEW_AS = 4200000002
FAR_AS = 4200000099  # prepended by BIRD's export filters


@pytest.fixture
def pair():
    with namespaces(PFX, (A_NS, B_NS)) as env:
        veth((A_NS, "h23a"), (B_NS, "h23b"), ["10.0.0.1/29", "10.0.0.4/29"],
             ["10.0.0.2/29", "10.0.0.3/29"])
        yield env


TIMERS = "hold time 9; connect retry time 1; connect delay time 1; error wait time 1, 5;"
BIRD_CONF = f"""
router id 10.0.0.2;
protocol device {{ }}
protocol static s4 {{ ipv4; route 10.2.0.0/24 blackhole; route 10.3.0.0/24 blackhole; }}
protocol bgp new {{
  local 10.0.0.2 as {NEW_AS}; neighbor 10.0.0.1 as 65001; {TIMERS}
  ipv4 {{ import all; export filter {{
    if net != 10.2.0.0/24 then reject; bgp_path.prepend({FAR_AS}); accept; }}; }};
}}
protocol bgp old {{
  local 10.0.0.3 as 65002; neighbor 10.0.0.4 as 65001; enable as4 off; {TIMERS}
  ipv4 {{ import all; export filter {{
    if net != 10.3.0.0/24 then reject; bgp_path.prepend({FAR_AS}); accept; }}; }};
}}
"""


def bird_path(bird, prefix):
    """BGP.as_path of prefix as BIRD's "old" session learned it, or None."""
    m = re.search(r"BGP\.as_path: *(.*)", bird.c("show", "route", prefix, "protocol", "old", "all"))
    return m and m.group(1).strip()


def test_as4_with_a_two_octet_bird(pair):
    bird = Bird(pair, ns=B_NS, conf=BIRD_CONF)
    peer = {"as": 0, "holdTime": 9, "connectRetry": 1}
    t = Twill(A_NS, pair["tmp"], {
        "as": 65001, "routerId": "10.0.0.1", "holdTime": 9, "connectRetry": 1,
        "peers": [dict(peer, name="new", address="10.0.0.2", **{"as": NEW_AS}),
                  dict(peer, name="old", address="10.0.0.3", localAddress="10.0.0.4",
                       **{"as": 65002})],
        "originate": ["10.1.0.0/24"]})
    t.start()
    pair["daemons"].append(t.daemon)
    try:
        wait_for(lambda: t.established("new") and t.established("old"), 20, "both sessions")
        assert "as4" in t.peer("new")["capabilities"]
        assert "as4" not in t.peer("old")["capabilities"], t.peer("old")
        # old -> twill: AS_PATH "65002 23456" + AS4_PATH "65002 4200000099", merged
        r = wait_for(lambda: t.route("10.3.0.0/24"), 10, "BIRD's route over the old session")
        assert r["paths"][0]["asPath"] == f"65002 {FAR_AS}", r
        assert "10.3.0.0/24" in kroutes(A_NS)
        # new -> twill -> old: BIRD's old session gets AS_PATH "65001 23456 23456" and
        # AS4_PATH with the real ASes, and merges them
        r = wait_for(lambda: t.route("10.2.0.0/24"), 10, "BIRD's route over the new session")
        assert r["paths"][0]["asPath"] == f"{NEW_AS} {FAR_AS}", r
        out = wait_for(lambda: bird_path(bird, "10.2.0.0/24"), 10,
                       "twill's re-announcement on the old session")
        assert out == f"65001 {NEW_AS} {FAR_AS}", out
        assert wait_for(lambda: bird_path(bird, "10.1.0.0/24"), 10, "twill's own route") == "65001"
    except AssertionError:
        print(t.log())
        print(bird.c("show", "protocols", "all"))
        print(bird.daemon.log.read_text()[-3000:])
        raise
