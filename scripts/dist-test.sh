#!/usr/bin/env bash
# Runs the PID-1 integration tests (tests/core.rs, tests/shutdown.rs) against
# the release binaries that scripts/dist.sh wrote, each as PID 1 of a PID
# namespace: natively where this machine runs the binary, otherwise under
# qemu-user. What emulation changes is in docs/architectures.md.
#
#   scripts/dist-test.sh                every binary in dist/
#   scripts/dist-test.sh arm64 armv7    only these platforms
#
# The emulator: qemu-user from the Debian release's backports when it can be
# had (unpacked under target/qemu, nothing installed system-wide: a newer
# qemu emulates more, see docs/architectures.md), else Debian's
# qemu-user-static (apt-get). Tests that need what the emulator lacks are
# skipped, each named with the reason; every other test must pass.
# Environment: DIST_DIR (default dist/), QEMU (a directory of qemu-ARCH
# binaries to use instead), CARGO.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
dist=${DIST_DIR:-$ROOT/dist}
cargo=${CARGO:-cargo}
export DEBIAN_FRONTEND=noninteractive
say() { echo "dist-test: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

qemu_arch() {
  case "$1" in
    amd64) echo x86_64 ;; arm64) echo aarch64 ;; armv7) echo arm ;; 386) echo i386 ;;
    s390x | ppc64le | riscv64) echo "$1" ;;
    *) return 1 ;;
  esac
}

# A newer qemu-user, unpacked from the backports .deb into target/qemu: apt
# with private lists, so the machine's own sources stay as they are.
fetch_backports_qemu() {
  local dir=$ROOT/target/qemu codename mirror apt
  [ -x "$dir/usr/bin/qemu-aarch64" ] && { echo "$dir/usr/bin"; return 0; }
  command -v apt-get >/dev/null 2>&1 || return 1
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || return 1
  # The Debian mirror this machine already uses for $codename.
  mirror=$(apt-cache policy 2>/dev/null | awk -v s="$codename/main" '$3 == s { print $2; exit }')
  [ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk -v c="$codename" '$1 == "deb" && $3 == c { print $2; exit }')
  [ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v c="$codename" '
    BEGIN { RS = "" } $0 ~ "Suites:[^\n]*[ ]" c "([ \n]|$)" {
      for (i = 1; i < NF; i++) if ($i == "URIs:") { print $(i + 1); exit } }')
  [ -n "$mirror" ] || return 1
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp/lists/partial" "$dir.tmp/cache/archives/partial"
  echo "deb $mirror $codename-backports main" >"$dir.tmp/sources.list"
  apt=(-o "Dir::Etc::SourceList=$dir.tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$dir.tmp/lists" -o "Dir::Cache=$dir.tmp/cache"
    -o APT::Sandbox::User=root)
  say "fetching qemu-user from $codename-backports"
  apt-get "${apt[@]}" update -qq >/dev/null 2>&1 || return 1
  (cd "$dir.tmp" && apt-get "${apt[@]}" download "qemu-user/$codename-backports" >/dev/null 2>&1) || return 1
  dpkg-deb -x "$dir.tmp"/qemu-user_*.deb "$dir.tmp/root" || return 1
  [ -x "$dir.tmp/root/usr/bin/qemu-aarch64" ] || return 1
  # Only the emulators of the platforms usher ships (the package has 40).
  find "$dir.tmp/root/usr/bin" -name 'qemu-*' ! -name qemu-x86_64 ! -name qemu-aarch64 \
    ! -name qemu-arm ! -name qemu-i386 ! -name qemu-s390x ! -name qemu-ppc64le \
    ! -name qemu-riscv64 -delete
  rm -rf "$dir" && mv "$dir.tmp/root" "$dir" && rm -rf "$dir.tmp"
  echo "$dir/usr/bin"
}

qemu_dir=${QEMU:-}
emulator_for() { # PLATFORM: the emulator to run its binary with
  local q
  q=$(qemu_arch "$1")
  if [ -z "$qemu_dir" ]; then
    qemu_dir=$(fetch_backports_qemu) || qemu_dir=none
    [ "$qemu_dir" != none ] || say "no backports qemu; using Debian's qemu-user-static"
  fi
  if [ "$qemu_dir" != none ] && [ -x "$qemu_dir/qemu-$q" ]; then
    echo "$qemu_dir/qemu-$q"
    return
  fi
  if ! command -v "qemu-$q-static" >/dev/null 2>&1; then
    as_root apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null 2>&1 \
      || { as_root apt-get update -qq >/dev/null 2>&1 \
        && as_root apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null 2>&1; } \
      || true
  fi
  command -v "qemu-$q-static"
}

# The host's own platforms (not through binfmt_misc, which would hide an
# emulator from the tests).
runs_natively() { # PLATFORM BINARY
  local native
  case "$(uname -m)" in
    x86_64) native="amd64 386" ;; aarch64) native="arm64 armv7" ;;
    armv7l) native=armv7 ;; i686) native=386 ;; *) native=$(uname -m) ;;
  esac
  [[ " $native " == *" $1 "* ]] && "$2" --version >/dev/null 2>&1
}

shopt -s nullglob
bins=("$dist"/usher-*-*-*)
[ ${#bins[@]} -gt 0 ] || { say "no binaries in $dist: run scripts/dist.sh first"; exit 1; }
wanted=("$@")

"$cargo" test --locked --no-run --test core --test shutdown >/dev/null 2>&1 \
  || "$cargo" test --locked --no-run --test core --test shutdown

summary=()
status=0
for bin in "${bins[@]}"; do
  name=${bin##*/}
  rest=${name#usher-*-}
  platform=${rest%-*}
  if [ ${#wanted[@]} -gt 0 ] && [[ " ${wanted[*]} " != *" $platform "* ]]; then
    continue
  fi
  emulator=
  if ! runs_natively "$platform" "$bin"; then
    emulator=$(emulator_for "$platform") || {
      say "$platform: no emulator for $name"
      summary+=("$platform: NOT RUN (no qemu-$(qemu_arch "$platform"))")
      status=1
      continue
    }
  fi
  skips=()
  reasons=()
  # PR_SET_CHILD_SUBREAPER: qemu 7.2 answers EINVAL (newer ones pass it on).
  if [ -n "$emulator" ] && "$emulator" "$bin" -s -- true 2>&1 | grep -q 'cannot become a subreaper'; then
    why="$("$emulator" --version | head -n1) refuses PR_SET_CHILD_SUBREAPER (EINVAL)"
    skips+=(--skip orphan_warning_only_when_not_a_reaper)
    reasons+=("SKIPPED orphan_warning_only_when_not_a_reaper: $why")
    # Tests that run as PID 1 and as a subreaper keep their PID 1 half.
    export USHERTEST_NO_SUBREAPER="$why"
    reasons+=("SKIPPED the subreaper half of the tests that run both ways: $why")
  else
    unset USHERTEST_NO_SUBREAPER
  fi
  # /proc/PID/status of an emulated usher counts qemu-user's own threads.
  if [ -n "$emulator" ]; then
    skips+=(--skip usher_runs_on_one_thread)
    reasons+=("SKIPPED usher_runs_on_one_thread: under qemu-user /proc counts the emulator's threads (the native run checks it)")
  fi
  if [ -n "$emulator" ]; then say "$platform: $name under $emulator"; else say "$platform: $name natively"; fi
  for r in "${reasons[@]}"; do echo "$r"; done
  log=$(mktemp)
  start=$(date +%s)
  if USHERTEST_USHER=$bin USHERTEST_EMULATOR=$emulator \
    "$cargo" test --locked --no-fail-fast --test core --test shutdown -- "${skips[@]}" >"$log" 2>&1; then
    result=passed
  else
    result=FAILED
    status=1
    grep -E '^test .* FAILED$|^---- |panicked at' "$log" >&2 || true
  fi
  counts=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' \
    | awk '{p += $1; f += $2} END {printf "%d passed, %d failed", p, f}')
  grep -h '^NOTE ' "$log" || true
  rm -f "$log"
  summary+=("$platform: $result: $counts, ${#reasons[@]} skipped, $(($(date +%s) - start))s (${emulator:-native})")
done

echo
echo "dist-test: core + shutdown against the release binaries"
printf '  %s\n' "${summary[@]}"
exit $status
