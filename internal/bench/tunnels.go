package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
	"github.com/kpf-dev/kpf/pkg/dialer"
)

// Metric ids.
const (
	mDown1        = "download-1"
	mUp1          = "upload-1"
	mDownN        = "download-n"
	mUpN          = "upload-n"
	mCPUDown1     = "cpu-download-1"
	mCPUUp1       = "cpu-upload-1"
	mCPUFwd       = "cpu-per-gib-forwarder"
	mCPUAPI       = "cpu-per-gib-apiserver"
	mCPUAgent     = "cpu-per-gib-agent"
	mCPUBench     = "cpu-per-gib-bench"
	mSeqP50       = "latency-seq-p50"
	mSeqP99       = "latency-seq-p99"
	mConcP50      = "latency-conc-p50"
	mConcP99      = "latency-conc-p99"
	mColdP50      = "latency-cold-p50"
	mColdP99      = "latency-cold-p99"
	mPacedP50     = "latency-paced-p50"
	mPacedP99     = "latency-paced-p99"
	mHTTPKA       = "http-keepalive"
	mHTTPNoKA     = "http-no-keepalive"
	mRSS1         = "rss-one-forward"
	mCPUTotal     = "cpu-total"
	mRecBack      = "reconverge-back"
	mRecFailed    = "reconverge-failed"
	mRecSwitch    = "reconverge-status"
	mRecExit      = "reconverge-kubectl-exit"
	mRecRestart   = "reconverge-kubectl-restart"
	mScaleReady   = "scale-ready"
	mScaleRSS     = "scale-rss"
	mScaleThr     = "scale-threads"
	mScaleIdle    = "scale-idle-cpu"
	mScaleRSSIdle = "scale-rss-idle"
	mScaleGor     = "scale-goroutines"
	mScaleHeap    = "scale-heap"
)

func (r *runner) defineMetrics() {
	c := r.cfg
	n := strconv.Itoa(c.Streams)
	tp, lat, res := "Throughput", "Connection setup: connect → first byte of PONG", "HTTP and resources"
	path := "CPU time per GiB of the 1-stream download, per process on the path (from /proc/PID/stat)"
	for _, d := range []metricDef{
		{mDown1, tp, "download, 1 stream", "MB/s", true},
		{mUp1, tp, "upload, 1 stream", "MB/s", true},
		{mDownN, tp, "download, " + n + " streams", "MB/s", true},
		{mUpN, tp, "upload, " + n + " streams", "MB/s", true},
		{mCPUDown1, tp, "host CPU busy during 1-stream download", "% of all cores", false},
		{mCPUUp1, tp, "host CPU busy during 1-stream upload", "% of all cores", false},
		{mCPUFwd, path, "forwarding process", "CPU-s", false},
		{mCPUAPI, path, "kube-apiserver", "CPU-s", false},
		{mCPUAgent, path, "node agent (the kubelet's port-forward code)", "CPU-s", false},
		{mCPUBench, path, "benchmark process (client and backend)", "CPU-s", false},
		{mSeqP50, lat, "p50, sequential", "ms", false},
		{mSeqP99, lat, "p99, sequential", "ms", false},
		{mConcP50, lat, "p50, " + strconv.Itoa(c.Concurrency) + " concurrent", "ms", false},
		{mConcP99, lat, "p99, " + strconv.Itoa(c.Concurrency) + " concurrent", "ms", false},
		{mColdP50, lat, fmt.Sprintf("p50, %d concurrent, first burst after %s idle", c.Concurrency, c.ColdIdle), "ms", false},
		{mColdP99, lat, fmt.Sprintf("p99, %d concurrent, first burst after %s idle", c.Concurrency, c.ColdIdle), "ms", false},
		{mPacedP50, lat, fmt.Sprintf("p50, paced (%d connections, one every %s)", pacedConns(c), pace), "ms", false},
		{mPacedP99, lat, fmt.Sprintf("p99, paced (%d connections, one every %s)", pacedConns(c), pace), "ms", false},
		{mHTTPKA, res, "HTTP GET, keep-alive, " + strconv.Itoa(c.HTTPWorkers) + " workers", "req/s", true},
		{mHTTPNoKA, res, "HTTP GET, new connection each, " + strconv.Itoa(c.HTTPWorkers) + " workers", "req/s", true},
		{mRSS1, res, "RSS of the forwarding process after the runs", "MiB", false},
		{mCPUTotal, res, "CPU time of the forwarding process over the runs", "s", false},
		{mRecBack, "Reconvergence: delete the serving pod of 2 replicas", "delete → first successful connection after the last failed one", "ms", false},
		{mRecFailed, "Reconvergence: delete the serving pod of 2 replicas", "failed connections (a dial every " + c.ProbeInterval.String() + ")", "count", false},
		{mRecSwitch, "Reconvergence: delete the serving pod of 2 replicas", "delete → kpf status shows another ready pod", "ms", false},
		{mRecExit, "Reconvergence: delete the serving pod of 2 replicas", "delete → kubectl exits", "ms", false},
		{mRecRestart, "Reconvergence: delete the serving pod of 2 replicas", "restarted kubectl: start → forwarding", "ms", false},
		{mScaleReady, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "kpf up → all ready", "s", false},
		{mScaleRSS, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "RSS when all ready", "MiB", false},
		{mScaleThr, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "OS threads when all ready", "count", false},
		{mScaleIdle, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "idle CPU over " + c.ScaleIdle.String(), "% of one core", false},
		{mScaleRSSIdle, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "RSS after the idle window", "MiB", false},
		{mScaleHeap, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "Go heap in use after the idle window", "MiB", false},
		{mScaleGor, fmt.Sprintf("Scale: %d forwards in %d namespaces (kpf only)", c.ScaleForwards, c.ScaleNamespaces), "goroutines after the idle window", "count", false},
	} {
		r.col.define(d)
	}
}

// target is one way to reach the main backend: its local addresses and,
// for a tunnel, the process behind them.
type target struct {
	tool       Tool
	sink, http string
	// dial connects to http when set (the Go Dialer); nil is a plain TCP
	// dial.
	dial dialFunc
	// httpOnly targets take part in the HTTP measurements only and have
	// no process of their own.
	httpOnly bool
	// only, if set, names the measurements the target takes part in.
	only map[string]bool
	// partial targets take part in some measurements only (see only):
	// their process's RSS and CPU time compare with no other's.
	partial bool
	// ensure (re)starts the process if it is gone; nil for direct.
	ensure func(context.Context) error
	// pid returns the process id, 0 for none.
	pid func() int
	// exitedCPU adds up the CPU seconds of the processes that exited.
	exitedCPU float64
	restarts  int
	stop      func()
}

// tunnels runs the throughput, latency and HTTP measurements, alternating
// the tools within each round.
func (r *runner) tunnels(ctx context.Context) error {
	ts, err := r.startTunnels(ctx)
	defer ts.stop()
	if err != nil {
		return err
	}
	if err := r.measureRounds(ctx, ts.targets, r.tunnelMeasures()); err != nil {
		return err
	}
	r.noteSentAhead(ctx, ts.kpf)
	r.noteSpares(ctx, ts.kpfSpare)
	r.recordProcesses(ts.targets[1:])
	return nil
}

// tunnelSet is every tool the throughput, latency and HTTP measurements
// compare, started; targets[0] is direct.
type tunnelSet struct {
	kpf, kpfSpare *kpfProc
	targets       []*target
	stops         []func()
}

func (ts *tunnelSet) stop() {
	for _, t := range ts.targets {
		t.stop()
	}
	for _, stop := range slices.Backward(ts.stops) {
		stop()
	}
}

// startTunnels starts the kpf processes and every other tool. On error
// the returned set holds what started, for the caller to stop.
func (r *runner) startTunnels(ctx context.Context) (*tunnelSet, error) {
	ts := &tunnelSet{}
	ports, err := freePorts(11)
	if err != nil {
		return ts, err
	}
	kpf, err := r.readyKpf(ctx, "tunnels", nil, kpfForward{
		Name: "sink", Namespace: mainNamespace, Service: mainService,
		Ports: []string{fmt.Sprintf("%d:80", ports[0]), fmt.Sprintf("%d:8080", ports[1])},
	})
	if err != nil {
		return ts, err
	}
	ts.kpf = kpf
	ts.stops = append(ts.stops, kpf.stop)
	// kpf-spare runs in a process of its own, so that neither shares the
	// other's sessions, CPU time or memory.
	kpfSpare, err := r.readyKpf(ctx, "spare", nil, kpfForward{
		Name: spareForward, Namespace: mainNamespace, Service: mainService,
		Ports: []string{fmt.Sprintf("%d:80", ports[6]), fmt.Sprintf("%d:8080", ports[7])},
		Spare: SpareConnections,
	})
	if err != nil {
		return ts, err
	}
	ts.kpfSpare = kpfSpare
	ts.stops = append(ts.stops, kpfSpare.stop)
	// kpf-spdy: kpf on the transport kubectl-spdy uses, so that each
	// kubectl has a like-for-like kpf to compare with.
	kpfSPDY, err := r.readyKpf(ctx, "spdy", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}, kpfForward{
		Name: "sink-spdy", Namespace: mainNamespace, Service: mainService,
		Ports: []string{fmt.Sprintf("%d:80", ports[8])},
	})
	if err != nil {
		return ts, err
	}
	ts.stops = append(ts.stops, kpfSPDY.stop)
	relayPorts := ports[9:11]
	kpfRelay, err := r.readyKpf(ctx, "relay", nil, kpfForward{
		Name: "sink-relay", Namespace: mainNamespace, Host: "127.0.0.1",
		Ports: []string{fmt.Sprintf("%d:%d", relayPorts[0], r.be.sink.port()), fmt.Sprintf("%d:%d", relayPorts[1], r.be.http.port())},
	})
	if err != nil {
		return ts, err
	}
	ts.stops = append(ts.stops, kpfRelay.stop)
	ts.targets = []*target{
		{tool: ToolDirect, sink: r.be.sink.addr(), http: r.be.http.addr(), pid: func() int { return 0 }, stop: func() {}},
		{tool: ToolKpf, sink: addr(ports[0]), http: addr(ports[1]), pid: kpf.pid, stop: func() {},
			ensure: running("kpf up", kpf)},
		{tool: ToolKpfSpare, sink: addr(ports[6]), http: addr(ports[7]), pid: kpfSpare.pid, stop: func() {}, partial: true,
			only: map[string]bool{"latency, sequential": true, "latency, paced": true, "latency, concurrent": true, "latency, first burst": true,
				"HTTP, keep-alive": true, "HTTP, no keep-alive": true},
			ensure: running("kpf up (spare)", kpfSpare)},
		{tool: ToolKpfSPDY, sink: addr(ports[8]), pid: kpfSPDY.pid, stop: func() {}, partial: true,
			only: map[string]bool{"download, 1 stream": true, "upload, 1 stream": true, "download, parallel": true, "upload, parallel": true,
				"latency, sequential": true, "latency, paced": true, "latency, concurrent": true, "latency, first burst": true},
			ensure: running("kpf up (spdy)", kpfSPDY)},
		{tool: ToolKpfRelay, sink: addr(relayPorts[0]), http: addr(relayPorts[1]), pid: kpfRelay.pid, stop: func() {}, partial: true,
			only: map[string]bool{"download, 1 stream": true, "upload, 1 stream": true,
				"latency, sequential": true, "latency, concurrent": true, "HTTP, keep-alive": true, "HTTP, no keep-alive": true},
			ensure: running("kpf up (relay)", kpfRelay)},
		r.kubectlTarget(ToolSPDY, false, ports[2], ports[3]),
		r.kubectlTarget(ToolWS, true, ports[4], ports[5]),
	}
	for _, useSPDY := range []bool{false, true} {
		if mt, err := r.minimalTarget(ctx, useSPDY); err != nil {
			r.log.Warn("minimal forwarder", "spdy", useSPDY, "err", err)
			r.col.fail(mDown1, map[bool]Tool{false: ToolMinimal, true: ToolMinimalSPDY}[useSPDY], err)
		} else {
			ts.targets = append(ts.targets, mt)
		}
	}
	if dt, err := r.dialerTarget(); err != nil {
		r.log.Warn("dialer", "err", err)
		r.col.fail(mHTTPKA, ToolDialer, err)
		r.col.fail(mHTTPNoKA, ToolDialer, err)
	} else {
		ts.targets = append(ts.targets, dt)
	}
	return ts, nil
}

// measure is one measurement of the tunnels' rounds.
type measure struct {
	name string
	run  func(context.Context, *target) error
	// before, if set, runs once per round before the measurement.
	before func(context.Context) error
	// metrics are the report's rows it fills, failed together.
	metrics []string
	// repeats is how many runs per round, when more than one.
	repeats int
	// http: it includes the HTTP-only targets.
	http bool
}

// tunnelMeasures lists the measurements in the order each round runs
// them.
func (r *runner) tunnelMeasures() []measure {
	c := r.cfg
	return []measure{
		{name: "download, 1 stream", metrics: []string{mDown1, mCPUDown1, mCPUFwd, mCPUAPI, mCPUAgent, mCPUBench},
			run: func(ctx context.Context, t *target) error {
				return r.throughput(ctx, t, mDown1, mCPUDown1, 1, false, true)
			}},
		{name: "upload, 1 stream", metrics: []string{mUp1, mCPUUp1},
			run: func(ctx context.Context, t *target) error { return r.throughput(ctx, t, mUp1, mCPUUp1, 1, true, false) }},
		{name: "download, parallel", metrics: []string{mDownN},
			run: func(ctx context.Context, t *target) error {
				return r.throughput(ctx, t, mDownN, "", c.Streams, false, false)
			}},
		{name: "upload, parallel", metrics: []string{mUpN},
			run: func(ctx context.Context, t *target) error {
				return r.throughput(ctx, t, mUpN, "", c.Streams, true, false)
			}},
		{name: "latency, sequential", metrics: []string{mSeqP50, mSeqP99},
			run: func(ctx context.Context, t *target) error { return r.latency(ctx, t, mSeqP50, mSeqP99, 1, 0) }},
		{name: "latency, paced", metrics: []string{mPacedP50, mPacedP99},
			run: func(ctx context.Context, t *target) error { return r.latency(ctx, t, mPacedP50, mPacedP99, 1, pace) }},
		// The concurrent p99 is the 20th-slowest of 2,000 connections, set
		// by pauses of whatever shares the two cores: more runs per round
		// make its median steadier.
		{name: "latency, concurrent", metrics: []string{mConcP50, mConcP99}, repeats: c.ConcRepeats,
			run: func(ctx context.Context, t *target) error {
				return r.latency(ctx, t, mConcP50, mConcP99, c.Concurrency, 0)
			}},
		// The same burst once every tool has sat idle for c.ColdIdle,
		// longer than kpf keeps the extra sessions of a pod it no longer
		// uses (tunnel.ExtraSessionIdle): what a load test, or a page
		// opening 32 connections, meets when it starts.
		{name: "latency, first burst", metrics: []string{mColdP50, mColdP99},
			run: func(ctx context.Context, t *target) error {
				return r.latency(ctx, t, mColdP50, mColdP99, c.Concurrency, 0)
			},
			before: func(ctx context.Context) error {
				r.log.Info("every tool idle before the first-burst latency", "for", c.ColdIdle)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(c.ColdIdle):
					return nil
				}
			}},
		{name: "HTTP, keep-alive", metrics: []string{mHTTPKA}, http: true,
			run: func(ctx context.Context, t *target) error { return r.http(ctx, t, mHTTPKA, true) }},
		{name: "HTTP, no keep-alive", metrics: []string{mHTTPNoKA}, http: true,
			run: func(ctx context.Context, t *target) error { return r.http(ctx, t, mHTTPNoKA, false) }},
	}
}

// measureRounds runs every measurement for every target, c.Rounds
// times, rotating the order each run so that no tool always goes first.
func (r *runner) measureRounds(ctx context.Context, targets []*target, measures []measure) error {
	for round := range r.cfg.Rounds {
		for _, m := range measures {
			if m.before != nil {
				if err := m.before(ctx); err != nil {
					return err
				}
			}
			for rep := range max(m.repeats, 1) {
				for i := range targets {
					t := targets[(i+round+rep)%len(targets)]
					if t.httpOnly && !m.http || t.only != nil && !t.only[m.name] {
						continue
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
					r.measureOne(ctx, round, m, t)
				}
			}
		}
	}
	return nil
}

// measureOne runs m once for t, recording a failure to run it.
func (r *runner) measureOne(ctx context.Context, round int, m measure, t *target) {
	err := error(nil)
	if t.ensure != nil {
		err = t.ensure(ctx)
	}
	if err == nil {
		r.log.Info("measure", "round", round+1, "what", m.name, "tool", t.tool)
		err = m.run(ctx, t)
	}
	if err != nil {
		r.log.Warn("measurement failed", "round", round+1, "what", m.name, "tool", t.tool, "err", err)
		for _, id := range m.metrics {
			r.col.fail(id, t.tool, fmt.Errorf("round %d: %w", round+1, err))
		}
	}
}

// recordProcesses records the memory and CPU time of the targets' own
// processes at the end of the runs.
func (r *runner) recordProcesses(targets []*target) {
	for _, t := range targets {
		if t.httpOnly || t.partial {
			continue // no process of its own, or not every measurement
		}
		if t.restarts > 0 {
			r.note("%s exited and was restarted %d times during the throughput/latency/HTTP runs; its CPU time adds up every process", t.tool, t.restarts)
		}
		pid := t.pid()
		if pid == 0 {
			r.col.fail(mRSS1, t.tool, errors.New("not running at the end"))
			continue
		}
		st, err := readProc(pid)
		if err != nil {
			r.col.fail(mRSS1, t.tool, err)
			continue
		}
		r.col.add(mRSS1, t.tool, float64(st.RSSKiB)/1024)
		r.col.add(mCPUTotal, t.tool, t.exitedCPU+float64(st.CPUTicks)/clockTicks)
	}
}

// running returns a target's ensure function for a kpf process that is
// not restarted: it fails once the process has exited.
func running(what string, k *kpfProc) func(context.Context) error {
	return func(context.Context) error {
		if !k.alive() {
			return fmt.Errorf("%s exited: %v", what, k.err)
		}
		return nil
	}
}

// readyKpf runs kpf up with the one forward fwd, from a forwards.yaml in
// the directory name of the run's temporary directory, with env added to
// its environment, and waits until the forward is ready. The caller stops
// it.
func (r *runner) readyKpf(ctx context.Context, name string, env []string, fwd kpfForward) (*kpfProc, error) {
	cfgPath, err := writeKpfConfig(filepath.Join(r.tmp, name), r.cfg.Cluster, []kpfForward{fwd})
	if err != nil {
		return nil, err
	}
	kpf, err := startKpf(ctx, r.kpfBin, cfgPath, r.kubeconfig, env)
	if err != nil {
		return nil, err
	}
	if err := kpf.waitReady(ctx, 1, 100*time.Millisecond, time.Minute); err != nil {
		kpf.stop()
		return nil, err
	}
	return kpf, nil
}

// noteSentAhead notes how many of kpf's connections sent their client's
// first bytes along with the frames that opened their streams (the
// others had sent nothing yet when the frames went out).
func (r *runner) noteSentAhead(ctx context.Context, kpf *kpfProc) {
	snap, err := kpf.status(ctx)
	if err != nil {
		r.log.Warn("connections sent ahead", "err", err)
		return
	}
	for _, f := range snap.Forwards {
		for _, p := range f.Ports {
			if p.Accepted == 0 {
				continue
			}
			r.note("kpf, remote port %s: %d of %d connections (%.0f%%) sent the client's first bytes with the frames that opened their streams",
				p.Remote, p.SentAhead, p.Accepted, 100*float64(p.SentAhead)/float64(p.Accepted))
		}
	}
}

// spareForward is the name of the kpf forward with spare connections.
const spareForward = "sink-spare"

// noteSpares notes how many of the kpf-spare connections found a spare
// connection ready (the others opened their streams as usual).
func (r *runner) noteSpares(ctx context.Context, kpf *kpfProc) {
	snap, err := kpf.status(ctx)
	if err != nil {
		r.log.Warn("spare connections", "err", err)
		return
	}
	for _, f := range snap.Forwards {
		if f.Name != spareForward {
			continue
		}
		for _, p := range f.Ports {
			if p.Accepted == 0 {
				continue
			}
			r.note("kpf-spare (spare: %d), remote port %s: %d of %d connections (%.0f%%) took a spare connection; the others opened their streams as kpf does",
				SpareConnections, p.Remote, p.SparesTaken, p.Accepted, 100*float64(p.SparesTaken)/float64(p.Accepted))
		}
	}
}

// dialerTarget is the Go Dialer in this process, reaching the main
// service's HTTP port by its cluster name; its stop closes the Dialer.
func (r *runner) dialerTarget() (*target, error) {
	d, err := dialer.New(dialer.Options{Kubeconfig: r.kubeconfig, DefaultContext: r.cfg.Cluster,
		Namespaces: []string{mainNamespace}, Logger: r.log.With("component", "dialer")})
	if err != nil {
		return nil, fmt.Errorf("dialer: %w", err)
	}
	host := fmt.Sprintf("%s.%s.svc.cluster.local:%d", mainService, mainNamespace, mainHTTPPort)
	return &target{
		tool:     ToolDialer,
		http:     host,
		dial:     d.DialContext,
		httpOnly: true,
		pid:      func() int { return 0 },
		// One connection outside the measured window, so that the
		// informers and the pod's session start before it, as kubectl
		// and kpf start before theirs.
		ensure: func(ctx context.Context) error {
			c, err := d.DialContext(ctx, "tcp", host)
			if err != nil {
				return err
			}
			return c.Close()
		},
		stop: func() {
			if err := d.Close(); err != nil {
				r.log.Warn("close the dialer", "err", err)
			}
		},
	}, nil
}

// minimalTarget is the minimal forwarder (see minimalForwarder), in a
// process of its own (kpf-bench minimal-forwarder), to the main backend's
// pod on WebSocket or, with useSPDY, SPDY, for the single-stream
// download.
func (r *runner) minimalTarget(ctx context.Context, useSPDY bool) (*target, error) {
	tool := ToolMinimal
	if useSPDY {
		tool = ToolMinimalSPDY
	}
	pod, err := runningPod(ctx, r.client, mainNamespace, mainApp)
	if err != nil {
		return nil, fmt.Errorf("minimal forwarder: %w", err)
	}
	p, sink, err := startMinimalProc(ctx, r.self, r.kubeconfig, mainNamespace, pod, sinkContainerPort, useSPDY)
	if err != nil {
		return nil, err
	}
	r.log.Debug("minimal forwarder listening", "tool", tool, "addr", sink, "pid", p.pid())
	return &target{
		tool: tool, sink: sink, pid: p.pid, partial: true,
		only: map[string]bool{"download, 1 stream": true},
		ensure: func(context.Context) error {
			if !p.alive() {
				return fmt.Errorf("the minimal forwarder exited: %v: %s", p.err, testsupport.LastLines(p.stderr.String(), 3))
			}
			return nil
		},
		stop: p.stop,
	}, nil
}

// mainHTTPPort is the main service's HTTP port.
const mainHTTPPort = 8080

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// kubectlTarget is a kubectl port-forward to the main service, started on
// first use and restarted whenever it has exited.
func (r *runner) kubectlTarget(tool Tool, websocket bool, sinkPort, httpPort int) *target {
	var k *kubectlProc
	t := &target{tool: tool, sink: addr(sinkPort), http: addr(httpPort)}
	t.pid = func() int {
		if k == nil || !k.alive() {
			return 0
		}
		return k.pid()
	}
	t.stop = func() {
		if k != nil {
			k.stop()
		}
	}
	t.ensure = func(ctx context.Context) error {
		if k != nil && k.alive() {
			return nil
		}
		if k != nil {
			t.restarts++
			t.exitedCPU += (k.cmd.ProcessState.UserTime() + k.cmd.ProcessState.SystemTime()).Seconds()
			r.log.Warn("kubectl exited; restarting it", "tool", tool, "stderr", testsupport.LastLines(k.stderr.String(), 3))
		}
		var err error
		k, err = startKubectl(ctx, r.kubeconfig, mainNamespace, mainService, websocket, [][2]int{{sinkPort, 80}, {httpPort, 8080}}, r.log)
		return err
	}
	return t
}

// throughput moves cfg.Size bytes over streams connections and records
// MB/s under id, if cpuID is set the host's busy CPU share, and with
// perProcess the CPU time per GiB of each process on the path.
func (r *runner) throughput(ctx context.Context, t *target, id, cpuID string, streams int, up, perProcess bool) error {
	// Generous: 1 MB/s plus a minute.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.Size/1e6)*time.Second+time.Minute)
	defer cancel()
	before, err := hostCPU()
	if err != nil {
		return err
	}
	var procs []pathProcess
	var procsBefore, procsAfter []float64
	if perProcess {
		procs = r.pathProcesses(t)
		procsBefore = cpuSeconds(procs)
	}
	mbps, err := transfer(ctx, t.sink, r.cfg.Size, streams, up)
	if err != nil {
		return err
	}
	if perProcess {
		procsAfter = cpuSeconds(procs)
	}
	after, err := hostCPU()
	if err != nil {
		return err
	}
	r.col.add(id, t.tool, mbps)
	if cpuID != "" {
		r.col.add(cpuID, t.tool, busyPercent(before, after))
	}
	if perProcess {
		gib := float64(r.cfg.Size) / (1 << 30)
		for i, p := range procs {
			if p.pid == 0 {
				continue // direct has no forwarder
			}
			b, a := procsBefore[i], procsAfter[i]
			replaced := i == 0 && t.pid() != p.pid // kubectl exited
			if b < 0 || a < 0 || replaced {
				r.note("%s: no CPU time per GiB for %s in one round (process %d gone or replaced)", t.tool, p.metric, p.pid)
				continue
			}
			r.col.add(p.metric, t.tool, (a-b)/gib)
		}
	}
	r.log.Info("throughput", "tool", t.tool, "metric", id, "MB/s", math.Round(mbps*10)/10)
	return nil
}

// pathProcess is a process on a transfer's path and the metric its CPU
// time per GiB goes to.
type pathProcess struct {
	pid    int
	metric string
}

// pathProcesses returns the processes on t's path: its forwarder first
// (pid 0 for none), the API server, the node agent and this process.
func (r *runner) pathProcesses(t *target) []pathProcess {
	fwd := 0
	if t.pid != nil {
		fwd = t.pid()
	}
	return []pathProcess{{fwd, mCPUFwd}, {r.apiPID, mCPUAPI}, {r.agentPID, mCPUAgent}, {os.Getpid(), mCPUBench}}
}

// cpuSeconds returns the CPU time of each process, -1 where it cannot
// be read.
func cpuSeconds(procs []pathProcess) []float64 {
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i] = -1
		if p.pid == 0 {
			continue
		}
		if st, err := readProc(p.pid); err == nil {
			out[i] = float64(st.CPUTicks) / clockTicks
		}
	}
	return out
}

// latency records p50 and p99 of cfg.Conns PINGs, concurrency at a time.
// pace is the wait between two connections of the paced latency
// measurement: a client that connects now and then, as a person or a
// tool does, rather than back to back.
const pace = 20 * time.Millisecond

// pacedConns is how many connections the paced measurement makes.
func pacedConns(c *Config) int { return min(c.Conns, 300) }

// latency records the p50 and p99 of connect → first byte over cfg.Conns
// connections, concurrency at a time; with every > 0, pacedConns
// connections, each waiting every after the one before.
func (r *runner) latency(ctx context.Context, t *target, p50, p99 string, concurrency int, every time.Duration) error {
	n := r.cfg.Conns
	if every > 0 {
		n = pacedConns(r.cfg)
	}
	res := latency(ctx, t.sink, n, concurrency, every)
	if res.Failed > 0 {
		r.note("%s: %d of %d connections failed (%d concurrent); first error: %v", t.tool, res.Failed, n, concurrency, res.FirstErr)
	}
	if len(res.Sorted) == 0 || res.Failed*10 > n {
		return fmt.Errorf("%d of %d connections failed: %w", res.Failed, n, res.FirstErr)
	}
	r.col.add(p50, t.tool, Percentile(res.Sorted, 50))
	r.col.add(p99, t.tool, Percentile(res.Sorted, 99))
	r.log.Info("latency", "tool", t.tool, "concurrency", concurrency, "p50ms", Percentile(res.Sorted, 50), "p99ms", Percentile(res.Sorted, 99))
	return nil
}

// http records the request rate through t.
func (r *runner) http(ctx context.Context, t *target, id string, keepAlive bool) error {
	rate, failed, err := httpRate(ctx, t.dial, t.http, r.cfg.HTTPWorkers, r.cfg.HTTPDuration, keepAlive)
	if failed > 0 {
		r.note("%s: %d HTTP requests failed (keep-alive %t)", t.tool, failed, keepAlive)
	}
	if err != nil {
		return err
	}
	r.col.add(id, t.tool, rate)
	r.log.Info("http", "tool", t.tool, "keepAlive", keepAlive, "req/s", math.Round(rate))
	return nil
}
