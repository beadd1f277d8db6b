package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

func snapshot() []forward.Status {
	var h tunnel.Histogram
	h.Observe(300 * time.Microsecond)
	h.Observe(3 * time.Millisecond)
	h.Observe(2 * time.Second)
	return []forward.Status{
		{Name: "api", State: forward.StateReady, Sessions: 2, Ports: []forward.PortStatus{
			{Local: "127.0.0.1:8080", Connections: 1, Accepted: 3, Failed: 1, BytesIn: 100, BytesOut: 2000, Spares: 2, SparesTaken: 1, Dial: h.Snapshot()},
		}},
		{Name: "db", State: forward.StateFailed},
	}
}

func TestMetricsFollowConventionsAndValues(t *testing.T) {
	c := collector{status: snapshot}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP kpf_forward_up Whether the forward is ready: listening with a live session to a ready pod (1) or not (0).
# TYPE kpf_forward_up gauge
kpf_forward_up{forward="api"} 1
kpf_forward_up{forward="db"} 0
# HELP kpf_forward_bytes_total Bytes carried, by direction: to_pod (from local clients) or from_pod.
# TYPE kpf_forward_bytes_total counter
kpf_forward_bytes_total{direction="from_pod",forward="api",local="127.0.0.1:8080"} 2000
kpf_forward_bytes_total{direction="to_pod",forward="api",local="127.0.0.1:8080"} 100
# HELP kpf_forward_spare_connections Spare connections open to the pod, ready for the next clients (the forward's spare field).
# TYPE kpf_forward_spare_connections gauge
kpf_forward_spare_connections{forward="api",local="127.0.0.1:8080"} 2
# HELP kpf_forward_spare_connections_taken_total Accepted connections that were given a spare connection rather than opening their stream.
# TYPE kpf_forward_spare_connections_taken_total counter
kpf_forward_spare_connections_taken_total{forward="api",local="127.0.0.1:8080"} 1
# HELP kpf_forward_dial_duration_seconds How long accepted connections waited for their stream to a pod.
# TYPE kpf_forward_dial_duration_seconds histogram
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.0005"} 1
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.001"} 1
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.0025"} 1
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.005"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.01"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.025"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.05"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.1"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.25"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="0.5"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="1"} 2
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="2.5"} 3
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="5"} 3
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="10"} 3
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="30"} 3
kpf_forward_dial_duration_seconds_bucket{forward="api",local="127.0.0.1:8080",le="+Inf"} 3
kpf_forward_dial_duration_seconds_sum{forward="api",local="127.0.0.1:8080"} 2.0033
kpf_forward_dial_duration_seconds_count{forward="api",local="127.0.0.1:8080"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "kpf_forward_up", "kpf_forward_bytes_total", "kpf_forward_spare_connections", "kpf_forward_spare_connections_taken_total", "kpf_forward_dial_duration_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(c, "kpf_forward_state"); got != 2*len(states) {
		t.Errorf("kpf_forward_state has %d series, want %d", got, 2*len(states))
	}
}
