package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/kpf-dev/kpf/internal/readbatch"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
)

// spdyFrameHeader is the size of a SPDY/3 frame header: a control frame's
// version and type or a data frame's stream id, then 8 bits of flags and
// 24 bits of payload length.
const spdyFrameHeader = 8

// maxKeptFrameBuffer bounds the gathering buffer a frameConn keeps between
// frames; a larger one (a frame bigger than any kpf writes) is dropped.
const maxKeptFrameBuffer = 128 << 10

// frameConn hands each SPDY frame to the connection below in one Write.
//
// spdystream writes a data frame in three writes (stream id, flags and
// length, payload) and a control frame in several. Over TLS each write is
// a record and a syscall of its own; over the WebSocket tunnel each is a
// WebSocket message that the API server relays to the kubelet on its own.
// Gathering the frame first makes one record, one syscall and one message
// per frame (for frames up to a TLS record), which costs kpf, the API
// server and the kubelet less per frame; small writes (requests and
// responses) gain the most.
//
// spdystream writes each frame whole under its connection's write lock, so
// the bytes of one frame arrive in order and unmixed; frameConn relies on
// that and only reads each frame's length to know where it ends.
//
// A caller about to write several frames that belong together (the two
// that open a forwarded connection's streams, and the client's first
// bytes) holds the connection (hold): whole frames wait in the buffer
// until the hold is released and go out in one Write, one TLS record and
// one WebSocket message.
type frameConn struct {
	net.Conn

	mu sync.Mutex
	// buf holds the frames not yet written: whole ones up to whole, then
	// the part of one that spdystream is in the middle of writing.
	buf   []byte
	whole int
	err   error
	// between is signalled when Write leaves no part of a frame in buf,
	// for writeFrames waiting to go between spdystream's frames.
	between *sync.Cond
	waiting int
	// holds counts the holds not yet released; while there are any,
	// whole frames wait in buf.
	holds int
}

func newFrameConn(c net.Conn) *frameConn {
	fc := &frameConn{Conn: c}
	fc.between = sync.NewCond(&fc.mu)
	return fc
}

// Write gathers p and writes every frame it completes, unless the
// connection is held. Bytes of a frame not yet complete are kept for the
// next Write and reported as written.
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	for {
		rest := c.buf[c.whole:]
		if len(rest) < spdyFrameHeader {
			break
		}
		size := spdyFrameHeader + (int(rest[5])<<16 | int(rest[6])<<8 | int(rest[7]))
		if len(rest) < size {
			break
		}
		c.whole += size
	}
	if c.holds == 0 {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	if c.whole == len(c.buf) && c.waiting > 0 {
		c.between.Broadcast()
	}
	return len(p), nil
}

// flush writes the whole frames in buf. c.mu is held.
func (c *frameConn) flush() error {
	if c.whole == 0 {
		return nil
	}
	if _, err := c.Conn.Write(c.buf[:c.whole]); err != nil {
		c.fail(err)
		return err
	}
	left := copy(c.buf, c.buf[c.whole:])
	c.buf, c.whole = c.buf[:left], 0
	if left == 0 && cap(c.buf) > maxKeptFrameBuffer {
		c.buf = nil
	}
	return nil
}

// fail records the connection's write error. c.mu is held.
func (c *frameConn) fail(err error) {
	c.err = err
	c.buf, c.whole = nil, 0
	if c.waiting > 0 {
		c.between.Broadcast()
	}
}

// hold keeps the whole frames written from now on in the buffer until the
// returned release, which writes every frame held, these and any held by
// other callers, in one Write, and returns its error. Holds are short (a
// caller writes a few frames and releases), so a frame waits at most
// until the next release.
func (c *frameConn) hold() (release func() error) {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
	return func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.holds--
		if c.err != nil {
			return c.err
		}
		return c.flush()
	}
}

// writeFrames writes frames, whole SPDY frames, between the frames that go
// through Write, waiting while Write holds part of one.
func (c *frameConn) writeFrames(frames []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && c.whole < len(c.buf) {
		c.waiting++
		c.between.Wait()
		c.waiting--
	}
	if c.err != nil {
		return c.err
	}
	if c.holds > 0 || len(c.buf) > 0 {
		c.buf = append(c.buf, frames...)
		c.whole = len(c.buf)
		if c.holds > 0 {
			return nil
		}
		return c.flush()
	}
	if _, err := c.Conn.Write(frames); err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// writeWhole writes frame, one whole SPDY frame, between the frames that
// go through Write. While Write holds part of a frame (spdystream is in
// the middle of writing one), it writes nothing and returns false: the
// frame on its way serves as well as a ping would. While the connection
// is held, frame waits with the others.
func (c *frameConn) writeWhole(frame []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false, c.err
	}
	if c.whole < len(c.buf) {
		return false, nil
	}
	if c.holds > 0 {
		c.buf = append(c.buf, frame...)
		c.whole = len(c.buf)
		return true, nil
	}
	if _, err := c.Conn.Write(frame); err != nil {
		c.fail(err)
		return false, err
	}
	return true, nil
}

// framingUpgrader opens a SPDY port-forward connection as client-go's SPDY
// round tripper does, but with the upgraded connection behind a frameConn.
// It is the innermost round tripper: the config's wrappers (authentication,
// user agent, impersonation) wrap it as they wrap client-go's.
type framingUpgrader struct {
	*spdy.SpdyRoundTripper
	conn net.Conn
}

// spdyRoundTripperFor is spdytransport.RoundTripperFor with a
// framingUpgrader.
func spdyRoundTripperFor(cfg *restclient.Config) (http.RoundTripper, *framingUpgrader, error) {
	tlsConfig, err := restclient.TLSConfigFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	proxy := http.ProxyFromEnvironment
	if cfg.Proxy != nil {
		proxy = cfg.Proxy
	}
	inner, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{TLS: tlsConfig, Proxier: proxy, PingPeriod: portforward.PingPeriod})
	if err != nil {
		return nil, nil, err
	}
	up := &framingUpgrader{SpdyRoundTripper: inner}
	rt, err := restclient.HTTPWrappersForConfig(cfg, up)
	if err != nil {
		return nil, nil, err
	}
	return rt, up, nil
}

// RoundTrip sends the upgrade request and reads the response, keeping the
// connection for NewConnection.
func (u *framingUpgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header = req.Header.Clone()
	req.Header.Add(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Add(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	conn, err := u.SpdyRoundTripper.Dial(req)
	if err != nil {
		return nil, err
	}
	// The server sends nothing after its 101 until kpf opens a stream,
	// so the reader holds no bytes of the SPDY connection.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	u.conn = conn
	return resp, nil
}

// NewConnection returns the SPDY connection over the upgraded connection,
// or client-go's error for a response that is not an upgrade.
func (u *framingUpgrader) NewConnection(resp *http.Response) (httpstream.Connection, error) {
	upgraded := resp.StatusCode == http.StatusSwitchingProtocols &&
		strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderConnection)), strings.ToLower(httpstream.HeaderUpgrade)) &&
		strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade)), strings.ToLower(spdy.HeaderSpdy31))
	if u.conn == nil {
		return nil, errors.New("unable to upgrade connection: no connection was upgraded")
	}
	if !upgraded {
		u.conn.Close()
		// client-go's upgrader reads the body into its error message and
		// touches no connection on this path.
		if _, err := u.SpdyRoundTripper.NewConnection(resp); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("unable to upgrade connection: status %d", resp.StatusCode)
	}
	conn := readbatch.Wrap(u.conn, readbatch.New(u.conn))
	c, err := newSPDYConnection(newFrameConn(conn))
	if err != nil {
		return nil, err
	}
	return c, nil
}
