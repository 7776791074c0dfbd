#!/usr/bin/env bash
# Install the command-line tools the cluster tooling uses into $REPO_ROOT/.tools/bin:
# kind (built from its Go module), kubectl (built with the Kubernetes binaries) and helm (built
# from its Go module). Built binaries are cached per version under the cache dir, so a fresh
# clone only copies them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$TOOLS_BIN"

go_tool() {  # NAME MODULE-PACKAGE@VERSION [LDFLAGS]
  local name="$1" pkgver="$2" ldflags="${3:-}"
  local dir="$CACHE_DIR/tools/$name-${pkgver##*@}"
  if [ ! -x "$dir/$name" ]; then
    log "building $name from $pkgver"
    mkdir -p "$dir"
    GOFLAGS=-buildvcs=false GOBIN="$dir" run_logged "install-$name" go install -trimpath -ldflags="-s -w $ldflags" "$pkgver"
  fi
  install -m 0755 "$dir/$name" "$TOOLS_BIN/$name"
}

go_tool kind "sigs.k8s.io/kind@$KIND_VERSION"
go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

"$CLUSTER_DIR/build-k8s.sh" >&2
install -m 0755 "$K8S_BIN_DIR/kubectl" "$TOOLS_BIN/kubectl"

log "tools in $TOOLS_BIN: $("$TOOLS_BIN/kind" version | awk '{print $1" "$2}'), kubectl $("$TOOLS_BIN/kubectl" version --client -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), helm $("$TOOLS_BIN/helm" version --short)"
