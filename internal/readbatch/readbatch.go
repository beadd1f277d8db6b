// Package readbatch wakes the reader of a bulk transfer once per batch of
// bytes rather than once per small write of its sender.
//
// The API server relays a port-forward download in small writes: over the
// WebSocket tunnel each frame of at most 4 KiB is a TLS record and a
// syscall of its own. A forwarder that keeps up with it is woken, and
// reads, once per record or two, and those wake-ups are most of what a
// download costs it (5–10 KB per read). While a connection moves data
// fast, a Batcher sets SO_RCVLOWAT on its TCP socket so that the kernel
// wakes the reader only once Lowat bytes are queued, and a read then takes
// them all. A read never waits for more than is there: the low-water mark
// only delays the wake-up of a reader that has caught up. When nothing has
// been read for Idle, the mark drops back to one byte, so the tail of a
// transfer, and any small reply on the same connection, waits at most that
// long.
package readbatch

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

const (
	// Lowat is the low-water mark while batching: 16 records of the
	// API server's 4 KiB WebSocket frames.
	Lowat = 64 << 10
	// Idle bounds how long queued bytes below the mark wait.
	Idle = 500 * time.Microsecond
	// Window and EnterBytes: a connection batches once it reads
	// EnterBytes within one Window (50 MB/s). Requests and replies rarely
	// move that much; a bulk transfer does within its first window.
	Window     = 20 * time.Millisecond
	EnterBytes = 1 << 20
)

// Batcher raises and lowers a TCP socket's receive low-water mark as the
// reads above it (Observe) move a lot of data or stop. A nil *Batcher does
// nothing. Its methods are safe for concurrent use.
type Batcher struct {
	setLowat func(int) error

	mu          sync.Mutex
	batching    bool
	windowStart time.Time
	windowBytes int
	lastRead    time.Time
	timer       *time.Timer
}

// New returns a batcher for the TCP socket under c (a *net.TCPConn, or a
// *tls.Conn over one), or nil when there is none (a proxy's connection) or
// this system cannot batch (Supported).
func New(c net.Conn) *Batcher {
	if !Supported() {
		return nil
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return &Batcher{setLowat: func(v int) error { return setReceiveLowat(raw, v) }}
}

// Observe records a read of n bytes from the connection.
func (b *Batcher) Observe(n int) {
	if b == nil || n <= 0 {
		return
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastRead = now
	if b.batching {
		return
	}
	if now.Sub(b.windowStart) > Window {
		b.windowStart, b.windowBytes = now, 0
	}
	b.windowBytes += n
	if b.windowBytes < EnterBytes {
		return
	}
	if b.setLowat(Lowat) != nil {
		return
	}
	b.batching = true
	if b.timer == nil {
		b.timer = time.AfterFunc(Idle, b.check)
	} else {
		b.timer.Reset(Idle)
	}
}

// check runs Idle after the last check while batching: it waits on
// while reads go on, and stops batching once none came for Idle.
func (b *Batcher) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.batching {
		return
	}
	if idle := time.Since(b.lastRead); idle < Idle {
		b.timer.Reset(Idle - idle)
		return
	}
	// Lowering the mark wakes a reader whose bytes are now enough. On a
	// closed socket it fails, and batching ends all the same.
	_ = b.setLowat(1)
	b.batching = false
	b.windowStart, b.windowBytes = time.Now(), 0
}

// conn counts what reads return for a Batcher.
type conn struct {
	net.Conn
	batcher *Batcher
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.batcher.Observe(n)
	return n, err
}

// Wrap returns c with its reads observed by b, or c itself when b is nil.
func Wrap(c net.Conn, b *Batcher) net.Conn {
	if b == nil {
		return c
	}
	return &conn{Conn: c, batcher: b}
}
