//go:build unix && !linux

package cli

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with pid exists (a zombie
// counts, until its parent reaps it).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
