#!/usr/bin/env bash
# Builds the release binaries: a static usher for every platform it ships on.
#
#   scripts/dist.sh                  every platform (amd64 arm64 armv7 386 s390x
#                                    ppc64le riscv64)
#   scripts/dist.sh arm64 armv7      only these
#   scripts/dist.sh native           this machine's platform (`uname -m`)
#   scripts/dist.sh --docs           also rewrite docs/sizes.md from this run
#   scripts/dist.sh --plan arm64     print the platform and its Rust targets
#                                    (musl, then glibc), build nothing
#
# A PLATFORM is Docker's name (TARGETARCH, with TARGETVARIANT for arm:
# amd64 arm64 armv7 386 s390x ppc64le riscv64), `uname -m`'s, or native.
#
# Writes, into $DIST_DIR (default dist/, emptied first):
#   usher-VERSION-PLATFORM-LIBC   one static binary per platform; PLATFORM is
#                                 Docker's name (TARGETARCH, plus the variant
#                                 for arm: armv7), LIBC is musl or glibc
#   usher.1                       the man page (docs/usher.1)
#   SHA256SUMS                    `sha256sum -c SHA256SUMS` checks them all
#   sizes.md                      a table: platform, file, Rust target, size
#
# musl where the Rust toolchain can install the target's standard library
# (linked with rust-lld, or the host's cc for the host's own architecture);
# otherwise glibc linked statically (+crt-static) with Debian's cross gcc.
# Installs what it needs: rustup targets and, for glibc, the Debian cross
# compiler and C library (apt-get, with sudo when not root). A platform that
# cannot be built is reported, and the others are still built; the exit code
# is 1 then.
#
# Environment: DIST_DIR, CARGO_TARGET_DIR (default target/), CARGO.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }

ALL=(amd64 arm64 armv7 386 s390x ppc64le riscv64)
platforms=()
docs=0
plan=0
for arg in "$@"; do
  case "$arg" in
    --docs) docs=1 ;;
    --plan) plan=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "dist: unknown option: $arg" >&2; usage >&2; exit 2 ;;
    *) platforms+=("$arg") ;;
  esac
done
[ ${#platforms[@]} -gt 0 ] || platforms=("${ALL[@]}")

cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
dist=${DIST_DIR:-$ROOT/dist}
# The flags here are the whole recipe: a RUSTFLAGS from the caller would
# override the per-target ones below and change what ships.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
export DEBIAN_FRONTEND=noninteractive
# Progress goes to fd 3, the script's stderr, even from inside $(resolve),
# whose own stderr carries only the reason a platform cannot be built.
exec 3>&2
say() { echo "dist: $*" >&3; }

# Per platform: the musl target, the glibc target, Debian's cross gcc prefix
# and the cross C library package (the glibc fallback's linker and libc.a).
spec() {
  case "$1" in
    amd64) echo "x86_64-unknown-linux-musl x86_64-unknown-linux-gnu x86_64-linux-gnu amd64" ;;
    arm64) echo "aarch64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-linux-gnu arm64" ;;
    armv7) echo "armv7-unknown-linux-musleabihf armv7-unknown-linux-gnueabihf arm-linux-gnueabihf armhf" ;;
    386) echo "i686-unknown-linux-musl i686-unknown-linux-gnu i686-linux-gnu i386" ;;
    s390x) echo "s390x-unknown-linux-musl s390x-unknown-linux-gnu s390x-linux-gnu s390x" ;;
    ppc64le) echo "powerpc64le-unknown-linux-musl powerpc64le-unknown-linux-gnu powerpc64le-linux-gnu ppc64el" ;;
    riscv64) echo "riscv64gc-unknown-linux-musl riscv64gc-unknown-linux-gnu riscv64-linux-gnu riscv64" ;;
    *) return 1 ;;
  esac
}

# Docker's platform name for PLATFORM, which may also be `uname -m`'s name.
normalize() {
  case "$1" in
    native) normalize "$(uname -m)" ;;
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    armv7l) echo armv7 ;;
    i386 | i486 | i586 | i686) echo 386 ;;
    *) echo "$1" ;;
  esac
}

if [ "$plan" = 1 ]; then
  status=0
  for p in "${platforms[@]}"; do
    n=$(normalize "$p")
    if s=$(spec "$n"); then
      read -r musl gnu _ <<<"$s"
      echo "$n $musl $gnu"
    else
      say "$p: unknown platform (known: ${ALL[*]}, native)"
      status=2
    fi
  done
  exit $status
fi

version=$("$cargo" pkgid --manifest-path "$ROOT/Cargo.toml" 2>/dev/null | sed 's/.*[#@]//')
[ -n "$version" ] || { say "error: cannot read the version from Cargo.toml"; exit 1; }
host_arch=$(uname -m)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() { # PACKAGE...: installs the missing ones; fails quietly
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing ${missing[*]}"
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1
}

have_target() { # TRIPLE: its standard library is installed
  [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]
}
add_target() { # TRIPLE: installs it if rustup can
  have_target "$1" && return 0
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target add "$1" >/dev/null 2>&1
}

# A FROM-scratch image has no loader: only a binary without PT_INTERP ships.
is_static() {
  if command -v file >/dev/null 2>&1; then
    file -L "$1" | grep -Eq 'statically linked|static-pie linked'
  else
    ! head -c 4096 "$1" | grep -aq 'ld-linux\|ld-musl\|ld\.so'
  fi
}

commas() { echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }
env_name() { echo "$1" | tr 'a-z-' 'A-Z_'; }

# resolve PLATFORM: picks the target and linker, installing what they need;
# prints "TRIPLE LIBC LINKER HOW" (LINKER - for the default), or returns 1
# with the reason on stderr.
resolve() {
  local platform=$1 musl gnu prefix debarch
  read -r musl gnu prefix debarch <<<"$(spec "$platform")"
  if add_target "$musl"; then
    # rust-lld for every musl target, the host's too (.cargo/config.toml
    # says the same for x86_64): smaller than the system's ld.bfd.
    echo "$musl musl rust-lld musl, rust-lld"
  elif add_target "$gnu"; then
    if [ "${gnu%%-*}" = "$host_arch" ]; then
      echo "$gnu glibc - glibc +crt-static, host cc"
      return 0
    fi
    if ! command -v "$prefix-gcc" >/dev/null 2>&1 || [ ! -d "/usr/$prefix/lib" ]; then
      apt_install "gcc-$prefix" "libc6-dev-$debarch-cross" || true
    fi
    if ! command -v "$prefix-gcc" >/dev/null 2>&1; then
      echo "no musl target ($musl) and no $prefix-gcc (apt-get install gcc-$prefix libc6-dev-$debarch-cross)" >&2
      return 1
    fi
    echo "$gnu glibc $prefix-gcc glibc +crt-static, $prefix-gcc"
  else
    echo "neither $musl nor $gnu can be installed (rustup target add)" >&2
    return 1
  fi
}

# cargo build --release for TRIPLE..., each with its linker and flags from
# the chosen table: one cargo, so the targets build in parallel.
cargo_build() {
  local envs=() args=() t row triple libc linker var
  for t in "$@"; do
    for row in "${chosen[@]}"; do
      read -r _ triple libc linker _ <<<"$row"
      [ "$triple" = "$t" ] || continue
      var=$(env_name "$triple")
      [ "$linker" = - ] || envs+=("CARGO_TARGET_${var}_LINKER=$linker")
      [ "$libc" = musl ] || envs+=("CARGO_TARGET_${var}_RUSTFLAGS=-C target-feature=+crt-static")
      args+=(--target "$triple")
    done
  done
  env "${envs[@]}" "$cargo" build --release --locked --quiet \
    --manifest-path "$ROOT/Cargo.toml" --target-dir "$target_dir" "${args[@]}"
}

rm -rf "$dist"
mkdir -p "$dist"
chosen=() # "PLATFORM TRIPLE LIBC LINKER HOW"
failed=()
for platform in "${platforms[@]}"; do
  platform=$(normalize "$platform")
  if ! spec "$platform" >/dev/null; then
    say "$platform: unknown platform (known: ${ALL[*]}, native)"
    failed+=("$platform")
  elif plan_line=$(resolve "$platform" 2>/tmp/dist-why.$$); then
    chosen+=("$platform $plan_line")
    say "$platform: ${plan_line%% *} (${plan_line#* * * })"
  else
    say "$platform: NOT BUILT: $(cat /tmp/dist-why.$$)"
    failed+=("$platform")
  fi
done
rm -f /tmp/dist-why.$$

triples=()
for row in "${chosen[@]}"; do triples+=("$(echo "$row" | cut -d' ' -f2)"); done
log=$(mktemp)
broken=" "
if [ ${#triples[@]} -gt 0 ] && ! cargo_build "${triples[@]}" >"$log" 2>&1; then
  # Find which: each on its own (the others are cached by now). A failed
  # target's old binary may still be in target/: it must not ship.
  say "the build failed; building each target alone to find which"
  for t in "${triples[@]}"; do
    if ! cargo_build "$t" >"$log" 2>&1; then
      say "$t: cargo build failed: $(tail -n 5 "$log")"
      broken+="$t "
    fi
  done
fi
rm -f "$log"

rows=()
for row in "${chosen[@]}"; do
  read -r platform triple libc linker how <<<"$row"
  bin=$target_dir/$triple/release/usher
  if [[ "$broken" == *" $triple "* ]]; then
    say "$platform: NOT BUILT: cargo build --target $triple failed"
    failed+=("$platform")
    continue
  fi
  if ! is_static "$bin" 2>/dev/null; then
    say "$platform: NOT BUILT: $bin is missing or not statically linked"
    failed+=("$platform")
    continue
  fi
  file=usher-$version-$platform-$libc
  cp "$bin" "$dist/$file"
  chmod 755 "$dist/$file"
  bytes=$(stat -c %s "$dist/$file")
  say "$platform: $file, $bytes bytes"
  rows+=("$platform|$file|$triple|$libc|$how|$bytes")
done

# The man page, generated from the same option table as --help (a unit test
# keeps docs/usher.1 current); `install -m 644 usher.1 /usr/local/share/man/man1/`.
cp "$ROOT/docs/usher.1" "$dist/usher.1"
if [ ${#rows[@]} -gt 0 ]; then
  (cd "$dist" && sha256sum usher-* usher.1 >SHA256SUMS)
fi

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
{
  echo "| platform | file | Rust target | how it is linked | bytes | KiB |"
  echo "| --- | --- | --- | --- | ---: | ---: |"
  for row in "${rows[@]}"; do
    IFS='|' read -r platform file triple libc how bytes <<<"$row"
    printf '| %s | `%s` | %s | %s | %s | %s |\n' "$platform" "$file" "$triple" "$how" \
      "$(commas "$bytes")" "$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1024 }')"
  done
  for platform in "${failed[@]}"; do
    echo "| $platform | not built | | | | |"
  done
  echo
  echo "usher $version ($commit), $(rustc --version), release profile; \`scripts/dist.sh\` on $(uname -m)."
} >"$dist/sizes.md"

if [ "$docs" = 1 ]; then
  {
    echo "# Release binaries and their sizes"
    echo
    echo "Generated by \`scripts/dist.sh --docs\` on $(date -u '+%Y-%m-%d') — do not edit by hand, run the command again."
    echo "Every binary is static (no loader, no shared library), so the same file runs in scratch,"
    echo "distroless, Alpine and Debian images. Which architectures ship, how they are tested"
    echo "(under qemu-user) and what emulation cannot show: [architectures.md](architectures.md)."
    echo
    cat "$dist/sizes.md"
  } >"$ROOT/docs/sizes.md"
  say "wrote docs/sizes.md"
fi

echo
cat "$dist/sizes.md"
if [ ${#failed[@]} -gt 0 ]; then
  say "not built: ${failed[*]}"
  exit 1
fi
