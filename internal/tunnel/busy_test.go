package tunnel

import (
	"context"
	"testing"
	"time"
)

// Busy tells a session that carries data from one that is idle or whose
// writes are stuck behind a pod that stopped reading.
func TestSessionBusy(t *testing.T) {
	s := newSession(podA, newFakeConn(), "fake", nil)
	defer s.Close()
	before := time.Now()
	if s.Busy(before) {
		t.Error("a new session is busy")
	}
	c, err := s.Dial(context.Background(), 80)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if !s.Busy(before) {
		t.Error("not busy after a write since")
	}
	if s.Busy(time.Now().Add(time.Second)) {
		t.Error("busy with no traffic since")
	}
	// A write in progress since before t, none finished since: stuck,
	// even if data was read since.
	s.writing.Add(1)
	t0 := time.Now().Add(time.Millisecond)
	s.lastMoved.Store(t0.Add(time.Millisecond).UnixNano())
	if s.Busy(t0) {
		t.Error("busy while a write is stuck")
	}
	s.lastWrote.Store(t0.Add(time.Millisecond).UnixNano())
	if !s.Busy(t0) {
		t.Error("not busy though writes finish while another is in progress")
	}
}
