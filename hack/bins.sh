#!/usr/bin/env bash
# Builds the local control plane's binaries from the pins in hack/tools into $BIN_DIR
# (default .cache/bin), and copies kwok's stage files next to them. It rebuilds only when
# the pins (go.mod/go.sum of the tools modules) or this script change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"

pins=$(cat "$root"/hack/tools/*/go.mod "$root"/hack/tools/*/go.sum "$root"/hack/tools/k8s/etcd/main.go "$0" | sha256sum | cut -d' ' -f1)
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
complete=true
for b in "${want[@]}"; do [ -x "$bin/$b" ] || complete=false; done
[ -d "$bin/kwok-stages" ] || complete=false
if $complete && [ "$(cat "$bin/.pins" 2>/dev/null)" = "$pins" ]; then
  echo "bins: control-plane binaries in $bin are up to date"
  exit 0
fi

say() { echo "bins: $*"; }
# Progress lines while a long build runs, so a first build is never silent.
build() {
  local what=$1; shift
  local t0=$SECONDS
  say "building $what ..."
  ( while sleep 30; do say "  still building $what ($((SECONDS - t0))s)"; done ) &
  local ticker=$!
  local rc=0
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if [ $rc -ne 0 ]; then say "building $what failed (exit $rc)"; return $rc; fi
  say "built $what in $((SECONDS - t0))s"
}

rm -f "$bin/.pins"
say "first build takes about 8 minutes on 2 cores; later runs reuse the Go build cache"
(cd "$root/hack/tools/k8s" && build "kube-apiserver, kube-controller-manager, kube-scheduler and etcd (k8s.io/kubernetes v1.37.2)" \
  go build -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler ./etcd)
(cd "$root/hack/tools/kwok" && build "kwok (sigs.k8s.io/kwok v0.8.0)" go build -o "$bin/" sigs.k8s.io/kwok/cmd/kwok)

# kwok's stage files ship in its module: node start-up and heartbeats with a lease (so a
# stopped kwok really stops renewing the node), and pod start, completion and deletion.
stages=$(cd "$root/hack/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
rm -rf "$bin/kwok-stages"; mkdir -p "$bin/kwok-stages"
cp "$stages/node/fast/node-initialize.yaml" \
   "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
   "$stages/pod/fast/pod-ready.yaml" "$stages/pod/fast/pod-complete.yaml" "$stages/pod/fast/pod-delete.yaml" \
   "$bin/kwok-stages/"
chmod u+w "$bin/kwok-stages/"*
echo "$pins" > "$bin/.pins"
say "done: $(cd "$bin" && echo "${want[@]}") and kwok-stages/ in $bin"
