//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// podTracker watches the pods of a namespace: it makes each new pod of the
// "live" tier ready readyAfter after it appears (by flipping its
// test.kpf.dev/ready annotation, which the node agent follows), and records
// when it did so and when each pod's deletion was first seen.
type podTracker struct {
	mu        sync.Mutex
	readyAt   map[string]time.Time // pod -> just before the readiness patch was sent
	deletedAt map[string]time.Time // pod -> deletion first seen
	pending   map[string]bool
	wg        sync.WaitGroup
}

func trackPods(t *testing.T, c *cluster, ns string, readyAfter time.Duration) *podTracker {
	t.Helper()
	pt := &podTracker{readyAt: map[string]time.Time{}, deletedAt: map[string]time.Time{}, pending: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	// A plain watch ends when the API server's request timeout (30–60
	// min) closes it, and a tracker that stopped then counted the cuts of
	// a 1-hour soak's second half as unexplained failures: resume it.
	list, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); w.Stop(); <-done; pt.wg.Wait() })
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				if ev.Type == watch.Error && ctx.Err() == nil {
					t.Errorf("pod tracker: the watch of %s failed: %v", ns, ev.Object)
				}
				continue
			}
			pt.mu.Lock()
			if (ev.Type == watch.Deleted || pod.DeletionTimestamp != nil) && pt.deletedAt[pod.Name].IsZero() {
				pt.deletedAt[pod.Name] = time.Now()
			}
			flip := ev.Type != watch.Deleted && pod.DeletionTimestamp == nil && pod.Labels["tier"] == "live" &&
				pod.Annotations["test.kpf.dev/ready"] == "false" && !pt.pending[pod.Name]
			if flip {
				pt.pending[pod.Name] = true
			}
			pt.mu.Unlock()
			if flip {
				name := pod.Name
				pt.wg.Go(func() {
					select {
					case <-time.After(readyAfter):
					case <-ctx.Done():
						return
					}
					pt.mu.Lock()
					pt.readyAt[name] = time.Now()
					pt.mu.Unlock()
					c.client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType,
						[]byte(`{"metadata":{"annotations":{"test.kpf.dev/ready":"true"}}}`), metav1.PatchOptions{})
				})
			}
		}
	}()
	return pt
}

func (pt *podTracker) times(pod string) (ready, deleted time.Time) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.readyAt[pod], pt.deletedAt[pod]
}

// The Service's EndpointSlices churn (a Deployment scaled up and down 20
// times in 30 s, twice a cycle down to no ready pod at all) while clients
// connect continuously. The Service also selects the pods of a second
// Deployment that are never ready, and every new pod of the first one
// stays not ready for 300 ms after it appears, so that "a connection sent
// to a pod that was not ready at dial time" can be seen: the never-ready
// backend must receive no connection, and kpf must open no connection to a
// pod before the test made it ready.
//
// Every client connection must succeed, except one that had reached a pod
// which was then deleted while the connection was open: the node agent, as
// a kubelet whose container exits, ends a deleted pod's streams at once,
// and kpf cannot carry an open TCP connection over to another pod. Each
// such failure is matched to kpf's log (the pod it used) and to the pod's
// deletion. A connection kpf gave up on (no ready pod within waitForReady)
// or any other failure fails the test. Afterwards kpf's goroutines and
// open fds return to where they were before the churn.
func TestE2EEndpointChurn(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "churn")
	live, never := startCountingBackend(t, "live"), startCountingBackend(t, "never")
	pt := trackPods(t, s.primary, ns, 300*time.Millisecond)

	liveTmpl := podTemplate("churn", live.backend)
	liveTmpl.Labels["tier"] = "live"
	liveTmpl.Annotations["test.kpf.dev/ready"] = "false"
	createDeploymentFrom(t, s.primary, ns, "live", 1, liveTmpl)
	neverTmpl := podTemplate("churn", never.backend)
	neverTmpl.Labels["tier"] = "never"
	neverTmpl.Annotations["test.kpf.dev/ready"] = "false"
	createDeploymentFrom(t, s.primary, ns, "never", 2, neverTmpl)
	createService(t, s.primary, ns, "churn", "churn")
	waitEndpoints(t, s.primary, ns, "churn", 1)

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, m := startKpfWithMetrics(t, s, writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: churn
    context: e2e
    namespace: %s
    service: churn
    ports: ["%d:80"]
    balance: round-robin
    waitForReady: 40s
`, ns, port)))
	for i := range 5 {
		if g, _, err := echoExchange(addr, 1024, uint64(i), 30*time.Second); err != nil || g != "hello from live" {
			t.Fatalf("warm-up: %q, %v", g, err)
		}
	}
	base := m.baseline(t)
	t.Logf("baseline: %s", base)

	stop := make(chan struct{})
	collect := pacedClients(addr, 4, 0, stop)
	ctx := context.Background()
	churnStart := time.Now()
	for cycle := range 20 {
		if err := scaleDeployment(ctx, s.primary, ns, "live", 3); err != nil {
			t.Fatal(err)
		}
		time.Sleep(750 * time.Millisecond)
		down := int32(1)
		if cycle%10 == 9 {
			down = 0 // no ready pod at all for a while
		}
		if err := scaleDeployment(ctx, s.primary, ns, "live", down); err != nil {
			t.Fatal(err)
		}
		time.Sleep(750 * time.Millisecond)
	}
	churnTime := time.Since(churnStart)
	if err := scaleDeployment(ctx, s.primary, ns, "live", 1); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, s.primary, ns, "churn", 1)
	time.Sleep(2 * time.Second)
	close(stop)
	results := collect()

	acc := accountConnections(t, p, pt, addr, results, "hello from live")
	if never.accepted.Load() != 0 {
		t.Errorf("the never-ready pods' backend received %d connections", never.accepted.Load())
	}
	// No connection opened to a pod before it was made ready.
	early := 0
	for _, ev := range acc.opened {
		ready, _ := pt.times(podName(ev.pod))
		if ready.IsZero() || ev.at.Before(ready.Truncate(time.Millisecond)) {
			early++
			if early <= 5 {
				t.Errorf("kpf opened a connection to %s before it was ready (made ready at %s): %s", podName(ev.pod), ready.Format("15:04:05.000"), ev.line)
			}
		}
	}
	t.Logf("churn: 20 scale cycles in %s; %d client connections: %d ok, %d cut because their pod was deleted while they were open, %d other failures; longest successful connection %s; %d pods served connections; never-ready backend: %d connections; live backend: %d",
		churnTime.Round(time.Millisecond), len(results), acc.ok, acc.cut, len(results)-acc.ok-acc.cut, acc.maxWait.Round(time.Millisecond), len(acc.pods), never.accepted.Load(), live.accepted.Load())
	// A connection waits for a ready pod (here about 1 s when none is
	// ready), never on one that went away: kpf used to wait up to 10 s for
	// a stream on a session of a deleted pod that the API server had not
	// closed yet.
	if acc.maxWait > maxChurnWait {
		t.Errorf("the longest connection waited %s (more than %s), from %s", acc.maxWait.Round(time.Millisecond), maxChurnWait, acc.slowest)
	}
	if acc.ok < len(results)/2 {
		t.Errorf("only %d of %d connections succeeded", acc.ok, len(results))
	}

	// Back to the baseline once the informers and sessions settle (extra
	// sessions close after 30 s idle).
	after := m.settle(t, base, 5, 2, 16<<20, 90*time.Second)
	t.Logf("after: %s", after)
}

// maxChurnWait bounds the wait of any successful connection during the
// churn: a new pod takes about 1 s from the scale-up to ready.
const maxChurnWait = 5 * time.Second

// accounting sums up client connections against kpf's log.
type accounting struct {
	ok, cut int
	maxWait time.Duration   // longest successful connection
	slowest string          // kpf's log of it (see why)
	opened  []connEvent     // every connection kpf opened
	pods    map[string]bool // pods kpf opened connections to
}

// accountConnections checks every client result: a success must carry
// greeting; a failure is acceptable only if kpf's log shows the connection
// reached a pod whose deletion pt saw by the time it failed (a deleted
// pod's streams end at once, and kpf cannot move an open connection to
// another pod). A connection kpf gave up on (no ready pod within
// waitForReady), or any other failure, is reported as an error.
//
// Only kpf's events on listener (the address the clients dialled) count:
// the system reuses a client's ephemeral port within a second, so a client
// address alone can match another forward's connection.
func accountConnections(t *testing.T, p *kpfProcess, pt *podTracker, listener string, results []clientResult, greeting string) accounting {
	t.Helper()
	acc := accounting{pods: map[string]bool{}}
	opened := map[string][]connEvent{} // client address -> its "connection opened" events
	gaveUp := map[string][]connEvent{}
	closed := map[string][]connEvent{}
	for _, ev := range connEvents(p.stderr.String()) {
		if ev.local != listener {
			continue
		}
		switch ev.msg {
		case "connection opened":
			opened[ev.client] = append(opened[ev.client], ev)
			acc.opened = append(acc.opened, ev)
			acc.pods[podName(ev.pod)] = true
		case "connection closed: no upstream":
			gaveUp[ev.client] = append(gaveUp[ev.client], ev)
		case "connection closed":
			closed[ev.client] = append(closed[ev.client], ev)
		}
	}
	warnings := strings.Split(p.warnings(), "\n")
	// why finds what kpf logged about a failed connection: its closing
	// line (with the reason) and kpf's warnings within 2 s of it.
	why := func(r clientResult) string {
		var b strings.Builder
		for _, ev := range closed[r.local] {
			if !ev.at.Before(r.start.Add(-time.Second)) && !ev.at.After(r.end.Add(time.Second)) {
				fmt.Fprintf(&b, "\n  kpf: %s", ev.line)
			}
		}
		for _, l := range warnings {
			tm := logTimeRE.FindStringSubmatch(l)
			if tm == nil {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, tm[1])
			if !at.Before(r.start.Add(-2*time.Second)) && !at.After(r.end.Add(2*time.Second)) {
				fmt.Fprintf(&b, "\n  kpf warning: %s", l)
			}
		}
		return b.String()
	}
	within := func(evs []connEvent, r clientResult) *connEvent {
		for i := range evs {
			if !evs[i].at.Before(r.start.Add(-time.Second)) && !evs[i].at.After(r.end.Add(time.Second)) {
				return &evs[i]
			}
		}
		return nil
	}
	// orphan takes, once, a "connection opened" event of the window of r
	// whose client address no client result reported.
	reported := map[string]bool{}
	for _, r := range results {
		reported[r.local] = true
	}
	taken := map[*connEvent]bool{}
	orphan := func(r clientResult) *connEvent {
		for i := range acc.opened {
			ev := &acc.opened[i]
			if !reported[ev.client] && !taken[ev] && !ev.at.Before(r.start.Add(-time.Second)) && !ev.at.After(r.end.Add(time.Second)) {
				taken[ev] = true
				return ev
			}
		}
		return nil
	}
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range results {
		if r.err == nil {
			if r.greeting != greeting {
				fail("connection from %s was answered by %q, want %q", r.local, r.greeting, greeting)
				continue
			}
			acc.ok++
			if d := r.end.Sub(r.start); d > acc.maxWait {
				acc.maxWait = d
				acc.slowest = r.local
				if ev := within(opened[r.local], r); ev != nil {
					acc.slowest += fmt.Sprintf("\n  kpf: %s", ev.line)
				}
				acc.slowest += why(r)
			}
			continue
		}
		if ev := within(gaveUp[r.local], r); ev != nil {
			fail("kpf gave up on the connection from %s (%s): %v\n  %s", r.local, r.start.Format("15:04:05.000"), r.err, ev.line)
			continue
		}
		ev := within(opened[r.local], r)
		if r.local == "" {
			// The dial itself failed, so the client never learned its
			// address. That happens after the handshake too: a client
			// goroutine that runs late finds its connection already reset
			// by kpf (whose pod went away) and Go reports a failed
			// connect. Match it to a connection kpf opened in its window
			// for an address no client reported.
			ev = orphan(r)
		}
		if ev == nil {
			fail("connection from %s (%s-%s) failed with no trace in kpf's log: %v", r.local, r.start.Format("15:04:05.000"), r.end.Format("15:04:05.000"), r.err)
			continue
		}
		if _, deleted := pt.times(podName(ev.pod)); deleted.IsZero() || deleted.After(r.end.Add(5*time.Second)) {
			fail("connection from %s to %s (%s-%s) failed though its pod was not deleted: %v%s", r.local, ev.pod,
				r.start.Format("15:04:05.000"), r.end.Format("15:04:05.000"), r.err, why(r))
			continue
		}
		acc.cut++
	}
	if bad > 20 {
		t.Errorf("... %d failures in all", bad)
	}
	return acc
}
