#!/usr/bin/env bash
# usher's benchmark against tini, tini-static, dumb-init and catatonit.
#
#   bench/run.sh           full run (5-10 minutes on 2 cores); rewrites
#                          docs/benchmarks.md and docs/img/benchmarks.svg
#   bench/run.sh --quick   small counts, a check that everything works
#                          (about a minute); writes bench/out/ only
#
# Installs what is missing (Debian packages: tini, dumb-init, catatonit, gcc,
# libc6-dev, binutils, file, linux-perf, strace, util-linux, procps, python3),
# builds a static usher, compiles the C helpers in bench/c, then runs
# bench/bench.py (the measurements, all inits interleaved in one run) and
# bench/report.py (the doc and the chart). Needs root: PID namespaces, perf
# and apt-get. Raw results stay in bench/out/results-{full,quick}.json.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench/run.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
ROOT=$PWD
WALL_START=$(date +%s)
read -r LOAD1 LOAD5 LOAD15 _ </proc/loadavg
echo "bench: load average at start: $LOAD1 $LOAD5 $LOAD15 ($(nproc) CPUs)"

SUDO=
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
    echo "bench: not root: PID namespaces, perf and apt-get need root; trying sudo" >&2
fi

# ---- 1. tools and peers -----------------------------------------------------
need=()
have() { command -v "$1" >/dev/null 2>&1; }
{ have tini && [ -x /usr/bin/tini-static ]; } || need+=(tini)
have dumb-init || need+=(dumb-init)
have catatonit || need+=(catatonit)
have gcc || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/"$(uname -m)"-linux-gnu/libc.a ] || need+=(libc6-dev)
have strip || need+=(binutils)
have file || need+=(file)
have perf || need+=(linux-perf)
have strace || need+=(strace)
{ have taskset && have unshare; } || need+=(util-linux)
have ps || need+=(procps)
have python3 || need+=(python3)
if ((${#need[@]})); then
    echo "bench: installing: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- 2. a static usher --------------------------------------------------------
ARCH=$(uname -m)
if have rustup && rustup target list --installed | grep -qx "$ARCH-unknown-linux-musl"; then
    TARGET=$ARCH-unknown-linux-musl
    echo "bench: building usher for $TARGET"
    cargo build --quiet --release --target "$TARGET"
else
    TARGET=$ARCH-unknown-linux-gnu
    echo "bench: no musl target installed: building a static glibc usher for $TARGET"
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --quiet --release --target "$TARGET"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/usher-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# A private copy: a build in the shared target/ during the run cannot swap it.
cp "target/$TARGET/release/usher" "$WORK/usher"
echo "bench: usher $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -q . && echo ' (with uncommitted changes in src/)'), $(stat -c %s "$WORK/usher") bytes"

# ---- 3. C helpers -----------------------------------------------------------------
for h in startup siglat shutdown; do
    gcc -O2 -Wall -Wextra -o "$WORK/$h" "bench/c/$h.c"
done
# The apps run under the inits: static, so they start and fork faster.
for h in sigchild orphans stopchild idlers; do
    gcc -O2 -static -Wall -Wextra -o "$WORK/$h" "bench/c/$h.c" 2>/dev/null ||
        gcc -O2 -Wall -Wextra -o "$WORK/$h" "bench/c/$h.c"
done

# ---- 4. measure, 5. report ----------------------------------------------------------
mkdir -p bench/out
if ((QUICK)); then
    MODE=quick CMD="bench/run.sh --quick"
    DOC=bench/out/benchmarks-quick.md CHART=bench/out/benchmarks-quick.svg
else
    MODE=full CMD="bench/run.sh"
    DOC=docs/benchmarks.md CHART=docs/img/benchmarks.svg
    mkdir -p docs/img
fi
RESULTS=bench/out/results-$MODE.json
$SUDO python3 bench/bench.py --usher "$WORK/usher" --helpers "$WORK" --out "$RESULTS" \
    --command "$CMD" --rust "$(rustc --version 2>/dev/null || echo '?') --target $TARGET" \
    --load-at-start "$LOAD1 $LOAD5 $LOAD15" --wall-start "$WALL_START" $( ((QUICK)) && echo --quick)
python3 bench/report.py "$RESULTS" --doc "$DOC" --chart "$CHART"
echo "bench: wrote $DOC and $CHART in $(( $(date +%s) - WALL_START )) s"
