package bench

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/linksim"
)

// Metric ids of a run over a simulated link (--link).
const (
	mFarSeqP50   = "far-seq-p50"
	mFarSeqP99   = "far-seq-p99"
	mFarConcP50  = "far-conc-p50"
	mFarConcP99  = "far-conc-p99"
	mFarIdle     = "far-idle-first"
	mFarHTTPKA   = "far-http-keepalive"
	mFarHTTPNew  = "far-http-no-keepalive"
	mFarStart1   = "far-start-1"
	mFarStartN   = "far-start-n"
	mFarRecOther = "far-reconverge-other"
)

// farTools are the tools a link run compares, in the report's order.
func farTools() []Tool { return []Tool{ToolDirect, ToolKpf, ToolKpfSPDY, ToolSPDY, ToolWS} }

// farRatioPairs are a link run's ratio columns: each kpf against the
// kubectl on its transport and the other, and kpf against no tunnel.
func farRatioPairs() []ratioPair {
	return []ratioPair{{ToolKpf, ToolWS}, {ToolKpf, ToolSPDY}, {ToolKpfSPDY, ToolSPDY}, {ToolKpf, ToolDirect}}
}

// farApp names the i-th deployment and service of the start-up
// measurement.
func farApp(i int) string { return fmt.Sprintf("far-%02d", i) }

// defineFarMetrics declares a link run's metrics.
func (r *runner) defineFarMetrics() {
	c := r.cfg
	lat := "Connection setup: connect → first byte of PONG"
	start := "Start → serving: the tool started → a connection through every forward answered"
	rec := "Reconvergence: delete the serving pod of 2 replicas"
	for _, d := range []metricDef{
		{mFarSeqP50, lat, fmt.Sprintf("p50, sequential (%d connections)", c.Conns), "ms", false},
		{mFarSeqP99, lat, fmt.Sprintf("p99, sequential (%d connections)", c.Conns), "ms", false},
		{mFarConcP50, lat, fmt.Sprintf("p50, %d concurrent", c.Concurrency), "ms", false},
		{mFarConcP99, lat, fmt.Sprintf("p99, %d concurrent", c.Concurrency), "ms", false},
		{mFarIdle, lat, fmt.Sprintf("first connection after %s idle", c.ColdIdle), "ms", false},
		{mFarHTTPKA, "HTTP", fmt.Sprintf("GET, keep-alive, %d workers", c.HTTPWorkers), "req/s", true},
		{mFarHTTPNew, "HTTP", fmt.Sprintf("GET, new connection each, %d workers", c.HTTPWorkers), "req/s", true},
		{mFarStart1, start, "1 forward", "ms", false},
		{mFarStartN, start, fmt.Sprintf("%d forwards to %d pods (kubectl: %d processes started together)", c.FarForwards, c.FarForwards, c.FarForwards), "ms", false},
		{mRecBack, rec, "delete → first successful connection after the last failed one", "ms", false},
		{mRecFailed, rec, "failed connections (a dial every " + c.ProbeInterval.String() + ")", "count", false},
		{mRecSwitch, rec, "delete → kpf status shows another ready pod", "ms", false},
		{mFarRecOther, rec, "EndpointSlice update at kpf's end of the link → first connection served by the other pod", "ms", false},
		{mRecExit, rec, "delete → kubectl exits", "ms", false},
		{mRecRestart, rec, "restarted kubectl: start → forwarding", "ms", false},
	} {
		r.col.define(d)
	}
}

// farLinks is the simulated network of a link run: one link in front of
// the API server, which every tool's kubeconfig points at, and one in
// front of each backend for direct, the same distance away.
type farLinks struct {
	server     *linksim.Server
	kubeconfig string
	sink, http *linksim.Link
}

func (l *farLinks) close() {
	if l.server != nil {
		l.server.Close()
	}
}

// startLinks builds and starts toxiproxy and the links of profile p.
func (r *runner) startLinks(ctx context.Context, p linksim.Profile) (*farLinks, error) {
	l := &farLinks{}
	r.log.Info("building toxiproxy (tools/go.mod)")
	bin, err := linksim.Build(ctx, r.cfg.Repo, r.tmp)
	if err != nil {
		return l, err
	}
	if l.server, err = linksim.Start(ctx, bin); err != nil {
		return l, err
	}
	cfg, err := clientcmd.LoadFromFile(r.kubeconfig)
	if err != nil {
		return l, fmt.Errorf("load kubeconfig %s: %w", r.kubeconfig, err)
	}
	for name, cl := range cfg.Clusters {
		u, err := url.Parse(cl.Server)
		if err != nil {
			return l, fmt.Errorf("kubeconfig cluster %s: %w", name, err)
		}
		api, err := l.server.Link(ctx, "api-"+name, u.Host, p)
		if err != nil {
			return l, err
		}
		u.Host = api.Addr()
		cl.Server = u.String()
	}
	l.kubeconfig = filepath.Join(r.tmp, "kubeconfig-"+p.Name)
	if err := clientcmd.WriteToFile(*cfg, l.kubeconfig); err != nil {
		return l, fmt.Errorf("write the link's kubeconfig: %w", err)
	}
	if l.sink, err = l.server.Link(ctx, "direct-sink", r.be.sink.addr(), p); err != nil {
		return l, err
	}
	if l.http, err = l.server.Link(ctx, "direct-http", r.be.http.addr(), p); err != nil {
		return l, err
	}
	return l, nil
}

// far runs every measurement of a link run, each tool reaching the API
// server (and direct the backend) over the simulated link.
func (r *runner) far(ctx context.Context) error {
	p, err := linksim.ProfileNamed(r.cfg.Link)
	if err != nil {
		return err
	}
	links, err := r.startLinks(ctx, p)
	defer links.close()
	if err != nil {
		return err
	}
	r.note("link %s: toxiproxy adds %s each way to every chunk of data, in order (the jitter, if any, is ±half of the profile's each way); "+
		"it accepts a TCP connection itself and then connects upstream, so a TCP handshake costs no round trip here, for every tool alike, and the round trips counted below come after it",
		p, p.RTT/2)
	direct := r.kubeconfig
	r.kubeconfig = links.kubeconfig
	defer func() { r.kubeconfig = direct }()

	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"connection setup and HTTP", func(ctx context.Context) error { return r.farTunnels(ctx, links) }},
		{"start → serving", r.farStart},
		{"reconvergence", r.reconvergence},
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Info("phase", "name", s.name, "link", p.Name)
		if err := s.run(ctx); err != nil {
			r.log.Error("phase failed", "name", s.name, "err", err)
			r.failures = append(r.failures, fmt.Sprintf("%s: %v", s.name, oneLine(err.Error())))
		}
	}
	return nil
}

// farTunnels measures connection setup and HTTP, the tools alternating
// in each round as in the loopback run.
func (r *runner) farTunnels(ctx context.Context, links *farLinks) error {
	ts := &tunnelSet{}
	defer ts.stop()
	ports, err := freePorts(8)
	if err != nil {
		return err
	}
	kpf, err := r.readyKpf(ctx, "far", nil, kpfForward{
		Name: "sink", Namespace: mainNamespace, Service: mainService,
		Ports: []string{fmt.Sprintf("%d:80", ports[0]), fmt.Sprintf("%d:8080", ports[1])},
	})
	if err != nil {
		return err
	}
	ts.stops = append(ts.stops, kpf.stop)
	kpfSPDY, err := r.readyKpf(ctx, "far-spdy", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}, kpfForward{
		Name: "sink-spdy", Namespace: mainNamespace, Service: mainService,
		Ports: []string{fmt.Sprintf("%d:80", ports[2]), fmt.Sprintf("%d:8080", ports[6])},
	})
	if err != nil {
		return err
	}
	ts.stops = append(ts.stops, kpfSPDY.stop)
	ts.targets = []*target{
		{tool: ToolDirect, sink: links.sink.Addr(), http: links.http.Addr(), pid: func() int { return 0 }, stop: func() {}},
		{tool: ToolKpf, sink: addr(ports[0]), http: addr(ports[1]), pid: kpf.pid, stop: func() {}, ensure: running("kpf up", kpf)},
		{tool: ToolKpfSPDY, sink: addr(ports[2]), http: addr(ports[6]), pid: kpfSPDY.pid, stop: func() {}, ensure: running("kpf up (spdy)", kpfSPDY)},
		r.kubectlTarget(ToolSPDY, false, ports[3], ports[4]),
		r.kubectlTarget(ToolWS, true, ports[5], ports[7]),
	}
	c := r.cfg
	measures := []measure{
		{name: "latency, sequential", metrics: []string{mFarSeqP50, mFarSeqP99},
			run: func(ctx context.Context, t *target) error { return r.latency(ctx, t, mFarSeqP50, mFarSeqP99, 1, 0) }},
		{name: "latency, concurrent", metrics: []string{mFarConcP50, mFarConcP99},
			run: func(ctx context.Context, t *target) error {
				return r.latency(ctx, t, mFarConcP50, mFarConcP99, c.Concurrency, 0)
			}},
		{name: "HTTP, keep-alive", metrics: []string{mFarHTTPKA}, http: true,
			run: func(ctx context.Context, t *target) error { return r.http(ctx, t, mFarHTTPKA, true) }},
		{name: "HTTP, no keep-alive", metrics: []string{mFarHTTPNew}, http: true,
			run: func(ctx context.Context, t *target) error { return r.http(ctx, t, mFarHTTPNew, false) }},
		// Every tool sits idle, then makes one connection: what a
		// developer meets coming back to a forward left open.
		{name: "first connection after idle", metrics: []string{mFarIdle},
			run: func(ctx context.Context, t *target) error {
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				d, err := ping(pctx, t.sink)
				if err != nil {
					return err
				}
				r.col.add(mFarIdle, t.tool, ms(d))
				return nil
			},
			before: func(ctx context.Context) error {
				r.log.Info("every tool idle before the first connection", "for", c.ColdIdle)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(c.ColdIdle):
					return nil
				}
			}},
	}
	return r.measureRounds(ctx, ts.targets, measures)
}

// farStart measures start → serving for 1 forward and for
// cfg.FarForwards forwards to as many pods, each tool in turn, each
// round.
func (r *runner) farStart(ctx context.Context) error {
	n := r.cfg.FarForwards
	for i := range n {
		app := farApp(i)
		if err := createDeployment(ctx, r.client, mainNamespace, app, 1, podTemplate(app, fmt.Sprint(r.be.sink.port()), 0)); err != nil {
			return err
		}
		if err := createService(ctx, r.client, mainNamespace, app, app, map[int32]string{80: "sink"}); err != nil {
			return err
		}
	}
	for i := range n {
		if err := waitEndpoints(ctx, r.client, mainNamespace, farApp(i), farApp(i), 1, 2*time.Minute); err != nil {
			return err
		}
	}
	tools := []Tool{ToolKpf, ToolKpfSPDY, ToolSPDY, ToolWS}
	for round := range r.cfg.Rounds {
		for _, count := range []int{1, n} {
			id := mFarStart1
			if count > 1 {
				id = mFarStartN
			}
			for i := range tools {
				tool := tools[(i+round)%len(tools)]
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.log.Info("measure", "round", round+1, "what", "start → serving", "forwards", count, "tool", tool)
				d, err := r.startServing(ctx, tool, count)
				if err != nil {
					r.log.Warn("measurement failed", "round", round+1, "what", "start → serving", "tool", tool, "err", err)
					r.col.fail(id, tool, fmt.Errorf("round %d: %w", round+1, err))
					continue
				}
				r.col.add(id, tool, ms(d))
				r.log.Info("start → serving", "tool", tool, "forwards", count, "ms", ms(d))
			}
		}
	}
	return nil
}

// startServing starts tool with count forwards, to the services far-00
// on, and returns the time from the start until a connection through
// every one of them has answered; the tool is stopped before it returns.
func (r *runner) startServing(ctx context.Context, tool Tool, count int) (time.Duration, error) {
	ports, err := freePorts(count)
	if err != nil {
		return 0, err
	}
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	start := time.Now()
	switch tool {
	case ToolKpf, ToolKpfSPDY:
		var fwds []kpfForward
		for i, port := range ports {
			fwds = append(fwds, kpfForward{Name: farApp(i), Namespace: mainNamespace, Service: farApp(i), Ports: []string{fmt.Sprintf("%d:80", port)}})
		}
		cfgPath, err := writeKpfConfig(filepath.Join(r.tmp, fmt.Sprintf("start-%s-%d", tool, count)), r.cfg.Cluster, fwds)
		if err != nil {
			return 0, err
		}
		var env []string
		if tool == ToolKpfSPDY {
			env = []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}
		}
		start = time.Now()
		kpf, err := startKpf(ctx, r.kpfBin, cfgPath, r.kubeconfig, env)
		if err != nil {
			return 0, err
		}
		stops = append(stops, kpf.stop)
	case ToolSPDY, ToolWS:
		start = time.Now()
		for i, port := range ports {
			args := []string{"--kubeconfig", r.kubeconfig, "-n", mainNamespace, "port-forward", "svc/" + farApp(i), fmt.Sprintf("%d:80", port)}
			env := []string{fmt.Sprintf("KUBECTL_PORT_FORWARD_WEBSOCKETS=%t", tool == ToolWS)}
			p, err := startProc(ctx, "kubectl port-forward", env, "kubectl", args...)
			if err != nil {
				return 0, err
			}
			stops = append(stops, p.stop)
		}
	default:
		return 0, fmt.Errorf("no start-up measurement for %s", tool)
	}
	// Each port is tried until a PONG comes back; a refused connection
	// (kubectl not listening yet) is retried at once.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	served := make([]time.Duration, count)
	errs := make([]error, count)
	for i, port := range ports {
		wg.Go(func() {
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := ping(pctx, addr(port))
				pcancel()
				if err == nil {
					served[i] = time.Since(start)
					return
				}
				errs[i] = err
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for i := range served {
		if served[i] == 0 {
			return 0, fmt.Errorf("forward %s never served within 2m: %w", farApp(i), errs[i])
		}
	}
	return slices.Max(served), nil
}

// linkRoundTrips is the table of round trips the report derives from
// the link run's times: each median over the link's round-trip time.
func linkRoundTrips(rep *Report) string {
	if rep.Link == nil || rep.Link.RTTMillis <= 0 {
		return ""
	}
	rtt := rep.Link.RTTMillis
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Round trips (median ÷ %s RTT)\n\n| metric |", formatValue(rtt)+" ms")
	for _, t := range farTools() {
		fmt.Fprintf(&b, " %s |", t)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(farTools())) + "\n")
	for _, m := range rep.Metrics {
		if m.Unit != "ms" {
			continue
		}
		fmt.Fprintf(&b, "| %s |", m.Name)
		for _, t := range farTools() {
			if s, ok := m.Results[t]; ok && len(s.Values) > 0 {
				fmt.Fprintf(&b, " %.1f |", s.Median/rtt)
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
