//go:build !linux

package redistest

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; nodes are
// stopped by Stop and t.Cleanup only.
func sysProcAttr() *syscall.SysProcAttr { return nil }
