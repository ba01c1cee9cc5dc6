package devstack

import "syscall"

// sysProcAttr puts a child in its own process group (so Stop can signal the
// group) and has the kernel kill it when we die, so no service outlives an
// owner that crashed or was killed.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
}
