"""The agent's BGP configuration against real sessions: `twill agent --routing bgp` for
one Node in namespace h23<pid>n, and three `twill bgp run` routers in h23<pid>p (10.0.0.2
AS 65002, 10.0.0.3 AS 65003, 10.0.0.4 AS 65004), joined by a veth (10.0.0.0/29).

Checked on the routers: a BGPPeer's password from a Secret (data, base64) sets up TCP MD5;
the twill.io/bfd annotation runs BFD; keepOriginalNextHop passes what another router
announced on with its own next hop; maxRestartTime is the graceful restart time that peer
keeps our routes after the agent dies; BGPConfiguration serviceClusterIPs and
serviceExternalIPs are announced; a BGPAdvertisement with aggregationLength announces the
aggregate instead of the /32, and with `peers` only to the named BGPPeer.  Bad values are
errors on their own object (file, object, field, why) while the other sessions run.
"""
import base64
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import TWILL
from nspair import namespaces, veth
from test_bgp_interop import Twill, wait_for

PFX = f"h23{os.getpid() % 100000}"
N_NS, P_NS = PFX + "n", PFX + "p"

MANIFEST = f"""\
apiVersion: v1
kind: Node
metadata: {{name: n1}}
spec: {{podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}}
status: {{addresses: [{{type: InternalIP, address: 10.0.0.1}}]}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec:
  asNumber: 65001
  nodeMeshMaxRestartTime: 120s
  serviceClusterIPs: [{{cidr: 10.96.0.0/12}}]
  serviceExternalIPs: [{{cidr: 192.0.2.0/24}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: bgp-secrets, namespace: kube-system}}
data: {{r2: {base64.b64encode(b"s3cret-r2").decode()}}}
stringData: {{unused: x}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata:
  name: r2
  annotations: {{twill.io/bfd: "true"}}
spec:
  peerIP: 10.0.0.2
  asNumber: 65002
  keepOriginalNextHop: true
  password: {{secretKeyRef: {{name: bgp-secrets, key: r2}}}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {{name: r3}}
spec: {{peerIP: 10.0.0.3, asNumber: 65003, maxRestartTime: 3s}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {{name: r4}}
spec: {{peerIP: 10.0.0.4, asNumber: 65004}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {{name: bad-key}}
spec:
  peerIP: 10.0.0.5
  asNumber: 65005
  password: {{secretKeyRef: {{name: bgp-secrets, key: nope}}}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {{name: bad-restart}}
spec: {{peerIP: 10.0.0.6, asNumber: 65006, maxRestartTime: 2h}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata:
  name: bad-bfd
  annotations: {{twill.io/bfd: "yes"}}
spec: {{peerIP: 10.0.0.7, asNumber: 65007}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: pool, namespace: metallb-system}}
spec: {{addresses: [192.168.50.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: agg, namespace: metallb-system}}
spec: {{ipAddressPools: [pool], aggregationLength: 28, peers: [r4]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bad-peers, namespace: metallb-system}}
spec: {{ipAddressPools: [pool], peers: [r2, nobody]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bad-agg, namespace: metallb-system}}
spec: {{ipAddressPools: [pool], aggregationLength: 16}}
---
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: default}}
spec:
  type: LoadBalancer
  selector: {{app: x}}
  ports: [{{protocol: TCP, port: 80}}]
status: {{loadBalancer: {{ingress: [{{ip: 192.168.50.5}}]}}}}
"""


@pytest.fixture
def setup():
    with namespaces(PFX, (N_NS, P_NS)) as env:
        veth((N_NS, "h23n"), (P_NS, "h23p"), ["10.0.0.1/29"],
             ["10.0.0.2/29", "10.0.0.3/29", "10.0.0.4/29"])
        (env["tmp"] / "manifests").mkdir()
        (env["tmp"] / "manifests" / "bgp.yaml").write_text(MANIFEST)
        (env["tmp"] / "state").mkdir()
        yield env


def router(s, n, **peer):
    """`twill bgp run` at 10.0.0.n (AS 6500n) peering with the node."""
    cfg = {"as": 65000 + n, "routerId": f"10.0.0.{n}", "holdTime": 9, "connectRetry": 1,
           "listen4": f"10.0.0.{n}",
           "peers": [dict({"name": "node", "address": "10.0.0.1", "as": 65001,
                           "localAddress": f"10.0.0.{n}", "holdTime": 9, "connectRetry": 1},
                          **peer)],
           "originate": [f"10.{n}0.0.0/24"]}
    d = s["tmp"] / f"r{n}"  # config, state and log of each, side by side in one namespace
    d.mkdir(mode=0o777)
    t = Twill(P_NS, d, cfg)
    t.start()
    s["daemons"].append(t.daemon)
    return t


def agent_state(s):
    try:
        return json.loads((s["tmp"] / "state" / "bgp.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def prefixes(t):
    return {r["prefix"]: r for r in (t.state_json() or {}).get("routes", [])}


def test_agent_bgp_config(setup):
    s = setup
    r2 = router(s, 2, password="s3cret-r2", bfd=True)
    r3 = router(s, 3)
    r4 = router(s, 4)
    log = open(s["tmp"] / "agent.log", "w")
    agent = subprocess.Popen(
        ["ip", "netns", "exec", N_NS, TWILL, "agent", "--node", "n1", "--manifests",
         str(s["tmp"] / "manifests"), "--state-dir", str(s["tmp"] / "state"), "--routing", "bgp",
         "--proxy", "none", "--policy", "off", "--log-level", "debug"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    s["procs"].append(agent)
    try:
        wait_for(lambda: all(t.established("node") for t in (r2, r3, r4)), 20,
                 "sessions from the agent to r2 (MD5 from the Secret), r3 and r4")
        # bad values: an error each, naming the object, the file and why
        errs = wait_for(lambda: len(agent_state(s).get("errors", [])) >= 5 and
                        agent_state(s)["errors"], 10, "the configuration errors")
        text = "\n".join(errs)
        for want in ("BGPPeer bad-key (", "bgp.yaml:", "has no key nope",
                     "BGPPeer bad-restart (", "maxRestartTime: 7200 s",
                     "BGPPeer bad-bfd (", "twill.io/bfd: 'yes'",
                     "BGPAdvertisement metallb-system/bad-peers (", "no BGPPeer named nobody",
                     "BGPAdvertisement metallb-system/bad-agg (",
                     "aggregationLength 16 is shorter than pool pool's 192.168.50.0/24"):
            assert want in text, text
        names = {p["name"] for p in agent_state(s)["peers"]}
        assert names == {"r2", "r3", "r4"}, names
        # BFD from the annotation: up on both ends
        wait_for(lambda: ((r2.peer("node") or {}).get("bfd") or {}).get("state") == "Up", 10,
                 "BFD up on r2")
        ap = next(p for p in agent_state(s)["peers"] if p["name"] == "r2")
        assert ap["bfd"]["state"] == "Up", ap
        assert "bfd" not in next(p for p in agent_state(s)["peers"] if p["name"] == "r3")
        # service CIDRs to everyone; the LoadBalancer address as the /28 aggregate, to r4 only
        common = {"10.244.1.0/24", "10.96.0.0/12", "192.0.2.0/24"}
        for t in (r2, r3, r4):
            wait_for(lambda: common <= set(prefixes(t)), 10, f"the node's routes at {t.path}")
        wait_for(lambda: "192.168.50.0/28" in prefixes(r4), 10, "the aggregate at r4")
        for t in (r2, r3, r4):
            assert "192.168.50.5/32" not in prefixes(t)
        assert "192.168.50.0/28" not in prefixes(r2) and "192.168.50.0/28" not in prefixes(r3)
        # keepOriginalNextHop: r2 hears r3's route with r3 as next hop; r4 (eBGP, no keep)
        # hears only the node's own routes
        r = wait_for(lambda: prefixes(r2).get("10.30.0.0/24"), 10, "r3's route at r2")
        assert r["paths"][0]["nextHop"] == "10.0.0.3", r
        assert r["paths"][0]["asPath"] == "65001 65003", r
        assert "10.30.0.0/24" not in prefixes(r4) and "10.20.0.0/24" not in prefixes(r4)

        # the agent dies: r3 (maxRestartTime 3s) keeps its routes, stale, for about 3 s
        # (not the 120 s of the BGPConfiguration), then drops them
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        t0 = time.monotonic()
        wait_for(lambda: (r3.peer("node") or {}).get("gracefulRestartStale"), 5,
                 "r3 keeping the routes stale")
        assert "10.244.1.0/24" in prefixes(r3)
        wait_for(lambda: "10.244.1.0/24" not in prefixes(r3), 10, "r3 dropping them")
        took = time.monotonic() - t0
        assert 2 < took < 8, took
    except AssertionError:
        print((s["tmp"] / "agent.log").read_text()[-5000:])
        print(json.dumps(agent_state(s).get("errors")), r2.log(), r3.log())
        raise
    finally:
        log.close()
