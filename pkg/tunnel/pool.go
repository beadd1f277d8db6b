package tunnel

import (
	"context"
	"sync"
	"time"
)

// Pool keeps at most one live session per pod, so every connection to the
// same pod reuses one port-forward connection. Concurrent Gets for a pod
// share one dial. It is safe for concurrent use.
type Pool struct {
	connector   *Connector
	dialTimeout time.Duration
	// OnSession, if set before first use, is called for every session the
	// pool opens (to count reconnects).
	OnSession func(*Session)

	mu       sync.Mutex
	sessions map[Pod]*poolEntry
	closed   bool
}

type poolEntry struct {
	ready   chan struct{} // closed when the dial has finished
	session *Session
	err     error
}

// NewPool returns an empty pool that connects with connector; a dial that
// takes longer than dialTimeout fails.
func NewPool(connector *Connector, dialTimeout time.Duration) *Pool {
	return &Pool{connector: connector, dialTimeout: dialTimeout, sessions: map[Pod]*poolEntry{}}
}

// Get returns the live session to pod, connecting if there is none. It
// waits for an in-flight dial of the same pod rather than starting another.
func (p *Pool) Get(ctx context.Context, pod Pod) (*Session, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrSessionClosed
	}
	e := p.sessions[pod]
	if e != nil {
		select {
		case <-e.ready:
			if e.err != nil || !e.session.Alive() {
				e = nil // failed or ended: dial again
			}
		default:
		}
	}
	if e == nil {
		e = &poolEntry{ready: make(chan struct{})}
		p.sessions[pod] = e
		go p.dial(pod, e)
	}
	p.mu.Unlock()
	select {
	case <-e.ready:
		return e.session, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *Pool) dial(pod Pod, e *poolEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), p.dialTimeout)
	defer cancel()
	s, err := p.connector.Connect(ctx, pod)
	p.mu.Lock()
	defer p.mu.Unlock()
	e.session, e.err = s, err
	close(e.ready)
	if err != nil {
		if p.sessions[pod] == e {
			delete(p.sessions, pod)
		}
		return
	}
	if p.closed || p.sessions[pod] != e {
		s.Close()
		return
	}
	if p.OnSession != nil {
		p.OnSession(s)
	}
}

// Retain closes the sessions of pods for which keep returns false, once
// they carry no connection; open connections finish undisturbed and their
// session is closed by a later call.
func (p *Pool) Retain(keep func(Pod) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pod, e := range p.sessions {
		select {
		case <-e.ready:
		default:
			continue
		}
		if e.err != nil || !e.session.Alive() {
			delete(p.sessions, pod)
			continue
		}
		if !keep(pod) && e.session.Active() == 0 {
			e.session.Close()
			delete(p.sessions, pod)
		}
	}
}

// Sessions returns the live sessions.
func (p *Pool) Sessions() []*Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Session
	for _, e := range p.sessions {
		select {
		case <-e.ready:
			if e.err == nil && e.session.Alive() {
				out = append(out, e.session)
			}
		default:
		}
	}
	return out
}

// Close closes every session, and with them every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for pod, e := range p.sessions {
		select {
		case <-e.ready:
			if e.session != nil {
				e.session.Close()
			}
		default:
			// dial closes it when it finishes, seeing p.closed.
		}
		delete(p.sessions, pod)
	}
}
