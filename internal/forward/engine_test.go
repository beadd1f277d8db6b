package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect/connecttest"
	"github.com/kpf-dev/kpf/internal/kube"
)

// The forward engine against a fake context (connecttest): real
// listeners on loopback, real tunnel sessions and pools, in-memory pods.
// The end-to-end tests run the same paths against a real API server.

// pod is a fake pod's port 80: an HTTP GET of /healthz answers healthy
// or not; anything else gets the pod's name and the end of the
// connection.
func pod(name string, healthy bool) func(net.Conn) {
	return func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.HasPrefix(line, "GET /healthz") {
			status := "200 OK"
			if !healthy {
				status = "500 Internal Server Error"
			}
			fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status)
			return
		}
		io.WriteString(c, name)
	}
}

// engine is a Runner running on a fake context.
type engine struct {
	t       *testing.T
	cluster *connecttest.Cluster
	r       *Runner
	addr    string
	cancel  context.CancelFunc
	done    chan error
}

// startEngine runs a forward of service "web" in namespace "ns", remote
// port 80, on a free loopback port; tweak edits its spec first.
func startEngine(t *testing.T, cl *connecttest.Cluster, opts Options, tweak func(*config.Forward)) *engine {
	return startEngineLogging(t, cl, opts, slog.New(slog.DiscardHandler), tweak)
}

// startEngineLogging is startEngine with the forward logging to log.
func startEngineLogging(t *testing.T, cl *connecttest.Cluster, opts Options, log *slog.Logger, tweak func(*config.Forward)) *engine {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	spec := config.Forward{
		Name: "web", Namespace: "ns", Address: "127.0.0.1",
		Target:       config.Target{Kind: config.Service, Name: "web"},
		Ports:        []config.PortMapping{{Local: port, Remote: config.Port{Number: 80}}},
		WaitForReady: 5 * time.Second,
		Enabled:      true,
	}
	if tweak != nil {
		tweak(&spec)
	}
	r := New(spec, cl.Source(), opts, log)
	ctx, cancel := context.WithCancel(context.Background())
	e := &engine{t: t, cluster: cl, r: r, addr: fmt.Sprintf("127.0.0.1:%d", port), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- r.Run(ctx) }()
	t.Cleanup(func() { e.stop() })
	// The listeners are bound before the forward leaves starting.
	waitUntil(t, "the forward to listen", func() bool { return r.Status().State != StateStarting })
	return e
}

// stop ends Run and returns its error (nil after the first call).
func (e *engine) stop() error {
	e.cancel()
	select {
	case err, ok := <-e.done:
		if ok {
			close(e.done)
		}
		return err
	case <-time.After(10 * time.Second):
		e.t.Fatal("Run did not return within 10 s of its context ending")
		return nil
	}
}

// get connects to the forward's local port, sends a line and returns
// what came back.
func (e *engine) get() (string, error) {
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// waitState waits until the forward reports state (and pod, if not "").
func (e *engine) waitState(state State, pod string) Status {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.r.Status()
		if st.State == state && (pod == "" || st.Pod == pod) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("state %s (pod %q, reason %q), want %s (pod %q)", st.State, st.Pod, st.Reason, state, pod)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds or 10 s pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newCluster(t *testing.T, healthy map[string]bool) *connecttest.Cluster {
	cl := connecttest.New()
	t.Cleanup(cl.Close)
	for name, ok := range healthy {
		cl.Kubelet.Serve("ns", name, 80, pod(name, ok))
	}
	return cl
}

func TestEngineServesThroughAReadyPod(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true})
	cl.SetReady("web", "a")
	cl.NamePort("http", 80)
	e := startEngine(t, cl, Options{}, nil)
	e.waitState(StateReady, "a")
	got, err := e.get()
	if err != nil || got != "a" {
		t.Fatalf("got %q, %v; want pod a's answer", got, err)
	}
	// The remote port, written 80, is known by its name too.
	if p := e.r.Status().Ports[0]; p.RemoteNumber != 80 || p.RemoteName != "http" {
		t.Errorf("remote port spelled %d/%q, want 80/\"http\"", p.RemoteNumber, p.RemoteName)
	}
	if st := e.r.Status(); st.Ports[0].Accepted != 1 || st.Sessions != 1 {
		t.Errorf("status: accepted %d, sessions %d; want 1 and 1 (the client shares the warm session)", st.Ports[0].Accepted, st.Sessions)
	}
}

// A client that connects while no pod is ready waits for one, and is
// served as soon as one is.
func TestEngineWaitsForAReadyPod(t *testing.T) {
	cl := newCluster(t, map[string]bool{"b": true})
	cl.SetReady("web")
	e := startEngine(t, cl, Options{}, nil)
	st := e.waitState(StateWaiting, "")
	if !strings.Contains(st.Reason, kube.ErrNoReadyEndpoints.Error()) {
		t.Errorf("reason %q, want it to say no endpoint is ready", st.Reason)
	}
	type result struct {
		got string
		err error
	}
	res := make(chan result, 1)
	go func() {
		got, err := e.get()
		res <- result{got, err}
	}()
	waitUntil(t, "the client to be accepted", func() bool { return e.r.Status().Ports[0].Accepted == 1 })
	cl.SetReady("web", "b")
	r := <-res
	if r.err != nil || r.got != "b" {
		t.Fatalf("got %q, %v; want pod b's answer once it is ready", r.got, r.err)
	}
	e.waitState(StateReady, "b")
}

// When the pod in use leaves the endpoints, new connections go to the one
// that replaced it, and the session to the old one is let go.
func TestEngineRetargetsWhenThePodLeaves(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true, "b": true})
	cl.SetReady("web", "a")
	e := startEngine(t, cl, Options{}, nil)
	e.waitState(StateReady, "a")
	if got, err := e.get(); got != "a" {
		t.Fatalf("got %q, %v; want a", got, err)
	}
	cl.SetReady("web", "b")
	e.waitState(StateReady, "b")
	if got, err := e.get(); got != "b" {
		t.Fatalf("after a left: got %q, %v; want b", got, err)
	}
	waitUntil(t, "the session to a to close", func() bool { return cl.Kubelet.Open("ns", "a") == 0 })
}

// Where opening a session takes two round trips of a far API server, the
// forward keeps a session open to the pod it would use next, so that when
// the pod in use leaves, connections go to the next one without a session
// to open. Near (TestEngineRetargetsWhenThePodLeaves), it keeps none.
func TestEngineKeepsAStandbySessionWhenFar(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true, "b": true})
	cl.Kubelet.SetConnectDelay(100 * time.Millisecond)
	cl.SetReady("web", "a", "b")
	e := startEngine(t, cl, Options{}, nil)
	e.waitState(StateReady, "a")
	waitUntil(t, "a standby session to b", func() bool { return cl.Kubelet.Open("ns", "b") == 1 })
	if got, err := e.get(); got != "a" {
		t.Fatalf("got %q, %v; want a", got, err)
	}
	opened := cl.Kubelet.Opened()
	cl.SetReady("web", "b")
	start := time.Now()
	if got, err := e.get(); got != "b" {
		t.Fatalf("after a left: got %q, %v; want b", got, err)
	}
	if took := time.Since(start); took >= 100*time.Millisecond {
		t.Errorf("the first connection after a left took %s: it waited for a session", took)
	}
	if n := cl.Kubelet.Opened(); n != opened {
		t.Errorf("%d sessions opened after a left, want none (the standby serves)", n-opened)
	}
}

func TestEngineKeepsNoStandbySessionWhenNear(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true, "b": true})
	cl.SetReady("web", "a", "b")
	e := startEngine(t, cl, Options{ProbeInterval: 20 * time.Millisecond}, nil)
	e.waitState(StateReady, "a")
	// About ten refreshes, each of which could have opened one.
	time.Sleep(200 * time.Millisecond)
	if n := cl.Kubelet.Open("ns", "b"); n != 0 {
		t.Errorf("%d sessions to b, the pod not in use, near the API server", n)
	}
}

// A pod whose sessions cannot be opened is avoided while another is
// ready: the client is served by the other.
func TestEngineAvoidsAPodItCannotReach(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true, "b": true})
	cl.Kubelet.Refuse("ns", "a", errors.New("error dialing backend: dial tcp: connection refused"))
	cl.SetReady("web", "a", "b")
	e := startEngine(t, cl, Options{}, nil)
	for i := range 3 {
		if got, err := e.get(); got != "b" {
			t.Fatalf("connection %d: got %q, %v; want b (a refuses sessions)", i, got, err)
		}
	}
}

// With balance round-robin, connections take turns among the ready pods.
func TestEngineRoundRobin(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true, "b": true})
	cl.SetReady("web", "a", "b")
	e := startEngine(t, cl, Options{}, func(f *config.Forward) { f.Balance = config.BalanceRoundRobin })
	e.waitState(StateReady, "")
	seen := map[string]int{}
	for range 4 {
		got, err := e.get()
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("answers %v, want two from each pod", seen)
	}
}

// A pod that fails its health check Threshold times in a row is avoided:
// the forward says why and moves to the healthy pod.
func TestEngineMovesOffAnUnhealthyPod(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": false, "b": true})
	cl.SetReady("web", "a", "b")
	e := startEngine(t, cl, Options{ProbeInterval: 20 * time.Millisecond}, func(f *config.Forward) {
		f.Health = config.Health{HTTPPath: "/healthz", Port: config.Port{Number: 80}, Interval: time.Second, Timeout: time.Second, Threshold: 2}
	})
	e.waitState(StateReady, "b")
	if got, err := e.get(); got != "b" {
		t.Fatalf("got %q, %v; want b, the healthy pod", got, err)
	}
}

// A session that ends (an API server restart, a network blip) is opened
// again at once, not at the next probe.
func TestEngineReconnectsWhenTheSessionEnds(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true})
	cl.SetReady("web", "a")
	e := startEngine(t, cl, Options{}, nil)
	e.waitState(StateReady, "a")
	cl.Kubelet.Drop("ns", "a")
	waitUntil(t, "a second session", func() bool { return cl.Kubelet.Opened() == 2 })
	e.waitState(StateReady, "a")
	if got, err := e.get(); got != "a" {
		t.Fatalf("got %q, %v; want a", got, err)
	}
}

// Run returns at once when its context ends, and leaves nothing behind:
// the port is free, the sessions closed, the watch released.
func TestEngineStopsAndReleasesEverything(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true})
	cl.SetReady("web", "a")
	e := startEngine(t, cl, Options{}, nil)
	e.waitState(StateReady, "a")
	if err := e.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := e.r.Status(); st.State != StateStopped {
		t.Errorf("state %s, want stopped", st.State)
	}
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Error("the local port still accepts connections")
	}
	if cl.Watchers() != 0 {
		t.Errorf("%d watches open, want 0", cl.Watchers())
	}
	waitUntil(t, "the session to close", func() bool { return cl.Kubelet.Open("ns", "a") == 0 })
}

// A target that does not exist fails the forward with the reason, and it
// recovers by itself when the target appears.
func TestEngineReportsAMissingTargetAndRecovers(t *testing.T) {
	cl := newCluster(t, map[string]bool{"a": true})
	e := startEngine(t, cl, Options{}, nil)
	st := e.waitState(StateFailed, "")
	if !strings.Contains(st.Reason, `"web" not found`) {
		t.Errorf("reason %q, want it to say the service is not found", st.Reason)
	}
	cl.SetReady("web", "a")
	e.waitState(StateReady, "a")
}

func TestPick(t *testing.T) {
	eps := func(pods ...string) []kube.Endpoint {
		var out []kube.Endpoint
		for _, p := range pods {
			out = append(out, kube.Endpoint{Namespace: "ns", Pod: p, Port: 80})
		}
		return out
	}
	tests := []struct {
		name    string
		balance config.Balance
		avoid   []string
		calls   [][]kube.Endpoint // successive picks' endpoints
		want    []string
	}{
		{"first: the first by name", config.BalanceFirst, nil, [][]kube.Endpoint{eps("a", "b")}, []string{"a"}},
		{"first: sticks to the pod in use", config.BalanceFirst, nil, [][]kube.Endpoint{eps("b"), eps("a", "b")}, []string{"b", "b"}},
		{"first: moves when the pod in use leaves", config.BalanceFirst, nil, [][]kube.Endpoint{eps("a", "b"), eps("b", "c")}, []string{"a", "b"}},
		{"first: avoids a pod that failed", config.BalanceFirst, []string{"a"}, [][]kube.Endpoint{eps("a", "b")}, []string{"b"}},
		{"first: an avoided pod is used if it is the only one", config.BalanceFirst, []string{"a"}, [][]kube.Endpoint{eps("a")}, []string{"a"}},
		{"round-robin: takes turns", config.BalanceRoundRobin, nil, [][]kube.Endpoint{eps("a", "b"), eps("a", "b"), eps("a", "b")}, []string{"a", "b", "a"}},
		{"round-robin: skips an avoided pod", config.BalanceRoundRobin, []string{"b"}, [][]kube.Endpoint{eps("a", "b", "c"), eps("a", "b", "c")}, []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(config.Forward{Name: "web", Namespace: "ns", Balance: tt.balance}, nil, Options{}, slog.New(slog.DiscardHandler))
			for _, p := range tt.avoid {
				r.avoid.Mark(kube.Endpoint{Namespace: "ns", Pod: p}, time.Minute)
			}
			for i, e := range tt.calls {
				if got := r.pick(config.Port{Number: 80}, e, true).Pod; got != tt.want[i] {
					t.Fatalf("pick %d = %s, want %s", i+1, got, tt.want[i])
				}
			}
		})
	}
}
