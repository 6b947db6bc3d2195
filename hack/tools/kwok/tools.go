//go:build tools

// Package tools records kwok, built by `make bins`.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
