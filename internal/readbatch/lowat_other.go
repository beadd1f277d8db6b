//go:build !linux

package readbatch

import (
	"errors"
	"syscall"
)

// Supported reports whether this system batches reads. It does not: only
// Linux is known to wake a reader when SO_RCVLOWAT is lowered under bytes
// already queued.
func Supported() bool { return false }

func setReceiveLowat(syscall.RawConn, int) error {
	return errors.New("read batching is not supported on this system")
}
