#!/usr/bin/env bash
# Builds promtool from the pin in hack/tools/promtool into $BIN_DIR (default .cache/bin). It
# rebuilds only when promtool is missing or the pin (go.mod/go.sum of hack/tools/promtool, or this
# script) changed; the hash of the pin is kept in $BIN_DIR/.promtool-pins. The chart tests run it
# to check the PrometheusRule's alerts (`promtool check rules`) and their unit tests
# (`promtool test rules`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"

pins=$(cat "$root/hack/tools/promtool/go.mod" "$root/hack/tools/promtool/go.sum" "$0" | sha256sum | cut -d' ' -f1)
if [ -x "$bin/promtool" ] && [ "$(cat "$bin/.promtool-pins" 2>/dev/null)" = "$pins" ]; then
  echo "promtool: $bin/promtool is up to date"
  exit 0
fi
# Prometheus tags its Go module v0.3XX.Y for release v3.XX.Y (v0.316.0 is Prometheus 3.16.0).
module=$(cd "$root/hack/tools/promtool" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
minor=$(echo "$module" | cut -d. -f2)
patch=$(echo "$module" | cut -d. -f3 | cut -d- -f1)
version="3.$((minor - 300)).$patch"
echo "promtool: building promtool $version (module $module; several minutes on 2 cores the first time)"
rm -f "$bin/.promtool-pins"
# As Prometheus's own build does (.promu.yml): the version promtool --version prints.
ldflags="-X github.com/prometheus/common/version.Version=$version -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=sharewarden"
(cd "$root/hack/tools/promtool" && go build -trimpath -ldflags "$ldflags" -o "$bin/promtool" github.com/prometheus/prometheus/cmd/promtool)
echo "$pins" > "$bin/.promtool-pins"
echo "promtool: built $bin/promtool ($("$bin/promtool" --version 2>&1 | head -1))"
