package kube

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
)

// blockingDial waits for its context, or returns "conn" once release is
// closed.
func blockingDial(release <-chan struct{}) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		select {
		case <-release:
			return "conn", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func TestDialWhileReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		// readyUntil: the pod stops being ready after this many checks,
		// one per announced change (-1: never).
		readyUntil int
		// changes: how many changes to announce, 10 ms apart.
		changes     int
		cancelAfter time.Duration // cancel the caller's context (0: never)
		releaseAt   time.Duration // let the dial succeed (0: never)
		want        string
		wantLeft    bool // the error wraps ErrLeftReady
		wantErr     error
	}{
		{name: "ready throughout", readyUntil: -1, changes: 3, releaseAt: 50 * time.Millisecond, want: "conn"},
		{name: "leaves at the first change", readyUntil: 0, changes: 1, wantLeft: true, wantErr: context.Canceled},
		{name: "no change, no check", readyUntil: 0, releaseAt: 30 * time.Millisecond, want: "conn"},
		{name: "leaves after two changes", readyUntil: 3, changes: 5, wantLeft: true, wantErr: context.Canceled},
		{name: "caller gives up", readyUntil: -1, cancelAfter: 30 * time.Millisecond, wantErr: context.Canceled},
		{name: "succeeds before it leaves", readyUntil: 1, changes: 5, releaseAt: 5 * time.Millisecond, want: "conn"},
	} {
		// In a synctest bubble time is virtual and moves only when every
		// goroutine waits, so the order of changes, checks and the dial's
		// end does not depend on the machine's load; and the bubble fails
		// the test if the readiness watcher outlives it.
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var n broadcast.Changes
				var checks atomic.Int64
				stillReady := func() bool {
					c := checks.Add(1) - 1
					return tc.readyUntil < 0 || c < int64(tc.readyUntil)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				release := make(chan struct{})
				released := false
				stop := make(chan struct{})
				finished := make(chan struct{})
				go func() {
					defer close(finished)
					start := time.Now()
					announced := 0
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						if announced < tc.changes {
							n.Notify()
							announced++
						}
						// A dial that nothing ended fails the case within 2 s
						// rather than hang it.
						if tc.cancelAfter > 0 && time.Since(start) >= tc.cancelAfter || time.Since(start) > 2*time.Second {
							cancel()
						}
						if tc.releaseAt > 0 && time.Since(start) >= tc.releaseAt && !released {
							close(release)
							released = true
						}
					}
				}()
				got, err := DialWhileReady(ctx, n.Next(), n.Next, stillReady, blockingDial(release))
				close(stop)
				<-finished
				if got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
				if tc.wantErr == nil && err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want it to wrap %v", err, tc.wantErr)
				}
				if left := errors.Is(err, ErrLeftReady); left != tc.wantLeft {
					t.Errorf("err = %v: wraps ErrLeftReady = %v, want %v", err, left, tc.wantLeft)
				}
			})
		})
	}
}

func TestStillReady(t *testing.T) {
	ep := Endpoint{Namespace: "ns", Pod: "a", Port: 80}
	other := Endpoint{Namespace: "ns", Pod: "b", Port: 80}
	for _, tc := range []struct {
		name string
		eps  []Endpoint
		err  error
		want bool
	}{
		{"among the ready", []Endpoint{other, ep}, nil, true},
		{"gone from the ready", []Endpoint{other}, nil, false},
		{"same name in another namespace", []Endpoint{{Namespace: "other", Pod: "a", Port: 80}}, nil, false},
		{"no ready endpoint", nil, fmt.Errorf("svc/x: %w", ErrNoReadyEndpoints), false},
		{"caches resyncing: in doubt", nil, ErrNotSynced, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := StillReady(func() ([]Endpoint, error) { return tc.eps, tc.err }, ep)
			if got != tc.want {
				t.Errorf("StillReady = %v, want %v", got, tc.want)
			}
		})
	}
}
