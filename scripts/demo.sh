#!/bin/sh
# make demo: seed 003's lab with its sample app (examples/webpod.yaml), then the pod x pod
# reachability matrix and each node's routes.  The lab stays up; tear it down with
#   build/twill lab down
set -eu
cd "$(dirname "$0")/.."
TWILL=${TWILL:-build/twill}
ROUTING=${ROUTING:-mixed}
WIRING=${WIRING:-routed}

if [ "$(id -u)" != 0 ]; then
    echo "demo: the lab creates network namespaces; run as root" >&2
    exit 1
fi

echo "== twill lab up --routing $ROUTING --wiring $WIRING -f examples/webpod.yaml"
$TWILL lab up --routing "$ROUTING" --wiring "$WIRING" -f examples/webpod.yaml
echo
echo "== twill lab probe   (HTTP from every pod to every pod)"
$TWILL lab probe || true
echo
echo "== twill lab status  (nodes, pods, each node's routes and peers)"
$TWILL lab status || true

# a webpod IP for the hint (the first webpod the status lists)
WEBPOD=$($TWILL lab status -o json 2>/dev/null | python3 -c '
import json, sys
pods = json.load(sys.stdin)["pods"]
ips = [p["ip"] for p in sorted(pods, key=lambda p: p["node"] == "ctr")
       if p["name"].startswith("webpod") and p["ip"]]
print(ips[0] if ips else "<webpod IP>")' 2>/dev/null || echo "<webpod IP>")

# the webpod Service's ClusterIP (allocated by twill's standalone control plane)
SVCIP=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["spec"]["clusterIP"])' /run/twill/lab/twill/manifests/.twill/service.default.webpod.json \
    2>/dev/null || echo "<ClusterIP>")

cat <<HINT

The lab is up (namespaces twill-ctr, twill-w1, twill-w0, twill-router, twill-ext). Explore:
  $TWILL lab exec curl-pod -- curl -s http://$WEBPOD/      # a webpod answers with its name
  $TWILL lab exec curl-pod -- curl -s http://$SVCIP/       # the webpod Service: a different pod each time
  $TWILL lab exec ctr -- $TWILL svc list --state-dir /run/twill/lab/twill/nodes/ctr   # like ipvsadm -Ln
  $TWILL lab exec ctr -- ip route                          # ctr's routes (proto 116/117 are twill's)
  $TWILL lab exec router -- ip route                       # the router knows no pod CIDR
  $TWILL lab status                                        # nodes, pods, routes, peers
  $TWILL lab probe                                         # pod x pod matrix
  $TWILL lab down                                          # tear everything down
Try the seed's failure: $TWILL lab up --routing host-gw -f examples/webpod.yaml,
then $TWILL lab probe: pods on w0 (other subnet) are unreachable from ctr and w1.
HINT
