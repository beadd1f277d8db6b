//go:build !unix

package tunnel

import "net"

// socketSink is not available here: Conn.CopyToClient copies through
// reads and writes.
type socketSink struct{}

func newSocketSink(net.Conn, func()) *socketSink { return nil }

func (*socketSink) Write(p []byte) (int, error) { return 0, nil }
func (*socketSink) TryWrite(p []byte) int       { return 0 }
