package cli

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// detachedProcess starts a process without a console (DETACHED_PROCESS),
// in a process group of its own (CREATE_NEW_PROCESS_GROUP): closing the
// console that started it, or Ctrl-C there, does not reach it.
func detachedProcess() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		CreationFlags: windows.DETACHED_PROCESS | windows.CREATE_NEW_PROCESS_GROUP,
		HideWindow:    true,
	}
}
