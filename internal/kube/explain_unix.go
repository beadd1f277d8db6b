//go:build !windows

package kube

import "syscall"

// The errno values a failed connection to the API server comes back with.
var (
	refusedErrnos     = []error{syscall.ECONNREFUSED}
	unreachableErrnos = []error{syscall.ENETUNREACH, syscall.EHOSTUNREACH}
	timedOutErrnos    = []error{syscall.ETIMEDOUT}
)
