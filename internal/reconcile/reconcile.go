// Package reconcile converges the running forwards to the declared set. It
// is level-based: Apply is given the whole desired set each time and
// computes the difference from what runs; it starts added forwards, stops
// removed ones and restarts changed ones, leaving unchanged forwards (and
// their open connections) alone. Each forward runs under its own supervisor
// with its own context, restarted with exponential backoff whenever it
// stops, without ever giving up.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/forward"
)

// Worker runs one forward until ctx is done or it fails; the Reconciler
// runs it again, with backoff, when it fails.
type Worker interface {
	Run(ctx context.Context) error
	Status() forward.Status
}

// NewWorker creates the Worker of a forward.
type NewWorker func(config.Forward) Worker

// Plan is the difference between the desired and the running forwards,
// each list sorted by name.
type Plan struct {
	Start, Stop, Restart, Keep []string
}

// Diff computes the plan from the desired forwards and the specs of the
// running ones. A forward is identified by its name; it is restarted when
// its spec changed (config.Forward.Equal).
func Diff(desired []config.Forward, running map[string]config.Forward) Plan {
	var p Plan
	want := map[string]bool{}
	for _, f := range desired {
		want[f.Name] = true
		cur, ok := running[f.Name]
		switch {
		case !ok:
			p.Start = append(p.Start, f.Name)
		case !cur.Equal(f):
			p.Restart = append(p.Restart, f.Name)
		default:
			p.Keep = append(p.Keep, f.Name)
		}
	}
	for name := range running {
		if !want[name] {
			p.Stop = append(p.Stop, name)
		}
	}
	for _, l := range [][]string{p.Start, p.Stop, p.Restart, p.Keep} {
		sort.Strings(l)
	}
	return p
}

// Options tune the supervisors' backoff; zero values give the defaults.
type Options struct {
	// InitialInterval is the first retry delay; default 500 ms.
	InitialInterval time.Duration
	// MaxInterval caps the retry delay; default 30 s.
	MaxInterval time.Duration
	// HealthyAfter is how long a run must last for the backoff to start
	// again from InitialInterval; default 30 s.
	HealthyAfter time.Duration
}

// Reconciler owns the running forwards.
type Reconciler struct {
	newWorker NewWorker
	opts      Options
	log       *slog.Logger

	// changing serializes Apply and Restart, which wait for forwards to
	// stop; mu guards the maps only, and is never held while waiting, so
	// that Status (the control socket, metrics, the live view) answers
	// during a reload.
	changing sync.Mutex
	mu       sync.Mutex
	running  map[string]*supervisor
	// stopping are the forwards being stopped, shown by Status until they
	// have.
	stopping map[string]*supervisor
}

// New returns a Reconciler with nothing running.
func New(newWorker NewWorker, opts Options, log *slog.Logger) *Reconciler {
	if opts.InitialInterval == 0 {
		opts.InitialInterval = 500 * time.Millisecond
	}
	if opts.MaxInterval == 0 {
		opts.MaxInterval = 30 * time.Second
	}
	if opts.HealthyAfter == 0 {
		opts.HealthyAfter = 30 * time.Second
	}
	return &Reconciler{newWorker: newWorker, opts: opts, log: log, running: map[string]*supervisor{}, stopping: map[string]*supervisor{}}
}

// Apply converges to desired: it stops removed and changed forwards and
// waits for them to release their ports, then starts added and changed
// ones. The forwards run until the next Apply stops them or ctx is done.
func (r *Reconciler) Apply(ctx context.Context, desired []config.Forward) Plan {
	r.changing.Lock()
	defer r.changing.Unlock()
	r.mu.Lock()
	specs := map[string]config.Forward{}
	for name, s := range r.running {
		specs[name] = s.spec
	}
	p := Diff(desired, specs)
	r.mu.Unlock()
	r.stop(append(append([]string{}, p.Stop...), p.Restart...))
	byName := map[string]config.Forward{}
	for _, f := range desired {
		byName[f.Name] = f
	}
	r.mu.Lock()
	for _, name := range append(append([]string{}, p.Restart...), p.Start...) {
		r.running[name] = r.start(ctx, byName[name])
	}
	r.mu.Unlock()
	if len(p.Start)+len(p.Stop)+len(p.Restart) > 0 {
		r.log.Info("converged", "started", p.Start, "stopped", p.Stop, "restarted", p.Restart, "unchanged", len(p.Keep))
	}
	return p
}

// ErrUnknownForward is returned by Restart for a name that does not run.
var ErrUnknownForward = errors.New("no such forward running")

// Restart stops the named forward, waits for it to release its ports and
// starts it again with the same spec and a fresh backoff.
func (r *Reconciler) Restart(ctx context.Context, name string) error {
	r.changing.Lock()
	defer r.changing.Unlock()
	r.mu.Lock()
	s, ok := r.running[name]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("%q: %w", name, ErrUnknownForward)
	}
	r.stop([]string{name})
	r.mu.Lock()
	r.running[name] = r.start(ctx, s.spec)
	r.mu.Unlock()
	r.log.Info("restarted on request", "forward", name)
	return nil
}

// stop stops the named running forwards and waits until they have
// released their ports; meanwhile Status shows them. r.changing is held.
func (r *Reconciler) stop(names []string) {
	var stopping []*supervisor
	r.mu.Lock()
	for _, name := range names {
		s := r.running[name]
		s.cancel()
		stopping = append(stopping, s)
		delete(r.running, name)
		r.stopping[name] = s
	}
	r.mu.Unlock()
	for _, s := range stopping {
		<-s.done
	}
	r.mu.Lock()
	for _, name := range names {
		delete(r.stopping, name)
	}
	r.mu.Unlock()
}

// Stop stops every forward and waits for them.
func (r *Reconciler) Stop() { r.Apply(context.Background(), nil) }

// Status returns the status of every running forward, sorted by name.
func (r *Reconciler) Status() []forward.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]forward.Status, 0, len(r.running)+len(r.stopping))
	for _, s := range r.running {
		out = append(out, s.status())
	}
	for name, s := range r.stopping {
		if _, ok := r.running[name]; !ok {
			out = append(out, s.status())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// supervisor runs one forward's Worker again and again.
type supervisor struct {
	spec   config.Forward
	worker Worker
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	retryAt time.Time
	lastErr string
}

func (r *Reconciler) start(parent context.Context, spec config.Forward) *supervisor {
	ctx, cancel := context.WithCancel(parent)
	s := &supervisor{spec: spec, worker: r.newWorker(spec), cancel: cancel, done: make(chan struct{})}
	log := r.log.With("forward", spec.Name)
	go func() {
		defer close(s.done)
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = r.opts.InitialInterval
		b.MaxInterval = r.opts.MaxInterval
		b.MaxElapsedTime = 0 // never give up
		b.Reset()
		streak := 0
		for {
			started := time.Now()
			err := s.worker.Run(ctx)
			if ctx.Err() != nil {
				return
			}
			if time.Since(started) >= r.opts.HealthyAfter {
				b.Reset()
				streak = 0
			}
			delay := b.NextBackOff()
			msg := "stopped"
			if err != nil {
				msg = err.Error()
			}
			s.mu.Lock()
			repeated := s.lastErr == msg
			s.retryAt, s.lastErr = time.Now().Add(delay), msg
			s.mu.Unlock()
			streak++
			// A failure streak is logged once; repeats go to debug.
			if repeated {
				log.Debug("forward failed again; retrying", "err", msg, "in", delay.Round(time.Millisecond), "attempt", streak)
			} else {
				log.Warn("forward failed; retrying", "err", msg, "in", delay.Round(time.Millisecond))
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			s.mu.Lock()
			s.retryAt = time.Time{}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *supervisor) status() forward.Status {
	st := s.worker.Status()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.retryAt.IsZero() {
		st.State = forward.StateRetrying
		st.Reason = s.lastErr
		st.RetryAt = s.retryAt
	}
	return st
}
