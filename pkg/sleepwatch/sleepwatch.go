// Package sleepwatch notices that the machine slept: the monotonic clock
// stops during a suspend and the wall clock does not, so a gap between them
// means every tunnel may be dead. One Watcher serves a whole process: a
// per-forward clock would wake each of hundreds of forwards every couple of
// seconds for nothing.
package sleepwatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/kpf-dev/kpf/pkg/broadcast"
)

// Defaults of New.
const (
	// DefaultInterval is how often the clocks are compared.
	DefaultInterval = 2 * time.Second
	// DefaultThreshold is the gap between the clocks that counts as a
	// sleep. Scheduling delays and NTP slews stay far below it.
	DefaultThreshold = 3 * time.Second
)

// Watcher compares the wall and monotonic clocks while it runs and
// announces each sleep it detects. Its methods are safe for concurrent
// use.
type Watcher struct {
	interval  time.Duration
	threshold time.Duration
	log       *slog.Logger
	woke      broadcast.Changes
}

// New returns a Watcher that compares the clocks every interval and counts
// a gap above threshold as a sleep; zero values mean the defaults.
func New(interval, threshold time.Duration, log *slog.Logger) *Watcher {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{interval: interval, threshold: threshold, log: log}
}

// Woke returns a channel closed at the next sleep detected. Take it before
// looking at the state it guards, as with broadcast.Changes.
func (w *Watcher) Woke() <-chan struct{} { return w.woke.Next() }

// Run compares the clocks until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			w.observe(Jump(last, now))
			last = now
		}
	}
}

// observe announces a sleep if jump, the wall clock's lead over the
// monotonic clock since the last comparison, is above the threshold.
func (w *Watcher) observe(jump time.Duration) bool {
	if jump <= w.threshold {
		return false
	}
	w.log.Info("clock jumped (the machine slept?); probing every tunnel", "jump", jump.Round(time.Second))
	w.woke.Notify()
	return true
}

// Jump is how much more wall-clock time than monotonic time passed between
// two readings of time.Now.
func Jump(prev, now time.Time) time.Duration {
	return now.Round(0).Sub(prev.Round(0)) - now.Sub(prev)
}
