package sleepwatch

import (
	"context"
	"testing"
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
			if got := w.observe(tc.jump); got != tc.sleep {
				t.Errorf("observe(%v) = %v, want %v", tc.jump, got, tc.sleep)
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
	w.observe(time.Hour)
	second := w.Woke()
	if !closed(first) || closed(second) {
		t.Fatalf("after one sleep: first closed %v, second closed %v; want true, false", closed(first), closed(second))
	}
	w.observe(time.Hour)
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

func TestRunEndsWithItsContext(t *testing.T) {
	w := New(time.Millisecond, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
