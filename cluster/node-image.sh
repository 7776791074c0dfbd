#!/usr/bin/env bash
# Build the kind node image offline: a Debian rootfs (debootstrap, with systemd, containerd, runc,
# CNI plugins, iptables, conntrack, ...) plus kind's node files for $KIND_VERSION (read from the
# sigs.k8s.io/kind Go module at build time), the Kubernetes binaries built by build-k8s.sh, and
# the control-plane images (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
# etcd, coredns, pause) made locally from those binaries and imported into the node's containerd
# at boot. Imported with `docker import`; tagged modeldeploy/kind-node:<k8s>-<hash>.
# Prints the image tag on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$CLUSTER_DIR/build-k8s.sh" >&2
B="$K8S_BIN_DIR"

# The tag changes whenever an input changes: versions, package lists and the files in node/.
inputs_hash="$( { echo "$K8S_VERSION $KIND_VERSION $ETCD_VERSION $COREDNS_VERSION $PAUSE_VERSION $DEBIAN_SUITE"
                  echo "$NODE_PKGS $PROXY_PKGS"; cat "$CLUSTER_DIR/node-image.sh" "$CLUSTER_DIR/lib.sh" "$CLUSTER_DIR"/node/*; } | sha256sum | cut -c1-12)"
TAG="modeldeploy/kind-node:$K8S_VERSION-$inputs_hash"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "node image $TAG present"
  echo "$TAG"; exit 0
fi

# kind's node files, from its Go module.
KIND_DIR="$(cd /tmp && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
KFILES="$KIND_DIR/images/base/files"
[ -d "$KFILES" ] || die "kind node files not found in sigs.k8s.io/kind@$KIND_VERSION"

WORK="$(mktemp -d "$CACHE_DIR/nodebuild.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# --- control-plane images ------------------------------------------------------------------------
mkdir -p "$WORK/images"
ENVPATH='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
replace_image() {  # REF CMD...: run CMD (which tags REF), then drop the image REF named before, if any
  local ref="$1"; shift
  local before; before="$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)"
  "$@" >/dev/null
  local after; after="$(docker image inspect -f '{{.Id}}' "$ref")"
  if [ -n "$before" ] && [ "$before" != "$after" ]; then docker rmi "$before" >/dev/null 2>&1 || true; fi
}
static_image() {  # REF BINARY DEST [ENTRYPOINT-JSON]
  local ref="$1" bin="$2" dest="$3" ep="${4:-}"
  local r="$WORK/img-root"
  rm -rf "$r"; mkdir -p "$r$(dirname "$dest")" "$r/tmp" "$r/etc" "$r/var/run"
  chmod 1777 "$r/tmp"
  install -m 0755 "$bin" "$r$dest"
  echo 'root:x:0:0:root:/root:/sbin/nologin' >"$r/etc/passwd"
  echo 'root:x:0:' >"$r/etc/group"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && { mkdir -p "$r/etc/ssl/certs"; cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"; }
  local changes=(--change "$ENVPATH")
  [ -n "$ep" ] && changes+=(--change "ENTRYPOINT $ep")
  replace_image "$ref" bash -c 'set -o pipefail; tar -C "$1" --numeric-owner -c . | docker import "${@:3}" - "$2"' _ "$r" "$ref" "${changes[@]}"
}
save_image() { docker save "$1" -o "$WORK/images/$2.tar"; }

reg=registry.k8s.io
log "making control-plane images for $K8S_VERSION"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  static_image "$reg/$c:$K8S_VERSION" "$B/$c" "/usr/local/bin/$c"
  save_image "$reg/$c:$K8S_VERSION" "$c"
done
static_image "$reg/etcd:${ETCD_VERSION#v}-0" "$B/etcd" /usr/local/bin/etcd
save_image "$reg/etcd:${ETCD_VERSION#v}-0" etcd
static_image "$reg/coredns/coredns:$COREDNS_VERSION" "$B/coredns" /coredns '["/coredns"]'
save_image "$reg/coredns/coredns:$COREDNS_VERSION" coredns
static_image "$reg/pause:$PAUSE_VERSION" "$B/pause" /pause '["/pause"]'
save_image "$reg/pause:$PAUSE_VERSION" pause

# kube-proxy needs iptables/conntrack userland: a small Debian rootfs with the binary added.
proxy_tar="$(rootfs_tar kube-proxy "$PROXY_PKGS")"
r="$WORK/proxy-root"; mkdir -p "$r"
tar -C "$r" -xf "$proxy_tar"
install -m 0755 "$B/kube-proxy" "$r/usr/local/bin/kube-proxy"
replace_image "$reg/kube-proxy:$K8S_VERSION" bash -c 'set -o pipefail; tar -C "$1" --numeric-owner -c . | docker import --change "$3" - "$2"' _ "$r" "$reg/kube-proxy:$K8S_VERSION" "$ENVPATH"
rm -rf "$r"
save_image "$reg/kube-proxy:$K8S_VERSION" kube-proxy

# --- node rootfs ------------------------------------------------------------------------------------
node_tar="$(rootfs_tar node "$NODE_PKGS")"
R="$WORK/node-root"; mkdir -p "$R"
log "assembling node rootfs"
tar -C "$R" -xf "$node_tar"

# kind's files, laid out as its base image Dockerfile does.
install -d -m 0755 "$R/kind" "$R/kind/bin" "$R/kind/manifests" "$R/kind/images" "$R/LICENSES"
cp -a "$KFILES/usr/local/bin/." "$R/usr/local/bin/"; chmod 0755 "$R"/usr/local/bin/*
cp -a "$KFILES/kind/." "$R/kind/"; chmod 0755 "$R"/kind/bin/*
cp -a "$KFILES/etc/." "$R/etc/"
find "$R/etc/systemd/system" "$R/etc/containerd" "$R/etc/default" "$R/etc/sysctl.d" -type f -exec chmod 0644 {} +
# Debian's containerd lives in /usr/bin; kind's unit expects /usr/local/bin.
ln -sf /usr/bin/containerd "$R/usr/local/bin/containerd"
# CNI plugins: Debian installs them in /usr/lib/cni, containerd looks in /opt/cni/bin.
mkdir -p "$R/opt/cni"; rm -rf "$R/opt/cni/bin"; ln -s /usr/lib/cni "$R/opt/cni/bin"
mkdir -p "$R/etc/cni/net.d"; install -m 0644 "$CLUSTER_DIR/node/10-bridge.conflist" "$R/etc/cni/net.d/10-bridge.conflist"

# containerd config: kind's, without the rootless-only fuse-overlayfs proxy plugin, with our pause tag.
python3 - "$R/etc/containerd/config.toml" "$reg/pause:$PAUSE_VERSION" <<'PY'
import re, sys
path, pause = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r'\[proxy_plugins\]\n(#.*\n)*\[proxy_plugins\."fuse-overlayfs"\]\n(  .*\n)*', '', text)
text = re.sub(r'sandbox_image = ".*"', 'sandbox_image = "%s"' % pause, text)
open(path, "w").write(text)
PY
# Base OCI spec for CRI containers, as kind makes it: `ctr oci spec` plus the product-files hook, no rlimits.
ctr oci spec | python3 -c '
import json, sys
spec = json.load(sys.stdin)
spec.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
spec["process"].pop("rlimits", None)
json.dump(spec, sys.stdout, indent=2)' >"$R/etc/containerd/cri-base.json"
rm -f "$R/etc/systemd/system/containerd-fuse-overlayfs.service"

# systemd trimmed as in kind's base image.
find "$R/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$R"/lib/systemd/system/multi-user.target.wants/* "$R"/etc/systemd/system/*.wants/* \
      "$R"/lib/systemd/system/local-fs.target.wants/* "$R"/lib/systemd/system/sockets.target.wants/*udev* \
      "$R"/lib/systemd/system/sockets.target.wants/*initctl* "$R"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$R/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "$R/sbin/init"

# Kubernetes binaries, kind's version file and manifests, bundled images and their import unit.
install -m 0755 "$B/kubeadm" "$B/kubelet" "$B/kubectl" "$R/usr/bin/"
[ -x "$B/crictl" ] && install -m 0755 "$B/crictl" "$R/usr/local/bin/crictl"
echo "$K8S_VERSION" >"$R/kind/version"
install -m 0644 "$CLUSTER_DIR/node/default-cni.yaml" "$R/kind/manifests/default-cni.yaml"
install -m 0644 "$CLUSTER_DIR/node/default-storage.yaml" "$R/kind/manifests/default-storage.yaml"
install -m 0755 "$CLUSTER_DIR/node/import-images.sh" "$R/kind/bin/import-images.sh"
install -m 0755 "$CLUSTER_DIR/node/containerd-oom-adj.sh" "$R/kind/bin/containerd-oom-adj.sh"
install -d "$R/etc/systemd/system/containerd.service.d"
install -m 0644 "$CLUSTER_DIR/node/10-containerd-oom-adj.conf" "$R/etc/systemd/system/containerd.service.d/10-oom-adj.conf"
install -m 0644 "$CLUSTER_DIR/node/modeldeploy-images.service" "$R/etc/systemd/system/modeldeploy-images.service"
install -d "$R/etc/systemd/system/kubelet.service.d"
install -m 0644 "$CLUSTER_DIR/node/20-modeldeploy-images.conf" "$R/etc/systemd/system/kubelet.service.d/20-modeldeploy-images.conf"
cp "$WORK"/images/*.tar "$R/kind/images/"
mkdir -p "$R/etc/kubernetes/manifests"

# Enable units the way `systemctl enable` does (symlinks), without running systemctl.
wants="$R/etc/systemd/system/multi-user.target.wants"; mkdir -p "$wants"
for u in kubelet containerd undo-mount-hacks modeldeploy-images; do
  ln -sf "/etc/systemd/system/$u.service" "$wants/$u.service"
done
ln -sf /dev/null "$R/etc/systemd/system/systemd-binfmt.service"

log "docker import node image $TAG"
tar -C "$R" --numeric-owner -c . | docker import \
  --change 'ENV container=docker' \
  --change "$ENVPATH" \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  - "$TAG-rootfs" >/dev/null
# docker import cannot set STOPSIGNAL (systemd wants SIGRTMIN+3): one metadata-only build step.
mkdir -p "$WORK/stopsignal"
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$TAG-rootfs" >"$WORK/stopsignal/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$WORK/stopsignal" >"$CACHE_DIR/logs/node-stopsignal.log" 2>&1 \
  || { cat "$CACHE_DIR/logs/node-stopsignal.log" >&2; die "setting STOPSIGNAL on $TAG failed"; }
docker rmi "$TAG-rootfs" >/dev/null
# Older node images of this tooling are of no further use.
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' modeldeploy/kind-node); do
  [ "$old" = "$TAG" ] || docker rmi "$old" >/dev/null 2>&1 || true
done
log "node image $TAG ready"
echo "$TAG"
