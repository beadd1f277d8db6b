package sleepwatch

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

var t0 = time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)

// reading is a reading of the clocks, wall seconds after t0 and mono
// seconds after the monotonic origin.
func reading(wall, mono time.Duration) Reading {
	return Reading{Wall: t0.Add(wall), Mono: mono}
}

// jumped returns two readings an interval apart on the monotonic clock,
// with the wall clock jump ahead of it.
func jumped(interval, jump time.Duration) (Reading, Reading) {
	return reading(0, 0), reading(interval+jump, interval)
}

func TestSlept(t *testing.T) {
	const interval, threshold = 2 * time.Second, 3 * time.Second
	for _, tc := range []struct {
		name      string
		prev, now Reading
		lost      time.Duration
		slept     bool
	}{
		{"on time", reading(0, 0), reading(interval, interval), 0, false},
		{"scheduling delay", reading(0, 0), reading(interval+200*time.Millisecond, interval+200*time.Millisecond), 200 * time.Millisecond, false},
		{"NTP slew", reading(0, 0), reading(interval+time.Millisecond, interval), time.Millisecond, false},
		{"wall clock stepped back", reading(0, 0), reading(interval-time.Hour, interval), 0, false},
		{"late by the threshold", reading(0, 0), reading(interval+threshold, interval+threshold), threshold, false},
		// Linux, macOS: the monotonic clock stopped while asleep.
		{"suspend, monotonic clock stopped", reading(0, 0), reading(10*time.Minute+interval, interval), 10 * time.Minute, true},
		// Windows: it ran on, and the tick came ten minutes late.
		{"suspend, monotonic clock ran on", reading(0, 0), reading(10*time.Minute, 10*time.Minute), 10*time.Minute - interval, true},
		{"later readings", reading(time.Hour, time.Hour), reading(time.Hour+5*time.Minute, time.Hour+5*time.Minute), 5*time.Minute - interval, true},
		{"wall clock stepped ahead", reading(0, 0), reading(time.Hour+interval, interval), time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost, slept := Slept(tc.prev, tc.now, interval, threshold)
			if lost != tc.lost || slept != tc.slept {
				t.Errorf("Slept = %v, %v; want %v, %v", lost, slept, tc.lost, tc.slept)
			}
		})
	}
}

func TestObserveAnnouncesOnlyJumpsAboveTheThreshold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		jump  time.Duration
		sleep bool
	}{
		{"no gap", 0, false},
		{"clock stepped back", -time.Hour, false},
		{"scheduling delay", 200 * time.Millisecond, false},
		{"at the threshold", DefaultThreshold, false},
		{"a suspend", 10 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := New(0, 0, nil)
			woke := w.Woke()
			if got := w.observe(jumped(DefaultInterval, tc.jump)); got != tc.sleep {
				t.Errorf("observe(jump %v) = %v, want %v", tc.jump, got, tc.sleep)
			}
			if closed(woke) != tc.sleep {
				t.Errorf("Woke channel closed = %v after a jump of %v, want %v", closed(woke), tc.jump, tc.sleep)
			}
		})
	}
}

func TestEachSleepWakesTheWaitersOfThatSleepOnly(t *testing.T) {
	w := New(0, 0, nil)
	first := w.Woke()
	w.observe(jumped(DefaultInterval, time.Hour))
	second := w.Woke()
	if !closed(first) || closed(second) {
		t.Fatalf("after one sleep: first closed %v, second closed %v; want true, false", closed(first), closed(second))
	}
	w.observe(jumped(DefaultInterval, time.Hour))
	if !closed(second) {
		t.Fatal("the second sleep did not wake the waiter that came after the first")
	}
}

func TestJumpOfReadingsWithoutASleepIsNearZero(t *testing.T) {
	prev := time.Now()
	time.Sleep(20 * time.Millisecond)
	// Wall and monotonic clocks advance together here; an NTP slew moves
	// them apart by far less than a millisecond over 20 ms.
	if j := Jump(prev, time.Now()); j < -time.Millisecond || j > time.Millisecond {
		t.Fatalf("Jump over 20 ms of ordinary time = %v, want about 0", j)
	}
}

func TestClockReaderOfOrdinaryTimeShowsNoSleep(t *testing.T) {
	read := clockReader()
	prev := read()
	time.Sleep(20 * time.Millisecond)
	now := read()
	if now.Mono-prev.Mono < 20*time.Millisecond {
		t.Fatalf("monotonic readings %v then %v, 20 ms apart", prev.Mono, now.Mono)
	}
	if lost, slept := Slept(prev, now, 20*time.Millisecond, DefaultThreshold); slept {
		t.Fatalf("20 ms of ordinary time counted as a sleep losing %v", lost)
	}
}

// Run reads the clocks when each tick arrives: a tick that comes long
// after it was due (Windows, where the monotonic clock runs on during a
// suspend) is a sleep.
func TestRunAnnouncesALateTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		w := New(interval, 0, nil)
		readings := []Reading{
			reading(0, 0),               // when Run starts
			reading(interval, interval), // first tick, on time
			reading(interval+time.Hour, interval+time.Hour), // second tick, an hour late
		}
		w.read = func() Reading {
			r := readings[0]
			readings = readings[1:]
			return r
		}
		woke := w.Woke()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()

		time.Sleep(interval)
		synctest.Wait()
		if closed(woke) {
			t.Fatal("a tick on time was taken for a sleep")
		}
		time.Sleep(interval)
		synctest.Wait()
		if !closed(woke) {
			t.Fatal("a tick an hour late was not taken for a sleep")
		}
		cancel()
		<-done
	})
}

func TestRunEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Millisecond, 0, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		time.Sleep(10 * time.Millisecond) // ten ticks of the bubble's clock
		cancel()
		synctest.Wait()
		if !closed(done) {
			t.Fatal("Run did not return after its context ended")
		}
	})
}
