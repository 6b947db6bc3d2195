#!/usr/bin/env bash
# Builds the local control plane's binaries and the upstream CSI sidecars from the pins in
# hack/tools into $BIN_DIR (default .cache/bin), and copies kwok's stage files and the
# VolumeSnapshot CRDs next to them. It rebuilds only when the pins (go.mod/go.sum of the tools
# modules) or this script change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"

# hack/tools/scheduler is not among them: it links this checkout's code, so the tests that run it
# build it themselves (cluster.BuildScheduler).
mods=$(ls -d "$root"/hack/tools/*/ | grep -v '/scheduler/$')
pins=$(for m in $mods; do cat "$m"go.mod "$m"go.sum; done | cat - "$root"/hack/tools/k8s/etcd/main.go "$0" | sha256sum | cut -d' ' -f1)
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok
  csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller)
complete=true
for b in "${want[@]}"; do [ -x "$bin/$b" ] || complete=false; done
[ -d "$bin/kwok-stages" ] || complete=false
[ -d "$bin/snapshot-crds" ] || complete=false
if $complete && [ "$(cat "$bin/.pins" 2>/dev/null)" = "$pins" ]; then
  echo "bins: control-plane binaries and CSI sidecars in $bin are up to date"
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
say "first build takes 30 to 45 minutes on 2 cores (about 8 for the control plane, the rest for the CSI sidecars); later runs reuse the Go build cache"
(cd "$root/hack/tools/k8s" && build "kube-apiserver, kube-controller-manager, kube-scheduler and etcd (k8s.io/kubernetes v1.37.2)" \
  go build -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler ./etcd)
(cd "$root/hack/tools/kwok" && build "kwok (sigs.k8s.io/kwok v0.8.0)" go build -o "$bin/" sigs.k8s.io/kwok/cmd/kwok)
# The CSI sidecars, one module each: their Kubernetes libraries differ.
(cd "$root/hack/tools/csi-provisioner" && build "csi-provisioner (external-provisioner v6.4.0)" \
  go build -o "$bin/" github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner)
(cd "$root/hack/tools/csi-attacher" && build "csi-attacher (external-attacher v4.13.0)" \
  go build -o "$bin/" github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher)
(cd "$root/hack/tools/csi-resizer" && build "csi-resizer (external-resizer v2.3.0)" \
  go build -o "$bin/" github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer)
(cd "$root/hack/tools/csi-snapshotter" && build "csi-snapshotter and snapshot-controller (external-snapshotter v8.7.0)" \
  go build -o "$bin/" github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller)

# kwok's stage files ship in its module: node start-up and heartbeats with a lease (so a
# stopped kwok really stops renewing the node), and pod start, completion and deletion.
stages=$(cd "$root/hack/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
rm -rf "$bin/kwok-stages"; mkdir -p "$bin/kwok-stages"
cp "$stages/node/fast/node-initialize.yaml" \
   "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
   "$stages/pod/fast/pod-ready.yaml" "$stages/pod/fast/pod-complete.yaml" "$stages/pod/fast/pod-delete.yaml" \
   "$bin/kwok-stages/"
chmod u+w "$bin/kwok-stages/"*

# The snapshot CRDs ship in external-snapshotter's client module: VolumeSnapshotClass,
# VolumeSnapshotContent and VolumeSnapshot, and the VolumeGroupSnapshot three, without which
# snapshot-controller waits 30s at start-up before running without group snapshots.
crds=$(cd "$root/hack/tools/csi-snapshotter" && go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd
rm -rf "$bin/snapshot-crds"; mkdir -p "$bin/snapshot-crds"
cp "$crds"/snapshot.storage.k8s.io_*.yaml "$crds"/groupsnapshot.storage.k8s.io_*.yaml "$bin/snapshot-crds/"
chmod u+w "$bin/snapshot-crds/"*
echo "$pins" > "$bin/.pins"
say "done: $(cd "$bin" && echo "${want[@]}"), kwok-stages/ and snapshot-crds/ in $bin"
