#!/bin/sh
# bench/lab_up.sh: how long `twill lab up -f examples/webpod.yaml` takes until every pod
# answers HTTP from its node (lab up waits for exactly that).  Several runs, median.
#   sh bench/lab_up.sh [RUNS] [ROUTING] [ROUTER]   (default 5 runs, routing mixed; ROUTER
#   twill|bird|frr only with routing bgp: the router namespace's BGP speaker)
# The lab is named twbench<pid>, never "twill", so a user's lab is left alone; labs of dead
# runs of this script (twbench<pid> with no such process) are taken down first.
# After each timed `lab up`, `twill lab probe --from-nodes` checks independently that every pod
# answers from every pod and node.  Lab up only waits until each pod answers from its own
# node, so with dynamic routing (bgp: routes learned by the router after the sessions come up)
# the probe (each connection given 100 ms) is repeated, every 50 ms for at most 30 s, until
# all pairs answer: "full reachability" is the time from the start of lab up to the first probe that reaches every
# pair.  A run fails if that never happens.
# Prints one line per run and the median; also appends it to bench/results/lab_up.txt.
set -eu
cd "$(dirname "$0")/.."
TWILL=${TWILL:-build/twill}
RUNS=${1:-5}
ROUTING=${2:-mixed}
ROUTER=${3:-}
NAME=twbench$$
[ "$(id -u)" = 0 ] || { echo "lab_up: run as root" >&2; exit 1; }
[ -x "$TWILL" ] || { echo "lab_up: $TWILL missing (run make)" >&2; exit 1; }
ROUTEROPT=""
WHAT="routing $ROUTING"
if [ -n "$ROUTER" ]; then
    [ "$ROUTING" = bgp ] || { echo "lab_up: ROUTER needs ROUTING bgp" >&2; exit 2; }
    ROUTEROPT="--router $ROUTER"
    WHAT="routing bgp, router $ROUTER"
fi
case $RUNS in '' | *[!0-9]*) echo "lab_up: RUNS must be a number" >&2; exit 2 ;; esac
if [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 50 ]; then echo "lab_up: RUNS must be 1..50" >&2; exit 2; fi

down() { $TWILL lab down --name "$NAME" -q >/dev/null 2>&1 || true; }
trap down EXIT
trap 'down; exit 130' INT
trap 'down; exit 143' TERM

# Leftovers of killed runs of this script.
for d in /run/twill/lab/twbench*; do
    [ -d "$d" ] || continue
    old=${d##*/}
    pid=${old#twbench}
    case $pid in '' | *[!0-9]*) continue ;; esac
    [ -d "/proc/$pid" ] && continue
    $TWILL lab down --name "$old" -q >/dev/null 2>&1 || true
done

now_us() { echo $(( $(date +%s%N) / 1000 )); }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1}
    END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f", m / 1000 }'; }

ups=""
fulls=""
probes=""
i=1
while [ "$i" -le "$RUNS" ]; do
    down
    t0=$(now_us)
    if ! $TWILL lab up --name "$NAME" --routing "$ROUTING" $ROUTEROPT --timeout 30 -q -f examples/webpod.yaml; then
        echo "lab_up: run $i: lab up failed" >&2
        exit 1
    fi
    t1=$(now_us)
    tries=0
    while :; do
        tries=$((tries + 1))
        tp=$(now_us)
        if out=$($TWILL lab probe --name "$NAME" --from-nodes --timeout-ms 100 2>&1); then
            break
        fi
        if [ $((tp - t1)) -gt 30000000 ] || [ "$tries" -ge 600 ]; then
            printf '%s\n' "$out" >&2
            echo "lab_up: run $i: lab up returned but pods were still unreachable 30 s later" >&2
            exit 1
        fi
        sleep 0.05
    done
    t2=$(now_us)
    reach=$(printf '%s\n' "$out" | awk '/reachable/ {print $1}' | tail -n 1)
    echo "run $i: lab up $(ms $((t1 - t0))) ms; full reachability ($reach, probe $tries) at $(ms $((t2 - t0))) ms; last probe $(ms $((t2 - tp))) ms"
    ups="$ups $((t1 - t0))"
    fulls="$fulls $((t2 - t0))"
    probes="$probes $((t2 - tp))"
    down
    i=$((i + 1))
done
# shellcheck disable=SC2086
line="lab up ($WHAT, examples/webpod.yaml, until every pod answers): median $(median $ups) ms over $RUNS runs; full pod reachability (probe --from-nodes) median $(median $fulls) ms; one probe median $(median $probes) ms ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "$line"
mkdir -p bench/results
echo "$line" >> bench/results/lab_up.txt
