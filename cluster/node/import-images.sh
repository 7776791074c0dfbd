#!/bin/bash
# Import every image tarball in /kind/images into containerd's k8s.io namespace (idempotent).
set -euo pipefail
for _ in $(seq 1 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done
for t in /kind/images/*.tar; do
  [ -e "$t" ] || continue
  ctr --namespace=k8s.io images import --all-platforms "$t" >/dev/null
done
ctr --namespace=k8s.io images ls -q
