// Package forward runs one declared forward: it binds the forward's local
// listeners and keeps them bound for its whole life, follows the target's
// ready endpoints, and sends each new connection to a ready pod, waiting
// for one when none is ready. It knows nothing of retries across failures
// of the whole forward; package reconcile supervises it.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/sleepwatch"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// Options tune a Runner; the zero value gives the defaults.
type Options struct {
	// ProbeInterval, if set, overrides the health check interval of the
	// forward's spec.
	ProbeInterval time.Duration
	// DialTimeout bounds waiting for a port-forward session when
	// refreshing; 0 means 15 s.
	DialTimeout time.Duration
	// Sleep announces that the machine slept, when the forward probes its
	// tunnel at once. Share one among every forward of a process; nil
	// means a Watcher of the forward's own.
	Sleep *sleepwatch.Watcher
	// Relays runs the relay through which the forward reaches a host, a
	// service no pod backs, or a UDP port; nil means such a forward waits
	// with a reason that says kpf runs no relay here.
	Relays Relays
}

// Runner runs one forward. Create it with New; Run it once.
type Runner struct {
	spec     config.Forward
	clusters connect.ClusterSource
	opts     Options
	log      *slog.Logger

	changed  broadcast.Changes
	state    atomic.Pointer[Status]
	sessions atomic.Int64 // port-forward sessions used, over every run
	// attempts and retryAt describe the pending retry to open a session.
	attempts atomic.Int64
	retryAt  atomic.Pointer[time.Time]
	// healthFails counts consecutive failed checks per pod; used by the
	// Run goroutine only.
	healthFails map[string]int
	rr          atomic.Uint64
	current     sync.Map // remote port string -> pod name in use
	// avoid holds the pods whose dial or health check failed lately.
	avoid connect.Avoid
	// standby tracks the dials of standby sessions (keepStandby).
	standby sync.WaitGroup
	ports   []*portState
	// route resolves the target, through the relay where it must; set
	// by Run.
	route *route
}

type portState struct {
	mapping config.PortMapping
	addr    string
	stats   tunnel.Stats
	// spelling is the remote port's number and name as the target
	// defines them, once resolved.
	spelling atomic.Pointer[config.Port]
	// spares holds the mapping's spare connections; nil without spares.
	spares *spareSet
	// relay is the destination kpf's relay reaches for the mapping, "" when
	// it goes to a pod; set at each resolution.
	relay atomic.Pointer[string]
}

// New returns a Runner for spec.
func New(spec config.Forward, clusters connect.ClusterSource, opts Options, log *slog.Logger) *Runner {
	// A spec built in code rather than loaded may leave health unset.
	if spec.Health.Interval == 0 {
		spec.Health.Interval = 10 * time.Second
	}
	if spec.Health.Timeout == 0 {
		spec.Health.Timeout = 5 * time.Second
	}
	if spec.Health.Threshold == 0 {
		spec.Health.Threshold = 3
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 15 * time.Second
	}
	r := &Runner{spec: spec, clusters: clusters, opts: opts, log: log, healthFails: map[string]int{}}
	for _, m := range spec.Ports {
		p := &portState{mapping: m, addr: net.JoinHostPort(spec.Address, strconv.Itoa(int(m.Local)))}
		// Spares are streams opened ahead to a pod's port; what the relay
		// reaches needs a request first, so it has none.
		if spec.Spare > 0 && spec.Target.Kind != config.Host && m.Protocol == config.TCP {
			p.spares = newSpareSet(spec.Spare)
		}
		r.ports = append(r.ports, p)
	}
	r.setState(StateStarting, "", tunnel.Pod{})
	return r
}

// Spec is the forward this runner runs.
func (r *Runner) Spec() config.Forward { return r.spec }

// Run binds the listeners and serves until ctx is done (returning nil) or
// the forward cannot go on (returning why: an unknown context, a local port
// in use). Waiting for endpoints is not a failure: Run keeps the listeners
// bound and reports the state. When Run returns, every listener, session,
// connection and goroutine it started is gone.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl, err := r.clusters(r.spec.Context)
	if err != nil {
		return err
	}
	watched, release := cl.Watch(r.spec.Namespace, r.changed.Notify)
	defer release()
	r.route = &route{Resolver: watched, spec: r.spec, relays: r.opts.Relays, onChange: r.changed.Notify}
	defer r.route.close()
	var ns connect.Resolver = r.route
	listeners, packetConns, err := r.listen(ctx)
	defer func() {
		for _, b := range listeners {
			b.l.Close()
		}
		for _, b := range packetConns {
			b.pc.Close()
		}
	}()
	if err != nil {
		return err
	}

	// Sessions are shared with every other forward to the same pods; the
	// lease keeps warm the ones this forward uses.
	pool := cl.Sessions().Lease()
	pool.OnSession = func(s *tunnel.Session) {
		r.sessions.Add(1)
		r.log.Debug("using port-forward session", "pod", s.Pod.String(), "transport", s.Transport())
		// A client's connection may have opened it while the forward was
		// waiting to retry: look again now rather than at the retry.
		r.changed.Notify()
	}
	defer pool.Close()

	var wg sync.WaitGroup
	// Everything started below ends with ctx: cancel it before waiting,
	// also when Run returns because a listener failed.
	defer func() {
		cancel()
		wg.Wait()
		r.standby.Wait()
	}()
	errc := make(chan error, len(listeners)+len(packetConns))
	for _, b := range listeners {
		srv := r.server(b, ns, pool)
		wg.Go(func() {
			if err := srv.Serve(ctx); err != nil {
				errc <- fmt.Errorf("serve %s: %w", b.l.Addr(), err)
			}
		})
	}
	for _, b := range packetConns {
		srv := r.udpServer(b, pool)
		wg.Go(func() {
			if err := srv.Serve(ctx); err != nil {
				errc <- fmt.Errorf("serve %s/udp: %w", b.pc.LocalAddr(), err)
			}
		})
	}
	for _, p := range r.ports {
		if p.spares != nil {
			wg.Go(func() { r.keepSpares(ctx, ns, pool, p) })
		}
	}
	r.setState(StateWaiting, "waiting for the namespace's caches to sync", tunnel.Pod{})
	_ = ns.WaitSynced(ctx, func(err error) { r.setState(stateFor(err), err.Error(), tunnel.Pod{}) })
	sleep := r.opts.Sleep
	if sleep == nil {
		sleep = sleepwatch.New(0, 0, r.log)
		wg.Go(func() { sleep.Run(ctx) })
	}
	return r.follow(ctx, ns, pool, sleep, errc)
}

// boundListener is a listener of one of the forward's ports.
type boundListener struct {
	port *portState
	l    net.Listener
}

// boundPacketConn is a UDP socket of one of the forward's ports.
type boundPacketConn struct {
	port *portState
	pc   net.PacketConn
}

// listen binds every port's listeners (TCP) and sockets (UDP). On error,
// the ones bound so far are returned too, for the caller to close.
func (r *Runner) listen(ctx context.Context) ([]boundListener, []boundPacketConn, error) {
	var bound []boundListener
	var packets []boundPacketConn
	for _, p := range r.ports {
		if p.mapping.Protocol == config.UDP {
			pcs, err := listenUDP(ctx, r.spec, p.mapping, r.log)
			if err != nil {
				return bound, packets, err
			}
			for _, pc := range pcs {
				packets = append(packets, boundPacketConn{p, pc})
			}
			continue
		}
		ls, err := listen(ctx, r.spec, p.mapping, r.log)
		if err != nil {
			return bound, packets, err
		}
		for _, l := range ls {
			bound = append(bound, boundListener{p, l})
		}
	}
	return bound, packets, nil
}

// udpServer is the server of one UDP socket: each local peer's datagrams
// go through a stream to the relay of its own.
func (r *Runner) udpServer(b boundPacketConn, pool *tunnel.Lease) *udpServer {
	p := b.port
	return &udpServer{
		pc: b.pc,
		dial: func(ctx context.Context) (net.Conn, string, error) {
			return r.dialUDP(ctx, pool, p.mapping.Remote)
		},
		wait:     r.spec.WaitForReady,
		idle:     udpIdle,
		log:      r.log.With("local", b.pc.LocalAddr().String()+"/udp"),
		stats:    &p.stats,
		peers:    map[string]*udpPeer{},
		maxPeers: maxUDPPeers,
	}
}

// server is the tunnel server of one listener: a client gets a spare
// connection if one is open, else a dial through the lease.
func (r *Runner) server(b boundListener, ns connect.Resolver, pool *tunnel.Lease) *tunnel.Server {
	p := b.port
	return &tunnel.Server{
		Listener: b.l,
		Dial: func(ctx context.Context, first *tunnel.FirstBytes) (tunnel.Upstream, string, error) {
			if up, label, ok := r.takeSpare(ns, p); ok {
				return up, label, nil
			}
			return r.dial(ctx, ns, pool, p.mapping.Remote, first)
		},
		Wait:  r.spec.WaitForReady,
		Log:   r.log.With("local", b.l.Addr().String()),
		Stats: &p.stats,
	}
}

// follow keeps the forward's session and state current until ctx ends
// (nil) or a listener fails (its error): it refreshes on every change of
// the target, when the held session ends, when a failed attempt is due
// for retry (with backoff), and probes health at every interval and after
// the machine slept.
func (r *Runner) follow(ctx context.Context, ns connect.Resolver, pool *tunnel.Lease, sleep *sleepwatch.Watcher, errc <-chan error) error {
	interval := r.spec.Health.Interval
	if r.opts.ProbeInterval > 0 {
		interval = r.opts.ProbeInterval
	}
	probe := time.NewTicker(interval)
	defer probe.Stop()
	var retry retrier
	defer retry.stop()
	check := false
	for {
		changed := r.changed.Next()
		woke := sleep.Woke()
		sess, err := r.refresh(ctx, ns, pool, check)
		check = false
		if ctx.Err() == nil {
			r.noteAttempt(&retry, err)
		}
		var ended <-chan struct{}
		if sess != nil {
			ended = sess.Done()
		}
		select {
		case <-ctx.Done():
			r.setState(StateStopped, "", tunnel.Pod{})
			return nil
		case err := <-errc:
			return err
		case <-changed:
		case <-ended:
			// The API server or the node went away, or the pod was
			// deleted: reconnect now, not at the next probe.
			r.log.Info("port-forward session ended; reconnecting", "pod", sess.Pod.String())
		case <-retry.due():
		case <-probe.C:
			check = true
		case <-woke:
			// The machine slept: the tunnel is likely dead, so probe it
			// now rather than at the next interval.
			r.log.Debug("probing the tunnel after a sleep")
			check = true
		}
	}
}

// retrier is the pending retry to open a session after failures in a
// row. Its zero value has none pending.
type retrier struct {
	timer      *time.Timer
	attempts   int
	lastLogged string // the cause of the failure streak last logged as a warning
}

func (t *retrier) due() <-chan time.Time {
	if t.timer == nil {
		return nil
	}
	return t.timer.C
}

func (t *retrier) stop() {
	if t.timer != nil {
		t.timer.Stop()
	}
}

// noteAttempt records the outcome of a refresh: a failure schedules a
// retry with backoff (and is logged once per cause: repeats of the same
// cause go to debug); a success clears the streak.
func (r *Runner) noteAttempt(t *retrier, err error) {
	switch {
	case err != nil:
		t.attempts++
		delay := retryDelay(t.attempts, errors.Is(err, kube.ErrUnauthorized))
		if t.timer == nil {
			t.timer = time.NewTimer(delay)
		} else {
			t.timer.Reset(delay)
		}
		r.setRetry(t.attempts, time.Now().Add(delay))
		level := slog.LevelDebug
		if t.attempts == 1 || err.Error() != t.lastLogged {
			level = slog.LevelWarn
			t.lastLogged = err.Error()
		}
		r.log.Log(context.Background(), level, "cannot open a port-forward session; retrying", "err", err, "in", delay.Round(time.Millisecond), "attempt", t.attempts)
	case t.attempts > 0:
		t.attempts = 0
		t.stop()
		r.setRetry(0, time.Time{})
	}
}

// retryDelay is the wait before another attempt to open a session after
// attempts failures in a row: from 250 ms, doubling, at most 1 s so that a
// forward serves again within about a second of the API server or node
// coming back; at most 30 s when the credentials were rejected, which only
// the user can fix (a new client connection still tries at once).
func retryDelay(attempts int, unauthorized bool) time.Duration {
	limit := time.Second
	if unauthorized {
		limit = 30 * time.Second
	}
	d := 250 * time.Millisecond
	for i := 1; i < attempts && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// refresh re-resolves the endpoints, keeps a session open to the pod that
// new connections would use (so the first connection is quick and the
// state is honest), optionally runs the health check through it, and lets
// go of sessions to pods that are no longer ready.
//
// A check that cannot open a stream means the session is dead: it is
// closed at once and the next refresh reconnects. A check that reaches the
// pod but fails (nothing listens, HTTP error) counts towards the
// threshold; at the threshold the pod is avoided for new connections while
// another is ready, so the forward re-targets.
//
// It returns the session it holds, and an error when a session could not
// be opened (or a probe found it dead): the caller retries with backoff.
func (r *Runner) refresh(ctx context.Context, ns connect.Resolver, pool *tunnel.Lease, probe bool) (*tunnel.Session, error) {
	pod, podNS, healthEps, err := r.resolve(ns, pool)
	at := tunnel.Pod{Namespace: podNS, Name: pod}
	if err != nil {
		r.setState(stateFor(err), err.Error(), tunnel.Pod{})
		return nil, nil
	}
	// The first dial follows the wait for the caches: say what is
	// waited on now. (A forward that failed keeps its reason until the
	// dial succeeds or fails otherwise: one line per change.)
	if cur := r.state.Load(); cur != nil && cur.State == StateWaiting {
		r.setState(StateStarting, "opening a port-forward session to pod "+pod, at)
	}
	dctx, cancel := context.WithTimeout(ctx, r.opts.DialTimeout)
	defer cancel()
	stopNoting := r.noteSilence(ns, at)
	sess, err := pool.Get(dctx, at)
	stopNoting()
	if err != nil {
		err = ns.Explain(err)
		if ctx.Err() == nil {
			r.setState(StateFailed, err.Error(), at)
		}
		return nil, err
	}
	if probe {
		if healthy, s, err := r.probe(ctx, ns, pool, sess, pod, healthEps); !healthy {
			return s, err
		}
	}
	r.setState(StateReady, "", at)
	r.keepStandby(ctx, pool, at, healthEps)
	return sess, nil
}

// keepStandby holds, where the API server is far (tunnel.Lease.Far), a
// session open to the pod new connections would use next if pod left
// (balance first: the first other usable endpoint), so that the pod
// going away costs connections no session setup: two round trips to a
// far API server. Round-robin already holds a session per pod it uses.
// The session opens in the background; Retain lets go of it once its pod
// is no longer ready.
func (r *Runner) keepStandby(ctx context.Context, pool *tunnel.Lease, pod tunnel.Pod, eps []kube.Endpoint) {
	if r.spec.Balance == config.BalanceRoundRobin || !pool.Far() {
		return
	}
	for _, ep := range r.avoid.Usable(eps) {
		if ep.Pod == pod.Name && ep.Namespace == pod.Namespace {
			continue
		}
		next := tunnel.Pod{Namespace: ep.Namespace, Name: ep.Pod}
		r.standby.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, r.opts.DialTimeout)
			defer cancel()
			if _, err := pool.Get(dctx, next); err != nil && ctx.Err() == nil {
				r.log.Debug("no standby session", "pod", next.String(), "err", err)
			}
		})
		return
	}
}

// resolve resolves every port's ready endpoints, lets go of the sessions
// to pods no longer ready, and returns the pod new connections would use
// (and its namespace: a relay may run in another) and the endpoints of
// the health check's port; err is the first port's reason for having
// none.
func (r *Runner) resolve(ns connect.Resolver, pool *tunnel.Lease) (pod, podNS string, healthEps []kube.Endpoint, err error) {
	ready := map[string]bool{}
	for _, p := range r.ports {
		var eps []kube.Endpoint
		var rerr error
		if p.mapping.Protocol == config.UDP {
			eps, rerr = r.route.resolveUDP(p.mapping.Remote)
		} else {
			eps, rerr = ns.Resolve(r.spec.Target, p.mapping.Remote)
		}
		if rerr != nil {
			if err == nil {
				err = rerr
			}
			continue
		}
		for _, ep := range eps {
			ready[ep.Pod] = true
		}
		if len(eps) > 0 && (p.relay.Load() == nil || *p.relay.Load() != eps[0].Dest) {
			p.relay.Store(&eps[0].Dest)
		}
		if len(eps) > 0 {
			if sp := ns.PortSpelling(r.spec.Target, p.mapping.Remote, eps); p.spelling.Load() == nil || *p.spelling.Load() != sp {
				p.spelling.Store(&sp)
			}
		}
		if pod == "" {
			ep := r.pick(p.mapping.Remote, eps, false)
			pod, podNS = ep.Pod, ep.Namespace
		}
		if p.mapping.Remote == r.spec.Health.Port || healthEps == nil {
			healthEps = eps
		}
	}
	pool.Retain(func(p tunnel.Pod) bool { return ready[p.Name] })
	return pod, podNS, healthEps, err
}

// silenceSteps are how long a session request waits before the forward's
// reason says so: one change per step, not one per second.
var silenceSteps = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second}

// noteSilence makes the forward's reason say, at each of silenceSteps,
// that the API server has not answered the request for a session to pod,
// until the returned stop is called. The state stays what it is: starting
// for a first session, failed (retrying) for a reconnect.
func (r *Runner) noteSilence(ns connect.Resolver, pod tunnel.Pod) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		start := time.Now()
		for _, step := range silenceSteps {
			select {
			case <-done:
				return
			case <-time.After(time.Until(start.Add(step))):
			}
			cur := r.state.Load()
			if cur == nil || cur.State == StateReady {
				continue
			}
			r.setState(cur.State, ns.Explain(&sessionSilence{pod: pod, d: step}).Error(), pod)
		}
	}()
	return func() { close(done); <-finished }
}

// sessionSilence is a session request to pod that has had no answer for
// d: kube.Explain names the API server and what to check.
type sessionSilence struct {
	pod tunnel.Pod
	d   time.Duration
}

func (e *sessionSilence) Error() string {
	return fmt.Sprintf("no answer to the request for a port-forward session to pod %s for %s", e.pod, e.d)
}

func (e *sessionSilence) Silent() time.Duration { return e.d }

// probe runs the health check through sess, the session to pod, then the
// transport part of it through the other sessions in use (probeInUse).
// healthy means the forward is ready; otherwise refresh returns (s, err).
func (r *Runner) probe(ctx context.Context, ns connect.Resolver, pool *tunnel.Lease, sess *tunnel.Session, pod string, eps []kube.Endpoint) (healthy bool, s *tunnel.Session, err error) {
	var port uint16
	var dest string
	podNS := r.spec.Namespace
	for _, ep := range eps {
		if ep.Pod == pod {
			port, dest, podNS = ep.Port, ep.Dest, ep.Namespace
		}
	}
	pctx, cancel := context.WithTimeout(ctx, r.spec.Health.Timeout)
	defer cancel()
	started := time.Now()
	err = r.sharedCheck(pctx, sess, port, dest)
	switch {
	case err == nil:
		delete(r.healthFails, pod)
	case ctx.Err() != nil:
		return false, sess, nil
	case errors.Is(err, errTransport) && sess.Busy(started):
		// Data kept moving while the check waited for its stream: the
		// session is slow, not dead. Closing it would cut every
		// connection it carries.
		r.log.Debug("probe could not open a stream in time on a busy session; keeping it", "pod", pod, "err", err)
	case errors.Is(err, errTransport):
		// The session's failure is the API server's or the network's:
		// say which, as a failed dial would.
		err = ns.Explain(err)
		r.log.Warn("probe through the tunnel failed; reconnecting", "pod", pod, "err", err)
		sess.Close()
		r.setState(StateFailed, "probe: "+err.Error(), tunnel.Pod{Namespace: podNS, Name: pod})
		return false, nil, fmt.Errorf("probe: %w", err)
	default:
		r.healthFails[pod]++
		n := r.healthFails[pod]
		if n < r.spec.Health.Threshold {
			r.log.Debug("health check failed", "pod", pod, "err", err, "failures", n, "threshold", r.spec.Health.Threshold)
			break
		}
		r.log.Warn("pod unhealthy; avoiding it for new connections", "pod", pod, "err", err, "failures", n)
		r.avoid.Mark(kube.Endpoint{Namespace: podNS, Pod: pod}, time.Duration(r.spec.Health.Threshold)*r.spec.Health.Interval)
		delete(r.healthFails, pod)
		r.current.Delete(r.ports[0].mapping.Remote.String())
		r.setState(StateFailed, "health: "+err.Error(), tunnel.Pod{Namespace: podNS, Name: pod})
		r.changed.Notify()
		return false, sess, nil
	}
	r.probeInUse(ctx, pool, sess, eps)
	return true, sess, nil
}

// probeInUse runs the transport part of the health check through every
// other session that carries connections of the forward's pods: the extra
// sessions Lease.Dial spreads connections over, and the sessions to pods
// other than the one probed (round-robin). A session on which the check
// cannot open a stream in time while no data moves is wedged (a pod that
// stopped reading holds every write of its session): it is closed, which
// resets its connections, rather than leave them hanging. Pod-side
// failures are left to the main check.
func (r *Runner) probeInUse(ctx context.Context, pool *tunnel.Lease, probed *tunnel.Session, eps []kube.Endpoint) {
	var wg sync.WaitGroup
	for pod, sessions := range pool.InUse() {
		var port uint16
		var dest string
		for _, ep := range eps {
			if ep.Pod == pod.Name {
				port, dest = ep.Port, ep.Dest
			}
		}
		if port == 0 {
			continue
		}
		for _, s := range sessions {
			if s == probed {
				continue
			}
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, r.spec.Health.Timeout)
				defer cancel()
				started := time.Now()
				err := r.sharedCheck(pctx, s, port, dest)
				if ctx.Err() != nil || !errors.Is(err, errTransport) || s.Busy(started) {
					return
				}
				r.log.Warn("probe through a session in use failed; closing it", "pod", pod.String(), "connections", s.Active(), "err", err)
				s.Close()
			})
		}
	}
	wg.Wait()
}

// dial waits for a ready endpoint and opens a connection to it, sending
// the client's first bytes along when it can. A dial that fails after
// sending them is not retried: they may have reached the pod.
func (r *Runner) dial(ctx context.Context, ns connect.Resolver, pool *tunnel.Lease, remote config.Port, first *tunnel.FirstBytes) (tunnel.Upstream, string, error) {
	target := connect.Target{
		Resolve: func() ([]kube.Endpoint, error) { return ns.Resolve(r.spec.Target, remote) },
		Changes: &r.changed,
		Explain: ns.Explain,
	}
	opts := connect.Options{
		Avoid: &r.avoid,
		Pick:  func(eps []kube.Endpoint) kube.Endpoint { return r.pick(remote, eps, true) },
		Final: func(err error) bool { return errors.Is(err, tunnel.ErrSentAhead) },
		Log:   r.log,
	}
	c, ep, err := connect.Dial(ctx, target, opts, func(ctx context.Context, ep kube.Endpoint) (tunnel.Upstream, error) {
		return dialEndpoint(ctx, pool, ep, first)
	})
	if we, ok := errors.AsType[*connect.WaitError](err); ok {
		last := we.Last
		if last == nil {
			last = we.Ctx
		}
		return nil, "", fmt.Errorf("no ready endpoint within %s: %w", r.spec.WaitForReady, last)
	}
	if err != nil {
		return nil, "", err
	}
	return c, ep.String(), nil
}

// dialUDP waits for the relay and opens a UDP stream through it to the
// destination of remote.
func (r *Runner) dialUDP(ctx context.Context, pool *tunnel.Lease, remote config.Port) (net.Conn, string, error) {
	target := connect.Target{
		Resolve: func() ([]kube.Endpoint, error) { return r.route.resolveUDP(remote) },
		Changes: &r.changed,
		Explain: r.route.Explain,
	}
	opts := connect.Options{Avoid: &r.avoid, Log: r.log}
	c, ep, err := connect.Dial(ctx, target, opts, func(ctx context.Context, ep kube.Endpoint) (tunnel.Upstream, error) {
		return dialEndpoint(ctx, pool, ep, nil)
	})
	if we, ok := errors.AsType[*connect.WaitError](err); ok {
		last := we.Last
		if last == nil {
			last = we.Ctx
		}
		return nil, "", fmt.Errorf("no relay within %s: %w", r.spec.WaitForReady, last)
	}
	if err != nil {
		return nil, "", err
	}
	return c.(net.Conn), ep.String(), nil
}

// pick chooses an endpoint: with balance "first", the pod in use while it
// stays ready, else the first by name; with "round-robin", the next one.
// Pods that just failed a dial are avoided while others are ready.
func (r *Runner) pick(remote config.Port, eps []kube.Endpoint, forConn bool) kube.Endpoint {
	usable := r.avoid.Usable(eps)
	key := remote.String()
	if r.spec.Balance == config.BalanceRoundRobin && forConn {
		return usable[int(r.rr.Add(1)-1)%len(usable)]
	}
	if cur, ok := r.current.Load(key); ok {
		if i := slices.IndexFunc(usable, func(e kube.Endpoint) bool { return e.Pod == cur.(string) }); i >= 0 {
			return usable[i]
		}
	}
	ep := usable[0]
	if prev, ok := r.current.Swap(key, ep.Pod); !ok || prev.(string) != ep.Pod {
		r.log.Info("using pod", "pod", ep.Namespace+"/"+ep.Pod, "remote", remote.String())
	}
	return ep
}

// stateFor is the state of a forward that cannot resolve its target
// because of err: waiting while the target has no ready pod, the caches
// are filling or the API server is slow to answer; failed when something
// needs the user (the API server refuses or rejects kpf, the target does
// not exist).
func stateFor(err error) State {
	if ce, ok := errors.AsType[*kube.ClusterError](err); ok {
		if ce.Cause == kube.CauseTimeout {
			return StateWaiting
		}
		return StateFailed
	}
	if errors.Is(err, kube.ErrNoReadyEndpoints) || errors.Is(err, kube.ErrNotSynced) {
		return StateWaiting
	}
	return StateFailed
}
