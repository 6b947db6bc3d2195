#!/usr/bin/env bash
# Builds staticcheck from the pin in hack/tools/lint into $BIN_DIR (default .cache/bin). It
# rebuilds only when staticcheck is missing or the pin (go.mod/go.sum of hack/tools/lint, or this
# script) changed; the hash of the pin is kept in $BIN_DIR/.staticcheck-pins.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"

pins=$(cat "$root/hack/tools/lint/go.mod" "$root/hack/tools/lint/go.sum" "$0" | sha256sum | cut -d' ' -f1)
if [ -x "$bin/staticcheck" ] && [ "$(cat "$bin/.staticcheck-pins" 2>/dev/null)" = "$pins" ]; then
  exit 0
fi
version=$(cd "$root/hack/tools/lint" && go list -m -f '{{.Version}}' honnef.co/go/tools)
echo "staticcheck: building staticcheck $version (about a minute the first time)"
rm -f "$bin/.staticcheck-pins"
(cd "$root/hack/tools/lint" && go build -trimpath -o "$bin/staticcheck" honnef.co/go/tools/cmd/staticcheck)
echo "$pins" > "$bin/.staticcheck-pins"
echo "staticcheck: built $bin/staticcheck ($("$bin/staticcheck" -version))"
