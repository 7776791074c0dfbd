#!/usr/bin/env bash
# Make a working Docker engine available for the cluster tooling:
#  1. install Debian's docker.io if dockerd is missing;
#  2. start dockerd in the background (setsid, logging to the cache dir) if no engine answers;
#  3. check that privileged containers start, and if they fail with "unable to apply caps"
#     (the host's capability bounding set lacks a capability Docker asks for), install the
#     runc-capfilter wrapper as Docker's default runtime and check again.
# Idempotent: with a working engine it only re-checks privileged containers.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

WRAPPER=/usr/local/libexec/modeldeploy/runc-capfilter
RUNTIME_NAME=runc-capfilter
DOCKERD_LOG="$CACHE_DIR/logs/dockerd.log"
mkdir -p "$CACHE_DIR/logs"

apt_install() {
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "$@" >"$CACHE_DIR/logs/apt-install.log" 2>&1; then
    apt-get update >"$CACHE_DIR/logs/apt-update.log" 2>&1 || true
    run_logged apt-install apt-get install -y --no-install-recommends "$@"
  fi
}

if ! command -v dockerd >/dev/null 2>&1; then
  apt_install docker.io
fi
command -v docker >/dev/null 2>&1 || apt_install docker.io

engine_up() { timeout 20 docker info >/dev/null 2>&1; }

install_wrapper() {
  local real_runc
  real_runc="$(command -v runc || true)"
  [ -n "$real_runc" ] || die "runc not found"
  real_runc="$(readlink -f "$real_runc")"
  mkdir -p "$(dirname "$WRAPPER")"
  sed "s#@REAL_RUNC@#$real_runc#" "$CLUSTER_DIR/runc-capfilter.py" >"$WRAPPER.tmp"
  chmod 0755 "$WRAPPER.tmp"; mv "$WRAPPER.tmp" "$WRAPPER"
}
# daemon.json may name the wrapper from an earlier run: make sure it is there (and current).
if grep -qs "$WRAPPER" /etc/docker/daemon.json; then install_wrapper; fi

start_dockerd() {
  log "starting dockerd in the background (log: $DOCKERD_LOG)"
  setsid dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    engine_up && { log "dockerd is up"; return 0; }
    sleep 1
  done
  tail -n 30 "$DOCKERD_LOG" >&2
  die "dockerd did not come up within 60s"
}

if ! engine_up && pidof dockerd >/dev/null; then
  # A dockerd that does not answer may be starting or shutting down: give it a moment.
  log "a dockerd process exists but does not answer yet; waiting"
  for _ in $(seq 1 30); do
    engine_up && break
    pidof dockerd >/dev/null || break
    sleep 1
  done
fi
if engine_up; then
  log "docker engine already running"
else
  pidof dockerd >/dev/null && die "dockerd (pid $(pidof dockerd)) runs but does not answer; see its log"
  start_dockerd
fi

# A probe image is needed to test privileged containers: the local base image.
"$CLUSTER_DIR/base-image.sh"
PROBE_IMAGE="${BASE_IMAGE_TAG:-modeldeploy/base:$DEBIAN_SUITE}"

privileged_ok() {
  local out
  if out="$(docker run --rm --privileged --network none "$PROBE_IMAGE" true 2>&1)"; then
    return 0
  fi
  PRIV_ERR="$out"
  return 1
}

PRIV_ERR=""
if privileged_ok; then
  log "privileged containers work"
  exit 0
fi
if ! grep -q "apply caps" <<<"$PRIV_ERR"; then
  printf '%s\n' "$PRIV_ERR" >&2
  die "privileged containers fail for a reason this script does not know how to fix"
fi

log "privileged containers fail (capability missing from the host bounding set): installing the $RUNTIME_NAME runtime wrapper"
install_wrapper

# Register it as the default runtime in daemon.json (merging with what is there), then reload.
mkdir -p /etc/docker
python3 - "$WRAPPER" "$RUNTIME_NAME" <<'PY'
import json, os, sys
wrapper, name = sys.argv[1], sys.argv[2]
path = "/etc/docker/daemon.json"
cfg = {}
if os.path.exists(path):
    with open(path) as f:
        text = f.read().strip()
    cfg = json.loads(text) if text else {}
cfg.setdefault("runtimes", {})[name] = {"path": wrapper}
cfg["default-runtime"] = name
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f, indent=2)
os.replace(path + ".tmp", path)
PY
pid="$(pidof dockerd || true)"
[ -n "$pid" ] || die "dockerd is not running as a local process; cannot reload its configuration"
log "reloading dockerd configuration (SIGHUP to $pid)"
kill -HUP $pid
for _ in $(seq 1 20); do
  docker info --format '{{.DefaultRuntime}}' 2>/dev/null | grep -qx "$RUNTIME_NAME" && break
  sleep 1
done
docker info --format '{{.DefaultRuntime}}' | grep -qx "$RUNTIME_NAME" || die "dockerd did not take $RUNTIME_NAME as default runtime"

if privileged_ok; then
  log "privileged containers work with the $RUNTIME_NAME runtime"
else
  printf '%s\n' "$PRIV_ERR" >&2
  die "privileged containers still fail with the $RUNTIME_NAME runtime"
fi
