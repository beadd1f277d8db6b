package forward

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// spareYoung is how long a spare connection must live for its end not to
// count as a failure: a pod that closes connections at once (nothing
// listening, or a server that rejects idle ones immediately) would
// otherwise be dialed in a loop.
const spareYoung = time.Second

// spareSet holds the spare connections of one port mapping: connections
// opened to a pod ahead of clients (the forward's spare field), so that a
// new client skips the round trip through the API server that opening a
// stream costs. Its methods are safe for concurrent use.
type spareSet struct {
	want int
	// takes counts the spares clients took.
	takes atomic.Int64

	mu     sync.Mutex
	parked []parkedSpare
	// maxAge, once the pod has closed a spare that lived a while (a
	// server's idle timeout), is three quarters of the shortest such life:
	// spares are replaced before that age, so that a client does not take
	// one the server is about to close. 0 until then.
	maxAge time.Duration
	// changed wakes the keeper: a spare was taken or ended.
	changed chan struct{}
}

type parkedSpare struct {
	*tunnel.Parked
	pod string
}

func newSpareSet(want int) *spareSet {
	return &spareSet{want: want, changed: make(chan struct{}, 1)}
}

func (s *spareSet) wake() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// take hands over the youngest live spare to a pod for which usable is
// true. The youngest, because the oldest are the nearest to a server's
// idle timeout: a spare that the server closes just as a client takes it
// fails that client, and a server's close takes a round trip to be seen.
func (s *spareSet) take(usable func(pod string) bool) (tunnel.Upstream, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.parked) - 1; i >= 0; i-- {
		p := s.parked[i]
		if !usable(p.pod) || s.expired(p) {
			continue
		}
		up, ok := p.Take()
		if !ok {
			continue // ended; the keeper removes it
		}
		s.parked = append(s.parked[:i:i], s.parked[i+1:]...)
		s.takes.Add(1)
		s.wake()
		return up, p.Label, true
	}
	return nil, "", false
}

// expired reports whether p is older than maxAge. s.mu is held.
func (s *spareSet) expired(p parkedSpare) bool {
	return s.maxAge > 0 && time.Since(p.Since) >= s.maxAge
}

// prune closes and removes the spares that ended, that expired, or that go
// to a pod for which keep is false. It returns the ended ones that died
// young, and the max age it learned from one that lived (0 if none).
func (s *spareSet) prune(keep func(pod string) bool) (young []parkedSpare, learned time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.parked[:0]
	for _, p := range s.parked {
		select {
		case <-p.Ended():
			switch life := time.Since(p.Since); {
			case life < spareYoung:
				young = append(young, p)
			case errors.Is(p.Err(), io.EOF):
				// The server closed an idle connection: replace the
				// others before they reach that age.
				if age := max(life*3/4, spareYoung); s.maxAge == 0 || age < s.maxAge {
					s.maxAge, learned = age, age
				}
			}
			continue
		default:
		}
		if !keep(p.pod) || s.expired(p) {
			p.Close()
			continue
		}
		kept = append(kept, p)
	}
	clear(s.parked[len(kept):])
	s.parked = kept
	return young, learned
}

func (s *spareSet) add(p parkedSpare) {
	s.mu.Lock()
	s.parked = append(s.parked, p)
	s.mu.Unlock()
}

// nextExpiry returns when the oldest spare reaches maxAge, or the zero
// time if spares do not expire (yet).
func (s *spareSet) nextExpiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	if s.maxAge == 0 {
		return next
	}
	for _, p := range s.parked {
		if at := p.Since.Add(s.maxAge); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// settled reports whether a spare has lived longer than spareYoung.
func (s *spareSet) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.parked {
		if time.Since(p.Since) >= spareYoung && p.Err() == nil {
			return true
		}
	}
	return false
}

func (s *spareSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.parked)
}

// closeAll closes every spare not taken.
func (s *spareSet) closeAll() {
	s.mu.Lock()
	parked := s.parked
	s.parked = nil
	s.mu.Unlock()
	for _, p := range parked {
		p.Close()
	}
}

// spareRetry is the wait before opening another spare after failures in a
// row: from 250 ms, doubling, at most 30 s.
func spareRetry(failures int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// keepSpares keeps want spare connections of port mapping p open until ctx
// is done, then closes those not taken. With balance first they go to the
// pod in use and follow it when it changes; with round-robin they go to
// each ready pod in turn. Missing spares are opened in parallel, so that a
// client connecting again and again finds one. Spares that the pod ends at
// once, and spares that cannot be opened, are retried with backoff.
func (r *Runner) keepSpares(ctx context.Context, ns connect.Resolver, pool *tunnel.Lease, p *portState) {
	set := p.spares
	defer set.closeAll()
	remote := p.mapping.Remote
	opened := make(chan error, set.want)
	inflight := 0
	defer func() {
		for ; inflight > 0; inflight-- {
			<-opened
		}
	}()
	failures := 0
	var notBefore time.Time
	takes := set.takes.Load()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		changed := r.changed.Next()
		if n := set.takes.Load(); n != takes || set.settled() {
			// A client took one, or one has lived: the pod accepts them.
			takes, failures, notBefore = n, 0, time.Time{}
		}
		eps, err := ns.Resolve(r.spec.Target, remote)
		if err != nil || viaRelay(eps) {
			eps = nil // no spares through the relay: see New
		}
		young, learned := set.prune(r.spareUsable(remote, eps))
		if learned > 0 {
			r.log.Info("the pod closes idle spare connections; replacing them sooner", "remote", remote.String(), "max_age", learned.Round(time.Millisecond))
		}
		for _, sp := range young {
			failures++
			notBefore = time.Now().Add(spareRetry(failures))
			if failures == 3 {
				r.log.Warn("the pod keeps closing spare connections at once; backing off", "pod", sp.Label, "err", sp.Err())
			} else {
				r.log.Debug("spare connection ended at once", "pod", sp.Label, "err", sp.Err(), "failures", failures)
			}
		}
		short := len(eps) > 0 && set.len()+inflight < set.want
		if short && !time.Now().Before(notBefore) {
			for ; set.len()+inflight < set.want; inflight++ {
				go func() { opened <- r.openSpare(ctx, pool, remote, eps, set) }()
			}
			short = false
		}
		var retry <-chan time.Time
		if short {
			timer.Reset(time.Until(notBefore))
			retry = timer.C
		}
		var expire <-chan time.Time
		if at := set.nextExpiry(); !at.IsZero() {
			expiry.Reset(time.Until(at))
			expire = expiry.C
		}
		select {
		case <-ctx.Done():
			return
		case <-expire:
		case err := <-opened:
			inflight--
			if err != nil && ctx.Err() == nil {
				failures++
				notBefore = time.Now().Add(spareRetry(failures))
				r.log.Debug("cannot open a spare connection", "err", err, "failures", failures)
			}
		case <-changed:
		case <-set.changed:
		case <-retry:
		}
		timer.Stop()
		expiry.Stop()
	}
}

// spareUsable says which pods spares of remote may go to: the pod in use
// with balance first, any ready pod with round-robin.
func (r *Runner) spareUsable(remote config.Port, eps []kube.Endpoint) func(pod string) bool {
	if len(eps) == 0 {
		return func(string) bool { return false }
	}
	if r.spec.Balance == config.BalanceRoundRobin {
		ready := make(map[string]bool, len(eps))
		for _, ep := range eps {
			if !r.avoid.Avoided(ep) {
				ready[ep.Pod] = true
			}
		}
		return func(pod string) bool { return ready[pod] }
	}
	cur := r.pick(remote, eps, false).Pod
	return func(pod string) bool { return pod == cur }
}

// takeSpare hands a new client connection of port mapping p a spare
// connection, if p keeps spares and one to a usable pod is ready.
func (r *Runner) takeSpare(ns connect.Resolver, p *portState) (tunnel.Upstream, string, bool) {
	if p.spares == nil {
		return nil, "", false
	}
	eps, err := ns.Resolve(r.spec.Target, p.mapping.Remote)
	if err != nil || viaRelay(eps) {
		return nil, "", false
	}
	return p.spares.take(r.spareUsable(p.mapping.Remote, eps))
}

// openSpare opens one spare connection to the pod pick chooses, on that
// pod's main session (spares are idle: they need no session of their own).
func (r *Runner) openSpare(ctx context.Context, pool *tunnel.Lease, remote config.Port, eps []kube.Endpoint, set *spareSet) error {
	ep := r.pick(remote, eps, r.spec.Balance == config.BalanceRoundRobin)
	dctx, cancel := context.WithTimeout(ctx, r.opts.DialTimeout)
	defer cancel()
	sess, err := pool.Get(dctx, tunnel.Pod{Namespace: ep.Namespace, Name: ep.Pod})
	if err != nil {
		return err
	}
	c, err := sess.Dial(dctx, ep.Port)
	if err != nil {
		return err
	}
	set.add(parkedSpare{Parked: tunnel.Park(c, ep.String(), set.wake), pod: ep.Pod})
	return nil
}

// viaRelay reports whether eps are a relay's, which spares cannot use.
func viaRelay(eps []kube.Endpoint) bool { return len(eps) > 0 && eps[0].Dest != "" }
