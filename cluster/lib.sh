# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for the cluster tooling scripts (sourced, not run).
# Pinned versions, the version-keyed cache layout and small logging helpers live here.

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/.." && pwd)"
TOOLS_BIN="$REPO_ROOT/.tools/bin"

# Pinned versions. Kubernetes stays at 1.34: kubelet 1.35+ refuses cgroup v1 hosts.
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
K8S_STAGING_VERSION="v0${K8S_VERSION#v1}"          # v1.34.4 -> v0.34.4
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"     # what kubeadm $K8S_VERSION deploys
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"             # what kubeadm $K8S_VERSION deploys (3.6.5-0)
PAUSE_VERSION="${PAUSE_VERSION:-3.10.1}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
# SeaweedFS (Apache-2.0), the S3-compatible store the S3 tests start; a pseudo-version of its module
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CLUSTER_NAME="${CLUSTER_NAME:-modeldeploy}"

# Debian packages of the kind node image and of the kube-proxy image.
NODE_PKGS="systemd systemd-sysv dbus containerd runc containernetworking-plugins conntrack iptables nftables \
iproute2 ethtool util-linux mount kmod libseccomp2 pigz e2fsprogs bash ca-certificates curl jq procps \
socat ebtables ipset"
PROXY_PKGS="iptables conntrack ipset kmod nftables"

CACHE_DIR="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}"
export GOMODCACHE="$CACHE_DIR/go/mod"
export GOCACHE="$CACHE_DIR/go/build"
export GOFLAGS="-mod=mod -buildvcs=false"
export GOSUMDB="${GOSUMDB:-off}"
export CGO_ENABLED=0
export PATH="$TOOLS_BIN:/usr/local/go/bin:$PATH"

K8S_BIN_DIR="$CACHE_DIR/k8s/$K8S_VERSION/bin"
SEAWEEDFS_BIN="$CACHE_DIR/seaweedfs/$SEAWEEDFS_VERSION/weed"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# run_logged NAME CMD...: run a command, keep its output in the cache log dir, show the tail on failure.
run_logged() {
  local name="$1"; shift
  mkdir -p "$CACHE_DIR/logs"
  local logf="$CACHE_DIR/logs/$name.log"
  if ! "$@" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "$name failed (full log: $logf)"
  fi
}

# Debian mirror as configured for apt on this host (first deb822 or one-line source); empty when
# none is found, and debootstrap then uses its own default.
debian_mirror() {
  local m
  m="$(grep -hoE '^URIs: *\S+/debian/?$' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')" || true
  if [ -z "$m" ]; then
    m="$(grep -hoE '^deb +\S+/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 | awk '{print $2}')" || true
  fi
  echo "$m"
}

# rootfs_tar NAME "PKGS": path of a cached debootstrap (minbase) rootfs tarball with those packages.
rootfs_tar() {  # NAME "PKGS": cached debootstrap rootfs tarball with the given packages
  local name="$1" pkgs="$2"
  local h; h="$(echo "$DEBIAN_SUITE $pkgs" | sha256sum | cut -c1-12)"
  local tar="$CACHE_DIR/rootfs/$name-$DEBIAN_SUITE-$h.tar"
  if [ ! -s "$tar" ]; then
    local mirror; mirror="$(debian_mirror)"
    mkdir -p "$CACHE_DIR/rootfs"
    local root="$CACHE_DIR/rootfs/$name.tmp"
    rm -rf "$root"; mkdir -p "$root"
    log "debootstrap $name rootfs ($DEBIAN_SUITE, minbase + ${pkgs// /,})"
    run_logged "debootstrap-$name" debootstrap --variant=minbase --include="${pkgs// /,}" "$DEBIAN_SUITE" "$root" ${mirror:+"$mirror"}
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    tar -C "$root" --numeric-owner -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"; rm -rf "$root"
  fi
  echo "$tar"
}
