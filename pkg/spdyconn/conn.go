// Package spdyconn is the client side of a SPDY/3.1 connection as
// Kubernetes port-forward speaks it: a lean replacement for spdystream
// (which client-go uses) on the data path.
//
// A port-forward moves its bytes in SPDY data frames. spdystream reads
// each frame into a fresh allocation, hands it through a priority queue to
// one of five worker goroutines and from there through an unbuffered
// channel to the stream's reader, which gets one frame per Read. Here the
// connection's one reader goroutine reads a frame's payload straight into
// a pooled buffer and queues it on its stream; a Read takes everything
// queued, up to the caller's buffer, in one go. That is one goroutine
// hand-off per batch instead of two per frame, no allocation per frame and
// larger writes downstream, which is most of what a forwarder spends per
// byte besides TLS and the system calls themselves.
//
// Control frames (stream replies, resets, pings, go-away) are rare; they
// go through spdystream's framer, whose header compression state they
// share, so this package does not reimplement SPDY's zlib-compressed
// header blocks.
//
// Conn implements k8s.io/apimachinery's httpstream.Connection, so it drops
// in where client-go's SPDY connection went. It is a client only: streams
// the server opens are refused (a kubelet opens none).
package spdyconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// Limits and sizes.
const (
	// frameHeaderSize is the size of every SPDY frame's header.
	frameHeaderSize = 8
	// maxDataFrame is the largest data frame Write sends; larger writes
	// are split. A kubelet accepts frames up to SPDY's 16 MiB limit;
	// smaller ones keep one stream's write from holding the connection
	// long.
	maxDataFrame = 64 << 10
	// chunkSize is the size of the pooled buffers that received data is
	// queued in; a larger frame takes several.
	chunkSize = 32 << 10
	// smallFrame is the payload size up to which a frame is copied into
	// the tail of its stream's queue rather than given a chunk of its own.
	smallFrame = 1 << 10
	// streamWindow bounds what a stream queues for its reader. SPDY as the
	// kubelet speaks it has no flow control: when a stream's reader falls
	// this far behind, the connection's reader waits for it, as
	// spdystream's does (sooner), holding up the other streams.
	streamWindow = 256 << 10
	// maxControlFrame bounds a control frame's payload (spdystream's
	// framer applies its own, smaller, limits to header blocks).
	maxControlFrame = 1 << 20
	// replyTimeout is how long CreateStream waits for the server's reply,
	// as client-go's SPDY connection does.
	replyTimeout = 30 * time.Second
	// closeWriteTimeout bounds the go-away frame Close sends.
	closeWriteTimeout = time.Second
)

// Errors a stream or connection returns.
var (
	// ErrStreamReset is what CreateStream returns when the server reset
	// the stream instead of replying, and what Write returns on a stream
	// that was reset. Its text is spdystream's.
	ErrStreamReset = errors.New("stream reset")
	// ErrConnClosed is returned by operations on a closed connection.
	ErrConnClosed = errors.New("spdy connection closed")
	// ErrReplyTimeout is returned by CreateStream when no reply came in
	// time.
	ErrReplyTimeout = errors.New("timed out waiting for the stream reply")
	// ErrWriteClosed is returned by Write and Close on a stream whose
	// sending side is closed.
	ErrWriteClosed = errors.New("write on a closed stream")
)

// Conn is a SPDY client connection. It is safe for concurrent use.
type Conn struct {
	conn net.Conn

	// wmu serialises frame writes, and stream id assignment with them
	// (ids must increase in the order their SYN_STREAMs go out). framer
	// writes control frames into ctrlOut, under wmu; it reads the control
	// frames the reader goroutine feeds it from ctrlIn.
	wmu     sync.Mutex
	framer  *spdy.Framer
	ctrlOut bytes.Buffer
	ctrlIn  feeder
	wbuf    []byte
	nextID  uint32
	pingID  uint32

	mu      sync.Mutex
	streams map[uint32]*Stream
	err     error // why the connection ended, once it has

	chunks sync.Pool // *[]byte of chunkSize

	closed    chan bool
	closeOnce sync.Once

	idleMu    sync.Mutex
	idle      *time.Timer
	idleAfter atomic.Int64 // a time.Duration; 0 when off
}

var _ httpstream.Connection = (*Conn)(nil)

// New starts a SPDY client connection over conn (an upgraded HTTP
// connection, or a WebSocket tunnel carrying SPDY). If pingPeriod is
// positive, a ping frame goes out at that period, as client-go's
// connection sends them to keep proxies and load balancers from closing
// an idle connection.
func New(conn net.Conn, pingPeriod time.Duration) (*Conn, error) {
	c := &Conn{
		conn:    conn,
		nextID:  1,
		pingID:  1,
		streams: map[uint32]*Stream{},
		closed:  make(chan bool),
	}
	c.chunks.New = func() any { b := make([]byte, chunkSize); return &b }
	framer, err := spdy.NewFramer(&c.ctrlOut, &c.ctrlIn)
	if err != nil {
		return nil, fmt.Errorf("spdy framer: %w", err)
	}
	c.framer = framer
	go c.readLoop()
	if pingPeriod > 0 {
		go c.sendPings(pingPeriod)
	}
	return c, nil
}

// CloseChan is closed when the connection has ended, closed by Close or
// by the server, or lost.
func (c *Conn) CloseChan() <-chan bool { return c.closed }

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection: it tells the server it is going away (unless
// a write is stuck, which it does not wait for) and closes the connection
// below, which ends every stream.
func (c *Conn) Close() error {
	c.shutdown(ErrConnClosed)
	if c.wmu.TryLock() {
		c.conn.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
		c.writeControlLocked(&spdy.GoAwayFrame{Status: spdy.GoAwayOK})
		c.wmu.Unlock()
	}
	return c.conn.Close()
}

// shutdown records why the connection ended, ends every stream and closes
// CloseChan. Only the first call has effect.
func (c *Conn) shutdown(why error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = why
		streams := c.streams
		c.streams = map[uint32]*Stream{}
		c.mu.Unlock()
		for _, s := range streams {
			s.connEnded()
		}
		c.idleMu.Lock()
		if c.idle != nil {
			c.idle.Stop()
		}
		c.idleMu.Unlock()
		close(c.closed)
	})
}

// SetIdleTimeout closes the connection once no frame has been read or
// written for timeout; 0 turns that off.
func (c *Conn) SetIdleTimeout(timeout time.Duration) {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	c.idleAfter.Store(int64(max(timeout, 0)))
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
	if timeout > 0 {
		c.idle = time.AfterFunc(timeout, func() { c.Close() })
	}
}

// active pushes the idle timeout back.
func (c *Conn) active() {
	if c.idleAfter.Load() == 0 {
		return
	}
	c.idleMu.Lock()
	if c.idle != nil {
		c.idle.Reset(time.Duration(c.idleAfter.Load()))
	}
	c.idleMu.Unlock()
}

// RemoveStreams forgets streams: frames that still come for them are
// dropped, and since nothing more can reach them, their reads end once
// what is queued has been read. It tells the server nothing; Reset does.
func (c *Conn) RemoveStreams(streams ...httpstream.Stream) {
	for _, s := range streams {
		st, ok := s.(*Stream)
		if !ok || st == nil || st.conn != c {
			continue
		}
		c.forget(st)
		st.mu.Lock()
		st.endLocked()
		st.mu.Unlock()
	}
}

// CreateStream opens a stream with headers and waits for the server's
// reply: ErrStreamReset if it reset the stream instead, ErrReplyTimeout
// after 30 s without either.
func (c *Conn) CreateStream(headers http.Header) (httpstream.Stream, error) {
	s := newStream(c, headers)
	c.wmu.Lock()
	if c.nextID > 0x7fffffff {
		c.wmu.Unlock()
		return nil, errors.New("spdy stream ids exhausted")
	}
	s.id = c.nextID
	c.nextID += 2
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		c.wmu.Unlock()
		return nil, err
	}
	c.streams[s.id] = s
	c.mu.Unlock()
	err := c.writeControlLocked(&spdy.SynStreamFrame{StreamId: spdy.StreamId(s.id), Headers: headers})
	c.wmu.Unlock()
	if err != nil {
		c.forget(s)
		return nil, fmt.Errorf("send stream %d: %w", s.id, err)
	}
	t := time.NewTimer(replyTimeout)
	defer t.Stop()
	select {
	case err := <-s.reply:
		if err != nil {
			c.forget(s)
			return nil, err
		}
		return s, nil
	case <-t.C:
		s.Reset()
		return nil, ErrReplyTimeout
	case <-c.closed:
		return nil, c.Err()
	}
}

// forget removes s from the connection's streams.
func (c *Conn) forget(s *Stream) {
	c.mu.Lock()
	if c.streams[s.id] == s {
		delete(c.streams, s.id)
	}
	c.mu.Unlock()
}

// stream returns the stream with id, or nil.
func (c *Conn) stream(id uint32) *Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// writeControlLocked writes a control frame. The caller holds wmu.
func (c *Conn) writeControlLocked(f spdy.Frame) error {
	c.ctrlOut.Reset()
	if err := c.framer.WriteFrame(f); err != nil {
		return err
	}
	if _, err := c.conn.Write(c.ctrlOut.Bytes()); err != nil {
		return c.writeFailed(err)
	}
	c.active()
	return nil
}

// writeControl writes a control frame.
func (c *Conn) writeControl(f spdy.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeControlLocked(f)
}

// writeData writes one data frame of stream id, header and payload in one
// write: over TLS one record, over the WebSocket tunnel one message.
func (c *Conn) writeData(id uint32, fin bool, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := frameHeaderSize + len(p)
	if cap(c.wbuf) < n {
		c.wbuf = make([]byte, n)
	}
	b := c.wbuf[:n]
	b[0], b[1], b[2], b[3] = byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id)
	b[4] = 0
	if fin {
		b[4] = byte(spdy.DataFlagFin)
	}
	b[5], b[6], b[7] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	copy(b[frameHeaderSize:], p)
	if _, err := c.conn.Write(b); err != nil {
		return c.writeFailed(err)
	}
	c.active()
	return nil
}

// writeFailed ends the connection after a failed write: a frame may have
// gone out in part, and nothing after it could be understood.
func (c *Conn) writeFailed(err error) error {
	err = fmt.Errorf("spdy write: %w", err)
	c.shutdown(err)
	c.conn.Close()
	return err
}

// sendPings sends a ping frame every period until the connection ends.
// The server's answers are read and dropped: what keeps the connection
// open is the traffic.
func (c *Conn) sendPings(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		c.wmu.Lock()
		id := c.pingID
		c.pingID += 2
		if c.pingID > 0x7fffffff {
			c.pingID = 1
		}
		err := c.writeControlLocked(&spdy.PingFrame{Id: id})
		c.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// readLoop reads frames until the connection fails or closes, then ends
// the connection.
func (c *Conn) readLoop() {
	err := c.read()
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: the server closed it", ErrConnClosed)
	}
	c.shutdown(err)
	c.conn.Close()
}

// read reads and dispatches frames; it returns why it stopped.
func (c *Conn) read() error {
	br := bufio.NewReaderSize(c.conn, 64<<10)
	var hdr [frameHeaderSize]byte
	var ctrl []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		c.active()
		length := int(hdr[5])<<16 | int(hdr[6])<<8 | int(hdr[7])
		if hdr[0]&0x80 != 0 {
			if length > maxControlFrame {
				return fmt.Errorf("spdy control frame of %d bytes", length)
			}
			if cap(ctrl) < frameHeaderSize+length {
				ctrl = make([]byte, frameHeaderSize+length)
			}
			ctrl = ctrl[:frameHeaderSize+length]
			copy(ctrl, hdr[:])
			if _, err := io.ReadFull(br, ctrl[frameHeaderSize:]); err != nil {
				return err
			}
			if err := c.control(ctrl); err != nil {
				return err
			}
			continue
		}
		id := uint32(hdr[0]&0x7f)<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3])
		s := c.stream(id)
		if s == nil || !s.isReplied() {
			// A stream already reset or removed (or never replied to,
			// which a server must not do): drop its data.
			if _, err := br.Discard(length); err != nil {
				return err
			}
			continue
		}
		if err := s.receive(br, length); err != nil {
			return err
		}
		if hdr[4]&byte(spdy.DataFlagFin) != 0 {
			s.remoteFinished()
		}
	}
}

// control handles one whole control frame.
func (c *Conn) control(frame []byte) error {
	c.ctrlIn.set(frame)
	f, err := c.framer.ReadFrame()
	if err != nil {
		return fmt.Errorf("spdy control frame: %w", err)
	}
	if c.ctrlIn.len() != 0 {
		return fmt.Errorf("spdy control frame: %d bytes left unread", c.ctrlIn.len())
	}
	switch f := f.(type) {
	case *spdy.SynReplyFrame:
		if s := c.stream(uint32(f.StreamId)); s != nil {
			s.replied(nil)
			if f.CFHeader.Flags&spdy.ControlFlagFin != 0 {
				s.remoteFinished()
			}
		}
	case *spdy.RstStreamFrame:
		if s := c.stream(uint32(f.StreamId)); s != nil {
			c.forget(s)
			s.remoteReset()
		}
	case *spdy.PingFrame:
		if f.Id%2 == 0 {
			// The server's ping: answer it, without holding up the
			// reader if a write is blocked. Our own come back odd.
			go c.writeControl(&spdy.PingFrame{Id: f.Id})
		}
	case *spdy.GoAwayFrame:
		return fmt.Errorf("%w: the server is going away (status %d)", ErrConnClosed, f.Status)
	case *spdy.SynStreamFrame:
		// Port-forward servers open no streams.
		go c.writeControl(&spdy.RstStreamFrame{StreamId: f.StreamId, Status: spdy.RefusedStream})
	case *spdy.HeadersFrame:
		if s := c.stream(uint32(f.StreamId)); s != nil && f.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			s.remoteFinished()
		}
	default:
		// SETTINGS, WINDOW_UPDATE, NOOP: nothing to do for a client
		// without flow control, as for spdystream.
	}
	return nil
}

// getChunk returns a pooled receive buffer.
func (c *Conn) getChunk() *[]byte { return c.chunks.Get().(*[]byte) }

// putChunk returns a receive buffer to the pool.
func (c *Conn) putChunk(b *[]byte) {
	*b = (*b)[:chunkSize]
	c.chunks.Put(b)
}

// feeder hands spdystream's framer one control frame at a time.
type feeder struct {
	b []byte
}

func (f *feeder) set(b []byte) { f.b = b }
func (f *feeder) len() int     { return len(f.b) }

// Read reads from the current frame; at its end it reports io.EOF, so a
// framer that reads past a frame fails instead of blocking.
func (f *feeder) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}
