#!/usr/bin/env bash
# Build the local Debian base image (debootstrap --variant=minbase + docker import), tagged
# modeldeploy/base:<suite>. Images for tests are built FROM it here, where no registry is
# reachable; elsewhere a public image such as debian:bookworm-slim plays the same part.
# The rootfs tarball is cached under the cache dir, so a rebuild only re-imports it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

TAG="${BASE_IMAGE_TAG:-modeldeploy/base:$DEBIAN_SUITE}"
TARBALL="$CACHE_DIR/rootfs/base-$DEBIAN_SUITE-minbase.tar"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "base image $TAG present"
  exit 0
fi

if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null; }
  }
  mirror="$(debian_mirror)"
  root="$CACHE_DIR/rootfs/base-$DEBIAN_SUITE.tmp"
  rm -rf "$root"; mkdir -p "$root"
  log "debootstrap --variant=minbase $DEBIAN_SUITE from ${mirror:-the default mirror}"
  run_logged debootstrap-base debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" ${mirror:+"$mirror"}
  # Trim what a container never needs.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
  tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$root"
fi

# pip inside `docker build` must trust the same CA bundle as this host: ship it in the image at a
# path Debian's ca-certificates package does not manage, and point pip at it.
changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["/bin/bash"]')
src="$TARBALL"
host_ca=/etc/ssl/certs/ca-certificates.crt
if [ -s "$host_ca" ]; then
  stage="$(mktemp -d)"; trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/x/usr/local/share/ca-certificates-host"
  cp "$host_ca" "$stage/x/usr/local/share/ca-certificates-host/ca-certificates.crt"
  cp "$TARBALL" "$stage/rootfs.tar"
  tar -C "$stage/x" --numeric-owner -rf "$stage/rootfs.tar" ./usr/local/share/ca-certificates-host
  src="$stage/rootfs.tar"
  changes+=(--change 'ENV PIP_CERT=/usr/local/share/ca-certificates-host/ca-certificates.crt')
fi
log "docker import $TARBALL as $TAG"
docker import "${changes[@]}" "$src" "$TAG" >/dev/null
log "base image $TAG ready"
