package relay

import (
	"bytes"
	"context"
	"net"
	"sync"
	"time"
)

// Open starts a stream for dest on c, a fresh stream to the relay: it
// writes the request and returns c wrapped so that the first Read reads
// the relay's reply first and returns a *ReplyError if it is not OK. The
// request goes out at once and the reply is read only when the caller
// reads, so a client's first bytes travel with the request and reaching a
// destination through the relay costs no round trip more than a pod does.
func Open(c net.Conn, dest Dest) (*Conn, error) {
	req, err := RequestFor(dest)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	return Opened(c), nil
}

// RequestFor returns the request for dest as it goes on the wire, for a
// caller that sends it itself (with the frames that open a port-forward
// stream, tunnel.Lease.DialPrefixed); Opened then wraps the stream.
func RequestFor(dest Dest) ([]byte, error) {
	var b bytes.Buffer
	if err := WriteRequest(&b, Request{Kind: dest.Kind, Dest: dest.Addr()}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Opened wraps c, a stream on which a request was sent, so that the first
// Read reads the relay's reply first (see Open).
func Opened(c net.Conn) *Conn { return &Conn{Conn: c} }

// Conn is a stream to the relay whose first Read checks the relay's
// reply.
type Conn struct {
	net.Conn
	once sync.Once
	err  error
}

// Read reads the relay's reply first, and returns it as the error if it is
// not OK (a *ReplyError), then the destination's bytes.
func (c *Conn) Read(p []byte) (int, error) {
	c.once.Do(func() { c.err = ReadReply(c.Conn) })
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the stream when the underlying one can.
func (c *Conn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}

// Beat keeps the relay alive over c, a fresh stream to it: it sends the
// heartbeat request, waits for the reply, then writes a byte every
// interval until ctx ends (it returns nil) or a write fails (the error).
// It does not close c.
func Beat(ctx context.Context, c net.Conn, interval time.Duration) error {
	if err := WriteRequest(c, Request{Kind: Heartbeat}); err != nil {
		return err
	}
	if err := ReadReply(c); err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := c.Write([]byte{0}); err != nil {
				return err
			}
		}
	}
}
