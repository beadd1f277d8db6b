package reconcile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/forward"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func fwd(name string, local uint16) config.Forward {
	return config.Forward{
		Name: name, Context: "c", Namespace: "ns", Enabled: true, Address: "127.0.0.1",
		Target: config.Target{Kind: config.Service, Name: name},
		Ports:  []config.PortMapping{{Local: local, Remote: config.Port{Number: 80}}},
	}
}

func TestDiff(t *testing.T) {
	a, b, c := fwd("a", 1), fwd("b", 2), fwd("c", 3)
	b2 := fwd("b", 22)
	aMoved := a
	aMoved.Pos = config.Position{Line: 40} // position alone is no change
	tests := []struct {
		name    string
		desired []config.Forward
		running []config.Forward
		want    Plan
	}{
		{"from nothing", []config.Forward{a, b}, nil, Plan{Start: []string{"a", "b"}}},
		{"to nothing", nil, []config.Forward{a, b}, Plan{Stop: []string{"a", "b"}}},
		{"unchanged", []config.Forward{a, b}, []config.Forward{b, a}, Plan{Keep: []string{"a", "b"}}},
		{"moved in the file", []config.Forward{aMoved}, []config.Forward{a}, Plan{Keep: []string{"a"}}},
		{"one changed", []config.Forward{a, b2}, []config.Forward{a, b}, Plan{Restart: []string{"b"}, Keep: []string{"a"}}},
		{"add, remove, change", []config.Forward{b2, c}, []config.Forward{a, b}, Plan{Start: []string{"c"}, Stop: []string{"a"}, Restart: []string{"b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := map[string]config.Forward{}
			for _, f := range tt.running {
				running[f.Name] = f
			}
			got := Diff(tt.desired, running)
			for _, pair := range [][2][]string{{got.Start, tt.want.Start}, {got.Stop, tt.want.Stop}, {got.Restart, tt.want.Restart}, {got.Keep, tt.want.Keep}} {
				if !slices.Equal(pair[0], pair[1]) {
					t.Fatalf("Diff = %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

// fakeRunner records its runs and holds a fake local port while running,
// so a test can see that a restarted forward's old run released the port
// before the new one took it.
type fakeRunner struct {
	spec  config.Forward
	world *world
	fail  error // returned at once by every run, if set
}

type world struct {
	mu      sync.Mutex
	ports   map[uint16]string // port -> holder
	runs    map[string]int    // forward name -> runs started
	clashes []string
	created map[string]int // forward name -> runners created
}

func newWorld() *world {
	return &world{ports: map[uint16]string{}, runs: map[string]int{}, created: map[string]int{}}
}

func (w *world) newWorker(fail map[string]error) NewWorker {
	return func(spec config.Forward) Worker {
		w.mu.Lock()
		w.created[spec.Name]++
		w.mu.Unlock()
		return &fakeRunner{spec: spec, world: w, fail: fail[spec.Name]}
	}
}

func (f *fakeRunner) Run(ctx context.Context) error {
	w := f.world
	w.mu.Lock()
	w.runs[f.spec.Name]++
	if f.fail != nil {
		w.mu.Unlock()
		return f.fail
	}
	port := f.spec.Ports[0].Local
	if holder, ok := w.ports[port]; ok {
		w.clashes = append(w.clashes, f.spec.Name+" found port held by "+holder)
	}
	w.ports[port] = f.spec.Name
	w.mu.Unlock()
	<-ctx.Done()
	w.mu.Lock()
	delete(w.ports, port)
	w.mu.Unlock()
	return nil
}

func (f *fakeRunner) Status() forward.Status {
	return forward.Status{Name: f.spec.Name, State: forward.StateReady}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestApplyRestartsOnlyWhatChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		r := New(w.newWorker(nil), Options{}, discard())
		defer r.Stop()
		ctx := t.Context()

		r.Apply(ctx, []config.Forward{fwd("a", 1), fwd("b", 2)})
		synctest.Wait()
		// b moves to a's old port while a moves away: the old runs must
		// have released their ports before the new ones start.
		p := r.Apply(ctx, []config.Forward{fwd("a", 3), fwd("b", 1), fwd("c", 4)})
		synctest.Wait()
		if !slices.Equal(p.Restart, []string{"a", "b"}) || !slices.Equal(p.Start, []string{"c"}) {
			t.Fatalf("plan = %+v", p)
		}
		p = r.Apply(ctx, []config.Forward{fwd("a", 3), fwd("b", 1)})
		synctest.Wait()
		if !slices.Equal(p.Stop, []string{"c"}) || !slices.Equal(p.Keep, []string{"a", "b"}) {
			t.Fatalf("plan = %+v", p)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.clashes) > 0 {
			t.Errorf("ports clashed: %v", w.clashes)
		}
		if w.created["a"] != 2 || w.created["b"] != 2 || w.created["c"] != 1 {
			t.Errorf("runners created: %v", w.created)
		}
		if _, held := w.ports[4]; held {
			t.Errorf("stopped forward c still holds its port")
		}
		if got := len(r.Status()); got != 2 {
			t.Errorf("Status has %d forwards, want 2", got)
		}
	})
}

func TestFailingForwardRetriesForeverWithCappedBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		boom := errors.New("listen on 127.0.0.1:1: address already in use")
		r := New(w.newWorker(map[string]error{"bad": boom}), Options{InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second}, discard())
		defer r.Stop()
		r.Apply(t.Context(), []config.Forward{fwd("bad", 1), fwd("good", 2)})

		// backoff/v4 gives up after 15 minutes by default; an hour later
		// the supervisor must still be retrying, every MaxInterval at most.
		time.Sleep(time.Hour)
		synctest.Wait()
		w.mu.Lock()
		runs := w.runs["bad"]
		goodRuns := w.runs["good"]
		w.mu.Unlock()
		if min := int(time.Hour / (3 * time.Second)); runs < min {
			t.Errorf("failing forward ran %d times in an hour, want at least %d", runs, min)
		}
		// Randomized delays are never below InitialInterval/2, so more runs
		// than this would mean the retries are not backing off at all.
		if max := int(time.Hour / (50 * time.Millisecond)); runs > max {
			t.Errorf("failing forward ran %d times in an hour: it is not backing off", runs)
		}
		if goodRuns != 1 {
			t.Errorf("the healthy forward ran %d times, want 1 (untouched by the other's failures)", goodRuns)
		}
		var bad forward.Status
		for _, s := range r.Status() {
			if s.Name == "bad" {
				bad = s
			}
		}
		if bad.State != forward.StateRetrying || bad.Reason != boom.Error() || bad.RetryAt.IsZero() {
			t.Errorf("status of the failing forward = %+v", bad)
		}
	})
}

func TestStopEndsEveryForward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		r := New(w.newWorker(nil), Options{}, discard())
		r.Apply(t.Context(), []config.Forward{fwd("a", 1), fwd("b", 2)})
		synctest.Wait()
		r.Stop()
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.ports) != 0 {
			t.Errorf("ports still held after Stop: %v", w.ports)
		}
		if len(r.Status()) != 0 {
			t.Errorf("forwards still listed after Stop")
		}
	})
}

func TestRestartRerunsOneForward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld()
		r := New(w.newWorker(nil), Options{}, discard())
		defer r.Stop()
		r.Apply(t.Context(), []config.Forward{fwd("a", 1), fwd("b", 2)})
		synctest.Wait()
		if err := r.Restart(t.Context(), "a"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := r.Restart(t.Context(), "nope"); !errors.Is(err, ErrUnknownForward) {
			t.Errorf("Restart of an unknown forward: %v", err)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.created["a"] != 2 || w.created["b"] != 1 {
			t.Errorf("runners created: %v, want a twice and b once", w.created)
		}
		if len(w.clashes) > 0 {
			t.Errorf("ports clashed: %v", w.clashes)
		}
	})
}

// slowStopRunner takes until release is closed to stop after its context
// ends, as a forward closing many connections does; stopping is closed
// when its context ends.
type slowStopRunner struct {
	name              string
	stopping, release chan struct{}
}

func (s slowStopRunner) Run(ctx context.Context) error {
	<-ctx.Done()
	close(s.stopping)
	<-s.release
	return nil
}

func (s slowStopRunner) Status() forward.Status {
	return forward.Status{Name: s.name, State: forward.StateStopped}
}

// Status answers while Apply waits for forwards to stop (it waited for
// the stop, and so did the control socket, metrics and the live view
// during every reload), and shows the forwards being stopped.
func TestStatusAnswersWhileForwardsStop(t *testing.T) {
	stopping, release := make(chan struct{}), make(chan struct{})
	r := New(func(spec config.Forward) Worker { return slowStopRunner{spec.Name, stopping, release} }, Options{}, discard())
	r.Apply(t.Context(), []config.Forward{fwd("a", 1)})
	applied := make(chan struct{})
	go func() {
		r.Apply(t.Context(), nil)
		close(applied)
	}()
	<-stopping
	got := make(chan []forward.Status, 1)
	go func() { got <- r.Status() }()
	select {
	case st := <-got:
		if len(st) != 1 || st[0].Name != "a" {
			t.Errorf("Status while a stops = %+v, want a", st)
		}
	case <-time.After(10 * time.Second):
		t.Error("Status did not answer while a forward was stopping")
	}
	close(release)
	<-applied
	if st := r.Status(); len(st) != 0 {
		t.Errorf("Status after the stop = %+v, want none", st)
	}
}
