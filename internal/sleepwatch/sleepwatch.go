// Package sleepwatch notices that the machine slept, so that every tunnel,
// which may be dead after a suspend, gets probed. One Watcher serves a
// whole process: a per-forward clock would wake each of hundreds of
// forwards every couple of seconds for nothing.
//
// A suspend shows in one of two ways, depending on the system's monotonic
// clock. Where it stops during a suspend (Linux's CLOCK_MONOTONIC, macOS's
// mach_absolute_time), the wall clock gets ahead of it. Where it goes on
// (Windows, whose interrupt time counts the time asleep), both clocks agree,
// but the tick that was due during the suspend arrives long after it was
// scheduled. The Watcher looks for both.
package sleepwatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
)

// Defaults of New.
const (
	// DefaultInterval is how often the clocks are compared.
	DefaultInterval = 2 * time.Second
	// DefaultThreshold is the gap between the clocks, or the lateness of
	// a tick, that counts as a sleep. Scheduling delays and NTP slews stay
	// far below it.
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
	// read reads the clocks; tests replace it.
	read func() Reading
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
	return &Watcher{interval: interval, threshold: threshold, log: log, read: clockReader()}
}

// Woke returns a channel closed at the next sleep detected. Take it before
// looking at the state it guards, as with broadcast.Changes.
func (w *Watcher) Woke() <-chan struct{} { return w.woke.Next() }

// Run compares the clocks until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	prev := w.read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// Read the clocks now rather than take the tick's time: the
			// ticker dates a late tick back to when it was due, which
			// would hide the lateness.
			now := w.read()
			w.observe(prev, now)
			prev = now
		}
	}
}

// observe announces a sleep if the readings prev and now, taken an
// interval apart, show one. It reports whether it did.
func (w *Watcher) observe(prev, now Reading) bool {
	gap, slept := Slept(prev, now, w.interval, w.threshold)
	if !slept {
		return false
	}
	w.log.Info("clock jumped (the machine slept, or kpf was stopped?); probing every tunnel", "jump", gap.Round(time.Second))
	w.woke.Notify()
	return true
}

// Reading is one reading of both clocks.
type Reading struct {
	// Wall is the wall clock, without a monotonic reading.
	Wall time.Time
	// Mono is the monotonic clock, from an arbitrary origin.
	Mono time.Duration
}

// clockReader returns a function that reads both clocks, the monotonic one
// as the time since the call to clockReader.
func clockReader() func() Reading {
	origin := time.Now()
	return func() Reading {
		now := time.Now()
		return Reading{Wall: now.Round(0), Mono: now.Sub(origin)}
	}
}

// Slept reports whether the machine slept between the readings prev and
// now, taken by a clock that ticks every interval, and how much time it
// lost: the larger of the wall clock's lead over the monotonic clock (a
// monotonic clock that stopped during the sleep) and how much later than
// the interval now came on the monotonic clock (one that ran on). Only a
// loss above threshold counts; a wall clock stepped back counts as none.
func Slept(prev, now Reading, interval, threshold time.Duration) (lost time.Duration, slept bool) {
	mono := now.Mono - prev.Mono
	jump := now.Wall.Sub(prev.Wall) - mono
	late := mono - interval
	lost = max(jump, late, 0)
	return lost, lost > threshold
}

// Jump is how much more wall-clock time than monotonic time passed between
// two readings of time.Now.
func Jump(prev, now time.Time) time.Duration {
	return now.Round(0).Sub(prev.Round(0)) - now.Sub(prev)
}
