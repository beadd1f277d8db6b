//go:build linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// startSinkBackend accepts connections and never reads from them (a
// half-open upstream: the process is alive but stuck); they are closed
// when the test ends.
func startSinkBackend(t *testing.T) backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return backend{name: "sink", port: ln.Addr().(*net.TCPAddr).Port}
}

// stallWrite writes to c as fast as it accepts until limit bytes went in,
// or no byte went in for stall, or max passed. It returns how many bytes
// were accepted and whether the writes stalled.
func stallWrite(c net.Conn, limit int64, stall, maxDur time.Duration) (int64, bool, error) {
	buf := make([]byte, 64<<10)
	var total int64
	start, progress := time.Now(), time.Now()
	for total < limit && time.Since(start) < maxDur {
		c.SetWriteDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Write(buf)
		total += int64(n)
		if n > 0 {
			progress = time.Now()
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			if time.Since(progress) >= stall {
				return total, true, nil
			}
		default:
			return total, false, err
		}
	}
	return total, false, nil
}

// echoAndSinkForward deploys a pod named after name whose port 8080 is a
// greeting echo server and whose port 9090 a sink that never reads, and
// writes a config with one forward of both ports (plus extra, YAML lines
// of the forward). It returns the config and the two local addresses.
func echoAndSinkForward(t *testing.T, s *suite, name, extra string) (cfg, echoAddr, sinkAddr string) {
	t.Helper()
	ns := newNamespace(t, s.primary, name)
	echo, sink := startBackend(t, "echo"), startSinkBackend(t)
	tmpl := podTemplate(name, echo)
	tmpl.Annotations["test.kpf.dev/forward-9090"] = strconv.Itoa(sink.port)
	createDeploymentFrom(t, s.primary, ns, name, 1, tmpl)
	echoPort, sinkPort := freePort(t), freePort(t)
	cfg = writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: %s
    context: e2e
    namespace: %s
    deployment: %s
    ports: ["%d:8080", "%d:9090"]
%s`, name, ns, name, echoPort, sinkPort, extra))
	return cfg, fmt.Sprintf("127.0.0.1:%d", echoPort), fmt.Sprintf("127.0.0.1:%d", sinkPort)
}

// A backend that accepts and never reads: the client's writes stall after a
// bounded amount (kernel socket buffers along the path, no unbounded
// buffering in kpf), kpf's memory stays bounded, and once the stuck
// connection is closed, other connections through the same forward and pod
// work again.
//
// It also measures head-of-line blocking: whether a connection to another
// port of the same pod works while the stuck stream is full. Within one
// port-forward session it cannot: spdystream has no per-stream flow
// control, and the stuck stream's blocked write holds the session's
// frame-write lock, so no other frame (not even a new stream's SYN) goes
// out until kpf's health probe, unable to open a stream, closes the
// session. kpf spreads a connection that would share a busy session over
// another (up to four per pod), so the second connection gets through.
// Closing the wedged session must not itself wait on that lock
// (tunnel.Session.Close closes the WebSocket tunnel first); before that
// fix, the forward's loop hung in Close and the stuck connection's
// goroutines never ended, which the settle check at the end catches.
func TestE2EHalfOpenUpstream(t *testing.T) {
	s := needSuite(t)
	cfg, echoAddr, sinkAddr := echoAndSinkForward(t, s, "halfopen", "")
	p, m := startKpfWithMetrics(t, s, cfg)
	waitUntil(t, 60*time.Second, "the echo port to answer", func(context.Context) (bool, error) {
		_, _, err := echoExchange(echoAddr, 1024, 1, 10*time.Second)
		return err == nil, nil
	})
	base := m.baseline(t)
	t.Logf("baseline: %s", base)

	sampler := m.startSampler(200 * time.Millisecond)
	defer sampler.finish()
	stuck, err := net.DialTimeout("tcp", sinkAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	start := time.Now()
	total, stalled, err := stallWrite(stuck, 1<<30, 3*time.Second, 30*time.Second)
	if err != nil {
		t.Fatalf("writing to the stuck upstream: %d bytes, then %v", total, err)
	}
	t.Logf("the client's writes to the stuck upstream: %s accepted in %s, stalled=%v", mib(float64(total)), time.Since(start).Round(time.Millisecond), stalled)
	if !stalled {
		t.Fatalf("%s went into a backend that reads nothing without the writes stalling: unbounded buffering", mib(float64(total)))
	}
	// What can be in flight is the sum of the socket buffers on the path
	// (client, kpf, API server and node agent hops; loopback autotuning
	// lets each grow to several MiB) and spdystream's frame queue in the
	// node agent. 256 MiB is far above that and far below "unbounded".
	if total > 256<<20 {
		t.Errorf("%s accepted before the writes stalled: want at most 256 MiB", mib(float64(total)))
	}
	during := m.mustSample(t)
	t.Logf("kpf while stuck: %s", during)

	// Head-of-line: the other port of the same pod, same session.
	holStart := time.Now()
	t.Logf("head-of-line check starts at %s", holStart.UTC().Format("15:04:05.000"))
	_, _, holErr := echoExchange(echoAddr, 64<<10, 2, 10*time.Second)
	if holErr != nil {
		t.Logf("HEAD-OF-LINE BLOCKING: while one stream of the session is stuck, a new connection to another port of the same pod failed after %s: %v", time.Since(holStart).Round(time.Millisecond), holErr)
	} else {
		t.Logf("no head-of-line blocking: another connection through the same session echoed 64 KiB in %s", time.Since(holStart).Round(time.Millisecond))
	}

	stuck.Close()
	closed := time.Now()
	t.Logf("stuck connection closed at %s", closed.UTC().Format("15:04:05.000"))
	var recovered time.Duration
	waitUntil(t, 90*time.Second, "a connection to the echo port to work after the stuck one closed", func(context.Context) (bool, error) {
		_, _, err := echoExchange(echoAddr, 64<<10, 3, 5*time.Second)
		recovered = time.Since(closed)
		return err == nil, nil
	})
	t.Logf("after closing the stuck connection, the echo port worked again within %s", recovered.Round(time.Millisecond))
	for i := range 5 {
		if _, _, err := echoExchange(echoAddr, 256<<10, uint64(10+i), 30*time.Second); err != nil {
			t.Fatalf("connection %d after recovery: %v", i, err)
		}
	}
	peak, _ := sampler.finish()
	t.Logf("kpf peak: %s", peak)
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "probe") || strings.Contains(l, "session opened") {
			t.Logf("kpf: %s", l)
		}
	}
	// kpf holds at most two 64 KiB copy buffers per connection; the stuck
	// data must sit in socket buffers, not in kpf's heap.
	if peak.heapInuse > base.heapInuse+32<<20 {
		t.Errorf("kpf's in-use heap peaked at %s (baseline %s): the stuck stream is buffered in kpf", mib(peak.heapInuse), mib(base.heapInuse))
	}
	if peak.rss > base.rss+64<<20 {
		t.Errorf("kpf's RSS peaked at %s (baseline %s)", mib(peak.rss), mib(base.rss))
	}
	// The stuck connection is gone from kpf too: its goroutines ended and
	// the forward's own loop is not wedged behind it.
	after := m.settle(t, base, 5, 2, 16<<20, 60*time.Second)
	t.Logf("kpf after: %s", after)
}

// A pod that stops reading one connection wedges the session carrying it
// (its blocked write holds the session's frame-write lock). When that is
// an extra session, not the one the forward's health check runs on, the
// check of every session in use finds it: it cannot open a stream there
// while nothing moves, so kpf closes that session and the stuck client
// gets a connection reset instead of hanging for as long as the pod does.
// A connection on the forward's main session is not touched.
func TestE2EStuckStreamOnAnExtraSessionIsCut(t *testing.T) {
	s := needSuite(t)
	cfg, echoAddr, sinkAddr := echoAndSinkForward(t, s, "stuckextra", "    health: {timeout: 2s}\n")
	p := startKpf(t, s, cfg, "--probe-interval", "1s")
	waitUntil(t, 60*time.Second, "the echo port to answer", func(context.Context) (bool, error) {
		_, _, err := echoExchange(echoAddr, 1024, 1, 10*time.Second)
		return err == nil, nil
	})

	// An idle connection holds the main session, so that the next one
	// is spread over an extra session.
	idle, err := net.DialTimeout("tcp", echoAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(2 * time.Minute))
	g, idleReader, err := readGreeting(idle)
	if err != nil || g != "hello from echo" {
		t.Fatalf("idle connection: greeting %q, %v", g, err)
	}

	stuck, err := net.DialTimeout("tcp", sinkAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	// kpf's probe (every 1 s, 2 s timeout) may cut the session before the
	// client has gone 3 s without progress, in particular when kpf runs
	// slowly (a race-built binary): a reset while still writing is the same
	// outcome, reached sooner.
	writing := time.Now()
	total, stalled, err := stallWrite(stuck, 1<<30, 3*time.Second, 30*time.Second)
	switch {
	case err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
		t.Logf("FIGURE stuck-extra: the stuck client was reset while still writing, %s after it started, after %s", time.Since(writing).Round(time.Millisecond), mib(float64(total)))
	case err != nil || !stalled:
		t.Fatalf("writing to the stuck upstream: %d bytes, stalled=%v, %v", total, stalled, err)
	default:
		wedged := time.Now()
		stuck.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, err = stuck.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the stuck connection was still open 60s after its writes stalled; kpf's log:\n%s", p.stderr.String())
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the stuck connection ended with %v, want a connection reset", err)
		}
		t.Logf("FIGURE stuck-extra: the stuck client was reset %s after the test had seen its writes stall for 3 s", time.Since(wedged).Round(time.Millisecond))
	}
	// kpf logs before it closes the session, but its log reaches the test
	// through a pipe: give it a moment.
	waitUntil(t, 5*time.Second, "kpf to log why it cut the connection", func(context.Context) (bool, error) {
		return strings.Contains(p.stderr.String(), "probe through a session in use failed; closing it"), nil
	})

	// The main session and its connection were left alone.
	if err := echoData(idle, idleReader, 64<<10, 7); err != nil {
		t.Fatalf("the idle connection on the main session after the extra one was closed: %v", err)
	}
}

// A local client that stops reading a download (a process stopped at a
// breakpoint, or suspended) holds up every other connection on its
// port-forward session: SPDY as Kubernetes speaks it has no flow control
// per stream, so the session's frames queue behind the one nobody takes.
// kpf resets that client's connection after tunnel.StuckStreamWait and
// leaves the session and its other connections alone. Before, the
// session stalled until a dial or the health check gave up on it (10 s),
// the forward reported itself failed, and every connection on the session
// was reset.
func TestE2EClientThatStopsReadingIsCutAlone(t *testing.T) {
	s := needSuite(t)
	name := "stopsreading"
	ns := newNamespace(t, s.primary, name)
	echo := startBackend(t, "echo")
	// A source that sends as fast as it is read, until the client goes.
	sourcePort := serveLoopback(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	tmpl := podTemplate(name, echo)
	tmpl.Annotations["test.kpf.dev/forward-9090"] = strconv.Itoa(sourcePort)
	createDeploymentFrom(t, s.primary, ns, name, 1, tmpl)
	echoPort, sourceLocal := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: %s
    context: e2e
    namespace: %s
    deployment: %s
    ports: ["%d:8080", "%d:9090"]
`, name, ns, name, echoPort, sourceLocal))
	p := startKpf(t, s, cfg)
	echoAddr := fmt.Sprintf("127.0.0.1:%d", echoPort)
	waitUntil(t, 60*time.Second, "the echo port to answer", func(context.Context) (bool, error) {
		_, _, err := echoExchange(echoAddr, 1024, 1, 10*time.Second)
		return err == nil, nil
	})

	stopped, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", sourceLocal), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stopped.Close()
	stopped.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(stopped, make([]byte, 64<<10)); err != nil {
		t.Fatalf("the download: %v", err)
	}
	// The client stops reading; the source goes on until every buffer on
	// the way is full and the session's queue with them.
	stoppedAt := time.Now()
	time.Sleep(500 * time.Millisecond)

	// Connections opened now are spread over the pod's sessions (up to
	// four), so some land on the held-up one. Each must get through
	// within the wait for the cut plus a margin, far below the 10 s after
	// which a dial gives up on a session.
	const within = tunnel.StuckStreamWait + 4*time.Second
	opened := time.Since(stoppedAt)
	var slowest time.Duration
	var conns []net.Conn
	for i := range 8 {
		start := time.Now()
		c, err := net.DialTimeout("tcp", echoAddr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		g, br, err := readGreeting(c)
		took := time.Since(start)
		slowest = max(slowest, took)
		if err != nil || g != "hello from echo" {
			t.Fatalf("connection %d: greeting %q, %v after %s", i, g, err, took.Round(time.Millisecond))
		}
		if took > within {
			t.Errorf("connection %d waited %s for its greeting (more than %s): it was held up behind the stopped client", i, took.Round(time.Millisecond), within)
		}
		if err := echoData(c, br, 64<<10, uint64(i)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}

	// The stopped client's connection was reset, and only it. The client
	// reads what kpf had already written to its socket, then the reset;
	// kpf says why.
	if _, err := io.Copy(io.Discard, stopped); err == nil || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stopped client read to %v, want a connection reset", err)
	}
	waitUntil(t, 10*time.Second, "kpf to log the reset of the stopped client", func(context.Context) (bool, error) {
		return strings.Contains(p.stderr.String(), "connection reset: its client stopped reading"), nil
	})
	t.Logf("FIGURE stopped-reader: kpf cut the stopped client's connection; the 8 connections opened from %s after it stopped answered within %s (slowest %s)",
		opened.Round(time.Millisecond), within, slowest.Round(time.Millisecond))
	for _, bad := range []string{"port-forward session stalled", "forward failed", "probe through a session in use failed"} {
		if strings.Contains(p.stderr.String(), bad) {
			t.Errorf("kpf logged %q: the session was given up on rather than the one connection cut:\n%s", bad, testsupport.LastLines(p.stderr.String(), 30))
		}
	}
	// The others are untouched.
	for i, c := range conns {
		if err := echoData(c, bufio.NewReader(c), 64<<10, uint64(100+i)); err != nil {
			t.Errorf("connection %d after the cut: %v", i, err)
		}
	}
}
