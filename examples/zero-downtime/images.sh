#!/usr/bin/env bash
# Builds the images of the zero-downtime example: a static usher, then
# FROM-scratch nginx images (Debian's nginx, the libraries `ldd` lists, the
# config and the two files it serves), one per way of running it as PID 1:
#   shell      busybox-static's sh as PID 1, nginx its child (no init)
#   tini       tini-static as PID 1 (docker stop sends SIGTERM)
#   tini-quit  the same with STOPSIGNAL SIGQUIT (nginx's graceful stop)
#   usher      a static usher as PID 1 (its options come with `docker run`)
# Nothing is pulled: every image is FROM scratch.
#
# Usage: images.sh RUN_ID OWNER_PID PORT_BASE WORK_DIR
#   RUN_ID     unique to this run; every image is labelled usher-zd=1,
#              usher-zd.run=RUN_ID, usher-zd.pid=OWNER_PID, usher-zd.host=HOST
#   OWNER_PID  the process that removes the images when it is done (a later
#              run removes what an owner that died left behind)
#   PORT_BASE  nginx configs are baked for ports PORT_BASE+1 .. PORT_BASE+4,
#              as /etc/nginx/PORT.conf, all on 127.0.0.1
#   WORK_DIR   scratch directory for the build context (recreated)
# Environment: USHER (a static usher to use instead of building one), CARGO,
# USHER_STATIC_TARGET_DIR (cargo target dir of the static build), ZD_IMAGES
# (the images to build besides base; default "shell tini tini-quit usher").
# Needs: docker, nginx, file; tini (for tini-static) for the tini images,
# busybox-static for the shell image.
# Output: one NAME=IMAGE_ID line per image on stdout; progress on stderr.
set -euo pipefail

run_id=${1:?usage: images.sh RUN_ID OWNER_PID PORT_BASE WORK_DIR}
owner=${2:?usage: images.sh RUN_ID OWNER_PID PORT_BASE WORK_DIR}
port_base=${3:?usage: images.sh RUN_ID OWNER_PID PORT_BASE WORK_DIR}
work=${4:?usage: images.sh RUN_ID OWNER_PID PORT_BASE WORK_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
host=$(cat /proc/sys/kernel/hostname)
say() { echo "images: $*" >&2; }

# --- leftovers of earlier runs whose owner died ------------------------------
. "$(dirname "$0")/../../tests/docker/sweep.sh"
sweep usher-zd

# --- the parts ----------------------------------------------------------------
is_static() { file -L "$1" | grep -Eq 'statically linked|static-pie linked'; }
usher=${USHER:-}
if [ -z "$usher" ]; then
  cargo=${CARGO:-cargo}
  target_dir=${USHER_STATIC_TARGET_DIR:-$repo/target/docker-static}
  arch=$(uname -m)
  say "building a static usher in $target_dir"
  if CARGO_TARGET_DIR="$target_dir" "$cargo" build --release --locked --quiet \
    --manifest-path "$repo/Cargo.toml" --target "$arch-unknown-linux-musl" >&2; then
    usher="$target_dir/$arch-unknown-linux-musl/release/usher"
  else
    say "no musl build; falling back to glibc with +crt-static"
    CARGO_TARGET_DIR="$target_dir" RUSTFLAGS='-C target-feature=+crt-static' \
      "$cargo" build --release --locked --quiet \
      --manifest-path "$repo/Cargo.toml" --target "$arch-unknown-linux-gnu" >&2
    usher="$target_dir/$arch-unknown-linux-gnu/release/usher"
  fi
fi
wanted=" ${ZD_IMAGES:-shell tini tini-quit usher} "
case "$wanted" in *" tini-quit "*) wanted="$wanted tini " ;; esac
want() { case "$wanted" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
static=("$usher")
if want tini || want tini-quit; then
  tini=/usr/bin/tini-static
  static+=("$tini")
fi
if want shell; then
  busybox=$(dpkg -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n1 || true)
  [ -n "$busybox" ] || { say "error: no busybox (package busybox-static)"; exit 1; }
  static+=("$busybox")
fi
for f in "$nginx" "${static[@]}"; do
  [ -x "$f" ] || { say "error: missing $f"; exit 1; }
done
for f in "${static[@]}"; do
  is_static "$f" || { say "error: $f is not statically linked"; exit 1; }
done

# --- nginx's root filesystem ---------------------------------------------------
rm -rf "$work"
root=$work/rootfs
mkdir -p "$root/usr/sbin" "$root/etc/nginx" "$root/srv" "$root/tmp" "$root/var/log/nginx" "$work/bin"
chmod 1777 "$root/tmp"
cp "$nginx" "$root/usr/sbin/nginx"
# The dynamic loader and every library nginx needs, at the paths ldd gives.
for lib in $(ldd "$nginx" | grep -oE '/[^ ]+'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# nginx's master runs as root and its worker as nobody (getpwnam: /etc/passwd).
printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
# The small page (1 KiB) and the slow response: 100 KiB sent at 100 KiB/s.
head -c 1024 /dev/zero | tr '\0' 's' >"$root/srv/small"
head -c 102400 /dev/zero | tr '\0' 'L' >"$root/srv/slow"
chmod 644 "$root/srv/small" "$root/srv/slow"
for port in $((port_base + 1)) $((port_base + 2)) $((port_base + 3)) $((port_base + 4)); do
  cat >"$root/etc/nginx/$port.conf" <<NGINX
# Replica on 127.0.0.1:$port. Logs to stderr (docker logs); notice level
# shows the signals nginx receives and when its workers exit.
user nobody nogroup;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    # One line per request on stderr (docker logs): when it ended (\$msec)
    # and took, on which connection (a serial number of the single worker)
    # as its how-manieth request: which shows whether a balancer pools its
    # connections, and when the last request reached a stopping replica.
    log_format zd 'zd \$msec \$request_time \$connection \$connection_requests \$status \$uri';
    access_log /dev/stderr zd;
    # Keep-alive on, long, and without a request limit, so that a pool of
    # connections (haproxy's http-reuse, keep-alive clients) really persists.
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port;
        root /srv;
        # Which replica answered, also through an L4 balancer.
        add_header X-Port \$server_port always;
        location = /small { }
        # About one second per response: in flight when the stop comes.
        location = /slow { limit_rate 100k; }
        # The prober's (kubelet's) health check.
        location = /healthz { return 200 "ok\\n"; }
    }
}
NGINX
done
cp "$usher" "$work/bin/usher"
if want tini; then cp "$tini" "$work/bin/tini"; fi
if want shell; then
  mkdir -p "$work/shell/bin"
  cp "$busybox" "$work/shell/bin/busybox"
  ln -s busybox "$work/shell/bin/sh"
fi

# --- the images ------------------------------------------------------------------
tag() { echo "usher-zd-$run_id:$1"; }
build() { # NAME: builds $work/NAME.Dockerfile, prints NAME=ID
  local id
  id=$(docker build -q -t "$(tag "$1")" -f "$work/$1.Dockerfile" "$work" \
    2> >(grep -v -i -e deprecated -e buildx -e '^ *$' >&2))
  echo "$1=$id"
}
cat >"$work/base.Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/sbin:/bin
LABEL usher-zd=1 usher-zd.run="$run_id" usher-zd.pid="$owner" usher-zd.host="$host"
DOCKERFILE
variant() { # NAME FROM LINE...: an image FROM another one, plus these lines
  local name=$1 from=$2
  shift 2
  { echo "FROM $(tag "$from")"; printf '%s\n' "$@"; } >"$work/$name.Dockerfile"
}
# The shell stays PID 1 (a command follows nginx), with no TERM handler.
variant shell base 'COPY shell/ /' 'ENTRYPOINT ["/bin/sh", "-c"]'
variant tini base 'COPY bin/tini /tini' 'ENTRYPOINT ["/tini", "--"]'
variant tini-quit tini 'STOPSIGNAL SIGQUIT'
variant usher base 'COPY bin/usher /usher' 'ENTRYPOINT ["/usher"]'

say "building images (run $run_id)"
build base
for name in shell tini tini-quit usher; do  # tini before tini-quit, built FROM it
  if want "$name"; then build "$name"; fi
done
say "done"
