//go:build tools

// Package tools pins staticcheck, which `make lint` runs over the main module.
package tools

import _ "honnef.co/go/tools/cmd/staticcheck"
