#!/usr/bin/env bash
# Create (or reuse) the single-node kind cluster "$CLUSTER_NAME" (kubectl context kind-$CLUSTER_NAME)
# and return once the node is Ready and cluster DNS answers inside the cluster.
# Where stock kind node images can be pulled, KIND_NODE_IMAGE=kindest/node:... skips the offline
# node image build; by default the node image is built here (node-image.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

t0=$(date +%s)
"$CLUSTER_DIR/docker-up.sh"
# On a cold cache the node's Debian rootfs tarballs (network and dpkg bound) are made in the
# background while the Go builds (CPU bound) run; node-image.sh finds them done.
prefetch_pid=""
if [ -z "${KIND_NODE_IMAGE:-}" ]; then
  ( rootfs_tar kube-proxy "$PROXY_PKGS" && rootfs_tar node "$NODE_PKGS" ) >"$CACHE_DIR/logs/rootfs-prefetch.log" 2>&1 &
  prefetch_pid=$!
fi
"$CLUSTER_DIR/tools.sh"
if [ -n "$prefetch_pid" ] && ! wait "$prefetch_pid"; then
  log "background rootfs build failed (see $CACHE_DIR/logs/rootfs-prefetch.log); node-image.sh retries it"
fi
KIND="$TOOLS_BIN/kind"; KUBECTL="$TOOLS_BIN/kubectl"
CTX="kind-$CLUSTER_NAME"
k() { "$KUBECTL" --context "$CTX" "$@"; }

IMAGE="${KIND_NODE_IMAGE:-}"
[ -n "$IMAGE" ] || IMAGE="$("$CLUSTER_DIR/node-image.sh")"

node="$CLUSTER_NAME-control-plane"
if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  current="$(docker inspect -f '{{.Config.Image}}' "$node" 2>/dev/null || true)"
  if [ "$current" != "$IMAGE" ]; then
    log "cluster $CLUSTER_NAME runs $current, not $IMAGE: recreating it"
    "$KIND" delete cluster --name "$CLUSTER_NAME"
  else
    # A node whose container stopped (machine or dockerd restart) may come back with another
    # address than its certificates name: recreating it is quicker than repairing it.
    if [ "$(docker inspect -f '{{.State.Running}}' "$node" 2>/dev/null)" != true ]; then
      log "node $node is not running: recreating the cluster"
      "$KIND" delete cluster --name "$CLUSTER_NAME"
    else
      "$KIND" export kubeconfig --name "$CLUSTER_NAME" >/dev/null 2>&1
      if timeout 30 bash -c "until '$KUBECTL' --context '$CTX' get --raw /readyz >/dev/null 2>&1; do sleep 2; done"; then
        log "reusing cluster $CLUSTER_NAME"
      else
        log "cluster $CLUSTER_NAME does not answer: recreating it"
        "$KIND" delete cluster --name "$CLUSTER_NAME"
      fi
    fi
  fi
fi

if ! "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  log "creating kind cluster $CLUSTER_NAME from $IMAGE"
  if ! "$KIND" create cluster --name "$CLUSTER_NAME" --image "$IMAGE" --config "$CLUSTER_DIR/kind-config.yaml" \
        --retain --wait 0s >"$CACHE_DIR/logs/kind-create.log" 2>&1; then
    cat "$CACHE_DIR/logs/kind-create.log" >&2
    "$KIND" export logs --name "$CLUSTER_NAME" "$CACHE_DIR/logs/kind-export" >/dev/null 2>&1 || true
    "$KIND" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
    die "kind create cluster failed (node logs: $CACHE_DIR/logs/kind-export)"
  fi
fi

log "waiting for the node to be Ready"
k wait --for=condition=Ready node --all --timeout=300s >/dev/null
log "waiting for CoreDNS"
k -n kube-system rollout status deployment/coredns --timeout=300s >/dev/null

# Cluster DNS check from inside a pod, with the local base image loaded into the node.
BASE="modeldeploy/base:$DEBIAN_SUITE"
"$CLUSTER_DIR/base-image.sh"
"$KIND" load docker-image --name "$CLUSTER_NAME" "$BASE" >/dev/null 2>&1 || die "kind load docker-image $BASE failed"
log "checking cluster DNS from a pod"
k -n default delete pod dns-check --ignore-not-found --wait=true >/dev/null
k -n default run dns-check --image="$BASE" --image-pull-policy=Never --restart=Never --quiet \
  --command -- sh -c 'for i in $(seq 1 60); do getent hosts kubernetes.default.svc.cluster.local && exit 0; sleep 1; done; exit 1' >/dev/null
if ! k -n default wait --for=jsonpath='{.status.phase}'=Succeeded pod/dns-check --timeout=180s >/dev/null; then
  k -n default logs dns-check >&2 || true
  k -n default describe pod dns-check >&2 || true
  die "cluster DNS does not answer"
fi
log "cluster DNS answers: $(k -n default logs dns-check | head -n1)"
k -n default delete pod dns-check --wait=false >/dev/null

# Node images of this tooling other than the one running are of no further use.
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' modeldeploy/kind-node); do
  [ "$old" = "$IMAGE" ] || docker rmi "$old" >/dev/null 2>&1 || true
done

log "cluster $CLUSTER_NAME ready (context $CTX) in $(( $(date +%s) - t0 ))s"
