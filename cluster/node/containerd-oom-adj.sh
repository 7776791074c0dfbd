#!/bin/bash
# containerd ExecStartPre: where this node lacks CAP_SYS_RESOURCE (hosts whose capability bounding
# set misses it), runc cannot lower oom_score_adj for pod sandboxes ("can't get final child's PID
# from pipe"). Then let containerd clamp pod OOM scores to its own (restrict_oom_score_adj).
set -euo pipefail
bnd="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
if (( (16#$bnd >> 24) & 1 )); then
  sed -i 's/^\(\s*restrict_oom_score_adj\s*=\s*\).*/\1false/' /etc/containerd/config.toml
else
  sed -i 's/^\(\s*restrict_oom_score_adj\s*=\s*\).*/\1true/' /etc/containerd/config.toml
fi
