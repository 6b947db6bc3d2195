//go:build !linux

package nfsserver

import "syscall"

// childAttrs puts ganesha in its own process group; only Linux can also tie its life to the agent's.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
