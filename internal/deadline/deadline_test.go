package deadline

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Deadline
		if d.Passed() {
			t.Fatal("a zero Deadline has passed")
		}
		// A wait that began with no deadline ends when one is set in the
		// past (net.Conn: SetReadDeadline unblocks a blocked Read).
		waiting := d.Expired()
		d.Set(time.Now().Add(-time.Second))
		select {
		case <-waiting:
		default:
			t.Fatal("setting a past deadline did not end a wait begun before")
		}
		// Clearing it makes I/O possible again.
		d.Set(time.Time{})
		if d.Passed() {
			t.Fatal("a cleared deadline has passed")
		}
		// A future deadline passes at its time, not before.
		start := time.Now()
		d.Set(start.Add(100 * time.Millisecond))
		<-d.Expired()
		if got := time.Since(start); got != 100*time.Millisecond {
			t.Errorf("passed after %s, want 100ms", got)
		}
		// Moving a deadline later before it passes: the wait begun
		// before goes on to the new time.
		d.Set(time.Now().Add(50 * time.Millisecond))
		waiting = d.Expired()
		d.Set(time.Now().Add(time.Second))
		start = time.Now()
		<-waiting
		if got := time.Since(start); got != time.Second {
			t.Errorf("after moving the deadline, passed after %s, want 1s", got)
		}
	})
}
