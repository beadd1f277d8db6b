//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

// A burst of short connections to a pod that speaks first (it greets each
// connection) should all get their greeting, on sessions kpf has just
// opened for the burst and on warm ones; and so should a burst whose
// clients also write at once, without waiting for the greeting (their
// line must come back after it).
//
// Until 2026-11-26 this stalled 2-5 sessions per burst: each dial waited
// for both of its streams' replies before its data stream was read; the
// pod's greeting then held one of spdystream's shared frame workers, and
// with it the replies other dials waited for, until stall detection
// closed the session 10 s later and reset its clients. kpf now reads each
// stream from its reply on (earlyReader; TestDialDoesNotWaitBehindItsOwnGreeting
// is the unit-level reproducer). The limit below sits under that 10 s.
// Letting a dial return once its data stream alone was open also cured
// the stall, but clients that wrote at once then wrote before the kubelet
// had paired the streams, which blocked the kubelet's workers the same
// way; the third burst guards against that.
func TestE2EBurstOfConnectionsToAGreetingPod(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "burst")
	b := startBackend(t, "a")
	deployEcho(t, s.primary, ns, 1, b)
	port := freePort(t)
	p := startKpf(t, s, writeConfig(t, echoConfig(ns, port)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitUntil(t, 60*time.Second, "the forward to answer", func(context.Context) (bool, error) {
		g, err := greeting(addr, 5*time.Second)
		return err == nil && g == "hello from a", nil
	})

	const (
		workers  = 32
		perBurst = 1000
		// Below StreamOpenStall (10 s): a connection caught in a stalled
		// session takes at least that long.
		limit = 8 * time.Second
	)
	for _, burst := range []struct {
		name   string
		writes bool // the client writes a line at once
	}{{name: "cold"}, {name: "warm"}, {name: "client writes at once", writes: true}} {
		var (
			next    atomic.Int64
			mu      sync.Mutex
			failed  []string
			slowest time.Duration
			wg      sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= perBurst {
					start := time.Now()
					g, err := greetingAndEcho(addr, burst.writes, limit)
					took := time.Since(start)
					mu.Lock()
					slowest = max(slowest, took)
					if err != nil || g != "hello from a" {
						failed = append(failed, fmt.Sprintf("%q, %v after %s", g, err, took.Round(time.Millisecond)))
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		t.Logf("%s burst: %d connections, %d workers, slowest %s", burst.name, perBurst, workers, slowest.Round(time.Millisecond))
		if len(failed) > 0 {
			t.Errorf("%s burst: %d of %d connections got no greeting within %s; first: %s", burst.name, len(failed), perBurst, limit, failed[0])
		}
	}
	if log := p.stderr.String(); strings.Contains(log, "stalled") {
		t.Errorf("kpf closed a stalled session during the bursts:\n%s", testsupport.LastLines(log, 20))
	}
}

// greetingAndEcho connects to addr and returns the greeting line. With
// write, it sends a line as soon as it is connected, and fails unless
// that line comes back after the greeting.
func greetingAndEcho(addr string, write bool, timeout time.Duration) (string, error) {
	if !write {
		return greeting(addr, timeout)
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	r := bufio.NewReader(c)
	g, err := r.ReadString('\n')
	if err != nil {
		return strings.TrimSpace(g), err
	}
	echo, err := r.ReadString('\n')
	if err != nil || echo != "ping\n" {
		return strings.TrimSpace(g), fmt.Errorf("echo %q, %v; want \"ping\"", echo, err)
	}
	return strings.TrimSpace(g), nil
}
