//go:build tools

// Package tools records csi-provisioner, built by `make bins`.
package tools

import _ "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"
