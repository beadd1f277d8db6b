// Package metrics exports kpf's per-forward state and traffic in the
// Prometheus format. It reads the same snapshots kpf status shows when
// scraped, so the connection path pays nothing for it.
package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/httpserve"
)

// states lists every state kpf_forward_state reports, one series each.
var states = [...]forward.State{forward.StateStarting, forward.StateWaiting, forward.StateReady, forward.StateFailed, forward.StateRetrying, forward.StateStopped}

var (
	upDesc = prometheus.NewDesc("kpf_forward_up",
		"Whether the forward is ready: listening with a live session to a ready pod (1) or not (0).",
		[]string{"forward"}, nil)
	stateDesc = prometheus.NewDesc("kpf_forward_state",
		"The forward's state: 1 for the current one, 0 for the others.",
		[]string{"forward", "state"}, nil)
	sessionsDesc = prometheus.NewDesc("kpf_forward_sessions_opened_total",
		"Port-forward sessions the forward has used (forwards to the same pod share them): one at start, one per reconnect or new pod.",
		[]string{"forward"}, nil)
	openDesc = prometheus.NewDesc("kpf_forward_connections_open",
		"Connections open through the local listener.",
		[]string{"forward", "local"}, nil)
	acceptedDesc = prometheus.NewDesc("kpf_forward_connections_total",
		"Connections accepted by the local listener.",
		[]string{"forward", "local"}, nil)
	failedDesc = prometheus.NewDesc("kpf_forward_connection_failures_total",
		"Accepted connections closed because no ready pod could be reached in time.",
		[]string{"forward", "local"}, nil)
	bytesDesc = prometheus.NewDesc("kpf_forward_bytes_total",
		"Bytes carried, by direction: to_pod (from local clients) or from_pod.",
		[]string{"forward", "local", "direction"}, nil)
	sparesDesc = prometheus.NewDesc("kpf_forward_spare_connections",
		"Spare connections open to the pod, ready for the next clients (the forward's spare field).",
		[]string{"forward", "local"}, nil)
	sparesTakenDesc = prometheus.NewDesc("kpf_forward_spare_connections_taken_total",
		"Accepted connections that were given a spare connection rather than opening their stream.",
		[]string{"forward", "local"}, nil)
	sentAheadDesc = prometheus.NewDesc("kpf_forward_connections_sent_ahead_total",
		"Accepted connections whose first bytes went out with the frames that opened their stream, a round trip sooner.",
		[]string{"forward", "local"}, nil)
	dialDesc = prometheus.NewDesc("kpf_forward_dial_duration_seconds",
		"How long accepted connections waited for their stream to a pod.",
		[]string{"forward", "local"}, nil)
)

// collector turns status snapshots into metrics at scrape time.
type collector struct {
	status func() []forward.Status
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, stateDesc, sessionsDesc, openDesc, acceptedDesc, failedDesc, bytesDesc, sparesDesc, sparesTakenDesc, sentAheadDesc, dialDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.status() {
		up := 0.0
		if f.State == forward.StateReady {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, f.Name)
		for _, st := range states {
			v := 0.0
			if f.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, f.Name, string(st))
		}
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.CounterValue, float64(f.Sessions), f.Name)
		for _, p := range f.Ports {
			ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(p.Connections), f.Name, p.Local)
			ch <- prometheus.MustNewConstMetric(acceptedDesc, prometheus.CounterValue, float64(p.Accepted), f.Name, p.Local)
			ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(p.Failed), f.Name, p.Local)
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(p.BytesIn), f.Name, p.Local, "to_pod")
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(p.BytesOut), f.Name, p.Local, "from_pod")
			ch <- prometheus.MustNewConstMetric(sparesDesc, prometheus.GaugeValue, float64(p.Spares), f.Name, p.Local)
			ch <- prometheus.MustNewConstMetric(sparesTakenDesc, prometheus.CounterValue, float64(p.SparesTaken), f.Name, p.Local)
			ch <- prometheus.MustNewConstMetric(sentAheadDesc, prometheus.CounterValue, float64(p.SentAhead), f.Name, p.Local)
			ch <- prometheus.MustNewConstHistogram(dialDesc, p.Dial.Count, p.Dial.Sum, p.Dial.Buckets, f.Name, p.Local)
		}
	}
}

// Registry returns a registry with kpf's forward metrics over status, plus
// the Go runtime and process collectors.
func Registry(status func() []forward.Status) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{status: status}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Serve serves /metrics on addr until ctx is done; with profiling, also
// Go's /debug/pprof/ handlers (for finding where time and memory go).
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, profiling bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := httpserve.Serve(ctx, srv, ln); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
