package spdystream

import (
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// A stream waiting for its reply is told at once when the connection
// ends, since no reply can come any more (upstream v0.5.1 waited for the
// timeout).
func TestWaitEndsWithTheConnection(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	// The far end reads the stream's frame and never answers.
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := server.Read(buf); err != nil {
				return
			}
		}
	}()
	cc, err := NewConnection(client, false)
	if err != nil {
		t.Fatal(err)
	}
	go cc.Serve(NoOpStreamHandler)
	st, err := cc.CreateStream(http.Header{}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- st.WaitTimeout(time.Minute) }()
	select {
	case err := <-waited:
		t.Fatalf("WaitTimeout returned %v before any reply or end", err)
	case <-time.After(20 * time.Millisecond):
	}
	server.Close()
	select {
	case err := <-waited:
		if !errors.Is(err, ErrConnectionClosed) {
			t.Errorf("WaitTimeout: %v, want ErrConnectionClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitTimeout still waiting 10s after the connection ended")
	}
	cc.Close()
}
