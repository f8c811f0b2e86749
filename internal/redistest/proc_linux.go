package redistest

import "syscall"

// sysProcAttr asks the kernel to SIGKILL a node when the test process dies
// without stopping it (a panic, a test timeout), so no redis-server outlives
// its test. The signal follows the OS thread that started the node; the Go
// runtime only ends threads of goroutines that exit while locked to one.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
