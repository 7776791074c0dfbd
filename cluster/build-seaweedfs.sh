#!/usr/bin/env bash
# Build SeaweedFS's `weed` from its Go module: the S3-compatible object store (Apache-2.0) that the
# S3 tests start on 127.0.0.1 and, in the kind cluster, in a pod.
# Result: $CACHE_DIR/seaweedfs/$SEAWEEDFS_VERSION/weed, printed on stdout. Re-running with it built
# does nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MODULE=github.com/seaweedfs/seaweedfs
if [ -x "$SEAWEEDFS_BIN" ]; then
  log "weed $SEAWEEDFS_VERSION already built: $SEAWEEDFS_BIN"
  echo "$SEAWEEDFS_BIN"
  exit 0
fi
command -v go >/dev/null || die "go not found (expected /usr/local/go/bin/go)"
dir="$CACHE_DIR/seaweedfs/$SEAWEEDFS_VERSION/src"
rm -rf "$dir"; mkdir -p "$dir"
log "resolving $MODULE@$SEAWEEDFS_VERSION through the Go module proxy"
gomod="$(cd /tmp && go mod download -json "$MODULE@$SEAWEEDFS_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[ -f "$gomod" ] || die "could not download $MODULE@$SEAWEEDFS_VERSION"
cd "$dir"
go mod init modeldeploy.local/build-weed >/dev/null 2>&1
# its own replacements apply only to its main module: carry them over
grep -E '^replace [^ ]+ => [^ ]+ v' "$gomod" >>go.mod || true
run_logged get-weed go get "$MODULE@$SEAWEEDFS_VERSION"
log "compiling weed (a few minutes on a cold cache)"
t0=$(date +%s)
run_logged build-weed go build -trimpath -ldflags="-s -w" -o "$SEAWEEDFS_BIN.tmp" "$MODULE/weed"
mv "$SEAWEEDFS_BIN.tmp" "$SEAWEEDFS_BIN"
log "weed built in $(( $(date +%s) - t0 ))s: $SEAWEEDFS_BIN"
echo "$SEAWEEDFS_BIN"
