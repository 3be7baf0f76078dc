#!/usr/bin/env bash
# usher's soak, run on demand: idle, then a million signals forwarded.
#
#   bench/soak.sh [--idle SECONDS] [--signals N] [--sample SECONDS] [--usher PATH]
#
# Defaults: --idle 600 --signals 1000000 --sample 10 (about 11 minutes).
# A short run: bench/soak.sh --idle 30 --signals 100000 --sample 5
#
# usher runs as PID 1 of a fresh PID namespace over a C app that counts every
# signal it gets (tests/storms/storm_app.c). First it sits idle for SECONDS
# with `strace -c` attached (if strace is installed): an idle usher should
# make no system call. Then N mixed signals (standard and real-time, from 4
# sender processes) go through it. usher's VmRSS and open fds are sampled
# every SAMPLE seconds throughout; at the end, every real-time copy must have
# reached the app exactly once. Figures on stdout and in bench/out/storm/soak.json.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

# --usher goes before storm.py's subcommand; everything else is the soak's
# own (storm.py checks it and has the defaults above).
USHER=()
SOAK=()
while [ $# -gt 0 ]; do
    case "$1" in
        --usher) USHER=(--usher "$2"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) SOAK+=("$1") ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
[ ${#USHER[@]} -gt 0 ] || cargo build --release --quiet
mkdir -p bench/out/storm
exec python3 bench/storm.py "${USHER[@]}" --json bench/out/storm/soak.json soak "${SOAK[@]}"
