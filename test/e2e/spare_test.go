//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/control"
)

// countingBackend is a backend that counts the connections it accepted
// and those still open.
type countingBackend struct {
	backend
	accepted, open *atomic.Int64
}

// startCountingBackend is startBackend's greeting echo server, counting.
func startCountingBackend(t *testing.T, name string) countingBackend {
	t.Helper()
	return startCountingServer(t, name, nil)
}

// startCountingServer runs handle for each connection (nil: greet and
// echo), counting.
func startCountingServer(t *testing.T, name string, handle func(net.Conn)) countingBackend {
	t.Helper()
	cb := countingBackend{accepted: new(atomic.Int64), open: new(atomic.Int64)}
	if handle == nil {
		handle = func(c net.Conn) {
			fmt.Fprintf(c, "hello from %s\n", name)
			io.Copy(c, c)
		}
	}
	cb.backend = backend{name: name, port: serveLoopback(t, func(c net.Conn) {
		cb.accepted.Add(1)
		cb.open.Add(1)
		defer cb.open.Add(-1)
		handle(c)
	})}
	return cb
}

// greetAndEcho connects to addr, reads the greeting and checks that a line
// comes back echoed; it returns the greeting and how long it took from
// the connect to its first byte.
func greetAndEcho(addr string) (string, time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	g, err := r.ReadString('\n')
	took := time.Since(start)
	if err != nil {
		return "", 0, fmt.Errorf("greeting: %w", err)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", 0, err
	}
	if e, err := r.ReadString('\n'); err != nil || e != "ping\n" {
		return "", 0, fmt.Errorf("echo: %q, %v", e, err)
	}
	return strings.TrimSpace(g), took, nil
}

// twoSpares: the forward is ready with two spare connections open.
func twoSpares(st control.Forward) bool {
	return st.State == control.StateReady && len(st.Ports) > 0 && st.Ports[0].Spares == 2
}

// A forward with spare: 2 keeps two connections open to the pod before
// any client comes: a client gets the pod's greeting (sent to the spare
// before the client connected) and its echo through one, kpf replaces it,
// the spares move to the other pod when the serving one is deleted, and a
// pod that closes every connection at once is retried with backoff, not
// in a loop.
func TestE2ESpareConnections(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "spare")
	a, b := startCountingBackend(t, "a"), startCountingBackend(t, "b")
	// Bare pods: a Deployment's replacement for the deleted pod would be
	// given its backend, and spares moving to the replacement would look
	// like spares left on the deleted pod.
	deployBareEcho(t, s.primary, ns, a.backend, b.backend)
	closer := startCountingServer(t, "closer", func(net.Conn) {})
	createDeployment(t, s.primary, ns, "closer", 1, closer.backend)
	createService(t, s.primary, ns, "closer", "closer")
	waitEndpoints(t, s.primary, ns, "closer", 1)

	port, plain, closerPort := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults:
  context: e2e
  namespace: %s
  # No health check during the test: it would open connections of its
  # own to the pods, which the test counts.
  health: {interval: 10m, timeout: 5s}
forwards:
  - name: echo
    service: echo
    ports: ["%d:80"]
    spare: 2
  - name: plain
    service: echo
    ports: ["%d:80"]
  - name: closer
    service: closer
    ports: ["%d:80"]
    spare: 2
`, ns, port, plain, closerPort))
	p := startKpf(t, s, cfg)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	st, _ := waitStatus(t, s, cfg, 30*time.Second, "two spare connections", twoSpares)
	serving, other := a, b
	waitUntil(t, 10*time.Second, "the pod to see both spares", func(context.Context) (bool, error) {
		return a.open.Load()+b.open.Load() == 2, nil
	})
	if b.open.Load() == 2 {
		serving, other = b, a
	}
	if n := serving.accepted.Load(); n != 2 {
		t.Fatalf("before any client the pod %s accepted %d connections, want the 2 spares (status: %+v)", serving.name, n, st.Ports[0])
	}

	g, took, err := greetAndEcho(addr)
	if err != nil || g != "hello from "+serving.name {
		t.Fatalf("a client through a spare: %q, %v", g, err)
	}
	t.Logf("a client through a spare: greeting %s after the connect", took.Round(time.Microsecond))
	st, _ = waitStatus(t, s, cfg, 10*time.Second, "the taken spare to be replaced", func(st control.Forward) bool {
		return twoSpares(st) && st.Ports[0].SparesTaken == 1
	})
	if n := serving.accepted.Load(); n != 3 {
		t.Errorf("the pod accepted %d connections after one client, want 3 (2 spares + 1 replacement)", n)
	}

	// The same pod through a forward without spares, for the record: the
	// greeting waits for the stream to be opened through the API server.
	var withSpare, without []time.Duration
	for range 20 {
		if _, d, err := greetAndEcho(addr); err == nil {
			withSpare = append(withSpare, d)
		} else {
			t.Fatalf("with spares: %v", err)
		}
		if _, d, err := greetAndEcho(fmt.Sprintf("127.0.0.1:%d", plain)); err == nil {
			without = append(without, d)
		} else {
			t.Fatalf("without spares: %v", err)
		}
	}
	slices.Sort(withSpare)
	slices.Sort(without)
	t.Logf("FIGURE spare: connect → greeting, median of 20 alternated: %s with spare: 2, %s without",
		withSpare[10].Round(time.Microsecond), without[10].Round(time.Microsecond))
	taken := statusOf(mustStatus(t, s, cfg), "echo").Ports[0].SparesTaken
	if taken < 2 {
		t.Errorf("only %d clients got a spare", taken)
	}

	// The serving pod goes: its spares end with its session and new ones
	// go to the other pod.
	victim := podOf(t, s.primary, ns, serving.backend)
	kubectl(t, s, "--context", "e2e", "-n", ns, "delete", "pod", victim, "--wait=false")
	waitStatus(t, s, cfg, 30*time.Second, "two spares on the other pod", func(st control.Forward) bool {
		return twoSpares(st) && st.Pod != victim
	})
	waitUntil(t, 10*time.Second, "the other pod to see the spares", func(context.Context) (bool, error) {
		return other.open.Load() >= 2, nil
	})
	if g, _, err := greetAndEcho(addr); err != nil || g != "hello from "+other.name {
		t.Fatalf("after the deletion: %q, %v", g, err)
	}

	// The closer pod ends every connection at once: spares are retried
	// with backoff (250 ms doubling), a handful in some seconds, not one
	// per round trip.
	before := closer.accepted.Load()
	time.Sleep(4 * time.Second)
	n := closer.accepted.Load() - before
	t.Logf("a pod closing every connection at once: %d spare connections in 4s, %d in all", n, closer.accepted.Load())
	if closer.accepted.Load() == 0 {
		t.Error("no spare connection ever reached the closer pod")
	}
	if n > 16 {
		t.Errorf("kpf opened %d spare connections in 4s to a pod that closes them at once; want backoff", n)
	}
	if !strings.Contains(p.stderr.String(), "the pod keeps closing spare connections at once") {
		t.Errorf("kpf did not warn about the pod closing its spare connections")
	}
	if st := statusOf(mustStatus(t, s, cfg), "closer"); st.State != control.StateReady {
		t.Errorf("the closer forward is %s (%s): failing spares must not fail the forward", st.State, st.Reason)
	}
}

func mustStatus(t *testing.T, s *suite, cfg string) control.Snapshot {
	t.Helper()
	snap, _ := kpfStatus(t, s, cfg)
	return snap
}
