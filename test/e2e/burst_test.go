package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A burst of short connections to a pod that speaks first (it greets each
// connection) should all get their greeting, on sessions kpf has just
// opened for the burst and on warm ones.
//
// Known defect, diagnosed and not yet fixed, so this test runs only when
// asked for (KPF_E2E_BURST=1): each dial waits for both of its streams'
// replies before its data stream is read; the pod's greeting then holds
// one of spdystream's shared frame workers, and with it the replies other
// dials wait for, until stall detection closes the session 10 s later and
// resets its clients. Returning from the dial once the data stream is open
// fixes this side but lets a client that speaks first send before the
// kubelet has paired the streams, which deadlocks the kubelet's workers
// the same way (the bench's 32-concurrent PING phase failed 58-107 of 2000
// connections): the fix must read the data stream from its reply on while
// still writing only after both replies (see docs/reliability.md).
func TestE2EBurstOfConnectionsToAGreetingPod(t *testing.T) {
	if os.Getenv("KPF_E2E_BURST") == "" {
		t.Skip("known defect: a burst to a pod that greets first stalls a session; run with KPF_E2E_BURST=1")
	}
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
	for _, burst := range []string{"cold", "warm"} {
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
					g, err := greeting(addr, limit)
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
		t.Logf("%s burst: %d connections, %d workers, slowest %s", burst, perBurst, workers, slowest.Round(time.Millisecond))
		if len(failed) > 0 {
			t.Errorf("%s burst: %d of %d connections got no greeting within %s; first: %s", burst, len(failed), perBurst, limit, failed[0])
		}
	}
	if log := p.stderr.String(); strings.Contains(log, "stalled") {
		t.Errorf("kpf closed a stalled session during the bursts:\n%s", tail(log, 20))
	}
}
