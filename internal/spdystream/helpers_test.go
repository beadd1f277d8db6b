package spdystream

import (
	"net"
	"net/http"
	"testing"
)

// pairOfStreams opens streams from a client connection to a server
// connection over a pipe, and returns each client stream with the server's
// end of it (the server writes, the client reads).
func pairOfStreams(t *testing.T, n int) (*Connection, []*Stream, []*Stream) {
	t.Helper()
	c, s := net.Pipe()
	accepted := make(chan *Stream, n)
	sc, err := NewConnection(s, true)
	if err != nil {
		t.Fatal(err)
	}
	go sc.Serve(func(st *Stream) {
		st.SendReply(http.Header{}, false)
		accepted <- st
	})
	cc, err := NewConnection(c, false)
	if err != nil {
		t.Fatal(err)
	}
	go cc.Serve(NoOpStreamHandler)
	t.Cleanup(func() {
		// The pipe first: Close waits for a reader a failed test left
		// blocked.
		c.Close()
		s.Close()
		cc.Close()
		sc.Close()
	})
	var client, server []*Stream
	for range n {
		st, err := cc.CreateStream(http.Header{}, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Wait(); err != nil {
			t.Fatal(err)
		}
		client = append(client, st)
		server = append(server, <-accepted)
	}
	return cc, client, server
}
