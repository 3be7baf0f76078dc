#!/usr/bin/env bash
# usher's long storms, run on demand (the bounded versions are tests/storms.rs).
#
#   bench/storm.sh [--signals N] [--orphans N] [--usher PATH]
#
#   1. signals   N mixed signals (default 100000) from 4 sender processes at
#                usher as PID 1: time, VmRSS and fds before/after, real-time
#                copies sent and received, TERM latency afterwards;
#   2. orphans   N orphans (default 20000) exiting during a shutdown with
#                --drain 1s --grace-period 3s: deadline error, reaped count;
#   3. burst     20000 real-time signals queued while usher is stopped, 3
#                times: the memory usher keeps after a burst;
#   4. overflow  what the kernel does at RLIMIT_SIGPENDING.
#
# Figures go to stdout and, as JSON, to bench/out/storm/. Needs root (PID
# namespaces), python3 and cc. About a minute on 2 cores.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

SIGNALS=100000
ORPHANS=20000
USHER=()
while [ $# -gt 0 ]; do
    case "$1" in
        --signals) SIGNALS=$2; shift 2 ;;
        --orphans) ORPHANS=$2; shift 2 ;;
        --usher) USHER=(--usher "$2"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench/storm.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
[ ${#USHER[@]} -gt 0 ] || cargo build --release --quiet
OUT=bench/out/storm
mkdir -p "$OUT"
rc=0
python3 bench/storm.py "${USHER[@]}" --json "$OUT/signals.json" signals --count "$SIGNALS" || rc=1
python3 bench/storm.py "${USHER[@]}" --json "$OUT/orphans.json" orphans --count "$ORPHANS" || rc=1
python3 bench/storm.py "${USHER[@]}" --json "$OUT/burst.json" burst --count 20000 --rounds 3 || rc=1
python3 bench/storm.py "${USHER[@]}" --json "$OUT/overflow.json" overflow --limit 64 --count 1000 || rc=1
echo "storm: figures in $OUT/*.json"
exit $rc
