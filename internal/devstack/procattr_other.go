//go:build !linux

package devstack

import "syscall"

// sysProcAttr puts a child in its own process group so Stop can signal the
// group. Without Pdeathsig outside Linux, `make stop` (StopDir) is the way to
// end services an owner left behind.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
