//go:build tools

// Package tools records the promtool command built by hack/promtool.sh for the chart's alert
// rule checks and rule unit tests.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
