//go:build !linux

package tunnel

import (
	"errors"
	"syscall"
)

// canBatchReads is false: only Linux is known to wake a reader when
// SO_RCVLOWAT is lowered under bytes already queued.
func canBatchReads() bool { return false }

func setReceiveLowat(syscall.RawConn, int) error {
	return errors.New("read batching is not supported on this system")
}
