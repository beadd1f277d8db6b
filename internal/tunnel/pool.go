package tunnel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Pool keeps one main session per pod and shares it among its users, so
// that every forward to a pod uses one port-forward connection. Users take
// a Lease and hold the pods they want kept warm; a session is closed once
// no lease holds its pod and no connection goes through it. Concurrent
// Gets for a pod share one dial.
//
// Connections opened with Lease.Dial to a pod that carries bulk
// transfers are spread over up to maxSessionsPerPod sessions to the pod:
// a connection that would share a busy session gets a session of its own
// while there are fewer. One multiplexed connection carries every stream
// through one reader in each process on the path (kpf, API server,
// kubelet), and a stream whose reader falls behind holds up the others;
// parallel transfers go faster and cost less CPU over several. A pod whose
// recent connections were short keeps them on its main session, where they
// cost less (see podTraffic). Extra sessions close after ExtraSessionIdle
// without connections. A Pool is safe for concurrent use.
type Pool struct {
	connect     func(context.Context, Pod) (*Session, error)
	dialTimeout time.Duration

	mu       sync.Mutex
	sessions map[Pod]*poolEntry   // the main session per pod
	extra    map[Pod][]*poolEntry // extra sessions for parallel connections
	noSpread map[Pod]time.Time    // until when not to open extra sessions (one failed)
	holds    map[Pod]int          // leases holding each pod
	traffic  map[Pod]*podTraffic  // what the pod's connections were like
	// opens are how long the last successful session dials took, most
	// recent last (at most openSamples).
	opens  []time.Duration
	closed bool
}

// openSamples is how many session dials Far looks at.
const openSamples = 8

// farOpen is the session dial time from which the API server counts as
// far: the fastest of the recent dials (a TLS handshake and the upgrade,
// two round trips) took this long, so the round trip is about half.
// Loopback and a LAN take a few milliseconds.
const farOpen = 40 * time.Millisecond

// maxSessionsPerPod bounds the sessions Lease.Dial spreads connections to
// one pod over.
const maxSessionsPerPod = 4

// extraSessionWait is how long a connection waits for an extra session to
// open before it shares the main one instead.
const extraSessionWait = time.Second

// ExtraSessionIdle is how long an extra session stays open without a
// connection while its pod is held.
const ExtraSessionIdle = 30 * time.Second

type poolEntry struct {
	ready   chan struct{} // closed when the dial has finished
	session *Session
	err     error
	waiters int         // connections waiting for this dial (extra sessions)
	timer   *time.Timer // closes an idle extra session
}

func (e *poolEntry) live() bool {
	select {
	case <-e.ready:
		return e.err == nil && e.session.Alive()
	default:
		return false
	}
}

func (e *poolEntry) dialing() bool {
	select {
	case <-e.ready:
		return false
	default:
		return true
	}
}

// NewPool returns an empty pool that connects with connector; a dial that
// takes longer than dialTimeout fails.
func NewPool(connector *Connector, dialTimeout time.Duration) *Pool {
	return newPool(connector.Connect, dialTimeout)
}

// NewPoolWith returns an empty pool whose sessions come from connect
// rather than a Connector: for tests, with sessions made by NewSession
// over an in-memory connection (see tunneltest).
func NewPoolWith(connect func(context.Context, Pod) (*Session, error), dialTimeout time.Duration) *Pool {
	return newPool(connect, dialTimeout)
}

func newPool(connect func(context.Context, Pod) (*Session, error), dialTimeout time.Duration) *Pool {
	return &Pool{connect: connect, dialTimeout: dialTimeout, sessions: map[Pod]*poolEntry{}, extra: map[Pod][]*poolEntry{},
		noSpread: map[Pod]time.Time{}, holds: map[Pod]int{}, traffic: map[Pod]*podTraffic{}}
}

// observe sets the hooks through which the pool follows s, a new session
// to pod: it sweeps when s goes idle, and records its connections'
// traffic.
func (p *Pool) observe(pod Pod, s *Session) {
	s.onIdle = func() { p.sweep(pod) }
	s.onBulk = func() {
		p.mu.Lock()
		p.trafficOf(pod).becameBulk()
		p.mu.Unlock()
	}
	s.onEnd = func(moved int64, bulk bool) {
		p.mu.Lock()
		p.trafficOf(pod).ended(moved, bulk)
		p.mu.Unlock()
	}
}

// trafficOf returns the record of pod's traffic, starting one if needed.
// p.mu must be held.
func (p *Pool) trafficOf(pod Pod) *podTraffic {
	t := p.traffic[pod]
	if t == nil {
		t = &podTraffic{}
		p.traffic[pod] = t
	}
	return t
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
	err := p.open(pod, e)
	if err != nil {
		if p.sessions[pod] == e {
			delete(p.sessions, pod)
		}
		p.mu.Unlock()
		return
	}
	if p.closed || p.sessions[pod] != e {
		p.mu.Unlock()
		e.session.Close()
		return
	}
	p.mu.Unlock()
	// Nobody may hold the pod any more (the lease that asked let go
	// while the dial ran).
	p.sweep(pod)
}

// sweep closes the sessions to pod that no connection goes through if no
// lease holds the pod, and its extra sessions that have been idle for
// ExtraSessionIdle.
func (p *Pool) sweep(pod Pod) {
	var closing []*Session
	p.mu.Lock()
	held := p.holds[pod] > 0
	if e := p.sessions[pod]; e != nil && !held && !e.dialing() {
		// A dial in flight sweeps when it finishes; the last
		// connection's Close sweeps again.
		if !e.live() || e.session.Active() == 0 {
			delete(p.sessions, pod)
			if e.session != nil {
				closing = append(closing, e.session)
			}
		}
	}
	kept := p.extra[pod][:0]
	for _, e := range p.extra[pod] {
		switch {
		case e.dialing():
			kept = append(kept, e)
			continue
		case !e.live():
		case e.session.Active() > 0:
			kept = append(kept, e)
			continue
		case held:
			if wait := ExtraSessionIdle - time.Since(e.session.IdleSince()); wait > 0 {
				if e.timer == nil {
					e.timer = time.AfterFunc(wait, func() {
						p.mu.Lock()
						e.timer = nil
						p.mu.Unlock()
						p.sweep(pod)
					})
				}
				kept = append(kept, e)
				continue
			}
		}
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		if e.session != nil {
			closing = append(closing, e.session)
		}
	}
	if len(kept) == 0 {
		delete(p.extra, pod)
	} else {
		p.extra[pod] = kept
	}
	if p.sessions[pod] == nil && len(kept) == 0 {
		// No session is left to carry a connection: a new one starts
		// with nothing known.
		delete(p.traffic, pod)
	}
	p.mu.Unlock()
	for _, s := range closing {
		s.Close()
	}
}

// pick chooses the session for a new connection to pod, given its live
// main session, and counts the connection in its Active. While the pod's
// traffic calls for spreading (podTraffic.spread), that is the session
// with the fewest connections, or a new extra session if every one is
// busy and there are fewer than maxSessionsPerPod. Otherwise it is the
// main session, and idle extra sessions close in time, unless a write on
// the main session is held up (writeStalled): then the connection is
// spread too, rather than queue behind a pod that stopped reading.
//
// A connection that waits for an extra session to open stops waiting when
// a connection on the least busy live session ends first, and shares that
// session: its connections are short (a burst of requests), and one more
// costs less there than the handshakes through the API server and the
// kubelet that opening a session takes (tens of milliseconds under such a
// burst). Bulk transfers, which spreading is for, do not end within a
// session's dial, so they still get sessions of their own.
func (p *Pool) pick(ctx context.Context, pod Pod, main *Session) (*Session, error) {
	shareLive := false // a live session turned over while we waited
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrSessionClosed
		}
		use, wait, live := p.choose(pod, main, shareLive)
		if use != nil {
			use.active.Add(1)
			p.mu.Unlock()
			return use, nil
		}
		wait.waiters++
		released := live.released.Next()
		p.mu.Unlock()
		select {
		case <-wait.ready:
		case <-released:
			p.mu.Lock()
			wait.waiters--
			p.mu.Unlock()
			shareLive = true
		case <-ctx.Done():
			p.mu.Lock()
			wait.waiters--
			p.mu.Unlock()
			return nil, ctx.Err()
		case <-time.After(extraSessionWait):
			// The API server is slow to open sessions (or cannot, as
			// while etcd is down): share the live main session rather
			// than keep the client waiting.
			p.mu.Lock()
			wait.waiters--
			main.active.Add(1)
			p.mu.Unlock()
			return main, nil
		}
		// Choose again: the new session if it came up, else (it failed,
		// and spreading is off for a while) another.
	}
}

// choose is pick's choice, under p.mu: a session to use now, or an extra
// session being dialled to wait for, with live, the least busy live
// session, whose turnover also ends the wait. With shareLive (a live
// session turned over during a wait), the least busy live session is
// used rather than wait again. It may start dialling an extra session.
func (p *Pool) choose(pod Pod, main *Session, shareLive bool) (use *Session, wait *poolEntry, live *Session) {
	if !p.traffic[pod].spread() && !main.writeStalled(time.Now()) {
		return main, nil, nil
	}
	// Spares are idle: they do not make a session busy.
	best, load, n := (*poolEntry)(nil), main.load(), 1
	live, liveLoad := main, load
	for _, e := range p.extra[pod] {
		l := int64(e.waiters)
		switch {
		case e.live():
			l = e.session.load()
			if l < liveLoad {
				live, liveLoad = e.session, l
			}
		case !e.dialing():
			continue // failed or ended; sweep removes it
		case shareLive:
			n++
			continue // not worth waiting for any more
		}
		n++
		if l < load {
			best, load = e, l
		}
	}
	switch {
	case shareLive:
		return live, nil, nil
	case load > 0 && n < maxSessionsPerPod && time.Now().After(p.noSpread[pod]):
		best = &poolEntry{ready: make(chan struct{})}
		p.extra[pod] = append(p.extra[pod], best)
		go p.dialExtra(pod, best)
	case best == nil:
		return main, nil, nil
	}
	if best.live() {
		return best.session, nil, nil
	}
	if p.far() {
		// Waiting for the extra session would cost the connection two
		// round trips more than sharing a live one: share, and let the
		// extra session serve the connections after it.
		return live, nil, nil
	}
	return nil, best, live
}

// Far reports whether opening a session costs round trips worth avoiding:
// the fastest of the recent session dials took farOpen or more. A pool
// that has opened none is not far.
func (p *Pool) Far() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.far()
}

func (p *Pool) far() bool {
	if len(p.opens) == 0 {
		return false
	}
	return slices.Min(p.opens) >= farOpen
}

// open opens a session to pod for e and marks e ready with the outcome.
// It returns with p.mu held, for the caller to file e.
func (p *Pool) open(pod Pod, e *poolEntry) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.dialTimeout)
	defer cancel()
	start := time.Now()
	s, err := p.connect(ctx, pod)
	took := time.Since(start)
	if err == nil {
		p.observe(pod, s)
	}
	p.mu.Lock()
	if err == nil {
		p.opens = append(p.opens, took)
		if len(p.opens) > openSamples {
			p.opens = p.opens[1:]
		}
	}
	e.session, e.err = s, err
	close(e.ready)
	return err
}

// dialExtra opens an extra session to pod for entry e of p.extra.
func (p *Pool) dialExtra(pod Pod, e *poolEntry) {
	err := p.open(pod, e)
	if err != nil {
		p.noSpread[pod] = time.Now().Add(10 * time.Second)
	}
	closed := p.closed
	p.mu.Unlock()
	if closed && err == nil {
		e.session.Close()
		return
	}
	p.sweep(pod)
}

// hold adds (n > 0) or removes (n < 0) a lease's hold on pod. The
// sessions of a pod that no lease holds any more, because it left its
// endpoints, are told it is leaving (Session.leaving): those that still
// carry connections find out at once if the pod is gone.
func (p *Pool) hold(pod Pod, n int) {
	p.mu.Lock()
	before := p.holds[pod]
	p.holds[pod] += n
	after := p.holds[pod]
	if after <= 0 {
		delete(p.holds, pod)
	}
	var changed []*Session
	if (before > 0) != (after > 0) {
		changed = p.liveSessions(pod)
	}
	p.mu.Unlock()
	for _, s := range changed {
		s.leaving(after <= 0)
	}
	if n < 0 {
		p.sweep(pod)
	}
}

// liveSessions returns the live sessions, main and extra, to pod. p.mu
// must be held.
func (p *Pool) liveSessions(pod Pod) []*Session {
	var out []*Session
	for _, e := range append([]*poolEntry{p.sessions[pod]}, p.extra[pod]...) {
		if e != nil && e.live() {
			out = append(out, e.session)
		}
	}
	return out
}

// busySessions returns the live sessions, main and extra, to pod that
// carry at least one connection.
func (p *Pool) busySessions(pod Pod) []*Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Session
	for _, s := range p.liveSessions(pod) {
		if s.Active() > 0 {
			out = append(out, s)
		}
	}
	return out
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
	for pod, es := range p.extra {
		for _, e := range es {
			if e.timer != nil {
				e.timer.Stop()
			}
			if !e.dialing() && e.session != nil {
				open = append(open, e.session)
			}
		}
		delete(p.extra, pod)
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

// Dial opens a connection to port of pod through one of the pod's
// sessions (see Pool), connecting if needed, and holds pod like Get. An
// error because the session ended wraps ErrSessionClosed.
func (l *Lease) Dial(ctx context.Context, pod Pod, port uint16) (*Conn, error) {
	return l.DialFirst(ctx, pod, port, nil)
}

// DialFirst is Dial for a local connection whose first bytes first holds:
// they go out with the frames that open the connection's streams. A
// failure that wraps ErrSentAhead must not be retried (see there).
func (l *Lease) DialFirst(ctx context.Context, pod Pod, port uint16, first *FirstBytes) (*Conn, error) {
	return l.DialPrefixed(ctx, pod, port, nil, first)
}

// DialPrefixed is DialFirst for a protocol that speaks before the client
// (kpf's relay): prefix goes first on the connection, with the frames
// that open its streams when the transport allows (see Session.dial),
// then the client's bytes.
func (l *Lease) DialPrefixed(ctx context.Context, pod Pod, port uint16, prefix []byte, first *FirstBytes) (*Conn, error) {
	main, err := l.Get(ctx, pod)
	if err != nil {
		return nil, err
	}
	s, err := l.pool.pick(ctx, pod, main)
	if err != nil {
		return nil, err
	}
	c, err := s.dialReserved(ctx, port, prefix, first)
	if err != nil && !s.Alive() && !errors.Is(err, ErrSessionClosed) {
		err = fmt.Errorf("%w: %w", ErrSessionClosed, err)
	}
	return c, err
}

// InUse returns the live sessions, main and extra, to the pods the lease
// holds that carry at least one connection (of any lease), by pod.
func (l *Lease) InUse() map[Pod][]*Session {
	l.mu.Lock()
	pods := make([]Pod, 0, len(l.held))
	for pod := range l.held {
		pods = append(pods, pod)
	}
	l.mu.Unlock()
	out := map[Pod][]*Session{}
	for _, pod := range pods {
		if ss := l.pool.busySessions(pod); len(ss) > 0 {
			out[pod] = ss
		}
	}
	return out
}

// Far reports whether the lease's pool counts its API server as far
// (see Pool.Far).
func (l *Lease) Far() bool { return l.pool.Far() }

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
