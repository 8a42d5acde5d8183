#!/bin/sh
# bench/run.sh: twill's benchmarks, as `make bench` runs them (after building build/twill).
#
#   1. CNI ADD/DEL latency (bench/cni_bench.py): twill routed and twill bridge against Debian's
#      reference bridge + host-local plugins, PODS pods, all measured in the same run; twice,
#      with the leases on a tmpfs (/dev/shm) and in twill's default state directory
#      (/run/twill; its file system is reported, on some machines /run is not a tmpfs).
#   2. Lab bring-up (bench/lab_up.sh): `twill lab up -f examples/webpod.yaml` until every pod
#      answers, LAB_RUNS runs, median; the lab is named twbench<pid>, never "twill".  Then
#      `--routing bgp` with twill, BIRD 2 and FRR as the router: time to full reachability.
#   3. Service dataplanes (bench/svc_bench.py): nftables vs iptables writer, SVC_SIZES Services
#      x 10 endpoints, full sync, one endpoint change, peak RSS, connect latency; each twill
#      run bounded by SVC_TIMEOUT seconds (a size that does not finish is reported as timeout).
#   4. BGP receivers (bench/bgp_bench.py): twill, BIRD 2 and FRR each take 10,000 and 100,000
#      routes from a feeder into their kernel: install and withdraw time, CPU, RSS.
#   5. BGP speakers (bench/bgp_prop_bench.py): twill, BIRD 2, FRR: ingest of 1,000,000 routes,
#      FIB install of 100,000, propagation of 100,000 to a second peer, failure detection with
#      and without BFD (not FRR).
#
# Environment: TWILL (default build/twill), PODS (200), LAB_RUNS (5), SVC_SIZES (10,1000,10000),
# SVC_IPT_MAX (2000: iptables is skipped above it; at 10,000 it does not finish in minutes),
# SVC_TIMEOUT (60).  Needs root.
# Raw outputs go to bench/results/<UTC time>/ (gitignored); a summary is printed at the end
# and saved as summary.txt there.  Every step is bounded by timeout(1), the whole run by
# about 16 minutes (it usually takes about three: the Service step takes about two).
set -eu
cd "$(dirname "$0")/.."
TWILL=${TWILL:-build/twill}
PODS=${PODS:-200}
LAB_RUNS=${LAB_RUNS:-5}
SVC_SIZES=${SVC_SIZES:-10,1000,10000}
SVC_IPT_MAX=${SVC_IPT_MAX:-2000}
SVC_TIMEOUT=${SVC_TIMEOUT:-60}
PY=/usr/bin/python3

[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
[ -x "$TWILL" ] || { echo "bench: $TWILL missing (run make)" >&2; exit 1; }
for b in /usr/lib/cni/bridge /usr/lib/cni/host-local; do
    [ -x "$b" ] || { echo "bench: $b missing (Debian package containernetworking-plugins)" >&2; exit 1; }
done
# Measure a private copy: a parallel `make` relinking build/twill mid-run would otherwise make
# exec fail (ETXTBSY/EACCES) or mix two builds in one run.
TMP=$(mktemp -d /tmp/twill-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'rm -rf "$TMP"; exit 130' INT
trap 'rm -rf "$TMP"; exit 143' TERM
n=0
until cp "$TWILL" "$TMP/twill" 2>/dev/null && "$TMP/twill" version >/dev/null 2>&1; do
    n=$((n + 1))
    [ "$n" -lt 10 ] || { echo "bench: cannot get a working copy of $TWILL" >&2; exit 1; }
    sleep 2 # being relinked
done
ORIG=$TWILL
TWILL=$TMP/twill
export TWILL

OUT=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

{
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "twill:   $($TWILL version 2>/dev/null || echo '?'), a copy of $ORIG (sha256 $(sha256sum "$TWILL" | cut -c1-16))"
    echo "git:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "nproc:   $(nproc)"
    echo "kernel:  $(uname -r)"
    echo "cpu:     $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "memory:  $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at start)"
    echo "netns:   $(ip netns list 2>/dev/null | wc -l) named network namespaces at start (others' work = noise)"
    echo "fs:      /dev/shm $(findmnt -n -o FSTYPE --target /dev/shm | head -n 1), /run $(findmnt -n -o FSTYPE --target /run | head -n 1)"
    echo "reference plugins: /usr/lib/cni/{bridge,host-local}, $(dpkg-query -W -f '${Package} ${Version}' containernetworking-plugins 2>/dev/null || echo '?')"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

status=0

cni() { # cni TAG STATE_BASE
    echo
    echo "== CNI ADD/DEL, $PODS pods, leases under $2"
    if timeout -k 10 200 $PY bench/cni_bench.py --pods "$PODS" --twill "$TWILL" \
        --state-base "$2" --json "$OUT/cni_$1.json" 2>&1 | tee "$OUT/cni_$1.txt"; then :; fi
    [ -s "$OUT/cni_$1.json" ] || { echo "bench: cni_bench ($1) failed" >&2; status=1; }
}
cni tmpfs /dev/shm
cni statedir /run/twill

echo
echo "== lab up, $LAB_RUNS runs"
if ! timeout -k 10 120 sh bench/lab_up.sh "$LAB_RUNS" mixed 2>&1 | tee "$OUT/lab_up.txt"; then
    status=1
fi
grep -q '^lab up .*median' "$OUT/lab_up.txt" || { echo "bench: lab_up failed" >&2; status=1; }
# --routing bgp: pods on other nodes are reachable only once the router learned the podCIDRs;
# the same lab with twill, BIRD 2 and FRR as the router's speaker.
for router in twill bird frr; do
    if ! timeout -k 10 120 sh bench/lab_up.sh "$LAB_RUNS" bgp $router 2>&1 |
        tee -a "$OUT/lab_up_bgp.txt"; then
        status=1
    fi
done

echo
echo "== Service dataplanes, $SVC_SIZES Services x 10 endpoints"
if ! timeout -k 10 400 $PY bench/svc_bench.py --sizes "$SVC_SIZES" --latency-sizes 10,10000 \
    --ipt-max-services "$SVC_IPT_MAX" --timeout "$SVC_TIMEOUT" --twill "$TWILL" \
    --json "$OUT/svc.json" 2>&1 |
    grep -v '^{' | tee "$OUT/svc.txt"; then
    status=1
fi
[ -s "$OUT/svc.json" ] || { echo "bench: svc_bench failed" >&2; status=1; }

echo
echo "== BGP receivers into the kernel FIB: twill, BIRD 2, FRR; 10,000 and 100,000 routes"
if ! timeout -k 10 600 $PY bench/bgp_bench.py --sizes 10000,100000 --repeat 3 --twill "$TWILL" \
    --json "$OUT/bgp.json" 2>&1 | tee "$OUT/bgp.txt"; then
    status=1
fi

echo
echo "== BGP speakers: ingest 1,000,000, FIB 100,000, propagation 100,000, failure (bgp_prop_bench.py)"
if ! timeout -k 10 900 $PY bench/bgp_prop_bench.py --repeat 3 --twill "$TWILL" \
    --json "$OUT/bgp_prop.json" 2>&1 | tee "$OUT/bgp_prop.txt"; then
    status=1
fi

echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at end)" >> "$OUT/machine.txt"

$PY - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])
ref_label = "reference bridge+host-local"
print("\n==== summary (raw outputs in %s) ====" % out)
print((out / "machine.txt").read_text().rstrip())
for tag, what in (("tmpfs", "leases on tmpfs (/dev/shm)"),
                  ("statedir", "leases in twill's default state dir (/run/twill)")):
    f = out / ("cni_%s.json" % tag)
    if not f.exists():
        print("\nCNI, %s: FAILED" % what)
        continue
    d = json.loads(f.read_text())
    print("\nCNI, %d pods, %s, file system %s; ms, spawn to exit"
          % (d["pods"], what, d.get("state_fstype", "?")))
    print("  %-28s %8s %8s %8s %8s" % ("plugin", "ADD p50", "ADD p99", "DEL p50", "DEL p99"))
    res = d["results"]
    for label, r in res.items():
        print("  %-28s %8.2f %8.2f %8.2f %8.2f" % (label, r["add_p50_ms"], r["add_p99_ms"],
                                                 r["del_p50_ms"], r["del_p99_ms"]))
    ref = res[ref_label]
    for label, r in res.items():
        if label != ref_label:
            x = ref["add_p50_ms"] / r["add_p50_ms"]
            print("  %-28s ADD p50 %.2fx faster than the reference (target >= 5x: %s);"
                  " DEL p50 %.2fx" % (label, x, "met" if x >= 5 else "NOT met",
                                      ref["del_p50_ms"] / r["del_p50_ms"]))
lab = out / "lab_up.txt"
m = re.search(r"median ([0-9.]+) ms over (\d+) runs", lab.read_text()) if lab.exists() else None
if m:
    ms = float(m.group(1))
    print("\nlab up -f examples/webpod.yaml until every pod answers: median %.1f ms over %s runs"
          " (target < 3 s: %s)" % (ms, m.group(2), "met" if ms < 3000 else "NOT met"))
else:
    print("\nlab up: FAILED")
lab = out / "lab_up_bgp.txt"
for line in (lab.read_text().splitlines() if lab.exists() else []):
    m = re.search(r"router (\w+),.*full pod reachability \(probe --from-nodes\) median ([0-9.]+) ms",
                  line)
    if m:
        print("lab up --routing bgp --router %s until all 28 pod/node pairs answer: median %s ms"
              % (m.group(1), m.group(2)))
EOF
exit $status
