package nfsserver

import "syscall"

// childAttrs puts ganesha in its own process group, so a terminal's Ctrl-C reaches it only as
// the agent's SIGTERM, and has the kernel SIGKILL it if the agent dies: ganesha must never serve
// without its agent (which will hold the volume's lease).
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
