#!/usr/bin/env bash
# Generates the API's deepcopy code and the SharedVolume CRD with controller-gen (pinned in
# hack/tools/codegen). With --verify, generates into a scratch copy and fails if the checked-in
# files differ.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"
if [ ! -x "$bin/controller-gen" ] || [ "$root/hack/tools/codegen/go.mod" -nt "$bin/controller-gen" ]; then
  echo "generate: building controller-gen"
  (cd "$root/hack/tools/codegen" && go build -o "$bin/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen)
fi
gen() { # $1: tree to generate in
  (cd "$1" && "$bin/controller-gen" object paths=./api/... crd:crdVersions=v1 output:crd:dir=charts/sharewarden/crds)
}
if [ "${1:-}" != "--verify" ]; then
  gen "$root"
  exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r "$root/go.mod" "$root/go.sum" "$root/api" "$tmp/"
mkdir -p "$tmp/charts/sharewarden/crds"
gen "$tmp"
# crds/snapshot/ holds upstream's VolumeSnapshot CRDs, copied, not generated.
if ! diff -ru "$root/api" "$tmp/api" || ! diff -ru --exclude=snapshot "$root/charts/sharewarden/crds" "$tmp/charts/sharewarden/crds"; then
  echo "generate: checked-in generated files are stale; run 'make generate' and commit" >&2
  exit 1
fi
echo "generate: deepcopy and CRD are up to date"
