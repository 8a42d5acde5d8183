#!/bin/sh
# bench/lab_up.sh: how long `twill lab up -f examples/webpod.yaml` takes until every pod
# answers HTTP from its node (lab up waits for exactly that).  Several runs, median.
#   sh bench/lab_up.sh [RUNS] [ROUTING]      (default 5 runs, routing mixed)
# Prints one line per run and the median; also appends it to bench/results/lab_up.txt.
set -eu
cd "$(dirname "$0")/.."
TWILL=${TWILL:-build/twill}
RUNS=${1:-5}
ROUTING=${2:-mixed}
NAME=bench$$
[ "$(id -u)" = 0 ] || { echo "lab_up: run as root" >&2; exit 1; }
trap '$TWILL lab down --name $NAME -q >/dev/null 2>&1 || true' EXIT INT TERM

times=""
i=1
while [ "$i" -le "$RUNS" ]; do
    $TWILL lab down --name "$NAME" -q >/dev/null 2>&1 || true
    t0=$(date +%s%N)
    if ! $TWILL lab up --name "$NAME" --routing "$ROUTING" -q -f examples/webpod.yaml; then
        echo "lab_up: run $i failed" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    echo "run $i: ${ms} ms"
    times="$times $ms"
    $TWILL lab down --name "$NAME" -q >/dev/null 2>&1 || true
    i=$((i + 1))
done
median=$(printf '%s\n' $times | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}')
line="lab up (routing $ROUTING, examples/webpod.yaml, every pod answering): median ${median} ms over $RUNS runs ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "$line"
mkdir -p bench/results
echo "$line" >> bench/results/lab_up.txt
