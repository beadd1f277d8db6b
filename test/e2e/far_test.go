//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/linksim"
	"github.com/kpf-dev/kpf/internal/testsupport"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// The far-cluster tests put a simulated network link (package linksim:
// toxiproxy on loopback) between kpf and the primary cluster's
// kube-apiserver, and break it the ways VPNs and Wi-Fi do: silence, a
// latency spike, flapping, and a laptop that sleeps while the link drops.

// linkServer is the suite's toxiproxy server, started by the first test
// that needs it and stopped after the run.
var linkServer struct {
	once sync.Once
	s    *linksim.Server
	err  error
}

// linkSeq numbers the links the tests create.
var linkSeq atomic.Int64

// farLink puts a link with profile p in front of c's kube-apiserver and
// returns it with a kubeconfig whose context (c's name) reaches the API
// server through it.
func farLink(t *testing.T, s *suite, c *cluster, p linksim.Profile) (*linksim.Link, string) {
	t.Helper()
	linkServer.once.Do(func() {
		var bin string
		if bin, linkServer.err = linksim.Build(context.Background(), s.root, filepath.Dir(s.kpf)); linkServer.err != nil {
			return
		}
		linkServer.s, linkServer.err = linksim.Start(context.Background(), bin)
	})
	if linkServer.err != nil {
		t.Fatalf("start toxiproxy: %v", linkServer.err)
	}
	u, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	// Unique, for -count=N.
	name := fmt.Sprintf("%s-%d", strings.NewReplacer("/", "-").Replace(t.Name()), linkSeq.Add(1))
	l, err := linkServer.s.Link(context.Background(), name, u.Host, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("remove the link: %v", err)
		}
	})
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + l.Addr()
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return l, path
}

// farForward deploys one echo backend on the primary cluster and runs kpf
// up with a forward to it through a link with profile p; it returns the
// link, the config, the local address and kpf once the forward serves.
func farForward(t *testing.T, prefix string, p linksim.Profile, b backend, args ...string) (*linksim.Link, string, string, *kpfProcess) {
	t.Helper()
	s := needSuite(t)
	c := s.primary
	ns := newNamespace(t, c, prefix)
	deployEcho(t, c, ns, 1, b)
	link, kubeconfig := farLink(t, s, c, p)
	port := freePort(t)
	cfg := writeConfig(t, echoConfig(ns, port))
	kpf := startKpfWith(t, s, kubeconfig, cfg, args...)
	waitStatus(t, s, cfg, 60*time.Second, "the forward to be ready", isReady)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from "+b.name {
		t.Fatalf("before the fault: %q, %v", g, err)
	}
	return link, cfg, addr, kpf
}

// A link that goes silent for 20 s (every byte dropped, nothing closed)
// while the forward is idle: within the outage kpf status says that the
// API server stopped answering, naming the context, and a new connection
// is served within 2 s of the heal.
func TestE2EFarBlackholeIdle(t *testing.T) {
	t.Parallel()
	s := needSuite(t)
	link, cfg, addr, _ := farForward(t, "far-bh", linksim.WAN, startBackend(t, "a"))
	if err := link.Blackhole(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Only the health probe (every 10 s, 5 s timeout) can notice.
	st, at := waitStatus(t, s, cfg, 19*time.Second, "the forward to report the outage", func(st control.Forward) bool {
		return st.State != control.StateReady && st.Reason != ""
	})
	t.Logf("FIGURE far-blackhole-idle: %s after the link went silent kpf status said %s: %s",
		at.Sub(start).Round(10*time.Millisecond), st.State, st.Reason)
	if !strings.Contains(st.Reason, fmt.Sprintf("of context %q", s.primary.Name)) ||
		!strings.Contains(st.Reason, "did not answer in time") && !strings.Contains(st.Reason, "stopped answering") {
		t.Errorf("the reason does not say that the context's API server stopped answering: %s", st.Reason)
	}
	time.Sleep(time.Until(start.Add(15 * time.Second)))
	late, _ := kpfStatus(t, s, cfg)
	t.Logf("FIGURE far-blackhole-idle: 15s into the outage kpf status said %s: %s", statusOf(late, "echo").State, statusOf(late, "echo").Reason)
	time.Sleep(time.Until(start.Add(20 * time.Second)))
	if err := link.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	fresh := firstServed(t, addr, "hello from a", 30*time.Second).Sub(healed)
	_, ready := waitStatus(t, s, cfg, 30*time.Second, "the forward to be ready again", isReady)
	t.Logf("FIGURE far-blackhole-idle: after the heal, a new connection served %s, status ready %s",
		fresh.Round(time.Millisecond), ready.Sub(healed).Round(time.Millisecond))
	if fresh > 2*time.Second {
		t.Errorf("a new connection was served %s after the heal; the promise is 2s", fresh.Round(time.Millisecond))
	}
}

// The link goes silent during a transfer: the client is reset, not left
// hanging, and new connections are served within 2 s of the heal.
func TestE2EFarBlackholeDuringTransfer(t *testing.T) {
	t.Parallel()
	link, _, addr, _ := farForward(t, "far-bhx", linksim.WAN, startStreamBackend(t, "stream"))
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.CopyN(io.Discard, conn, 1<<20); err != nil {
		t.Fatalf("transfer before the fault: %d bytes, %v", n, err)
	}
	if err := link.Blackhole(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ended := make(chan error, 1)
	go func() {
		conn.SetReadDeadline(start.Add(60 * time.Second))
		_, err := io.Copy(io.Discard, conn)
		ended <- err
	}()
	var endErr error
	var endedAt time.Duration
	select {
	case endErr = <-ended:
		endedAt = time.Since(start)
	case <-time.After(20 * time.Second):
	}
	time.Sleep(time.Until(start.Add(20 * time.Second)))
	if err := link.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	if endedAt == 0 {
		endErr = <-ended
		endedAt = time.Since(start)
	}
	t.Logf("FIGURE far-blackhole-transfer: the client saw %s %s after the link went silent (healed at 20s)", errOrEOF(endErr), endedAt.Round(time.Millisecond))
	var ne net.Error
	if errors.As(endErr, &ne) && ne.Timeout() {
		t.Fatalf("the transfer hung: no end %s after the link went silent", endedAt.Round(time.Millisecond))
	}
	if !errors.Is(endErr, syscall.ECONNRESET) {
		t.Errorf("the cut transfer ended with %s; want connection reset", errOrEOF(endErr))
	}
	fresh := firstServed(t, addr, "hello from stream", 30*time.Second).Sub(healed)
	t.Logf("FIGURE far-blackhole-transfer: a new connection served %s after the heal", fresh.Round(time.Millisecond))
	if fresh > 2*time.Second {
		t.Errorf("a new connection was served %s after the heal; the promise is 2s", fresh.Round(time.Millisecond))
	}
}

// watchReady polls kpf status until stop is closed and returns every
// state other than ready it saw, with its reason.
func watchReady(t *testing.T, s *suite, cfg string, stop <-chan struct{}) <-chan []string {
	t.Helper()
	out := make(chan []string, 1)
	go func() {
		var seen []string
		for {
			select {
			case <-stop:
				out <- seen
				return
			case <-time.After(200 * time.Millisecond):
			}
			snap, code := kpfStatus(t, s, cfg)
			if code != 0 {
				continue
			}
			if st := statusOf(snap, "echo"); st.State != control.StateReady {
				if line := fmt.Sprintf("%s: %s", st.State, st.Reason); len(seen) == 0 || seen[len(seen)-1] != line {
					seen = append(seen, line)
				}
			}
		}
	}()
	return out
}

// The round trip jumps from 50 ms to 2 s for 10 s: shorter than the
// probe's timeout (5 s, docs/config.md), so no probe fails, the forward
// stays ready on its session, and connections made meanwhile are served,
// slowly.
func TestE2EFarLatencySpike(t *testing.T) {
	t.Parallel()
	s := needSuite(t)
	// A probe every second, so that about ten fall inside the spike.
	link, cfg, addr, kpf := farForward(t, "far-spike", linksim.WAN, startBackend(t, "a"), "--probe-interval", "1s")
	before, _ := kpfStatus(t, s, cfg)
	stop := make(chan struct{})
	states := watchReady(t, s, cfg, stop)
	if err := link.Spike(context.Background(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var slowest time.Duration
	served := 0
	for time.Since(start) < 10*time.Second {
		t0 := time.Now()
		g, err := greeting(addr, 10*time.Second)
		if err != nil || g != "hello from a" {
			t.Errorf("during the spike: %q, %v", g, err)
			continue
		}
		served++
		slowest = max(slowest, time.Since(t0))
	}
	if err := link.Steady(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	notReady := <-states
	after, _ := kpfStatus(t, s, cfg)
	t.Logf("FIGURE far-spike: %d connections served during a 10s spike to 2s RTT, the slowest in %s; states other than ready: %q",
		served, slowest.Round(time.Millisecond), notReady)
	if len(notReady) > 0 {
		t.Errorf("the forward left ready during a spike shorter than the probe timeout: %q", notReady)
	}
	if b, a := statusOf(before, "echo"), statusOf(after, "echo"); a.Pod != b.Pod || !a.Since.Equal(b.Since) {
		t.Errorf("the forward's state changed: before %s since %s, after %s since %s", b.Pod, b.Since, a.Pod, a.Since)
	}
	if log := kpf.stderr.String(); strings.Contains(log, "reconnecting") || strings.Contains(log, "stalled") {
		t.Errorf("kpf tore a session down during the spike:\n%s", testsupport.LastLines(log, 20))
	}
	if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from a" {
		t.Errorf("after the spike: %q, %v", g, err)
	}
}

// The link flaps for 30 s, 3 s at a time: down (connections closed, new
// ones refused, as a VPN that disconnects), up, silent (every byte
// dropped), up. Clients keep connecting throughout. At the end the
// forward is ready on one session and serves, and kpf holds no more
// goroutines than before the flapping.
func TestE2EFarFlapping(t *testing.T) {
	t.Parallel()
	s := needSuite(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	link, cfg, addr, kpf := farForward(t, "far-flap", linksim.WAN, startBackend(t, "a"), "--metrics-addr", maddr)
	m := newKpfMetrics(t, kpf, maddr)
	before := m.mustSample(t)

	ctx, cancel := context.WithCancel(context.Background())
	var clients sync.WaitGroup
	var served, failed atomic.Int64
	for range 4 {
		clients.Go(func() {
			for ctx.Err() == nil {
				if g, err := greeting(addr, 5*time.Second); err == nil && g == "hello from a" {
					served.Add(1)
				} else {
					failed.Add(1)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	lctx := context.Background()
	steps := []func(context.Context) error{link.Down, link.Up, link.Blackhole, link.Heal}
	start := time.Now()
	for i := 0; time.Since(start) < 30*time.Second; i++ {
		if err := steps[i%len(steps)](lctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
	}
	link.Heal(lctx)
	if err := link.Up(lctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	cancel()
	clients.Wait()
	ready := firstServed(t, addr, "hello from a", 30*time.Second).Sub(healed)
	st, _ := waitStatus(t, s, cfg, 30*time.Second, "the forward to be ready", isReady)
	// Goroutines that end on their own (a failed dial's, a closed
	// connection's) get some seconds to do so, and four clients at once
	// may have had kpf open an extra session, which it closes after
	// tunnel.ExtraSessionIdle without use. Each session is one connection
	// to the API server, so a leaked one shows as a file descriptor.
	var after procSample
	deadline := time.Now().Add(tunnel.ExtraSessionIdle + 15*time.Second)
	for {
		after = m.mustSample(t)
		if after.goroutines <= before.goroutines && after.fds <= before.fds || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("FIGURE far-flapping: clients served %d, failed %d during 30s of flapping; served %s after the link was steady; %d sessions opened in all; before %s; after %s",
		served.Load(), failed.Load(), ready.Round(time.Millisecond), st.Sessions, before, after)
	if ready > 2*time.Second {
		t.Errorf("served %s after the link was steady; want within 2s", ready.Round(time.Millisecond))
	}
	if after.goroutines > before.goroutines || after.fds > before.fds {
		t.Errorf("before the flapping %s, after %s: a leak", before, after)
	}
	if served.Load() == 0 {
		t.Error("no client was served while the link was up during the flapping")
	}
}

// The laptop sleeps: kpf is stopped (SIGSTOP) for 90 s, and meanwhile the
// link drops (its connections closed: the API server's side of kpf's
// session is gone) and comes back before the laptop wakes. After SIGCONT
// kpf serves a new connection within 2 s.
func TestE2EFarLaptopSleep(t *testing.T) {
	t.Parallel()
	s := needSuite(t)
	link, cfg, addr, kpf := farForward(t, "far-sleep", linksim.WAN, startBackend(t, "a"))
	lctx := context.Background()
	pid := kpf.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	slept := time.Now()
	time.Sleep(time.Second)
	if err := link.Down(lctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(slept.Add(88 * time.Second)))
	if err := link.Up(lctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(slept.Add(90 * time.Second)))
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	woke := time.Now()
	served := firstServed(t, addr, "hello from a", 30*time.Second).Sub(woke)
	_, ready := waitStatus(t, s, cfg, 30*time.Second, "the forward to be ready", isReady)
	t.Logf("FIGURE far-sleep: after 90s stopped, with the link dropped meanwhile: a new connection served %s after SIGCONT, status ready %s after",
		served.Round(time.Millisecond), ready.Sub(woke).Round(time.Millisecond))
	if served > 2*time.Second {
		t.Errorf("served %s after the wake; the promise is 2s", served.Round(time.Millisecond))
	}
}

// The pod a forward serves is deleted, 50 ms from the API server: no
// connection fails, and connections are served by the other pod soon
// after the EndpointSlice update reaches kpf's end of the link (seen by
// a watch of the test's own through a link of the same profile).
func TestE2EFarReconvergence(t *testing.T) {
	t.Parallel()
	s := needSuite(t)
	c := s.primary
	ns := newNamespace(t, c, "far-rc")
	deployBareEcho(t, c, ns, startBackend(t, "a"), startBackend(t, "b"))
	link, kubeconfig := farLink(t, s, c, linksim.WAN)
	port := freePort(t)
	cfg := writeConfig(t, echoConfig(ns, port))
	startKpfWith(t, s, kubeconfig, cfg)
	waitStatus(t, s, cfg, 60*time.Second, "the forward to be ready", isReady)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	first, err := greeting(addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	serving := strings.TrimPrefix(first, "hello from ")
	other := map[string]string{"a": "b", "b": "a"}[serving]

	// The update, as a client at kpf's distance sees it.
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := kubernetes.NewForConfigOrDie(rc).DiscoveryV1().EndpointSlices(ns).Watch(context.Background(),
		metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=echo"})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Stop()
	victim := "echo-" + serving
	updated := make(chan time.Time, 1)
	go func() {
		for ev := range watcher.ResultChan() {
			slice, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			gone := true
			for _, ep := range slice.Endpoints {
				if ep.TargetRef != nil && ep.TargetRef.Name == victim && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					gone = false
				}
			}
			if gone {
				updated <- time.Now()
				return
			}
		}
	}()

	pr := startProber(addr, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	deleted := time.Now()
	if err := c.client.CoreV1().Pods(ns).Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var update time.Time
	select {
	case update = <-updated:
	case <-time.After(30 * time.Second):
		t.Fatal("no EndpointSlice update within 30s of the deletion")
	}
	time.Sleep(3 * time.Second)
	results := pr.finish()
	failed := 0
	var firstOther time.Time
	for _, r := range results {
		switch {
		case r.err != nil || !strings.HasPrefix(r.greeting, "hello from "):
			failed++
			t.Logf("probe opened %s after the deletion: %q, %v", r.at.Sub(deleted).Round(time.Millisecond), r.greeting, r.err)
		case r.greeting == "hello from "+other && (firstOther.IsZero() || r.end.Before(firstOther)):
			firstOther = r.end
		}
	}
	rtt := link.Profile().RTT
	t.Logf("FIGURE far-reconvergence: %d probes, %d failed; the update reached the test's watch %s after the deletion; the other pod served %s after it (%.1f round trips)",
		len(results), failed, update.Sub(deleted).Round(time.Millisecond), firstOther.Sub(update).Round(time.Millisecond), float64(firstOther.Sub(update))/float64(rtt))
	if failed > 0 {
		t.Errorf("%d of %d connections failed while the forward moved to another pod", failed, len(results))
	}
	if firstOther.IsZero() {
		t.Error("no connection was served by the other pod")
	}
}
