#!/usr/bin/env bash
# Build the Kubernetes server binaries (kubelet, kubeadm, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl) from the k8s.io/kubernetes Go module at $K8S_VERSION, plus
# etcd, coredns, a tiny pause program and (when its module is available) crictl, into a
# version-keyed cache directory.
# Result: $CACHE_DIR/k8s/$K8S_VERSION/bin. Re-running with a complete cache does nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OUT="$K8S_BIN_DIR"
K8S_CMDS=(kubelet kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
EXTRA=(etcd coredns pause)   # crictl is optional (built when its module is available)

complete=1
for b in "${K8S_CMDS[@]}" "${EXTRA[@]}"; do [ -x "$OUT/$b" ] || complete=0; done
if [ "$complete" = 1 ]; then
  log "kubernetes $K8S_VERSION binaries already built in $OUT"
  exit 0
fi

command -v go >/dev/null || die "go not found (expected /usr/local/go/bin/go)"
mkdir -p "$OUT"
WORK="$CACHE_DIR/k8s/$K8S_VERSION/src"
mkdir -p "$WORK"

build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"

# --- Kubernetes itself -------------------------------------------------------------------------
need_k8s=0
for b in "${K8S_CMDS[@]}"; do [ -x "$OUT/$b" ] || need_k8s=1; done
if [ "$need_k8s" = 1 ]; then
  log "resolving k8s.io/kubernetes@$K8S_VERSION through the Go module proxy"
  gomod="$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  goline="$(grep -m1 '^go ' "$gomod")"
  {
    echo "module modeldeploy.local/k8sbuild"
    echo
    echo "$goline"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # k8s.io/kubernetes replaces its staging modules with ./staging/...; outside its repository
    # they must point at the published modules of the matching v0 version.
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" \
      | awk -v v="$K8S_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } >"$WORK/go.mod"
  # The main module must also carry kubernetes' own pins of third-party modules (same as its go.mod).
  sed -n '/^require (/,/^)/p' "$gomod" | grep -vE '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0$' >>"$WORK/go.mod"
  grep -E '^godebug' "$gomod" >>"$WORK/go.mod" || true
  cat >"$WORK/tools.go" <<'GO'
//go:build tools

package tools
GO
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  pkgs=()
  for b in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  log "compiling ${K8S_CMDS[*]} in one go build (this is the slow part on a cold cache)"
  t0=$(date +%s)
  (cd "$WORK" && run_logged go-build-k8s go build -trimpath -ldflags="$ldflags" -o "$OUT/" "${pkgs[@]}")
  log "kubernetes binaries built in $(( $(date +%s) - t0 ))s"
fi

# --- etcd, crictl, coredns, pause --------------------------------------------------------------------
build_module_cmd() {  # NAME MODULE@VERSION PACKAGE [LDFLAGS]
  local name="$1" modver="$2" pkg="$3" extra="${4:-}"
  [ -x "$OUT/$name" ] && return 0
  local dir="$CACHE_DIR/k8s/$K8S_VERSION/src-$name"
  rm -rf "$dir"; mkdir -p "$dir"
  log "building $name from $modver"
  (cd "$dir" && go mod init "modeldeploy.local/build-$name" >/dev/null 2>&1 \
     && run_logged "get-$name" go get "$modver" \
     && run_logged "build-$name" go build -trimpath -ldflags="-s -w $extra" -o "$OUT/$name" "$pkg")
}
# crictl only serves debugging inside the node (kind and kubeadm do not need it): best effort.
if ! ( build_module_cmd crictl "github.com/kubernetes-sigs/cri-tools@$CRICTL_VERSION" github.com/kubernetes-sigs/cri-tools/cmd/crictl \
         "-X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=$CRICTL_VERSION" ) 2>/dev/null; then
  log "crictl $CRICTL_VERSION is not available from the Go module proxy; the node image goes without it"
fi
build_module_cmd coredns "github.com/coredns/coredns@$COREDNS_VERSION" github.com/coredns/coredns
build_module_cmd etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3

if [ ! -x "$OUT/pause" ]; then
  log "building pause"
  dir="$CACHE_DIR/k8s/$K8S_VERSION/src-pause"
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$CLUSTER_DIR/pause/main.go" "$dir/main.go"
  (cd "$dir" && go mod init modeldeploy.local/pause >/dev/null 2>&1 && run_logged build-pause go build -trimpath -ldflags="-s -w" -o "$OUT/pause" .)
fi

log "binaries ready in $OUT"
ls -la "$OUT" >&2
