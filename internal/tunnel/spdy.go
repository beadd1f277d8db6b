package tunnel

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/spdystream"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
)

// leavingPingPeriod is how often a session pings the far end while its
// pod is leaving (see spdyConnection.pingFastUntil), and leavingPingWindow
// how long it keeps doing so.
const (
	leavingPingPeriod = 250 * time.Millisecond
	leavingPingWindow = 30 * time.Second
)

// createStreamTimeout bounds how long CreateStream waits for the far end
// to accept a stream, as k8s.io/streaming's SPDY connection does.
const createStreamTimeout = 30 * time.Second

// spdyConnection is a client SPDY connection over spdystream, as
// k8s.io/streaming's spdy.NewClientConnectionWithPings runs it, with two
// differences:
//
//   - It hands out spdystream's own streams rather than an adapter around
//     each, so a read or write costs one call less and earlyReader can
//     take whole frames (ReadData) without copying them.
//   - It sends its own pings, without waiting for their answers, and they
//     can be hurried (pingFastUntil). Over the WebSocket transport the API
//     server's tunnel (k8s.io/apiserver pkg/util/proxy/streamtunnel.go)
//     holds a read lock while it waits for kpf's next message, and closing
//     kpf's side needs the write lock: when the kubelet closes a deleted
//     pod's port-forward connection, kpf's end stays open until kpf next
//     sends something, which on an idle session is the next ping, up to
//     portforward.PingPeriod later. Pings sent as soon as the pod leaves
//     its endpoints let the close through within a round trip.
//     spdystream's own Ping cannot serve: it waits for the answer, and a
//     ping that the kubelet took just before it closed is never answered,
//     so no ping would follow it (nor may two run at once: it reads its
//     ping ID outside its lock).
//
// It is safe for concurrent use.
type spdyConnection struct {
	conn   *spdystream.Connection
	frames *frameConn
	period time.Duration
	// fastUntil is until when (unix nanoseconds) to ping every
	// leavingPingPeriod; wake makes the ping loop ping at once.
	fastUntil atomic.Int64
	wake      chan struct{}

	mu      sync.Mutex
	streams map[uint32]*spdystream.Stream
}

// newSPDYConnection runs a client SPDY connection over conn, pinging the
// far end every portforward.PingPeriod.
func newSPDYConnection(conn *frameConn) (*spdyConnection, error) {
	return newSPDYConnectionWithPings(conn, portforward.PingPeriod)
}

func newSPDYConnectionWithPings(conn *frameConn, period time.Duration) (*spdyConnection, error) {
	sc, err := spdystream.NewConnection(conn, false)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start SPDY: %w", err)
	}
	c := &spdyConnection{conn: sc, frames: conn, period: period, wake: make(chan struct{}, 1), streams: map[uint32]*spdystream.Stream{}}
	// A port-forward server never opens streams of its own.
	go sc.Serve(func(st *spdystream.Stream) { st.Reset() })
	go c.pingLoop()
	go c.cutStuckLoop()
	return c, nil
}

// StuckStreamWait is how long a connection's client may take none of the
// data waiting for it while other connections on its session wait behind
// that data. A port-forward session has no flow control per stream: a
// client that stops reading (a process stopped at a breakpoint, or
// suspended) holds up every other connection on the session until it
// reads again. Past StuckStreamWait kpf resets that client's connection
// and only that one; the others go on. Without it the session would stall
// until a health check or a dial gave up on it and closed it, resetting
// every connection on it.
const StuckStreamWait = 2 * time.Second

// stuckCheckPeriod is how often a connection looks for stuck streams.
const stuckCheckPeriod = 500 * time.Millisecond

// cutStuckLoop cuts the streams that hold up others (see
// StuckStreamWait) until the connection closes.
func (c *spdyConnection) cutStuckLoop() {
	t := time.NewTicker(stuckCheckPeriod)
	defer t.Stop()
	for {
		select {
		case <-c.conn.CloseChan():
			return
		case <-t.C:
			c.conn.CutStuckStreams(StuckStreamWait)
		}
	}
}

// pingFrame returns a SPDY/3 PING control frame with id: version 3, type
// 6, no flags, a 4-byte payload.
func pingFrame(id uint32) []byte {
	return []byte{0x80, 3, 0, 6, 0, 0, 0, 4, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
}

// pingLoop sends the connection's pings until it closes. Their IDs are
// odd, as a client's must be; the server echoes each, and spdystream
// ignores an echo it is not waiting for.
func (c *spdyConnection) pingLoop() {
	t := time.NewTimer(c.nextPing())
	defer t.Stop()
	for id := uint32(1); ; id = (id + 2) & 0x7fffffff {
		select {
		case <-c.conn.CloseChan():
			return
		case <-t.C:
		case <-c.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		// An error is a write to a connection that is going away; its
		// CloseChan ends the loop.
		c.frames.writeWhole(pingFrame(id)) //nolint:errcheck
		t.Reset(c.nextPing())
	}
}

// nextPing is how long to wait before the next ping.
func (c *spdyConnection) nextPing() time.Duration {
	if time.Now().UnixNano() < c.fastUntil.Load() && leavingPingPeriod < c.period {
		return leavingPingPeriod
	}
	return c.period
}

// pingFastUntil pings the far end at once and then every
// leavingPingPeriod until t; a zero t goes back to the usual period.
func (c *spdyConnection) pingFastUntil(t time.Time) {
	if t.IsZero() {
		c.fastUntil.Store(0)
		return
	}
	c.fastUntil.Store(t.UnixNano())
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// CreateStream creates a stream and waits for the far end to accept it.
func (c *spdyConnection) CreateStream(h http.Header) (httpstream.Stream, error) {
	st, err := c.openStream(h, false)
	if err != nil {
		return nil, err
	}
	if err := c.waitStream(st); err != nil {
		return nil, err
	}
	return st, nil
}

// aheadConn is a connection that can open a stream without waiting for the
// far end to accept it, and send data on it meanwhile: spdyConnection.
type aheadConn interface {
	httpstream.Connection
	openStream(h http.Header, fin bool) (httpstream.Stream, error)
	waitStream(st httpstream.Stream) error
	sendAhead(st httpstream.Stream, p []byte) error
	holdFrames() (release func() error)
}

// holdFrames keeps the frames written from now on until release, which
// writes them in one piece (frameConn.hold).
func (c *spdyConnection) holdFrames() (release func() error) { return c.frames.hold() }

// openStream sends the frame that opens a stream and returns at once,
// without waiting for the far end to accept it (waitStream). With fin,
// the frame also ends our side of the stream: we will send nothing on it.
func (c *spdyConnection) openStream(h http.Header, fin bool) (httpstream.Stream, error) {
	st, err := c.conn.CreateStream(h, nil, fin)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.streams[st.Identifier()] = st
	c.mu.Unlock()
	return st, nil
}

// waitStream waits for the far end to accept st, which openStream opened.
// On failure st is forgotten.
func (c *spdyConnection) waitStream(st httpstream.Stream) error {
	if err := st.(*spdystream.Stream).WaitTimeout(createStreamTimeout); err != nil {
		c.RemoveStreams(st)
		return err
	}
	return nil
}

// maxDataFrame is the largest payload sendAhead puts in one data frame:
// what the kubelet's side relays in one piece.
const maxDataFrame = 32 << 10

// sendAhead writes p on st in data frames before the far end has accepted
// st, which spdystream's own writes wait for. SPDY allows it: a stream's
// frames are handled in order, so the far end takes the data once it has
// taken the stream (the kubelet reads it once the stream's pair is
// complete and the pod's port is connected).
func (c *spdyConnection) sendAhead(st httpstream.Stream, p []byte) error {
	id := st.Identifier() & 0x7fffffff
	frames := make([]byte, 0, len(p)+spdyFrameHeader*(1+len(p)/maxDataFrame))
	for len(p) > 0 {
		n := min(len(p), maxDataFrame)
		frames = append(frames, byte(id>>24), byte(id>>16), byte(id>>8), byte(id), 0, byte(n>>16), byte(n>>8), byte(n))
		frames = append(frames, p[:n]...)
		p = p[n:]
	}
	return c.frames.writeFrames(frames)
}

// RemoveStreams forgets streams.
func (c *spdyConnection) RemoveStreams(streams ...httpstream.Stream) {
	c.mu.Lock()
	for _, st := range streams {
		if st != nil {
			delete(c.streams, st.Identifier())
		}
	}
	c.mu.Unlock()
}

// Close resets every stream the connection still holds, so that closing
// the connection does not wait for their graceful ends, and then closes
// it.
func (c *spdyConnection) Close() error {
	c.mu.Lock()
	streams := c.streams
	c.streams = map[uint32]*spdystream.Stream{}
	c.mu.Unlock()
	for _, st := range streams {
		st.Reset()
	}
	return c.conn.Close()
}

// CloseChan is closed when the connection has closed.
func (c *spdyConnection) CloseChan() <-chan bool { return c.conn.CloseChan() }

// SetIdleTimeout closes the connection after it has been idle for
// timeout.
func (c *spdyConnection) SetIdleTimeout(timeout time.Duration) { c.conn.SetIdleTimeout(timeout) }
