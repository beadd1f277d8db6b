package tunnel

import (
	"net"
	"net/http"
	"testing"

	streamhttp "k8s.io/streaming/pkg/httpstream"
	streamspdy "k8s.io/streaming/pkg/httpstream/spdy"
)

// The SPDY connection kpf runs hands out spdystream's own streams, so that
// earlyReader takes whole frames (ReadData) rather than copying through
// an adapter, and data written by the far end right after accepting a
// stream reaches a dial's first Read.
func TestSPDYConnectionStreamsReadWholeFrames(t *testing.T) {
	client, server := net.Pipe()
	srv, err := streamspdy.NewServerConnection(server, func(st streamhttp.Stream, replySent <-chan struct{}) error {
		go func() {
			<-replySent
			st.Write([]byte("hello"))
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := newSPDYConnection(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.CreateStream(http.Header{"Streamtype": {"data"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.RemoveStreams(st)
	if _, ok := st.(frameReader); !ok {
		t.Fatalf("stream %T cannot read whole frames", st)
	}
	e := startEarlyRead(st)
	got := make([]byte, 16)
	n, err, ok := e.read(got)
	if !ok || err != nil || string(got[:n]) != "hello" {
		t.Errorf("first read: %q, %v (through the early reader: %v); want \"hello\"", got[:n], err, ok)
	}
}
