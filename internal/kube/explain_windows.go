package kube

import "golang.org/x/sys/windows"

// The Winsock codes a failed connection comes back with: Go's
// syscall.ECONNREFUSED and friends are numbers of its own on Windows that
// no call returns.
var (
	refusedErrnos     = []error{windows.WSAECONNREFUSED}
	unreachableErrnos = []error{windows.WSAENETUNREACH, windows.WSAEHOSTUNREACH}
	timedOutErrnos    = []error{windows.WSAETIMEDOUT}
)
