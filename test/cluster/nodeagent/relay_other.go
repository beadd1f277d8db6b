//go:build !linux

package nodeagent

import "syscall"

// relaySysProcAttr: only Linux can tie a child's life to its parent's.
func relaySysProcAttr() *syscall.SysProcAttr { return nil }
