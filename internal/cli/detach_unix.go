//go:build unix

package cli

import "syscall"

// detachedProcess starts a process in a session of its own, so that
// neither the terminal's hangup nor its Ctrl-C reaches it.
func detachedProcess() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
