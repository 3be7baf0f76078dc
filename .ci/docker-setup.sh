#!/usr/bin/env bash
# CI preparation for the Docker end-to-end tests (tests/docker.rs). Run from
# .ci/run before `cargo test`, on a fresh machine with a running Docker
# engine and no image registry. Idempotent.
#
# What the tests need, and what this script makes sure of:
#   - a Docker engine that answers (the docker CLI and a running daemon);
#     checked here, waiting up to 60s for a daemon that is still starting;
#   - busybox-static (the shell and tools of the FROM-scratch test images;
#     tests/docker/setup.sh can also `apt-get download` it, but installing
#     it up front keeps the test run offline);
#   - python3 (drives `docker run -it` through a pseudo-terminal);
#   - file (setup.sh's check that usher and busybox are statically linked);
#   - the Rust musl target for a static usher (else setup.sh falls back to
#     glibc with +crt-static, which needs nothing more);
#   - for usher as the engines' own init: the Compose tool (Debian's
#     docker-compose) and Podman, the latter without its recommends (the
#     test uses host networking and a private vfs store). A Podman that
#     cannot be installed is reported, and .ci/run then does not require
#     its test.
# Nothing is pulled: every test image is built FROM scratch.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(busybox-static python3 file docker-compose)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
need_podman=0
command -v podman >/dev/null 2>&1 || need_podman=1
if [ ${#missing[@]} -gt 0 ] || [ "$need_podman" = 1 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    echo "docker-setup: installing ${missing[*]}"
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ "$need_podman" = 1 ]; then
    echo "docker-setup: installing podman (no recommends)"
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends podman >/dev/null \
      || echo "docker-setup: note: podman could not be installed; its test will skip"
  fi
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target add "$(uname -m)-unknown-linux-musl" >/dev/null 2>&1 \
    || echo "docker-setup: note: no musl target; the static build uses glibc +crt-static"
fi

if ! command -v docker >/dev/null 2>&1; then
  echo "docker-setup: error: no docker CLI on this machine" >&2
  exit 1
fi
for _ in $(seq 60); do
  if version=$(timeout 20 docker version --format '{{.Server.Version}}' 2>/dev/null) \
    && [ -n "$version" ]; then
    echo "docker-setup: Docker engine $version answers"
    exit 0
  fi
  sleep 1
done
echo "docker-setup: error: no Docker engine answers (docker version):" >&2
timeout 20 docker version >&2 || true
exit 1
