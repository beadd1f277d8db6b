package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

// prober opens a connection to addr every interval, each asking WHO,
// and records the outcome of each (with the backend that answered),
// until stopped.
type prober struct {
	mu     sync.Mutex
	probes []probe
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startProber starts probing; stop ends it.
func startProber(ctx context.Context, addr string, interval time.Duration) *prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &prober{cancel: cancel}
	p.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			p.wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				start := time.Now()
				who, err := whoAnswers(pctx, addr)
				if ctx.Err() != nil {
					return // stopped mid-probe: no outcome
				}
				p.mu.Lock()
				p.probes = append(p.probes, probe{start: start, end: time.Now(), err: err, who: who})
				p.mu.Unlock()
			})
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return p
}

// snapshot returns the outcomes so far.
func (p *prober) snapshot() []probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]probe(nil), p.probes...)
}

// stop ends probing, waits for the probes in flight and returns every
// outcome.
func (p *prober) stop() []probe {
	p.cancel()
	p.wg.Wait()
	return p.snapshot()
}

// reconvergence deletes the serving pod of the 2-replica Deployment under
// kpf and under each kubectl, once per round.
func (r *runner) reconvergence(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	cfgPath, err := writeKpfConfig(filepath.Join(r.tmp, "reconvergence"), r.cfg.Cluster, []kpfForward{{Name: "rc", Namespace: mainNamespace, Service: rcService, Ports: []string{fmt.Sprintf("%d:80", ports[0])}}})
	if err != nil {
		return err
	}
	kpf, err := startKpf(ctx, r.kpfBin, cfgPath, r.kubeconfig, nil)
	if err != nil {
		return err
	}
	defer kpf.stop()
	for round := range r.cfg.Rounds {
		steps := []struct {
			tool Tool
			ids  []string
			run  func(context.Context) error
		}{
			{ToolKpf, []string{mRecBack, mRecFailed, mRecSwitch}, func(ctx context.Context) error { return r.reconvergeKpf(ctx, kpf, addr(ports[0])) }},
			{ToolSPDY, []string{mRecBack, mRecFailed, mRecExit, mRecRestart}, func(ctx context.Context) error {
				return r.reconvergeKubectl(ctx, ToolSPDY, false, ports[1], round == 0)
			}},
			{ToolWS, []string{mRecBack, mRecFailed, mRecExit, mRecRestart}, func(ctx context.Context) error { return r.reconvergeKubectl(ctx, ToolWS, true, ports[2], round == 0) }},
		}
		for _, s := range steps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Info("measure", "round", round+1, "what", "reconvergence", "tool", s.tool)
			if err := s.run(ctx); err != nil {
				r.log.Warn("measurement failed", "round", round+1, "what", "reconvergence", "tool", s.tool, "err", err)
				for _, id := range s.ids {
					r.col.fail(id, s.tool, fmt.Errorf("round %d: %w", round+1, err))
				}
			}
		}
	}
	return nil
}

// reconvergeKpf deletes the pod kpf serves and watches the local port.
func (r *runner) reconvergeKpf(ctx context.Context, kpf *kpfProc, local string) error {
	if err := waitEndpoints(ctx, r.client, mainNamespace, rcService, "rc", 2, 2*time.Minute); err != nil {
		return err
	}
	if err := kpf.waitReady(ctx, 1, 20*time.Millisecond, time.Minute); err != nil {
		return err
	}
	snap, err := kpf.status(ctx)
	if err != nil {
		return err
	}
	old := snap.Forwards[0].Pod
	if old == "" {
		return errors.New("kpf status names no pod")
	}
	oldBackend, err := whoAnswers(ctx, local)
	if err != nil {
		return err
	}
	// In a link run, the EndpointSlice update as a client at kpf's end of
	// the link sees it.
	var updated <-chan time.Time
	if r.cfg.Link != "" {
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		if updated, err = watchLeaves(wctx, r.kubeconfig, mainNamespace, rcService, old); err != nil {
			return err
		}
	}
	pr := startProber(ctx, local, r.cfg.ProbeInterval)
	defer pr.stop()
	time.Sleep(5 * r.cfg.ProbeInterval)
	t0 := time.Now()
	if err := deletePod(ctx, r.client, mainNamespace, old); err != nil {
		return err
	}
	var switched time.Duration
	deadline := t0.Add(r.cfg.ReconvergeWindow)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if switched == 0 {
			if s, err := kpf.status(ctx); err == nil && s.Forwards[0].Pod != old && s.Forwards[0].Pod != "" && s.Forwards[0].State == "ready" {
				switched = time.Since(t0)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	probes := pr.stop()
	failed, back, ok := recovery(probes, t0)
	if failed > 0 {
		r.note("%s: %d connections failed after the pod's deletion; the first: %v", ToolKpf, failed, firstFailure(probes, t0))
	}
	if !ok {
		return fmt.Errorf("%d connections failed and none succeeded after the last failure within %s", failed, r.cfg.ReconvergeWindow)
	}
	if switched == 0 {
		return fmt.Errorf("kpf status still shows pod %s after %s", old, r.cfg.ReconvergeWindow)
	}
	if updated != nil {
		select {
		case at := <-updated:
			other := firstAnswerFrom(probes, t0, func(who string) bool { return who != oldBackend })
			if other.IsZero() {
				return fmt.Errorf("no connection was served by another backend than %s", oldBackend)
			}
			r.col.add(mFarRecOther, ToolKpf, ms(other.Sub(at)))
		default:
			return fmt.Errorf("the EndpointSlice of %s did not drop pod %s within %s", rcService, old, r.cfg.ReconvergeWindow)
		}
	}
	r.col.add(mRecBack, ToolKpf, ms(back))
	r.col.add(mRecFailed, ToolKpf, float64(failed))
	r.col.add(mRecSwitch, ToolKpf, ms(switched))
	r.log.Info("reconvergence", "tool", ToolKpf, "failed", failed, "backMs", ms(back), "statusMs", ms(switched))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reconvergeKubectl starts kubectl on the 2-replica service, deletes the
// pod it serves, waits for kubectl to exit and restarts it at once, as a
// wrapper script would; it watches the local port all along.
func (r *runner) reconvergeKubectl(ctx context.Context, tool Tool, websocket bool, port int, describe bool) error {
	if err := waitEndpoints(ctx, r.client, mainNamespace, rcService, "rc", 2, 2*time.Minute); err != nil {
		return err
	}
	pairs := [][2]int{{port, 80}}
	k, err := startKubectl(ctx, r.kubeconfig, mainNamespace, rcService, websocket, pairs, r.log)
	if err != nil {
		return err
	}
	defer func() { k.stop() }()
	old, err := r.rcPodBehind(ctx, addr(port))
	if err != nil {
		return err
	}
	pr := startProber(ctx, addr(port), r.cfg.ProbeInterval)
	defer pr.stop()
	time.Sleep(5 * r.cfg.ProbeInterval)
	t0 := time.Now()
	if err := deletePod(ctx, r.client, mainNamespace, old); err != nil {
		return err
	}
	const exitWait = 30 * time.Second
	select {
	case <-k.done:
	case <-time.After(exitWait):
		return fmt.Errorf("kubectl still runs %s after its pod was deleted", exitWait)
	case <-ctx.Done():
		return ctx.Err()
	}
	exitAfter := k.exited.Sub(t0)
	if describe {
		r.note("%s exits when its pod is deleted (after %.0f ms; status %v); its last words: %q",
			tool, ms(exitAfter), k.err, testsupport.LastLines(k.stderr.String(), 1))
	}
	restart := time.Now()
	k, err = startKubectl(ctx, r.kubeconfig, mainNamespace, rcService, websocket, pairs, r.log)
	if err != nil {
		return fmt.Errorf("restart kubectl: %w", err)
	}
	restartTook := time.Since(restart)
	// Watch until a probe succeeds after the restart, or 10 s.
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(r.cfg.ProbeInterval) {
		if _, _, ok := recovery(pr.snapshot(), t0); ok {
			if ps := pr.snapshot(); len(ps) > 0 && ps[len(ps)-1].err == nil && ps[len(ps)-1].start.After(restart) {
				break
			}
		}
	}
	failed, back, ok := recovery(pr.stop(), t0)
	if !ok {
		return fmt.Errorf("%d connections failed and none succeeded through the restarted kubectl", failed)
	}
	r.col.add(mRecBack, tool, ms(back))
	r.col.add(mRecFailed, tool, float64(failed))
	r.col.add(mRecExit, tool, ms(exitAfter))
	r.col.add(mRecRestart, tool, ms(restartTook))
	r.log.Info("reconvergence", "tool", tool, "failed", failed, "backMs", ms(back), "exitMs", ms(exitAfter), "restartMs", ms(restartTook))
	return nil
}

// firstFailure is the error of the first failed probe started at t0 or
// later.
func firstFailure(probes []probe, t0 time.Time) error {
	for _, p := range probes {
		if p.err != nil && !p.start.Before(t0) {
			return p.err
		}
	}
	return nil
}

// firstAnswerFrom is when the first probe started at t0 or later that a
// backend accepted by match answered ended; zero if none did.
func firstAnswerFrom(probes []probe, t0 time.Time, match func(who string) bool) time.Time {
	var first time.Time
	for _, p := range probes {
		if p.err == nil && !p.start.Before(t0) && match(p.who) && (first.IsZero() || p.end.Before(first)) {
			first = p.end
		}
	}
	return first
}

// watchLeaves watches, with kubeconfig's credentials and path to the API
// server, the EndpointSlices of service svc in ns, and sends the time of
// the first update in which pod is no longer a ready endpoint; it watches
// until ctx ends.
func watchLeaves(ctx context.Context, kubeconfig, ns, svc, pod string) (<-chan time.Time, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	w, err := client.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, fmt.Errorf("watch the EndpointSlices of %s/%s: %w", ns, svc, err)
	}
	out := make(chan time.Time, 1)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			slice, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			ready := false
			for _, ep := range slice.Endpoints {
				if ep.TargetRef != nil && ep.TargetRef.Name == pod && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					ready = true
				}
			}
			if !ready {
				out <- time.Now()
				return
			}
		}
	}()
	return out, nil
}

// whoAnswers asks the backend behind addr who it is.
func whoAnswers(ctx context.Context, addr string) (string, error) {
	c, done, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := c.Write([]byte("WHO\n")); err != nil {
		return "", fmt.Errorf("send WHO: %w", err)
	}
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read WHO: %w", ctxErr(ctx, err))
	}
	return strings.TrimSpace(name), nil
}

// rcPodBehind asks the backend behind local who it is and returns the
// pod that the backend serves.
func (r *runner) rcPodBehind(ctx context.Context, local string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	name, err := whoAnswers(ctx, local)
	if err != nil {
		return "", err
	}
	for _, b := range r.be.rc {
		if b.name == name {
			return podServing(ctx, r.client, mainNamespace, "rc", b.port())
		}
	}
	return "", fmt.Errorf("unknown backend %q behind %s", name, local)
}
