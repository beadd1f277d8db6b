//go:build unix

package tunnel

import (
	"net"
	"syscall"
)

// socketSink writes a stream's data to a local socket (see
// Conn.CopyToClient). TryWrite writes to the socket's descriptor without
// waiting: Go's sockets are non-blocking, and a full one takes less than
// asked, or nothing.
type socketSink struct {
	conn  net.Conn
	raw   syscall.RawConn
	moved func()
}

// newSocketSink returns a sink for conn, or nil when conn is not a
// socket that can be written without waiting.
func newSocketSink(conn net.Conn, moved func()) *socketSink {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &socketSink{conn: conn, raw: raw, moved: moved}
}

// Write writes all of p, waiting for room.
func (s *socketSink) Write(p []byte) (int, error) {
	n, err := s.conn.Write(p)
	if n > 0 {
		s.moved()
	}
	return n, err
}

// TryWrite writes what of p the socket takes now.
func (s *socketSink) TryWrite(p []byte) int {
	var n int
	// The function returns true whatever happened: a full socket is not
	// waited for here, and an error is left for the next Write to meet.
	s.raw.Write(func(fd uintptr) bool {
		m, err := syscall.Write(int(fd), p)
		if err == nil && m > 0 {
			n = m
		}
		return true
	})
	if n > 0 {
		s.moved()
	}
	return n
}
