#!/usr/bin/env bash
# Generates docs/values.md from the `# --` comments in charts/sharewarden/values.yaml; with
# --verify, fails if docs/values.md is stale or a value is undocumented.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
args=(-values "$root/charts/sharewarden/values.yaml" -out "$root/docs/values.md")
[ "${1:-}" = "--verify" ] && args+=(-check)
cd "$root/hack/tools/helm" && go run ./valuesdoc "${args[@]}"
