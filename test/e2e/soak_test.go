//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a duration such as 3m or 1h", name, v)
	}
	return d
}

// A soak: three forwards (a Service over two replicas with round-robin, a
// Deployment of one replica, a StatefulSet of two), two clients each
// opening connection after connection, and a pod of one of them deleted
// every KPF_SOAK_DELETE_EVERY (10s) in turn, for KPF_SOAK_DURATION (3m;
// `go tool -modfile=tools/go.mod task soak` runs it for an hour). It fails if any client
// connection failed other than one open on a pod as it was deleted (see
// accountConnections), or if kpf's goroutines, fds or heap did not return
// to the baseline once the clients stopped. It reports the connections,
// the longest recovery after a deletion (from the deletion to the first
// connection on that forward that started after it and succeeded) and
// kpf's resources over time.
func TestE2ESoak(t *testing.T) {
	s := needSuite(t)
	duration := envDuration(t, "KPF_SOAK_DURATION", 3*time.Minute)
	every := envDuration(t, "KPF_SOAK_DELETE_EVERY", 10*time.Second)
	ns := newNamespace(t, s.primary, "soak")
	pt := trackPods(t, s.primary, ns, 0)
	type target struct {
		name, kind, workload string
		replicas             int32
		backend              countingBackend
		port                 int
		addr                 string // kpf's listener, 127.0.0.1:port
	}
	targets := []*target{
		{name: "svc", kind: "service", workload: "web", replicas: 2},
		{name: "single", kind: "deployment", workload: "solo", replicas: 1},
		{name: "sts", kind: "statefulset", workload: "db", replicas: 2},
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 1\ndefaults:\n  context: e2e\n  namespace: %s\n  waitForReady: 40s\nforwards:\n", ns)
	for _, tg := range targets {
		tg.backend = startCountingBackend(t, tg.name)
		tg.port = freePort(t)
		tg.addr = fmt.Sprintf("127.0.0.1:%d", tg.port)
		switch tg.kind {
		case "service":
			createDeployment(t, s.primary, ns, tg.workload, tg.replicas, tg.backend.backend)
			createService(t, s.primary, ns, tg.workload, tg.workload)
			fmt.Fprintf(&cfg, "  - name: %s\n    service: %s\n    ports: [\"%d:80\"]\n    balance: round-robin\n", tg.name, tg.workload, tg.port)
		case "deployment":
			createDeployment(t, s.primary, ns, tg.workload, tg.replicas, tg.backend.backend)
			fmt.Fprintf(&cfg, "  - name: %s\n    deployment: %s\n    ports: [\"%d:8080\"]\n", tg.name, tg.workload, tg.port)
		case "statefulset":
			createStatefulSet(t, s.primary, ns, tg.workload, tg.replicas, tg.backend.backend)
			fmt.Fprintf(&cfg, "  - name: %s\n    statefulset: %s\n    ports: [\"%d:8080\"]\n", tg.name, tg.workload, tg.port)
		}
	}
	p, m := startKpfWithMetrics(t, s, writeConfig(t, cfg.String()))
	for _, tg := range targets {
		waitUntil(t, 90*time.Second, tg.name+" to answer", func(context.Context) (bool, error) {
			g, _, err := echoExchange(tg.addr, 1024, 1, 10*time.Second)
			return err == nil && g == "hello from "+tg.name, nil
		})
	}
	// Warm up as the soak will run: round-robin reaches both pods of the
	// Service, so kpf holds a session to each, as it will at the end.
	for _, tg := range targets {
		for i := range 6 {
			if _, _, err := echoExchange(tg.addr, 1024, uint64(i), 30*time.Second); err != nil {
				t.Fatalf("warm-up of %s: %v", tg.name, err)
			}
		}
	}
	base := m.baseline(t)
	t.Logf("soak for %s, a pod deleted every %s; baseline: %s", duration, every, base)

	stop := make(chan struct{})
	collects := make([]func() []clientResult, len(targets))
	for i, tg := range targets {
		collects[i] = pacedClients(tg.addr, 2, 100*time.Millisecond, stop)
	}
	sampler := m.startSampler(10 * time.Second)
	type deletion struct {
		target int
		pod    string
		at     time.Time
	}
	var deletions []deletion
	ctx := context.Background()
	start := time.Now()
	tick := time.NewTicker(every)
	for n := 0; time.Since(start) < duration; n++ {
		<-tick.C
		i := n % len(targets)
		tg := targets[i]
		pods, err := s.primary.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + tg.workload})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, pod := range pods.Items {
			if pod.DeletionTimestamp == nil {
				names = append(names, pod.Name)
			}
		}
		if len(names) == 0 {
			continue // the previous replacement is not there yet
		}
		sort.Strings(names)
		victim := names[(n/len(targets))%len(names)]
		at := time.Now()
		if err := s.primary.client.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
			t.Logf("delete %s: %v", victim, err)
			continue
		}
		deletions = append(deletions, deletion{i, victim, at})
	}
	tick.Stop()
	// Let the last deletion recover before the clients stop.
	time.Sleep(5 * time.Second)
	close(stop)
	_, samples := sampler.finish()
	results := make([][]clientResult, len(targets))
	var all []clientResult
	for i, collect := range collects {
		results[i] = collect()
		all = append(all, results[i]...)
	}

	// Every connection accounted for, per forward.
	var ok, cut int
	for i, tg := range targets {
		acc := accountConnections(t, p, pt, tg.addr, results[i], "hello from "+tg.name)
		ok += acc.ok
		cut += acc.cut
		t.Logf("%s: %d connections, %d ok, %d cut by their pod's deletion; longest successful connection %s", tg.name, len(results[i]), acc.ok, acc.cut, acc.maxWait.Round(time.Millisecond))
	}
	// Each deletion can cut at most the connections open on that pod.
	if limit := 2 * len(deletions); cut > limit {
		t.Errorf("%d connections cut by %d deletions: more than the %d clients per forward can have open", cut, len(deletions), 2)
	}
	var maxRecovery time.Duration
	var worst deletion
	for _, d := range deletions {
		rec := time.Duration(-1)
		for _, r := range results[d.target] {
			if r.err == nil && r.start.After(d.at) && (rec < 0 || r.end.Sub(d.at) < rec) {
				rec = r.end.Sub(d.at)
			}
		}
		if rec < 0 {
			t.Errorf("no connection to %s succeeded after %s was deleted at %s", targets[d.target].name, d.pod, d.at.Format("15:04:05.000"))
			continue
		}
		if rec > maxRecovery {
			maxRecovery, worst = rec, d
		}
	}
	t.Logf("%d deletions; %d connections: %d ok, %d cut, %d other failures; longest recovery %s (%s, pod %s)",
		len(deletions), len(all), ok, cut, len(all)-ok-cut, maxRecovery.Round(time.Millisecond), targets[worst.target].name, worst.pod)
	t.Logf("kpf over time (every 10 s): %s", trend(samples))

	after := m.settle(t, base, 5, 2, 16<<20, 90*time.Second)
	t.Logf("kpf after the clients stopped: %s", after)
}

// clientResult is one client connection of a load generator.
type clientResult struct {
	start, end time.Time
	local      string
	greeting   string
	err        error
}

// pacedClients runs n clients that each open a connection to addr (greeting
// and a 1 KiB echo), then pause for pause, until stop is closed.
func pacedClients(addr string, n int, pause time.Duration, stop <-chan struct{}) func() []clientResult {
	var mu sync.Mutex
	var results []clientResult
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for seq := uint64(0); ; seq++ {
				r := clientResult{start: time.Now()}
				r.greeting, r.local, r.err = echoExchange(addr, 1024, uint64(i)<<32|seq, 45*time.Second)
				r.end = time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
			}
		})
	}
	return func() []clientResult {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return results
	}
}

// trend summarises samples: first, min, max and last of each figure.
func trend(samples []procSample) string {
	if len(samples) == 0 {
		return "no samples"
	}
	g := func(f func(procSample) float64, unit float64, format string) string {
		vals := make([]float64, len(samples))
		for i, s := range samples {
			vals[i] = f(s) / unit
		}
		return fmt.Sprintf(format, vals[0], slices.Min(vals), slices.Max(vals), vals[len(vals)-1])
	}
	return strings.Join([]string{
		g(func(s procSample) float64 { return float64(s.goroutines) }, 1, "goroutines first %.0f min %.0f max %.0f last %.0f"),
		g(func(s procSample) float64 { return float64(s.fds) }, 1, "fds %.0f/%.0f/%.0f/%.0f"),
		g(func(s procSample) float64 { return s.heapInuse }, 1<<20, "heap_inuse MiB %.1f/%.1f/%.1f/%.1f"),
		g(func(s procSample) float64 { return s.rss }, 1<<20, "rss MiB %.1f/%.1f/%.1f/%.1f"),
	}, "; ")
}
