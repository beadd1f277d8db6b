//go:build !linux

package linksim

import "syscall"

// procAttr is nil where the OS cannot tie a child's life to its parent's
// (the benchmark and the end-to-end tests run on Linux).
func procAttr() *syscall.SysProcAttr { return nil }
