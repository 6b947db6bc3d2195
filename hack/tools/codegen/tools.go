//go:build tools

// Package tools records controller-gen, built by `make generate`.
package tools

import _ "sigs.k8s.io/controller-tools/cmd/controller-gen"
