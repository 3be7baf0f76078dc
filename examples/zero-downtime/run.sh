#!/usr/bin/env bash
# Rolling restarts through a real load balancer, with and without usher:
# nginx replicas in FROM-scratch images behind haproxy, all on 127.0.0.1,
# under a fixed-rate load. See docs/zero-downtime.md for the method and the
# results.
#
#   bash examples/zero-downtime/run.sh          full run (about 8 minutes):
#       6 scenarios x 3 runs interleaved, plus haproxy's retries and
#       `option redispatch` (2 scenarios x 3 runs each); writes
#       examples/zero-downtime/results/{results.json,table.md},
#       docs/img/zero-downtime.svg and the results section of
#       docs/zero-downtime.md
#   bash examples/zero-downtime/run.sh --quick  one run of each (about 3
#       minutes); writes target/zero-downtime/ only
#
# Options: --lag SECONDS (default 1), --drain DURATION (default 2s),
# --rate N (requests/s, default 100), --reps N (default 3),
# --port-base PORT (default 18480; haproxy there, replicas on the next 4).
# Installs what is missing (Debian packages nginx, haproxy, tini, busybox-
# static, file, python3; needs none of their services), builds a static
# usher and the images (examples/zero-downtime/images.sh), runs harness.py
# and report.py. Removes its containers and images by id when it ends, also
# on failure or Ctrl-C. Needs root (or sudo) for apt-get and a Docker engine.
set -euo pipefail

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
quick=0 lag=1 drain=2s rate=100 reps=3 port_base=18480
cmdline="bash examples/zero-downtime/run.sh${*:+ $*}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 reps=1 ;;
    --lag) lag=$2; shift ;;
    --drain) drain=$2; shift ;;
    --rate) rate=$2; shift ;;
    --reps) reps=$2; shift ;;
    --port-base) port_base=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
started=$(date +%s)

# ---- 1. tools ------------------------------------------------------------------
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/bin/tini-static ] || need+=(tini)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v file >/dev/null || need+=(file)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  echo "run.sh: installing ${need[*]}"
  "${sudo[@]}" apt-get update -qq
  # Debian may start the nginx and haproxy services on install (nginx on
  # port 80): harmless here, the example runs its own, with its own configs
  # on its own ports, and never uses or stops a system one.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
docker version --format '{{.Server.Version}}' >/dev/null \
  || { echo "run.sh: error: no Docker engine answers" >&2; exit 1; }

# ---- 2. images, 3. the runs, 4. the report ---------------------------------------
run_id="$$-$(date +%s)"
work=$(mktemp -d "${TMPDIR:-/tmp}/usher-zd.XXXXXX")
cleanup() {
  local ids
  ids=$(docker ps -aq --no-trunc --filter "label=usher-zd.run=$run_id")
  [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
  ids=$(docker images -q --no-trunc --filter "label=usher-zd.run=$run_id" | sort -u)
  ids=$(for id in $ids; do echo "$id"; done | tac)  # children before base
  for _ in 1 2 3; do
    [ -n "$ids" ] || break
    docker rmi $ids >/dev/null 2>&1 || true
    ids=$(docker images -q --no-trunc --filter "label=usher-zd.run=$run_id" | sort -u)
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bash "$here/images.sh" "$run_id" "$$" "$port_base" "$work/build" >"$work/images.env"
usher_id=$(grep '^usher=' "$work/images.env" | cut -d= -f2)
usher_version="$(docker run --rm --network none --label "usher-zd=1" --label "usher-zd.run=$run_id" \
  --label "usher-zd.pid=$$" --label "usher-zd.host=$(cat /proc/sys/kernel/hostname)" \
  "$usher_id" --version 2>&1 | head -n1) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

if ((quick)); then
  out=target/zero-downtime
  extra=1
else
  out=examples/zero-downtime/results
  extra=$reps
fi
mkdir -p "$out"
python3 "$here/harness.py" --images "$work/images.env" --run-id "$run_id" --out "$out/results.json" \
  --port-base "$port_base" --lag "$lag" --drain "$drain" --rate "$rate" --reps "$reps" \
  --extra-reps "$extra" --command "$cmdline" --usher-version "$usher_version"
if ((quick)); then
  python3 "$here/report.py" "$out/results.json" --table "$out/table.md" --chart "$out/zero-downtime.svg" \
    --chart-link zero-downtime.svg
else
  python3 "$here/report.py" "$out/results.json" --table "$out/table.md" \
    --chart docs/img/zero-downtime.svg --chart-link img/zero-downtime.svg --doc docs/zero-downtime.md
fi
echo "run.sh: wrote $out/ in $(($(date +%s) - started)) s"
