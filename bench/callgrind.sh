#!/usr/bin/env bash
# Instructions per forwarded signal, usher against catatonit, tini-static and
# dumb-init, counted by valgrind's callgrind: unlike timings, repeatable for
# the same binaries whatever else the machine is doing.
#
#   bench/callgrind.sh [SIGNALS]     (default 2000)
#
# Each init runs under callgrind with bench's sigchild as its app; siglat
# sends it SIGUSR1 and waits for the app's answer before the next one (so no
# two signals merge). Two runs per init, with SIGNALS and with none: the
# difference of their instruction counts over SIGNALS is what one forwarded
# signal costs the init (its read, its decision, its kill, and what runs
# around them), start-up and exit cancelled out. Needs valgrind, gcc, and
# the peers (Debian's tini, dumb-init, catatonit); builds a static usher.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
for tool in valgrind gcc tini-static dumb-init catatonit; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: no $tool (apt-get install valgrind gcc tini dumb-init catatonit)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/usher-callgrind.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cargo build --quiet --release --target x86_64-unknown-linux-musl
cp target/x86_64-unknown-linux-musl/release/usher "$WORK/usher"
gcc -O2 -Wall -o "$WORK/siglat" bench/c/siglat.c
gcc -O2 -static -Wall -o "$WORK/sigchild" bench/c/sigchild.c

# The instructions (Ir) of INIT running sigchild while ROUNDS signals come.
count() { # ROUNDS NAME INIT-WORDS...
    local rounds=$1 name=$2 out="$WORK/$2.$1.cg"
    shift 2
    "$WORK/siglat" "$rounds" 0 1 "$WORK" \
        "$name=$(command -v valgrind) --tool=callgrind --callgrind-out-file=$out $* $WORK/sigchild @FIFO" \
        >/dev/null 2>"$WORK/$name.$rounds.err"
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

printf '%-12s %14s %14s %12s\n' init "Ir, $N signals" "Ir, none" "Ir/signal"
for spec in "usher:$WORK/usher --" "catatonit:$(command -v catatonit) --" \
    "tini-static:$(command -v tini-static) -s --" "dumb-init:$(command -v dumb-init) --"; do
    name=${spec%%:*} words=${spec#*:}
    with=$(count "$N" "$name" $words)
    without=$(count 0 "$name" $words)
    printf '%-12s %14s %14s %12s\n' "$name" "$with" "$without" $(( (with - without) / N ))
done
