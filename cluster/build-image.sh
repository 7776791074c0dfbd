#!/usr/bin/env bash
# Build a container image from a Dockerfile with the local base image and load it into the kind
# cluster.  Usage: cluster/build-image.sh -f DOCKERFILE -t TAG [--no-load] [CONTEXT] [-- DOCKER-BUILD-ARGS...]
# The Dockerfile takes `ARG BASE_IMAGE`; here it is the locally made modeldeploy/base:<suite>
# (override with BASE_IMAGE=...). CONTEXT defaults to the repository root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dockerfile="" tag="" load=1 context="$REPO_ROOT" extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -f) dockerfile="$2"; shift 2 ;;
    -t) tag="$2"; shift 2 ;;
    --no-load) load=0; shift ;;
    --) shift; extra=("$@"); break ;;
    *) context="$1"; shift ;;
  esac
done
[ -n "$dockerfile" ] && [ -n "$tag" ] || die "usage: $0 -f DOCKERFILE -t TAG [--no-load] [CONTEXT] [-- DOCKER-BUILD-ARGS...]"

"$CLUSTER_DIR/docker-up.sh"
BASE_IMAGE="${BASE_IMAGE:-modeldeploy/base:$DEBIAN_SUITE}"
[ "$BASE_IMAGE" = "modeldeploy/base:$DEBIAN_SUITE" ] && "$CLUSTER_DIR/base-image.sh"

log "docker build $tag from $dockerfile (BASE_IMAGE=$BASE_IMAGE)"
t0=$(date +%s)
DOCKER_BUILDKIT=0 docker build -f "$dockerfile" -t "$tag" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  ${extra[@]+"${extra[@]}"} "$context" >"$CACHE_DIR/logs/docker-build.log" 2>&1 \
  || { tail -n 40 "$CACHE_DIR/logs/docker-build.log" >&2; die "docker build of $tag failed"; }
log "built $tag in $(( $(date +%s) - t0 ))s"
# The classic builder leaves the replaced image and each build stage behind, untagged: gigabytes a
# build for the server image. Drop those of our Dockerfiles (they carry this label).
docker image prune -f --filter label=dev.modeldeploy.image >/dev/null || true

if [ "$load" = 1 ]; then
  "$TOOLS_BIN/kind" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME" || die "kind cluster $CLUSTER_NAME does not exist (make cluster)"
  log "kind load docker-image $tag"
  "$TOOLS_BIN/kind" load docker-image --name "$CLUSTER_NAME" "$tag" >/dev/null
  # Each load also leaves the node's containerd an "import-..." reference, and the image it
  # replaced under its bare digest: drop both, keeping every image that still has a name.
  docker exec "$CLUSTER_NAME-control-plane" sh -c '
    named=$(ctr -n k8s.io images ls | awk "NR>1 && \$1 !~ /^(import-|sha256:)/ {print \$3}")
    ctr -n k8s.io images ls | awk "NR>1 {print \$1, \$3}" | while read -r ref digest; do
      case "$ref" in
        import-*) ctr -n k8s.io images rm "$ref" >/dev/null ;;
        sha256:*) echo "$named" | grep -qx "$digest" || ctr -n k8s.io images rm "$ref" >/dev/null ;;
      esac
    done' || log "could not tidy old image references in the kind node (not fatal)"
fi
