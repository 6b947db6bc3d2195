//go:build tools

// Package tools records csi-resizer, built by `make bins`.
package tools

import _ "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer"
