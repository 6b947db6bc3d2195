//go:build tools

// Package tools records the helm command built by hack/helm.sh for the chart's lint, template
// and e2e tests.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
