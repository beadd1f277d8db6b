package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"
)

// maxParkedData bounds what a parked connection keeps of the data the pod
// sends before a client takes it (a server's greeting is a few bytes).
const maxParkedData = 64 << 10

// ErrParkedOverflow ends a parked connection on which the pod sent more
// than maxParkedData before any client took it.
var ErrParkedOverflow = fmt.Errorf("the pod sent more than %d KiB before a client took the connection", maxParkedData>>10)

// ErrParkedClosed is the reason of a parked connection closed by its owner.
var ErrParkedClosed = errors.New("spare connection closed")

// Parked is a connection to a pod opened ahead of any client (a spare): it
// waits, reading what the pod sends, until Take hands it to a client.
//
// It must keep reading: a port-forward session delivers a stream's data
// frames to that stream alone, and a stream nobody reads holds up the
// session's frame delivery for other streams too. What it reads is kept
// for the client, up to maxParkedData.
type Parked struct {
	up Upstream
	// Label says where the connection goes (for logs).
	Label string
	// Since is when the connection was parked.
	Since time.Time
	onEnd func()

	unparkOnce sync.Once

	mu      sync.Mutex
	buf     []byte
	err     error // why it ended before it was taken
	taken   bool
	handoff chan readResult // the read in flight when taken or closed
	ended   chan struct{}   // closed when it ends before a take
}

type readResult struct {
	data []byte
	err  error
}

// Park starts waiting on up. label is kept as Label; onEnd, if not nil, is
// called when the connection ends before it is taken or closed.
func Park(up Upstream, label string, onEnd func()) *Parked {
	p := &Parked{up: up, Label: label, Since: time.Now(), onEnd: onEnd, handoff: make(chan readResult, 1), ended: make(chan struct{})}
	if c, ok := up.(*Conn); ok {
		c.setParked(true)
	}
	go p.pump()
	return p
}

// unpark stops counting the connection among its session's spares.
func (p *Parked) unpark() {
	p.unparkOnce.Do(func() {
		if c, ok := p.up.(*Conn); ok {
			c.setParked(false)
		}
	})
}

func (p *Parked) pump() {
	b := make([]byte, 4<<10)
	for {
		n, err := p.up.Read(b)
		p.mu.Lock()
		if p.taken {
			// The client (or Close) owns the connection now and waits for
			// this read: hand it over and stop.
			p.handoff <- readResult{bytes.Clone(b[:n]), err}
			p.mu.Unlock()
			return
		}
		p.buf = append(p.buf, b[:n]...)
		if err == nil && len(p.buf) > maxParkedData {
			err = ErrParkedOverflow
		}
		if err != nil {
			p.err = err
			close(p.ended)
			p.mu.Unlock()
			p.unpark()
			p.up.Close()
			if p.onEnd != nil {
				p.onEnd()
			}
			return
		}
		p.mu.Unlock()
	}
}

// Ended is closed when the connection ends before it is taken: the pod or
// the kubelet closed it, its session went away, or the pod sent too much.
// Err then says why.
func (p *Parked) Ended() <-chan struct{} { return p.ended }

// Err returns why the connection ended before it was taken, or nil.
func (p *Parked) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Take hands the connection to a client. It returns false if the
// connection ended or was taken or closed before.
func (p *Parked) Take() (Upstream, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil || p.taken {
		return nil, false
	}
	p.taken = true
	p.unpark()
	return &takenConn{Upstream: p.up, buf: p.buf, handoff: p.handoff}, true
}

// Close closes the connection unless a client took it.
func (p *Parked) Close() {
	p.mu.Lock()
	if p.taken || p.err != nil {
		p.mu.Unlock()
		return
	}
	p.taken = true
	p.err = ErrParkedClosed
	p.mu.Unlock()
	p.unpark()
	p.up.Close() // ends the read in flight; pump hands it over and stops
}

// takenConn is a parked connection in a client's hands: it returns first
// what the pod sent while it was parked, then the read that was in flight,
// then reads on.
type takenConn struct {
	Upstream
	buf     []byte
	handoff chan readResult
	err     error
}

func (c *takenConn) Read(b []byte) (int, error) {
	for {
		if len(c.buf) > 0 {
			n := copy(b, c.buf)
			c.buf = c.buf[n:]
			return n, nil
		}
		if c.handoff != nil {
			r := <-c.handoff
			c.handoff = nil
			c.buf, c.err = r.data, r.err
			continue
		}
		if c.err != nil {
			return 0, c.err
		}
		return c.Upstream.Read(b)
	}
}
