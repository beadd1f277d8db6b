package connect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// fakeTarget is a target whose ready pods the test sets.
type fakeTarget struct {
	changes broadcast.Changes
	mu      sync.Mutex
	pods    []string
	err     error // when no pod is ready
}

func (f *fakeTarget) set(err error, pods ...string) {
	f.mu.Lock()
	f.pods, f.err = pods, err
	f.mu.Unlock()
	f.changes.Notify()
}

func (f *fakeTarget) target() Target {
	return Target{Changes: &f.changes, Resolve: func() ([]kube.Endpoint, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.pods) == 0 {
			return nil, f.err
		}
		eps := make([]kube.Endpoint, len(f.pods))
		for i, p := range f.pods {
			eps[i] = kube.Endpoint{Namespace: "ns", Pod: p, Port: 80}
		}
		return eps, nil
	}}
}

// dialTo returns a dial that succeeds to the pods in ok, fails to the
// others, and records every attempt.
func dialTo(attempts *[]string, ok ...string) func(context.Context, kube.Endpoint) (string, error) {
	var mu sync.Mutex
	return func(_ context.Context, ep kube.Endpoint) (string, error) {
		mu.Lock()
		*attempts = append(*attempts, ep.Pod)
		mu.Unlock()
		for _, p := range ok {
			if p == ep.Pod {
				return "conn to " + p, nil
			}
		}
		return "", fmt.Errorf("dial %s: refused", ep.Pod)
	}
}

func TestDialWaitsForAReadyEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeTarget
		f.set(kube.ErrNoReadyEndpoints)
		var attempts []string
		go func() {
			time.Sleep(3 * time.Second)
			f.set(nil, "a")
		}()
		start := time.Now()
		c, ep, err := Dial(context.Background(), f.target(), Options{}, dialTo(&attempts, "a"))
		if err != nil || c != "conn to a" || ep.Pod != "a" {
			t.Fatalf("Dial = %q, %v, %v", c, ep, err)
		}
		// At the change, not at the next backoff tick.
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("connected after %s, want 3s (when the pod became ready)", waited)
		}
	})
}

func TestDialAvoidsAPodThatFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeTarget
		f.set(nil, "a", "b")
		var attempts []string
		avoid := &Avoid{}
		c, _, err := Dial(context.Background(), f.target(), Options{Avoid: avoid}, dialTo(&attempts, "b"))
		if err != nil || c != "conn to b" {
			t.Fatalf("Dial = %q, %v", c, err)
		}
		if fmt.Sprint(attempts) != "[a b]" {
			t.Errorf("attempts %v, want [a b]: a failed, then b", attempts)
		}
		// a stays avoided for AvoidFor, then is used again.
		attempts = nil
		Dial(context.Background(), f.target(), Options{Avoid: avoid}, dialTo(&attempts, "a", "b"))
		time.Sleep(AvoidFor)
		Dial(context.Background(), f.target(), Options{Avoid: avoid}, dialTo(&attempts, "a", "b"))
		if fmt.Sprint(attempts) != "[b a]" {
			t.Errorf("attempts %v, want [b a]: a avoided, then not", attempts)
		}
	})
}

// A pod that leaves the ready endpoints while its dial waits is left at
// once for another.
func TestDialMovesOnFromAPodThatLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeTarget
		f.set(nil, "a")
		dial := func(ctx context.Context, ep kube.Endpoint) (string, error) {
			if ep.Pod == "a" {
				<-ctx.Done() // a never answers
				return "", ctx.Err()
			}
			return "conn to " + ep.Pod, nil
		}
		go func() {
			time.Sleep(time.Second)
			f.set(nil, "b")
		}()
		start := time.Now()
		c, _, err := Dial(context.Background(), f.target(), Options{}, dial)
		if err != nil || c != "conn to b" {
			t.Fatalf("Dial = %q, %v", c, err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("moved on after %s, want 1s", waited)
		}
	})
}

// When the caller gives up, the error says why there was no connection,
// and errors.Is finds both the context's error and the last cause.
func TestDialGivesUpWithTheCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeTarget
		f.set(kube.ErrNoReadyEndpoints)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var attempts []string
		_, _, err := Dial(ctx, f.target(), Options{}, dialTo(&attempts))
		var we *WaitError
		if !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, kube.ErrNoReadyEndpoints) {
			t.Fatalf("err = %v; want a WaitError wrapping the deadline and ErrNoReadyEndpoints", err)
		}
		if len(attempts) != 0 {
			t.Errorf("dialled %v with no ready endpoint", attempts)
		}
	})
}

// Failed dials are retried with a backoff doubling from 50 ms to 1 s;
// the explained error is the last cause.
func TestDialBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeTarget
		f.set(nil, "a")
		tgt := f.target()
		tgt.Explain = func(err error) error { return fmt.Errorf("explained: %w", err) }
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var attempts []string
		_, _, err := Dial(ctx, tgt, Options{Avoid: &Avoid{}}, dialTo(&attempts))
		// 0, 0.05, 0.15, 0.35, 0.75, 1.55, 2.55 s.
		if len(attempts) != 7 {
			t.Errorf("%d attempts in 3 s, want 7", len(attempts))
		}
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), "explained: dial a: refused") {
			t.Errorf("err = %v", err)
		}
	})
}

// A session closed under the dial is retried at once (the pool opens a
// new one); a Final error ends Dial at once.
func TestDialRetriesAClosedSessionAtOnceAndStopsOnFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fakeTarget
		f.set(nil, "a")
		n := 0
		start := time.Now()
		c, _, err := Dial(context.Background(), f.target(), Options{}, func(context.Context, kube.Endpoint) (string, error) {
			if n++; n == 1 {
				return "", tunnel.ErrSessionClosed
			}
			return "conn", nil
		})
		if err != nil || c != "conn" || time.Since(start) != 0 {
			t.Fatalf("after a closed session: %q, %v, after %s", c, err, time.Since(start))
		}
		sent := errors.New("sent ahead")
		_, _, err = Dial(context.Background(), f.target(), Options{Final: func(err error) bool { return errors.Is(err, sent) }},
			func(context.Context, kube.Endpoint) (string, error) { return "", sent })
		if !errors.Is(err, sent) {
			t.Fatalf("Final error: %v", err)
		}
	})
}

func TestAvoidForgetsPodsOnceTheirTimeHasPassed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a Avoid
		for i := range 1000 {
			a.Mark(kube.Endpoint{Namespace: "ns", Pod: fmt.Sprint("pod-", i)}, AvoidFor)
		}
		if a.Len() != 1000 {
			t.Fatalf("Len = %d, want 1000", a.Len())
		}
		time.Sleep(AvoidFor)
		a.Mark(kube.Endpoint{Namespace: "ns", Pod: "new"}, AvoidFor)
		if a.Len() != 1 {
			t.Errorf("after their time, %d pods are still kept, want 1", a.Len())
		}
		eps := []kube.Endpoint{{Namespace: "ns", Pod: "new"}}
		if got := a.Usable(eps); len(got) != 1 {
			t.Errorf("every pod avoided: Usable = %v, want them all", got)
		}
	})
}
