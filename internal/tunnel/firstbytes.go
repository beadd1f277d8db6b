package tunnel

import (
	"context"
	"errors"
	"io"
	"sync"
)

// ErrSentAhead marks a failed dial that had already sent the client's first
// bytes (FirstBytes) when it failed without a clear answer from the
// kubelet: the session was lost, stalled or given up before the kubelet
// accepted the streams. The bytes may have reached the pod, so the
// connection must not be dialled again elsewhere, which could deliver a
// request twice; it fails instead, as if it had been cut a moment later.
var ErrSentAhead = errors.New("the client's first bytes were already sent")

// FirstBytes reads a local client from the moment its connection is
// accepted, while the dial to the pod is still opening the connection's
// streams, and lets the dial send what the client has sent so far along
// with the frames that open them (Session.dial). A client that speaks
// first (HTTP, most databases) then has its request on its way to the
// kubelet in the same round trip that opens the streams, instead of one
// round trip later.
//
// Once the dial has returned, attach hands it the upstream: what the
// client sent since goes there first, then FirstBytes copies the rest of
// the client's input to it until the client ends its side, and then
// closes the upstream for writing.
//
// A nil *FirstBytes has nothing to send.
type FirstBytes struct {
	// ctx bounds a dial that has sent bytes ahead: from then on it waits
	// for the kubelet's answer, which decides the connection's fate, even
	// after the dial's own context gave up (say, its pod left its
	// endpoints), until ctx ends.
	ctx  context.Context
	done chan struct{} // closed when the copy has ended
	// arrived is signalled when bytes from the client are pending.
	arrived chan struct{}

	mu      sync.Mutex
	changed *sync.Cond
	pending []byte // read from the client and not yet sent; aliases the copy buffer
	sent    int    // bytes the dial sent ahead
	up      Upstream
	stopped bool
	copied  int64 // bytes that reached the upstream, ahead or after
	// using is set once the copy has taken the upstream to write to it:
	// from then on detach refuses.
	using bool
}

// firstBytesBuffer is the size of the buffer FirstBytes reads the client
// into until the upstream is attached: a request's first bytes (HTTP
// headers, a database's startup message) fit, and a connection waiting for
// a ready pod holds no more than this.
const firstBytesBuffer = 4 << 10

// startFirstBytes starts reading local into small, and once the upstream
// is attached into a buffer from bufs (small, if bufs is nil). The copy
// ends when local does (after attach) or when stop is called and local is
// closed.
func startFirstBytes(ctx context.Context, local io.Reader, small []byte, bufs *sync.Pool) *FirstBytes {
	f := &FirstBytes{ctx: ctx, done: make(chan struct{}), arrived: make(chan struct{}, 1)}
	f.changed = sync.NewCond(&f.mu)
	go f.copy(local, small, bufs)
	return f
}

// send hands write what the client has sent so far, if anything, and
// counts it as sent ahead whatever write returns (a failed write may have
// written part of it). It returns how many bytes it handed over.
func (f *FirstBytes) send(write func([]byte) error) (int, error) {
	if f == nil {
		return 0, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pending) == 0 || f.up != nil || f.stopped {
		return 0, nil
	}
	p := f.pending
	f.pending = nil
	f.sent += len(p)
	f.copied += int64(len(p))
	// The copy waits for mu, so p stays unchanged until write returns.
	f.changed.Broadcast()
	return len(p), write(p)
}

// Sent returns how many bytes a dial sent ahead.
func (f *FirstBytes) Sent() int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// keepWaiting returns the channel that bounds a dial once it has sent bytes
// ahead (nil for a nil FirstBytes).
func (f *FirstBytes) keepWaiting() <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.ctx.Done()
}

// attach gives the copy its upstream.
func (f *FirstBytes) attach(up Upstream) {
	f.mu.Lock()
	f.up = up
	f.changed.Broadcast()
	f.mu.Unlock()
}

// detach takes the upstream back from a copy that has given it nothing,
// so that the connection can be dialled again elsewhere (Server.handle,
// when the session closed before anything moved either way). It reports
// false, and changes nothing, once any of the client's bytes went out,
// ahead or after, or the copy has taken the upstream to write to it.
// What the client sends meanwhile waits for the next attach or stop.
func (f *FirstBytes) detach() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.using || f.sent > 0 || f.copied > 0 || f.stopped || f.up == nil {
		return false
	}
	f.up = nil
	return true
}

// take returns the upstream for the copy to write to, and from then on
// detach refuses. The caller holds f.mu.
func (f *FirstBytes) take() Upstream {
	if f.up != nil {
		f.using = true
	}
	return f.up
}

// stop ends the copy without an upstream: the dial failed. The caller
// closes the local connection, which ends a read in progress.
func (f *FirstBytes) stop() {
	f.mu.Lock()
	f.stopped = true
	f.changed.Broadcast()
	f.mu.Unlock()
}

// wait waits for the copy to end and returns how many bytes of the client
// reached the upstream.
func (f *FirstBytes) wait() int64 {
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.copied
}

func (f *FirstBytes) copy(local io.Reader, buf []byte, bufs *sync.Pool) {
	defer close(f.done)
	for {
		n, err := local.Read(buf)
		if n > 0 {
			f.mu.Lock()
			f.pending = buf[:n]
			select {
			case f.arrived <- struct{}{}:
			default:
			}
			// Wait until the dial sent it ahead, or the upstream is here.
			for f.up == nil && !f.stopped && len(f.pending) > 0 {
				f.changed.Wait()
			}
			up, rest, stopped := f.take(), f.pending, f.stopped
			f.pending = nil
			f.mu.Unlock()
			if stopped {
				return
			}
			if up != nil && len(rest) > 0 {
				m, werr := up.Write(rest)
				f.count(int64(m))
				if werr != nil {
					return
				}
			}
		}
		if err != nil {
			// The client has finished sending (or failed): pass that on
			// once there is an upstream to pass it to.
			f.mu.Lock()
			for f.up == nil && !f.stopped {
				f.changed.Wait()
			}
			up := f.take()
			f.mu.Unlock()
			if up != nil {
				up.CloseWrite()
			}
			return
		}
		f.mu.Lock()
		up := f.take()
		f.mu.Unlock()
		if up != nil {
			if bufs != nil {
				big := bufs.Get().(*[]byte)
				defer bufs.Put(big)
				buf = *big
			}
			m, _ := io.CopyBuffer(writerOnly{up}, readerOnly{local}, buf)
			f.count(m)
			up.CloseWrite()
			return
		}
	}
}

func (f *FirstBytes) count(n int64) {
	f.mu.Lock()
	f.copied += n
	f.mu.Unlock()
}

// aheadSender sends a dial's first bytes (FirstBytes) on its data stream
// before the kubelet has accepted the stream, and records whether it
// sent any. Once the dial is given up it sends nothing more, so that a
// dial that reports no bytes sent can be retried safely.
type aheadSender struct {
	mu              sync.Mutex
	sent, abandoned bool
	// prefix: the dial's prefix went out with the opening frames.
	prefix bool
}

// sentPrefix records that the dial's prefix went out ahead.
func (a *aheadSender) sentPrefix() {
	a.mu.Lock()
	a.prefix = true
	a.mu.Unlock()
}

// prefixWasSent reports whether the dial's prefix went out ahead.
func (a *aheadSender) prefixWasSent() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.prefix
}

// run sends what first holds through send, and what the client sends
// later, until stop is closed or the dial is given up. A failed send
// fails the dial's wait for the kubelet's answer, so run goes on.
func (a *aheadSender) run(first *FirstBytes, send func([]byte) error, stop <-chan struct{}) {
	for a.sendNow(first, send) {
		select {
		case <-first.arrived:
		case <-stop:
			return
		}
	}
}

// sendNow sends what first holds through send, if anything, and reports
// false once the dial has been given up.
func (a *aheadSender) sendNow(first *FirstBytes, send func([]byte) error) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.abandoned {
		return false
	}
	if n, _ := first.send(send); n > 0 {
		a.sent = true
	}
	return true
}

// wasSent reports whether any bytes went out ahead.
func (a *aheadSender) wasSent() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent
}

// giveUp stops any further sending and reports whether bytes went out.
func (a *aheadSender) giveUp() (sent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.abandoned = true
	return a.sent
}
