//go:build linux

package e2e

// Helpers of the load, churn, backpressure and soak tests: kpf's own
// resource figures (goroutines, heap, RSS, open fds) read from its metrics
// endpoint, byte-exact echo exchanges, backends that count or stall, and
// kpf's per-connection log lines.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// kpfMetrics reads a running kpf's figures from its --metrics-addr.
type kpfMetrics struct {
	addr   string
	pid    int
	client *http.Client
}

// startKpfWithMetrics runs kpf up with metrics and pprof on a free loopback
// port.
func startKpfWithMetrics(t *testing.T, s *suite, config string, args ...string) (*kpfProcess, *kpfMetrics) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startKpf(t, s, config, append([]string{"--metrics-addr", addr, "--pprof"}, args...)...)
	return p, newKpfMetrics(t, p, addr)
}

// newKpfMetrics reads the metrics of p, a kpf up started with
// --metrics-addr addr, once its endpoint answers.
func newKpfMetrics(t *testing.T, p *kpfProcess, addr string) *kpfMetrics {
	t.Helper()
	// No keep-alive: an idle scrape connection would count as an fd and
	// a goroutine of kpf's.
	m := &kpfMetrics{addr: addr, pid: p.cmd.Process.Pid, client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	waitUntil(t, 30*time.Second, "kpf's metrics endpoint", func(context.Context) (bool, error) {
		_, err := m.scrape()
		return err == nil, nil
	})
	return m
}

// scrape returns every unlabelled sample of /metrics by name.
func (m *kpfMetrics) scrape() (map[string]float64, error) {
	resp, err := m.client.Get("http://" + m.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// procSample is one reading of kpf's resources.
type procSample struct {
	at         time.Time
	goroutines int
	heapInuse  float64 // bytes in in-use spans
	heapAlloc  float64 // bytes of live objects (after a collection: what is kept)
	rss        float64 // bytes
	fds        int
}

func (s procSample) String() string {
	return fmt.Sprintf("goroutines=%d heap_inuse=%.1fMiB heap_alloc=%.1fMiB rss=%.1fMiB fds=%d", s.goroutines, s.heapInuse/(1<<20), s.heapAlloc/(1<<20), s.rss/(1<<20), s.fds)
}

func (m *kpfMetrics) sample() (procSample, error) {
	v, err := m.scrape()
	if err != nil {
		return procSample{}, err
	}
	s := procSample{at: time.Now(), goroutines: int(v["go_goroutines"]), heapInuse: v["go_memstats_heap_inuse_bytes"], heapAlloc: v["go_memstats_heap_alloc_bytes"], rss: v["process_resident_memory_bytes"]}
	// /proc rather than process_open_fds: the same count, but not made
	// while a scrape connection is open.
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", m.pid))
	if err != nil {
		return procSample{}, err
	}
	s.fds = len(fds)
	return s, nil
}

func (m *kpfMetrics) mustSample(t *testing.T) procSample {
	t.Helper()
	s, err := m.sample()
	if err != nil {
		t.Fatalf("sample kpf's resources: %v", err)
	}
	return s
}

// gc makes kpf collect garbage twice (pprof's heap profile with gc=1 runs
// runtime.GC), so that buffers parked in sync.Pools, which survive one
// collection in the victim cache, are freed as well. Without it an idle kpf
// may not collect for up to two minutes and heap figures say nothing.
func (m *kpfMetrics) gc() error {
	for range 2 {
		resp, err := m.client.Get("http://" + m.addr + "/debug/pprof/heap?gc=1")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /debug/pprof/heap: %s", resp.Status)
		}
	}
	return nil
}

// baseline collects kpf's garbage and then samples its resources.
func (m *kpfMetrics) baseline(t *testing.T) procSample {
	t.Helper()
	if err := m.gc(); err != nil {
		t.Fatalf("kpf gc: %v", err)
	}
	return m.mustSample(t)
}

// settle polls, collecting garbage first each time, until kpf's goroutines,
// open fds and live heap (heap_alloc right after the collections) are
// within the tolerances of base, or fails the test with the last reading
// after timeout. It returns the reading that passed. The live heap rather
// than heap_inuse: after a burst of hundreds of MiB the in-use spans keep
// some fragmentation for a while, which is not memory kpf holds on to.
func (m *kpfMetrics) settle(t *testing.T, base procSample, goroutines, fds int, heap float64, timeout time.Duration) procSample {
	t.Helper()
	var last procSample
	deadline := time.Now().Add(timeout)
	for {
		if err := m.gc(); err != nil {
			t.Fatalf("kpf gc: %v", err)
		}
		last = m.mustSample(t)
		if last.goroutines <= base.goroutines+goroutines && last.fds <= base.fds+fds && last.heapAlloc <= base.heapAlloc+heap {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("kpf's resources did not return to the baseline within %s (tolerance +%d goroutines, +%d fds, +%.0f MiB live heap):\n  baseline %s\n  now      %s\nkpf's goroutines:\n%s",
				timeout, goroutines, fds, heap/(1<<20), base, last, m.goroutineDump())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// goroutineDump returns kpf's goroutines grouped by stack (the start of
// pprof's debug=1 text), for a failure message.
func (m *kpfMetrics) goroutineDump() string {
	resp, err := m.client.Get("http://" + m.addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	return string(b)
}

// peakSampler samples kpf's resources every interval until stopped, keeping
// the peaks.
type peakSampler struct {
	once    sync.Once
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	peak    procSample
	samples []procSample
}

func (m *kpfMetrics) startSampler(interval time.Duration) *peakSampler {
	ps := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ps.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if s, err := m.sample(); err == nil {
				ps.mu.Lock()
				ps.samples = append(ps.samples, s)
				ps.peak.goroutines = max(ps.peak.goroutines, s.goroutines)
				ps.peak.fds = max(ps.peak.fds, s.fds)
				ps.peak.heapInuse = max(ps.peak.heapInuse, s.heapInuse)
				ps.peak.heapAlloc = max(ps.peak.heapAlloc, s.heapAlloc)
				ps.peak.rss = max(ps.peak.rss, s.rss)
				ps.mu.Unlock()
			}
			select {
			case <-ps.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return ps
}

// finish stops the sampler and returns the peaks and every sample.
func (ps *peakSampler) finish() (procSample, []procSample) {
	ps.once.Do(func() { close(ps.stop) })
	<-ps.done
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.peak, ps.samples
}

// fdLimit returns the soft and hard RLIMIT_NOFILE of process pid.
func fdLimit(pid int) (soft, hard string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(l, "Max open files"))
			if len(f) >= 2 {
				return f[0], f[1], nil
			}
		}
	}
	return "", "", errors.New("no Max open files line")
}

// createDeploymentFrom creates a Deployment of replicas pods from tmpl,
// selecting them by every label of tmpl.
func createDeploymentFrom(t *testing.T, c *cluster, ns, name string, replicas int32, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	_, err := c.client.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: tmpl,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// scaleDeployment sets the replicas of a Deployment.
func scaleDeployment(ctx context.Context, c *cluster, ns, name string, replicas int32) error {
	_, err := c.client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType,
		fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas), metav1.PatchOptions{})
	return err
}

// prng is a deterministic pseudo-random byte stream.
func prng(seed uint64) io.Reader { return rand.NewChaCha8(seedBytes(seed)) }

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// readGreeting reads the greeting line an echo backend sends first and
// returns it with the reader that holds whatever followed.
func readGreeting(c net.Conn) (string, *bufio.Reader, error) {
	br := bufio.NewReader(c)
	g, err := br.ReadString('\n')
	if err != nil {
		return "", br, fmt.Errorf("greeting: %w", err)
	}
	return strings.TrimSpace(g), br, nil
}

// echoData sends n pseudo-random bytes (from seed) on c while reading them
// back from br, and checks that what came back is byte-exact (same length
// and sha256).
func echoData(c net.Conn, br *bufio.Reader, n int64, seed uint64) error {
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, sent), io.LimitReader(prng(seed), n))
		werr <- err
	}()
	got := sha256.New()
	m, rerr := io.Copy(got, io.LimitReader(br, n))
	if rerr != nil || m != n {
		c.Close() // unblock the writer
		<-werr
		return fmt.Errorf("echo: got %d of %d bytes: %v", m, n, rerr)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if string(got.Sum(nil)) != string(sent.Sum(nil)) {
		return fmt.Errorf("echo: %d bytes came back different (sha256 %x, sent %x)", n, got.Sum(nil), sent.Sum(nil))
	}
	return nil
}

// echoExchange dials addr, reads the greeting and echoes n bytes, all
// within timeout. It returns the greeting and the client's local address.
func echoExchange(addr string, n int64, seed uint64, timeout time.Duration) (greeting, local string, err error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	local = c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(timeout))
	g, br, err := readGreeting(c)
	if err != nil {
		return "", local, err
	}
	return g, local, echoData(c, br, n, seed)
}

// connEvent is one of kpf's -v log lines about a local connection.
type connEvent struct {
	at     time.Time
	msg    string // "connection opened", "connection closed", "connection closed: no upstream"
	client string // the client's address, as the client sees its local address
	local  string // kpf's listening address that accepted the connection
	pod    string // namespace/pod:port, "" when none was reached
	line   string
}

var (
	logTimeRE   = regexp.MustCompile(`^time=(\S+)`)
	logMsgRE    = regexp.MustCompile(`msg="([^"]*)"`)
	logClientRE = regexp.MustCompile(`\bclient=(\S+)`)
	logLocalRE  = regexp.MustCompile(`\blocal=(\S+)`)
	logPodRE    = regexp.MustCompile(`\bpod=(\S+)`)
)

// connEvents parses kpf's text log (run with -v) into its connection
// events.
func connEvents(log string) []connEvent {
	var out []connEvent
	for _, l := range strings.Split(log, "\n") {
		m := logMsgRE.FindStringSubmatch(l)
		if m == nil || !strings.HasPrefix(m[1], "connection ") {
			continue
		}
		ev := connEvent{msg: m[1], line: l}
		if tm := logTimeRE.FindStringSubmatch(l); tm != nil {
			ev.at, _ = time.Parse(time.RFC3339Nano, tm[1])
		}
		if c := logClientRE.FindStringSubmatch(l); c != nil {
			ev.client = c[1]
		}
		if c := logLocalRE.FindStringSubmatch(l); c != nil {
			ev.local = c[1]
		}
		if p := logPodRE.FindStringSubmatch(l); p != nil {
			ev.pod = p[1]
		}
		out = append(out, ev)
	}
	return out
}

// warnings returns kpf's log lines at WARN or ERROR level.
func (p *kpfProcess) warnings() string {
	var out []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// podName returns the pod of a namespace/pod:port label.
func podName(label string) string {
	_, p, _ := strings.Cut(label, "/")
	p, _, _ = strings.Cut(p, ":")
	return p
}

// mib formats a byte count in MiB.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
