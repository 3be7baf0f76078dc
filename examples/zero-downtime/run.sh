#!/usr/bin/env bash
# Rolling restarts through a real load balancer, with usher's drains: nginx
# replicas in FROM-scratch images behind haproxy, all on 127.0.0.1, under a
# fixed-rate load. See docs/zero-downtime.md for the method and the results.
#
#   bash examples/zero-downtime/run.sh          the drain comparison (about
#       13 minutes; 8 without the adaptive drain): usher with no drain,
#       --drain 2s, a drain for the worst lag (3500ms) and the adaptive
#       --drain 0s..10s, over four balancer paths (HTTP with a new server
#       connection per request, HTTP with pooled server connections, L4 with
#       a new connection per request, L4 with keep-alive clients), 8 stops
#       per run with lags 0.3, 0.5, 1 and 3 s; writes
#       examples/zero-downtime/results/{results.json,table.md},
#       docs/img/zero-downtime.svg and the results section of
#       docs/zero-downtime.md
#   bash examples/zero-downtime/run.sh --quick  the same with 4 stops per
#       run (one per lag; about 7 minutes, 5 without the adaptive drain);
#       writes target/zero-downtime/ only
#   bash examples/zero-downtime/run.sh --inits  the comparison of inits (shell,
#       tini, usher; 1 s lag, 2 stops per run, 3 runs each, plus haproxy's
#       retries; about 7 minutes, --quick 3); writes
#       results/{inits.json,inits.md}, docs/img/zero-downtime-inits.svg and
#       the inits section of the doc (--quick: into target/zero-downtime/)
#
# Options: --lags LIST (default 0.3,0.5,1,3), --stops N (per run; default 2
# per lag, --quick 1 per lag), --drain DURATION (the fixed drain, default
# 2s), --drain-long DURATION (default: the worst lag + 500ms), --drain-max
# DURATION (the adaptive drain's MAX, default 10s; --grace-period is MAX +
# 2s, docker stop -t the grace period + 3 s), --drain-min DURATION (default
# 0s), --paths LIST, --scenarios LIST (nodrain,fixed,fixed-long,adaptive),
# --no-prober, --rate N (requests/s, default 100), --reps N (default 1;
# --inits 3), --lag SECONDS (--inits only, default 1), --port-base PORT
# (default 18480; haproxy there, replicas on the next 4).
# Installs what is missing (Debian packages nginx, haproxy, file, python3,
# and for --inits tini and busybox-static; needs none of their services), builds a static
# usher and the images (examples/zero-downtime/images.sh), runs harness.py
# and report.py. Removes its containers and images by id when it ends, also
# on failure or Ctrl-C. Needs root (or sudo) for apt-get and a Docker engine.
# A usher that refuses the adaptive drain's MIN..MAX (before the feature)
# gets its other scenarios measured and the adaptive rows marked as awaiting.
set -euo pipefail

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; }
quick=0 inits=0 lag=1 drain=2s drain_long='' drain_min=0s drain_max=10s rate=100 reps='' stops=0
lags=0.3,0.5,1,3 paths=http-close,http-pool,tcp-close,tcp-keepalive
scenarios=nodrain,fixed,fixed-long,adaptive probe=1 port_base=18480
cmdline="bash examples/zero-downtime/run.sh${*:+ $*}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --inits) inits=1 ;;
    --lag) lag=$2; shift ;;
    --lags) lags=$2; shift ;;
    --stops) stops=$2; shift ;;
    --drain) drain=$2; shift ;;
    --drain-long) drain_long=$2; shift ;;
    --drain-min) drain_min=$2; shift ;;
    --drain-max) drain_max=$2; shift ;;
    --paths) paths=$2; shift ;;
    --scenarios) scenarios=$2; shift ;;
    --no-prober) probe=0 ;;
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
if ((inits)); then
  [ -x /usr/bin/tini-static ] || need+=(tini)
  dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
fi
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
# The drain comparison needs the usher image only; the inits all four.
if ((inits)); then
  images="shell tini tini-quit usher" name=inits table=inits
else
  images="usher" name=results table=table
fi
ZD_IMAGES=$images bash "$here/images.sh" "$run_id" "$$" "$port_base" "$work/build" >"$work/images.env"
usher_id=$(grep '^usher=' "$work/images.env" | cut -d= -f2)
usher_version="$(docker run --rm --network none --label "usher-zd=1" --label "usher-zd.run=$run_id" \
  --label "usher-zd.pid=$$" --label "usher-zd.host=$(cat /proc/sys/kernel/hostname)" \
  "$usher_id" --version 2>&1 | head -n1) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

if ((quick)); then
  out=target/zero-downtime
else
  out=examples/zero-downtime/results
fi
mkdir -p "$out"
common=(--images "$work/images.env" --run-id "$run_id" --out "$out/$name.json" --port-base "$port_base"
  --rate "$rate" --drain "$drain" --command "$cmdline" --usher-version "$usher_version")
if ((inits)); then
  # The comparison of inits as measured before the drain comparison: one
  # lag, two stops per run, HTTP with a new connection per request, no prober.
  reps=${reps:-$((quick ? 1 : 3))}
  python3 "$here/harness.py" "${common[@]}" --lags "$lag" --stops 2 --paths http-close \
    --scenarios shell,tini-term,tini-quit,usher-nodrain,usher-short,usher-drain \
    --grace 8s --stop-timeout 10 --probe-every 0 --settle 1 --reps "$reps" --extra-reps "$reps" \
    --extra-scenarios tini-term,usher-nodrain --deadline 3000
else
  reps=${reps:-1}
  ((stops)) || stops=$(($(tr ',' '\n' <<<"$lags" | grep -c .) * (quick ? 1 : 2)))
  python3 "$here/harness.py" "${common[@]}" --lags "$lags" --stops "$stops" --paths "$paths" \
    --scenarios "$scenarios" ${drain_long:+--drain-long "$drain_long"} \
    --adaptive "$drain_min..$drain_max" --probe-every "$probe" --reps "$reps" --deadline 3000
fi
chart=docs/img/zero-downtime.svg
if ((inits)); then chart=docs/img/zero-downtime-inits.svg; fi
if ((quick)); then
  python3 "$here/report.py" "$out/$name.json" --table "$out/$table.md" --chart "$out/$name.svg" \
    --chart-link "$name.svg"
else
  python3 "$here/report.py" "$out/$name.json" --table "$out/$table.md" --chart "$chart" \
    --chart-link "img/$(basename "$chart")" --source "examples/zero-downtime/results/$name.json" \
    --doc docs/zero-downtime.md
fi
echo "run.sh: wrote $out/ in $(($(date +%s) - started)) s"
