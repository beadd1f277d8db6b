// Package deadline is a net.Conn deadline for I/O that waits in Go code
// (on channels) rather than in the operating system: a point in time,
// settable at any moment, that closes a channel when it passes.
package deadline

import (
	"sync"
	"sync/atomic"
	"time"
)

// Deadline is a settable deadline. Its zero value has none set. It is safe
// for concurrent use.
type Deadline struct {
	mu    sync.Mutex // held by Set, and to create the first channel
	timer *time.Timer
	// expired is closed when the deadline passes. It is read without the
	// lock: Expired is called on every read of a stream.
	expired atomic.Pointer[chan struct{}]
}

// Set arms the deadline at t: a zero t disarms it, a t not after now
// expires it at once. A wait that began before Set (see Expired) sees the
// new deadline, as net.Conn's SetDeadline requires of a blocked Read.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ch := d.channel()
	if d.timer != nil && !d.timer.Stop() {
		<-ch // the timer fired: wait until it has closed the channel
	}
	d.timer = nil
	closed := isClosed(ch)
	if closed && !t.IsZero() && time.Until(t) <= 0 {
		return // passed, and stays so
	}
	if closed {
		ch = make(chan struct{})
		d.expired.Store(&ch)
	}
	switch wait := time.Until(t); {
	case t.IsZero():
	case wait > 0:
		d.timer = time.AfterFunc(wait, func() { close(ch) })
	default:
		close(ch)
	}
}

// channel returns the current channel, creating the first; d.mu is held.
func (d *Deadline) channel() chan struct{} {
	if p := d.expired.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	d.expired.Store(&ch)
	return ch
}

// Expired returns a channel closed once the deadline has passed. Take it
// again after each wait: a later Set may replace it.
func (d *Deadline) Expired() <-chan struct{} {
	if p := d.expired.Load(); p != nil {
		return *p
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.channel()
}

// Passed reports whether the deadline has passed.
func (d *Deadline) Passed() bool {
	return isClosed(d.Expired())
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
