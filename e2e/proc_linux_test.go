package e2e

import "syscall"

// childAttr makes the kernel SIGKILL a server when the test process dies, so
// a crashed or timed-out test run leaves no node behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
