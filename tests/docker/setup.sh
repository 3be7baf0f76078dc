#!/usr/bin/env bash
# Setup for the Docker end-to-end tests (tests/docker.rs calls it once per
# test binary run):
#   1. build a static usher (musl; without the musl target, glibc +crt-static);
#   2. find a static busybox: $BUSYBOX, else the installed busybox-static
#      package, else `apt-get download busybox-static` + `dpkg-deb -x`;
#   3. lay out a root filesystem (busybox and its applets, usher as /usher
#      and /usr/local/bin/usher, the apps of tests/docker/apps in /app) and
#      build FROM-scratch images over it (defined at the end of this file),
#      among them `twin`: Dockerfile.example's ENTRYPOINT line, verbatim;
#   4. compile tests/docker/http-app.c with `cc -static` and build
#      `http-hook`: FROM scratch with only usher and that app (no busybox);
#      and tests/docker/oom-app.c likewise, into /app/oom-app of the rootfs.
#
# Usage: setup.sh RUN_ID WORK_DIR
#   RUN_ID    unique to this test run; every image gets the labels
#             usher-test=1, usher-test.run=RUN_ID, usher-test.pid=$PPID and
#             usher-test.host=$(cat /proc/sys/kernel/hostname)
#   WORK_DIR  scratch directory for the build context (recreated)
# Environment: CARGO (the cargo to use), USHER_STATIC_TARGET_DIR (cargo target
# dir for the static build), BUSYBOX (path to a static busybox, optional),
# USHER_SETUP_ROOTFS_ONLY=1 (steps 1-3 without Docker: no sweep, no images;
# prints `rootfs=DIR` instead; tests/containerd.rs packs its own OCI image).
# Output: one `NAME=IMAGE_ID` line per image on stdout; progress on stderr.
#
# Before building, it removes what earlier runs on this host left behind
# (images and containers labelled usher-test=1 whose test process is gone),
# by id. It never pulls: every image is FROM scratch.
set -euo pipefail

run_id=${1:?usage: setup.sh RUN_ID WORK_DIR}
work=${2:?usage: setup.sh RUN_ID WORK_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cargo=${CARGO:-cargo}
target_dir=${USHER_STATIC_TARGET_DIR:-$repo/target/docker-static}
owner=${PPID}
host=$(cat /proc/sys/kernel/hostname)
started=$(date +%s%N)
say() { echo "setup: +$(( ($(date +%s%N) - started) / 1000000 ))ms $*" >&2; }

# --- leftovers of earlier runs (killed test processes) -----------------------
rootfs_only=${USHER_SETUP_ROOTFS_ONLY:-}
if [ "$rootfs_only" != 1 ]; then
  . "$here/sweep.sh"
  sweep usher-test
fi

# --- static usher ------------------------------------------------------------
arch=$(uname -m)
musl="$arch-unknown-linux-musl"
gnu="$arch-unknown-linux-gnu"
say "building static usher ($musl) in $target_dir"
if CARGO_TARGET_DIR="$target_dir" "$cargo" build --release --locked --quiet \
  --manifest-path "$repo/Cargo.toml" --target "$musl" >&2; then
  usher="$target_dir/$musl/release/usher"
else
  say "no musl build; falling back to glibc with +crt-static ($gnu)"
  CARGO_TARGET_DIR="$target_dir" RUSTFLAGS='-C target-feature=+crt-static' \
    "$cargo" build --release --locked --quiet \
    --manifest-path "$repo/Cargo.toml" --target "$gnu" >&2
  usher="$target_dir/$gnu/release/usher"
fi

# A FROM-scratch image has no dynamic loader: refuse a dynamic binary here,
# with a clear message, rather than a confusing "no such file" from docker.
is_static() {
  if command -v file >/dev/null 2>&1; then
    file -L "$1" | grep -Eq 'statically linked|static-pie linked'
  else
    # No `file`: a dynamic ELF names its loader (PT_INTERP) in its first bytes.
    ! head -c 4096 "$1" | grep -aq 'ld-linux\|ld-musl'
  fi
}
is_static "$usher" || { say "error: $usher is not statically linked"; exit 1; }

# --- static busybox ----------------------------------------------------------
busybox=${BUSYBOX:-}
if [ -z "$busybox" ] && dpkg -s busybox-static >/dev/null 2>&1; then
  busybox=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)
  say "using the installed busybox-static: $busybox"
fi
if [ -z "$busybox" ]; then
  cache="$target_dir/busybox-static"
  busybox="$cache/root/bin/busybox"
  if [ ! -x "$busybox" ]; then
    say "fetching busybox-static with apt-get download"
    rm -rf "$cache" && mkdir -p "$cache"
    if ! (cd "$cache" && apt-get download busybox-static >&2); then
      if [ "$(id -u)" = 0 ]; then
        say "apt-get download failed; running apt-get update first"
        apt-get update -qq >&2
        (cd "$cache" && apt-get download busybox-static >&2)
      else
        say "error: cannot download busybox-static (run apt-get update, or install busybox-static, or set BUSYBOX)"
        exit 1
      fi
    fi
    dpkg-deb -x "$cache"/busybox-static_*.deb "$cache/root"
  fi
fi
[ -x "$busybox" ] || { say "error: no busybox at $busybox"; exit 1; }
is_static "$busybox" || { say "error: $busybox is not statically linked"; exit 1; }

# --- root filesystem and build context ---------------------------------------
rm -rf "$work"
root="$work/rootfs"
mkdir -p "$root/bin" "$root/usr/local/bin" "$root/app" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cp "$usher" "$root/usher"
cp "$usher" "$root/usr/local/bin/usher"
cp "$here"/apps/* "$root/app/"
chmod 755 "$root/usher" "$root/usr/local/bin/usher" "$root"/app/*
if [ "$rootfs_only" = 1 ]; then
  echo "rootfs=$root"
  exit 0
fi
tag() { echo "usher-test-$run_id:$1"; }
build() { # NAME CONTEXT: builds $work/NAME.Dockerfile, prints NAME=ID
  local name=$1 context=$2 id
  id=$(docker build -q -t "$(tag "$name")" -f "$work/$name.Dockerfile" "$context" \
    2> >(grep -v -i -e deprecated -e buildx -e '^ *$' >&2))
  echo "$name=$id"
}

# The images. Every one is FROM scratch (there is no registry to pull from):
# `base` is the root filesystem and the labels; each other image inherits
# both and adds its ENTRYPOINT. (One instruction per step: every instruction
# is a layer to commit, which is slow on some storage drivers.)
cat >"$work/base.Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin
LABEL usher-test=1 usher-test.run="$run_id" usher-test.pid="$owner" usher-test.host="$host"
DOCKERFILE
variant() { # NAME LINE...: an image FROM base with these Dockerfile lines
  local name=$1
  shift
  { echo "FROM $(tag base)"; printf '%s\n' "$@"; } >"$work/$name.Dockerfile"
}
# The bug: a shell as PID 1. The command after the app keeps busybox sh from
# exec'ing the app (it execs the last simple command of a -c string, which
# would make the app PID 1 itself), so sh stays PID 1 with no TERM handler
# and the kernel drops docker stop's SIGTERM.
wrapper='/app/trap-app; echo \"trap-app exited: $?\"'
variant bare "ENTRYPOINT [\"sh\", \"-c\", \"$wrapper\"]"
# The fix, in the exec form of Dockerfile.example: usher is PID 1.
variant usher-exec 'ENTRYPOINT ["/usher", "--", "sh", "-c", "/app/trap-app"]'
# The fix in front of the very same shell command as `bare`.
variant usher-wrapped \
  "ENTRYPOINT [\"/usher\", \"--grace-period\", \"10s\", \"--\", \"sh\", \"-c\", \"$wrapper\"]"
# usher with no options; the tests pass the app (and --entrypoint for options).
variant usher 'ENTRYPOINT ["/usher", "--"]' 'CMD ["sh"]'
# The twin of Dockerfile.example's app stage: its ENTRYPOINT (and STOPSIGNAL,
# if any) lines verbatim, with an app that traps TERM as CMD.
mapfile -t example < <(grep -E '^(ENTRYPOINT|STOPSIGNAL) ' "$repo/Dockerfile.example")
printf '%s\n' "${example[@]}" | grep -q '^ENTRYPOINT ' \
  || { say "error: no ENTRYPOINT line in Dockerfile.example"; exit 1; }
variant twin "${example[@]}" 'CMD ["sh", "-c", "/app/trap-app"]'

# The shell-less image: a static usher and a static C app, nothing else (no
# busybox: no shell, no curl), so an HTTP hook can only be usher's own.
hook="$work/http-hook"
mkdir "$hook"
say "compiling http-app.c (static)"
cc -static -O2 -Wall -o "$hook/http-app" "$here/http-app.c" >&2 \
  || { say "error: cannot link a static http-app (needs gcc and libc6-dev)"; exit 1; }
is_static "$hook/http-app" || { say "error: http-app is not statically linked"; exit 1; }
cp "$usher" "$hook/usher"
cat >"$work/http-hook.Dockerfile" <<DOCKERFILE
FROM scratch
COPY usher http-app /
ENTRYPOINT ["/usher"]
LABEL usher-test=1 usher-test.run="$run_id" usher-test.pid="$owner" usher-test.host="$host"
DOCKERFILE

# The OOM test's app (static C: allocates until the OOM killer kills it), in
# /app of the busybox images (the usher image runs it as `/app/oom-app`).
say "compiling oom-app.c (static)"
cc -static -O2 -Wall -o "$root/app/oom-app" "$here/oom-app.c" >&2 \
  || { say "error: cannot link a static oom-app (needs gcc and libc6-dev)"; exit 1; }

say "building images (run $run_id)"
build base "$work"
mkdir "$work/empty"
pids=()
for name in bare usher-exec usher-wrapped usher twin; do
  build "$name" "$work/empty" &
  pids+=($!)
done
build http-hook "$hook" &
pids+=($!)
fail=0
for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
[ "$fail" = 0 ] || { say "error: an image build failed"; exit 1; }
say "done"
