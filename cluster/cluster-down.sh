#!/usr/bin/env bash
# Delete the kind cluster "$CLUSTER_NAME" if it exists. Cached images and binaries are kept.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
KIND="$TOOLS_BIN/kind"
if [ ! -x "$KIND" ] || ! timeout 10 docker info >/dev/null 2>&1; then
  log "no kind or no docker engine: nothing to delete"; exit 0
fi
if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  log "deleting kind cluster $CLUSTER_NAME"
  "$KIND" delete cluster --name "$CLUSTER_NAME"
else
  log "kind cluster $CLUSTER_NAME does not exist"
fi
