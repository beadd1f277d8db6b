package linksim

import "syscall"

// procAttr ties the server's life to this process's: it is killed if the
// benchmark or test dies without closing it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
