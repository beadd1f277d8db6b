package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scale runs one kpf up with cfg.ScaleForwards forwards spread over
// cfg.ScaleNamespaces namespaces, all backed by one loopback server, and
// records the time to all ready, the memory and the idle CPU.
func (r *runner) scale(ctx context.Context) error {
	fwds, ports, err := r.scaleServices(ctx)
	if err != nil {
		return err
	}
	n := len(fwds)
	cfgPath, err := writeKpfConfig(filepath.Join(r.tmp, "scale"), r.cfg.Cluster, fwds)
	if err != nil {
		return err
	}
	mport, err := freePorts(1)
	if err != nil {
		return err
	}
	metricsAddr := addr(mport[0])
	start := time.Now()
	kpf, err := startKpf(ctx, r.kpfBin, cfgPath, r.kubeconfig, nil, "--metrics-addr", metricsAddr)
	if err != nil {
		return err
	}
	defer kpf.stop()
	if err := kpf.waitReady(ctx, n, 100*time.Millisecond, 5*time.Minute); err != nil {
		return err
	}
	ready := time.Since(start)
	r.col.add(mScaleReady, ToolKpf, ready.Seconds())
	r.log.Info("scale: all ready", "forwards", n, "after", ready)
	// A few forwards must answer.
	for _, i := range []int{0, n / 2, n - 1} {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := ping(pctx, addr(ports[i]))
		cancel()
		if err != nil {
			return fmt.Errorf("forward %s: %w", fwds[i].Name, err)
		}
	}
	return r.measureIdle(ctx, kpf, metricsAddr)
}

// scaleServices creates the scale phase's namespaces, deployments and
// services, waits for their endpoints, and returns a forward to each,
// on the local ports returned.
func (r *runner) scaleServices(ctx context.Context) ([]kpfForward, []int, error) {
	n, nss := r.cfg.ScaleForwards, r.cfg.ScaleNamespaces
	per := (n + nss - 1) / nss
	var fwds []kpfForward
	ports, err := freePorts(n)
	if err != nil {
		return nil, nil, err
	}
	for i := range nss {
		ns := scaleNamespace(i)
		if err := freshNamespace(ctx, r.client, ns, r.log); err != nil {
			return nil, nil, err
		}
		if err := createDeployment(ctx, r.client, ns, scaleApp, 1, podTemplate(scaleApp, fmt.Sprint(r.be.scale.port()), 0)); err != nil {
			return nil, nil, err
		}
		for j := 0; j < per && len(fwds) < n; j++ {
			svc := fmt.Sprintf("s%03d", j)
			if err := createService(ctx, r.client, ns, svc, scaleApp, map[int32]string{80: "sink"}); err != nil {
				return nil, nil, err
			}
			fwds = append(fwds, kpfForward{Name: ns + "-" + svc, Namespace: ns, Service: svc, Ports: []string{fmt.Sprintf("%d:80", ports[len(fwds)])}})
		}
	}
	// Wait for every service's endpoints, so that the timing is kpf's.
	r.log.Info("waiting for the scale services' endpoints", "services", n)
	for i := range nss {
		ns := scaleNamespace(i)
		want := min(per, n-i*per)
		err := poll(ctx, 3*time.Minute, "endpoints of the services in "+ns, func(ctx context.Context) (bool, error) {
			slices, err := r.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			ready := map[string]bool{}
			for _, s := range slices.Items {
				for _, ep := range s.Endpoints {
					if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
						ready[s.Labels["kubernetes.io/service-name"]] = true
					}
				}
			}
			return len(ready) >= want, nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return fwds, ports, nil
}

// measureIdle records kpf's memory and threads once ready, then its CPU
// use, memory, goroutines and heap after an idle window.
func (r *runner) measureIdle(ctx context.Context, kpf *kpfProc, metricsAddr string) error {
	before, err := readProc(kpf.pid())
	if err != nil {
		return err
	}
	r.col.add(mScaleRSS, ToolKpf, float64(before.RSSKiB)/1024)
	r.col.add(mScaleThr, ToolKpf, float64(before.Threads))
	r.log.Info("scale: measuring idle CPU", "window", r.cfg.ScaleIdle)
	idleStart := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.cfg.ScaleIdle):
	}
	after, err := readProc(kpf.pid())
	if err != nil {
		return err
	}
	cpu := float64(after.CPUTicks-before.CPUTicks) / clockTicks / time.Since(idleStart).Seconds() * 100
	r.col.add(mScaleIdle, ToolKpf, cpu)
	r.col.add(mScaleRSSIdle, ToolKpf, float64(after.RSSKiB)/1024)
	gm, err := scrapeGauges(ctx, metricsAddr, "go_goroutines", "go_memstats_heap_inuse_bytes")
	if err != nil {
		r.col.fail(mScaleGor, ToolKpf, err)
		r.col.fail(mScaleHeap, ToolKpf, err)
	} else {
		r.col.add(mScaleGor, ToolKpf, gm["go_goroutines"])
		r.col.add(mScaleHeap, ToolKpf, gm["go_memstats_heap_inuse_bytes"]/(1<<20))
	}
	r.log.Info("scale", "rssMiB", before.RSSKiB/1024, "rssIdleMiB", after.RSSKiB/1024, "threads", before.Threads,
		"idleCPU%", cpu, "goroutines", gm["go_goroutines"], "heapInuseMiB", gm["go_memstats_heap_inuse_bytes"]/(1<<20))
	return nil
}

// scrapeGauges reads the named unlabelled gauges from the Prometheus text
// exposition at http://addr/metrics.
func scrapeGauges(ctx context.Context, addr string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape kpf metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape kpf metrics: %w", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("kpf metric %s: %w", name, err)
		}
		out[name] = v
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("kpf metrics lack %s", n)
		}
	}
	return out, nil
}
