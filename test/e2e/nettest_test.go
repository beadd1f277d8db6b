//go:build linux

package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// A connection from the Dialer is a net.Conn in full, deadlines included,
// as database drivers and HTTP clients need: golang.org/x/net/nettest's
// conformance suite passes on it, through the real port-forward path, with
// the far end the pod's backend connection.
//
// Three of its pipes take 10 s to make: the one before ended with data in
// flight to a pod whose end had closed, which the kubelet's SPDY
// connection cannot drop without a reader, and holds up the session until
// kpf finds it stalled (tunnel.StreamOpenStall) and opens another.
func TestE2EDialerConnPassesNettest(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "nettest")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	deployEcho(t, s.primary, ns, 1, backend{name: "nettest", port: ln.Addr().(*net.TCPAddr).Port})
	d := newDialer(t, s, ns)
	t.Cleanup(func() { d.Close() })
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c1, err = d.DialContext(ctx, "tcp", "echo."+ns+".svc:80")
		if err != nil {
			return nil, nil, nil, err
		}
		select {
		case c2 = <-accepted:
		case <-ctx.Done():
			c1.Close()
			return nil, nil, nil, ctx.Err()
		}
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}
