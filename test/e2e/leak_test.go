//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/kube"
)

// A forward run in-process through the real port-forward path leaves no
// goroutine behind once it has stopped: not its listeners, connections,
// sessions, streams nor its namespace's informers.
func TestE2ERunnerLeavesNoGoroutine(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "leak")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	pods := deployEcho(t, s.primary, ns, 2, a, b)

	// Clients and their transports are shared, long-lived and may keep
	// idle HTTP/2 connections: create them before taking the baseline.
	kc, err := kube.LoadKubeconfig(s.primary.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clusters := connect.KubeClusters(kube.NewClusters(kc, log))
	if _, err := clusters("e2e"); err != nil {
		t.Fatal(err)
	}
	baseline := goleak.IgnoreCurrent()

	port := freePort(t)
	spec := config.Forward{
		Name: "leak", Context: "e2e", Namespace: ns, Address: "127.0.0.1", Enabled: true,
		Target:       config.Target{Kind: config.Service, Name: "echo"},
		Ports:        []config.PortMapping{{Local: uint16(port), Remote: config.Port{Name: "tcp"}}},
		Balance:      config.BalanceRoundRobin,
		WaitForReady: 10 * time.Second,
	}
	r := forward.New(spec, clusters, forward.Options{ProbeInterval: 200 * time.Millisecond}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitUntil(t, 30*time.Second, "the forward to serve", func(context.Context) (bool, error) {
		_, err := greeting(addr, 5*time.Second)
		return err == nil, nil
	})
	seen := map[string]bool{}
	for range 20 {
		g, err := greeting(addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[g] = true
	}
	if !seen["hello from a"] || !seen["hello from b"] {
		t.Errorf("round-robin over 20 connections reached %v, want both pods", seen)
	}
	// Delete a pod so sessions are dropped and redialled as well.
	kubectlE2E(t, s, "-n", ns, "delete", "pod", pods[0], "--wait=false")
	time.Sleep(time.Second)
	for range 5 {
		if _, err := greeting(addr, 10*time.Second); err != nil {
			t.Fatalf("after pod deletion: %v", err)
		}
	}
	// Leave a connection open across the stop.
	open, err := netDial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15 s of its context ending")
	}
	if st := r.Status(); st.State != forward.StateStopped {
		t.Errorf("state after stop = %s", st.State)
	}
	verifyNoLeaks(t, baseline)
}

// `kpf up --once` exits 0 once every forward is ready, and 1 when one is
// not ready within --timeout.
func TestE2EUpOnce(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "once")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	good := fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: e2e
    namespace: %s
    service: echo
    ports: ["%d:80"]
`, ns, freePort(t))
	out, err := runKpf(s, "up", "--once", "--timeout", "30s", "-f", writeConfig(t, good))
	if err != nil || !strings.Contains(out, "ready (pod echo-") {
		t.Fatalf("--once with a ready forward: %v\n%s", err, out)
	}
	bad := good + fmt.Sprintf(`  - name: nope
    context: e2e
    namespace: %s
    service: nope
    ports: ["%d:80"]
`, ns, freePort(t))
	out, err = runKpf(s, "up", "--once", "--timeout", "3s", "-f", writeConfig(t, bad))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("--once with a missing service: exit %v, want 1\n%s", err, out)
	}
	if !strings.Contains(out, `service "nope" not found`) || !strings.Contains(out, "not every forward became ready within 3s") {
		t.Errorf("--once failure output lacks the reason:\n%s", out)
	}
}

// verifyNoLeaks fails if goroutines other than those in baseline and the
// process-wide ones remain.
func verifyNoLeaks(t *testing.T, baseline goleak.Option) {
	t.Helper()
	opts := []goleak.Option{baseline,
		// klog's flush daemon and client-go's shared HTTP/2 transports
		// belong to the process, not to the forward.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	}
	// A stream creation in flight when its SPDY connection closes waits in
	// spdystream for its reply until the library's 30 s timeout (its
	// WaitTimeout does not watch the connection), and the connection's
	// shutdown waits for that stream: give such stragglers up to 40 s to
	// end rather than ignore them.
	deadline := time.Now().Add(40 * time.Second)
	for goleak.Find(opts...) != nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	goleak.VerifyNone(t, opts...)
}
