package tunnel

import (
	"context"
	"sync"
	"time"
)

// Pool keeps at most one live session per pod and shares it among its
// users, so that every connection to a pod, from any forward, goes through
// one port-forward connection. Users take a Lease and hold the pods they
// want kept warm; a session is closed once no lease holds its pod and no
// connection goes through it. Concurrent Gets for a pod share one dial. It
// is safe for concurrent use.
type Pool struct {
	connect     func(context.Context, Pod) (*Session, error)
	dialTimeout time.Duration

	mu       sync.Mutex
	sessions map[Pod]*poolEntry
	holds    map[Pod]int // leases holding each pod
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
	return newPool(connector.Connect, dialTimeout)
}

func newPool(connect func(context.Context, Pod) (*Session, error), dialTimeout time.Duration) *Pool {
	return &Pool{connect: connect, dialTimeout: dialTimeout, sessions: map[Pod]*poolEntry{}, holds: map[Pod]int{}}
}

// Lease returns a new, empty hold on the pool's sessions for one user.
func (p *Pool) Lease() *Lease {
	return &Lease{pool: p, held: map[Pod]*Session{}}
}

// get returns the live session to pod, connecting if there is none.
func (p *Pool) get(ctx context.Context, pod Pod) (*Session, error) {
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
	s, err := p.connect(ctx, pod)
	if err == nil {
		s.onIdle = func() { p.sweep(pod) }
	}
	p.mu.Lock()
	e.session, e.err = s, err
	close(e.ready)
	if err != nil {
		if p.sessions[pod] == e {
			delete(p.sessions, pod)
		}
		p.mu.Unlock()
		return
	}
	if p.closed || p.sessions[pod] != e {
		p.mu.Unlock()
		s.Close()
		return
	}
	p.mu.Unlock()
	// Nobody may hold the pod any more (the lease that asked let go
	// while the dial ran).
	p.sweep(pod)
}

// sweep closes the session to pod if no lease holds the pod and no
// connection goes through it.
func (p *Pool) sweep(pod Pod) {
	p.mu.Lock()
	e := p.sessions[pod]
	if e == nil || p.holds[pod] > 0 {
		p.mu.Unlock()
		return
	}
	select {
	case <-e.ready:
	default:
		p.mu.Unlock()
		return // dial sweeps when it finishes
	}
	if e.err == nil && e.session.Alive() && e.session.Active() > 0 {
		p.mu.Unlock()
		return // the last connection's Close sweeps again
	}
	delete(p.sessions, pod)
	p.mu.Unlock()
	if e.session != nil {
		e.session.Close()
	}
}

// hold adds (n > 0) or removes (n < 0) a lease's hold on pod.
func (p *Pool) hold(pod Pod, n int) {
	p.mu.Lock()
	p.holds[pod] += n
	if p.holds[pod] <= 0 {
		delete(p.holds, pod)
	}
	p.mu.Unlock()
	if n < 0 {
		p.sweep(pod)
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

// Close closes every session, and with them every connection; Gets after
// Close fail with ErrSessionClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var open []*Session
	for pod, e := range p.sessions {
		select {
		case <-e.ready:
			if e.session != nil {
				open = append(open, e.session)
			}
		default:
			// dial closes it when it finishes, seeing p.closed.
		}
		delete(p.sessions, pod)
	}
	p.mu.Unlock()
	for _, s := range open {
		s.Close()
	}
}

// Lease is one user's hold on a Pool: the pods it has asked for stay
// connected until it lets go of them. It is safe for concurrent use.
type Lease struct {
	pool *Pool
	// OnSession, if set before first use, is called the first time Get
	// returns each session (to count a forward's sessions and reconnects).
	OnSession func(*Session)

	mu     sync.Mutex
	held   map[Pod]*Session // the last session Get returned per pod, or nil
	closed bool
}

// Get returns the live session to pod, connecting if there is none, and
// holds pod until Retain drops it or Close. It waits for an in-flight dial
// of the same pod, by any lease, rather than start another.
func (l *Lease) Get(ctx context.Context, pod Pod) (*Session, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrSessionClosed
	}
	if _, ok := l.held[pod]; !ok {
		l.held[pod] = nil
		l.pool.hold(pod, 1)
	}
	l.mu.Unlock()
	s, err := l.pool.get(ctx, pod)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	prev, ok := l.held[pod]
	fresh := ok && prev != s
	if fresh {
		l.held[pod] = s
	}
	l.mu.Unlock()
	if fresh && l.OnSession != nil {
		l.OnSession(s)
	}
	return s, nil
}

// Retain lets go of the pods for which keep returns false. Their sessions
// close once no other lease holds them and their open connections have
// finished; connections are never cut.
func (l *Lease) Retain(keep func(Pod) bool) {
	l.mu.Lock()
	var drop []Pod
	for pod := range l.held {
		if !keep(pod) {
			drop = append(drop, pod)
			delete(l.held, pod)
		}
	}
	l.mu.Unlock()
	for _, pod := range drop {
		l.pool.hold(pod, -1)
	}
}

// Close lets go of every pod; later Gets fail with ErrSessionClosed.
func (l *Lease) Close() {
	l.mu.Lock()
	l.closed = true
	held := l.held
	l.held = map[Pod]*Session{}
	l.mu.Unlock()
	for pod := range held {
		l.pool.hold(pod, -1)
	}
}
