#!/usr/bin/env bash
# Packs a root filesystem into a one-layer OCI image-layout tarball that
# `ctr images import` accepts, without Docker and without a registry
# (tests/containerd.rs; the root filesystem is tests/docker/setup.sh's, made
# with USHER_SETUP_ROOTFS_ONLY=1).
#
# Usage: oci-image.sh ROOTFS WORK_DIR NAME
#   ROOTFS    the directory to pack (it becomes the image's only layer)
#   WORK_DIR  scratch directory for the image layout (recreated)
#   NAME      the image's name in containerd (annotation io.containerd.image.name)
# Output: the tarball's path on stdout.
#
# The layer is an uncompressed tar with every owner root and every time 0,
# in name order: the same root filesystem gives the same digests. The image
# config is that of setup.sh's `usher` image: PATH, ENTRYPOINT ["/usher",
# "--"], CMD ["sh"].
set -euo pipefail

rootfs=${1:?usage: oci-image.sh ROOTFS WORK_DIR NAME}
work=${2:?usage: oci-image.sh ROOTFS WORK_DIR NAME}
name=${3:?usage: oci-image.sh ROOTFS WORK_DIR NAME}
[ -x "$rootfs/usher" ] || { echo "oci-image.sh: no $rootfs/usher" >&2; exit 1; }

case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  armv7l) arch=arm ;;
  i?86) arch=386 ;;
  *) arch=$(uname -m) ;;
esac

rm -rf "$work"
layout="$work/layout"
blobs="$layout/blobs/sha256"
mkdir -p "$blobs"

# blob FILE: moves FILE into blobs/ under its digest; prints "DIGEST SIZE".
blob() {
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$blobs/$digest"
  echo "$digest $size"
}

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -C "$rootfs" -cf "$work/layer.tar" .
read -r layer layer_size < <(blob "$work/layer.tar")

printf '%s' '{"architecture":"'"$arch"'","os":"linux",'\
'"config":{"Env":["PATH=/usr/local/bin:/bin"],"Entrypoint":["/usher","--"],"Cmd":["sh"]},'\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer"'"]}}' >"$work/config.json"
read -r config config_size < <(blob "$work/config.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer"'","size":'"$layer_size"'}]}' \
  >"$work/manifest.json"
read -r manifest manifest_size < <(blob "$work/manifest.json")

printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"digest":"sha256:'"$manifest"'","size":'"$manifest_size"','\
'"platform":{"architecture":"'"$arch"'","os":"linux"},'\
'"annotations":{"io.containerd.image.name":"'"$name"'"}}]}' >"$layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -C "$layout" -cf "$work/image.tar" oci-layout index.json blobs
echo "$work/image.tar"
