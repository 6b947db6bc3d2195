#!/usr/bin/env bash
# Builds helm from the pin in hack/tools/helm into $BIN_DIR (default .cache/bin). It rebuilds
# only when helm is missing or the pin (go.mod/go.sum of hack/tools/helm, or this script)
# changed; the hash of the pin is kept in $BIN_DIR/.helm-pins.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"

pins=$(cat "$root/hack/tools/helm/go.mod" "$root/hack/tools/helm/go.sum" "$0" | sha256sum | cut -d' ' -f1)
if [ -x "$bin/helm" ] && [ "$(cat "$bin/.helm-pins" 2>/dev/null)" = "$pins" ]; then
  echo "helm: $bin/helm is up to date"
  exit 0
fi
version=$(cd "$root/hack/tools/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
echo "helm: building helm $version (about 2 minutes on 2 cores the first time)"
rm -f "$bin/.helm-pins"
# As helm's own Makefile does: its version, and the Kubernetes version `helm template` and
# `helm lint` assume (from client-go v0.X.Y: 1.X), which otherwise defaults to 1.20.
kube=$(cd "$root/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)
kube_minor=$(echo "$kube" | cut -d. -f2)
ldflags="-X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kube_minor"
done
(cd "$root/hack/tools/helm" && go build -trimpath -ldflags "$ldflags" -o "$bin/helm" helm.sh/helm/v3/cmd/helm)
echo "$pins" > "$bin/.helm-pins"
echo "helm: built $bin/helm ($("$bin/helm" version --short))"
