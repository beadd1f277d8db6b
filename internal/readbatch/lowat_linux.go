package readbatch

import (
	"strconv"
	"strings"
	"syscall"
)

// Supported reports whether this system batches reads: whether lowering
// SO_RCVLOWAT wakes a reader whose queued bytes now suffice. Linux does so
// since 4.19 (tcp_set_rcvlowat calls tcp_data_ready); before, a tail below
// the old mark could wait for the next segment, so batching needs 5.0 or
// later.
func Supported() bool {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return false
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	major, _, _ := strings.Cut(b.String(), ".")
	n, err := strconv.Atoi(major)
	return err == nil && n >= 5
}

// setReceiveLowat sets SO_RCVLOWAT on the socket behind raw.
func setReceiveLowat(raw syscall.RawConn, v int) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v)
	}); err != nil {
		return err
	}
	return serr
}
