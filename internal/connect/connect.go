// Package connect owns the way from a target to a live connection, for
// every part of kpf that makes one (the forwards of kpf up, the Go
// Dialer, the proxies): resolve the target's ready endpoints, pick one,
// dial it, move on at once from a pod that leaves the endpoints while the
// dial waits for it, avoid for a while a pod whose dial failed, and wait
// for a ready endpoint, retrying with backoff, until the caller's context
// ends.
//
// It knows nothing of sessions, ports or configuration: the caller gives
// the resolution, the pick and the dial as functions.
package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// Target is what Dial needs of a target.
type Target struct {
	// Resolve returns the target's ready endpoints now; an error says why
	// there are none (kube.ErrNoReadyEndpoints, a missing target, an
	// unreachable API server).
	Resolve func() ([]kube.Endpoint, error)
	// Changes announces that Resolve may answer differently.
	Changes *broadcast.Changes
	// Explain, if not nil, turns a dial's error into one that says what
	// to do (see kube.Namespace.Explain).
	Explain func(error) error
}

// Options tune Dial.
type Options struct {
	// Avoid holds the pods to avoid; Dial marks there, for AvoidFor, a
	// pod whose dial failed. nil avoids nothing.
	Avoid *Avoid
	// Pick chooses among the ready endpoints that are not avoided (all of
	// them if every one is); nil picks the first.
	Pick func([]kube.Endpoint) kube.Endpoint
	// Final reports whether a dial's error ends Dial at once, for a dial
	// that may have reached the pod (the client's first bytes were sent
	// with it); nil means none does.
	Final func(error) bool
	// Log receives a line when a dial moves on from a pod and when a
	// session stalled; nil logs nothing.
	Log *slog.Logger
}

// AvoidFor is how long a pod whose dial failed is avoided while others
// are ready.
const AvoidFor = 2 * time.Second

// Backoff bounds: after a failure, Dial waits for a change of the target,
// or at most this long, doubling from the first to the last.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// WaitError is Dial's error when ctx ended before a connection was made:
// it wraps both ctx's error and the last reason there was none, so that
// errors.Is finds either (context.DeadlineExceeded, kube.ErrNoReadyEndpoints,
// kube.ErrUnauthorized, ...).
type WaitError struct {
	Ctx  error
	Last error
}

func (e *WaitError) Error() string {
	if e.Last == nil {
		return e.Ctx.Error()
	}
	return fmt.Sprintf("%v (last: %v)", e.Ctx, e.Last)
}

func (e *WaitError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Ctx}
	}
	return []error{e.Ctx, e.Last}
}

// Dial returns a connection to a ready endpoint of t made by dial, and the
// endpoint. It resolves t afresh for each attempt; a pod that leaves t's
// ready endpoints while dial waits for it is left at once for another
// (see kube.DialWhileReady); a failed dial marks its pod in o.Avoid, and
// the next attempt comes at t's next change or after a backoff. It
// returns a *WaitError when ctx ends first, and a Final error at once.
func Dial[C any](ctx context.Context, t Target, o Options, dial func(context.Context, kube.Endpoint) (C, error)) (C, kube.Endpoint, error) {
	var zero C
	var last error
	delay := firstBackoff
	for {
		changed := t.Changes.Next()
		eps, err := t.Resolve()
		if err == nil {
			ep := o.pick(eps)
			stillReady := func() bool { return kube.StillReady(t.Resolve, ep) }
			var c C
			c, err = kube.DialWhileReady(ctx, changed, t.Changes.Next, stillReady,
				func(ctx context.Context) (C, error) { return dial(ctx, ep) })
			switch {
			case err == nil:
				return c, ep, nil
			case o.Final != nil && o.Final(err):
				o.Avoid.Mark(ep, AvoidFor)
				return zero, ep, fmt.Errorf("%s: %w", ep, err)
			case errors.Is(err, kube.ErrLeftReady):
				o.debug("connection moves on from a pod that stopped being ready", "pod", ep.Namespace+"/"+ep.Pod)
				last = err
				continue
			}
			if errors.Is(err, tunnel.ErrSessionStalled) && o.Log != nil {
				o.Log.Warn("port-forward session stalled; closed it, reconnecting", "pod", ep.Namespace+"/"+ep.Pod, "err", err)
			}
			if errors.Is(err, tunnel.ErrSessionClosed) {
				delay = 0 // the pool reconnects at once
			}
			if ctx.Err() == nil {
				o.Avoid.Mark(ep, AvoidFor)
			}
			if t.Explain != nil {
				err = t.Explain(err)
			}
		}
		last = err
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return zero, kube.Endpoint{}, &WaitError{Ctx: ctx.Err(), Last: last}
		case <-changed:
		case <-timer.C:
			delay = min(max(delay*2, firstBackoff), maxBackoff)
		}
		timer.Stop()
	}
}

func (o Options) pick(eps []kube.Endpoint) kube.Endpoint {
	eps = o.Avoid.Usable(eps)
	if o.Pick == nil {
		return eps[0]
	}
	return o.Pick(eps)
}

func (o Options) debug(msg string, args ...any) {
	if o.Log != nil {
		o.Log.Debug(msg, args...)
	}
}
