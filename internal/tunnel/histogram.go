package tunnel

import (
	"math"
	"sync/atomic"
	"time"
)

// dialBuckets are the upper bounds, in seconds, of Histogram's buckets:
// from a warm session's sub-millisecond stream open to a connection that
// waited for a pod to become ready.
var dialBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Histogram counts durations into dialBuckets without locks, so that the
// connection path pays a few atomic adds. The zero value is ready to use.
type Histogram struct {
	counts [len(dialBuckets) + 1]atomic.Uint64 // the last is +Inf
	sum    atomic.Uint64                       // float64 bits, seconds
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(dialBuckets) && s > dialBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+s)) {
			return
		}
	}
}

// HistogramSnapshot is a histogram's state at one moment, cumulative per
// bucket as Prometheus expects.
type HistogramSnapshot struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64 // upper bound -> observations at or below it
}

// Snapshot returns the histogram's current counts.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Buckets: make(map[float64]uint64, len(dialBuckets))}
	var cum uint64
	for i, ub := range dialBuckets {
		cum += h.counts[i].Load()
		s.Buckets[ub] = cum
	}
	s.Count = cum + h.counts[len(dialBuckets)].Load()
	s.Sum = math.Float64frombits(h.sum.Load())
	return s
}
