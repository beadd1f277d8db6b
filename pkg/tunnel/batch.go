package tunnel

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Read batching: fewer wake-ups for a session that carries a bulk transfer.
//
// The API server relays a download to kpf in small writes: over the
// WebSocket tunnel each frame of at most 4 KiB is a TLS record and a
// syscall of its own. A forwarder that keeps up with it is woken, and reads,
// once per record or two, and those wake-ups are most of what a download
// costs kpf (5–10 KB per read; the forwarder process spent as much CPU as
// the API server). While a session moves data fast, readBatcher sets
// SO_RCVLOWAT on its TCP socket so that the kernel wakes kpf only once
// batchLowat bytes are queued, and a read then takes them all. A read
// never waits for more than is there: the low-water mark only delays the
// wake-up of a reader that has caught up. When nothing has been read for
// batchIdle, the mark drops back to one byte, so the tail of a transfer,
// and any small reply on the same session, waits at most that long.
const (
	// batchLowat is the low-water mark while batching: 16 records of the
	// API server's 4 KiB WebSocket frames.
	batchLowat = 64 << 10
	// batchIdle bounds how long queued bytes below the mark wait.
	batchIdle = 500 * time.Microsecond
	// batchWindow and batchEnterBytes: a session batches once it reads
	// batchEnterBytes within one batchWindow (50 MB/s). Requests and
	// replies rarely move that much; a bulk transfer does within its first
	// window.
	batchWindow     = 20 * time.Millisecond
	batchEnterBytes = 1 << 20
)

// readBatcher raises and lowers a TCP socket's receive low-water mark as
// the reads above it (observe) move a lot of data or stop. Its methods are
// safe for concurrent use.
type readBatcher struct {
	setLowat func(int) error

	mu          sync.Mutex
	batching    bool
	windowStart time.Time
	windowBytes int
	lastRead    time.Time
	timer       *time.Timer
}

// newReadBatcher returns a batcher for the TCP connection under c (a
// *net.TCPConn, or a *tls.Conn over one), or nil when there is none (a
// proxy's connection) or this system cannot batch (canBatchReads).
func newReadBatcher(c net.Conn) *readBatcher {
	if !canBatchReads() {
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
	return &readBatcher{setLowat: func(v int) error { return setReceiveLowat(raw, v) }}
}

// observe records a read of n bytes from the connection.
func (b *readBatcher) observe(n int) {
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
	if now.Sub(b.windowStart) > batchWindow {
		b.windowStart, b.windowBytes = now, 0
	}
	b.windowBytes += n
	if b.windowBytes < batchEnterBytes {
		return
	}
	if b.setLowat(batchLowat) != nil {
		return
	}
	b.batching = true
	if b.timer == nil {
		b.timer = time.AfterFunc(batchIdle, b.check)
	} else {
		b.timer.Reset(batchIdle)
	}
}

// check runs batchIdle after the last check while batching: it waits on
// while reads go on, and stops batching once none came for batchIdle.
func (b *readBatcher) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.batching {
		return
	}
	if idle := time.Since(b.lastRead); idle < batchIdle {
		b.timer.Reset(batchIdle - idle)
		return
	}
	// Lowering the mark wakes a reader whose bytes are now enough. On a
	// closed socket it fails, and batching ends all the same.
	_ = b.setLowat(1)
	b.batching = false
	b.windowStart, b.windowBytes = time.Now(), 0
}

// batchingConn counts what reads return for a readBatcher.
type batchingConn struct {
	net.Conn
	batcher *readBatcher
}

func (c *batchingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.batcher.observe(n)
	return n, err
}

// withReadBatching returns c with its reads observed by b, or c itself
// when b is nil.
func withReadBatching(c net.Conn, b *readBatcher) net.Conn {
	if b == nil {
		return c
	}
	return &batchingConn{Conn: c, batcher: b}
}
