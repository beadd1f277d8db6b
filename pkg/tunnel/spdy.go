package tunnel

import (
	"fmt"
	"net"
	"net/http"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	streamhttp "k8s.io/streaming/pkg/httpstream"
	streamspdy "k8s.io/streaming/pkg/httpstream/spdy"
)

// newSPDYConnection runs a client SPDY connection over conn, pinging the
// far end every portforward.PingPeriod, as apimachinery's
// spdy.NewClientConnectionWithPings does. Unlike it, it hands out
// spdystream's own streams rather than an adapter around each, so a read
// or write costs one call less and earlyReader can take whole frames
// (ReadData) without copying them.
func newSPDYConnection(conn net.Conn) (httpstream.Connection, error) {
	c, err := streamspdy.NewClientConnectionWithPings(conn, portforward.PingPeriod)
	if err != nil {
		return nil, fmt.Errorf("start SPDY: %w", err)
	}
	return spdyConnection{c}, nil
}

// spdyConnection is k8s.io/streaming's SPDY connection seen as an
// apimachinery httpstream.Connection. The two packages' Stream interfaces
// have the same methods, so streams pass between them unwrapped.
type spdyConnection struct{ streamhttp.Connection }

// CreateStream creates a stream and waits for the far end to accept it.
func (c spdyConnection) CreateStream(h http.Header) (httpstream.Stream, error) {
	st, err := c.Connection.CreateStream(h)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// RemoveStreams forgets streams.
func (c spdyConnection) RemoveStreams(streams ...httpstream.Stream) {
	raw := make([]streamhttp.Stream, 0, len(streams))
	for _, st := range streams {
		if st != nil {
			raw = append(raw, st)
		}
	}
	c.Connection.RemoveStreams(raw...)
}
