package kube

import (
	"context"
	"errors"
	"slices"
)

// ErrLeftReady is wrapped by the error of a dial abandoned because its
// pod left the target's ready endpoints while the connection waited for
// it.
var ErrLeftReady = errors.New("the pod left the target's ready endpoints while the connection waited for it")

// DialWhileReady runs dial, cancelling it if the pod it goes to stops
// being ready before it returns: stillReady is checked each time a change
// is announced, from since (the channel of the change after the
// resolution that chose the pod) on; changed returns the channel closed
// at the next change, as broadcast.Changes.Next does.
//
// A pod that is being deleted can take its streams with it without a
// word: the kubelet closes the pod's port-forward connections, but the API
// server may keep kpf's end open for seconds, and a stream
// requested meanwhile gets no reply. The connection waiting for it is
// better sent to another pod at once. A failure caused by this wraps
// ErrLeftReady.
func DialWhileReady[T any](ctx context.Context, since <-chan struct{}, changed func() <-chan struct{}, stillReady func() bool, dial func(context.Context) (T, error)) (T, error) {
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for next := since; ; {
			select {
			case <-next:
			case <-done:
				return
			}
			next = changed() // before the check, so that no change is missed
			if !stillReady() {
				cancel(ErrLeftReady)
				return
			}
		}
	}()
	v, err := dial(dctx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(dctx), ErrLeftReady) {
		return v, errors.Join(ErrLeftReady, err)
	}
	return v, err
}

// StillReady reports whether ep is among the ready endpoints resolve
// returns now. A resolution error other than ErrNoReadyEndpoints (say,
// caches resyncing) leaves it in doubt, which counts as ready.
func StillReady(resolve func() ([]Endpoint, error), ep Endpoint) bool {
	eps, err := resolve()
	if err != nil {
		return !errors.Is(err, ErrNoReadyEndpoints)
	}
	return slices.ContainsFunc(eps, func(e Endpoint) bool { return e.Pod == ep.Pod && e.Namespace == ep.Namespace })
}
