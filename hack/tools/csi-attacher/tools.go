//go:build tools

// Package tools records csi-attacher, built by `make bins`.
package tools

import _ "github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher"
