#!/bin/sh
# bench/lab_up.sh: how long `twill lab up -f examples/webpod.yaml` takes until every pod
# answers HTTP from its node (lab up waits for exactly that).  Several runs, median.
#   sh bench/lab_up.sh [RUNS] [ROUTING]      (default 5 runs, routing mixed)
# The lab is named twbench<pid>, never "twill", so a user's lab is left alone; labs of dead
# runs of this script (twbench<pid> with no such process) are taken down first.
# After each timed `lab up`, an untimed `twill lab probe --from-nodes` checks independently
# that every pod answers from every pod and node; a run fails if it does not.
# Prints one line per run and the median; also appends it to bench/results/lab_up.txt.
set -eu
cd "$(dirname "$0")/.."
TWILL=${TWILL:-build/twill}
RUNS=${1:-5}
ROUTING=${2:-mixed}
NAME=twbench$$
[ "$(id -u)" = 0 ] || { echo "lab_up: run as root" >&2; exit 1; }
[ -x "$TWILL" ] || { echo "lab_up: $TWILL missing (run make)" >&2; exit 1; }
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
probes=""
i=1
while [ "$i" -le "$RUNS" ]; do
    down
    t0=$(now_us)
    if ! $TWILL lab up --name "$NAME" --routing "$ROUTING" --timeout 30 -q -f examples/webpod.yaml; then
        echo "lab_up: run $i: lab up failed" >&2
        exit 1
    fi
    t1=$(now_us)
    if ! out=$($TWILL lab probe --name "$NAME" --from-nodes 2>&1); then
        printf '%s\n' "$out" >&2
        echo "lab_up: run $i: lab up returned but the probe found unreachable pods" >&2
        exit 1
    fi
    t2=$(now_us)
    reach=$(printf '%s\n' "$out" | awk '/reachable/ {print $1}' | tail -n 1)
    echo "run $i: lab up $(ms $((t1 - t0))) ms; then probe --from-nodes $reach reachable ($(ms $((t2 - t1))) ms)"
    ups="$ups $((t1 - t0))"
    probes="$probes $((t2 - t1))"
    down
    i=$((i + 1))
done
# shellcheck disable=SC2086
line="lab up (routing $ROUTING, examples/webpod.yaml, until every pod answers): median $(median $ups) ms over $RUNS runs; independent probe afterwards median $(median $probes) ms ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "$line"
mkdir -p bench/results
echo "$line" >> bench/results/lab_up.txt
