// Package testsupport holds helpers shared by kpf's tests and its benchmark
// program: a loopback TCP pair, a UDP echo, a buffer safe for concurrent
// use, the last lines of a log. (The local cluster's own tests, in the test/cluster
// module, keep copies: see docs/architecture.md.)
package testsupport

import (
	"net"
	"testing"
)

// TCPPair returns the two ends of a loopback TCP connection: a real,
// buffered stream, unlike net.Pipe. Both are closed when the test ends.
func TCPPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
