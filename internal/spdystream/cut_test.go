package spdystream

import (
	"errors"
	"testing"
	"time"
)

// waitFor polls cond every millisecond until it holds, for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
	}
}

// readerWaiting reports whether the connection's reader waits for room in
// a queue.
func readerWaiting(c *Connection) bool {
	qs := c.frameQueues.Load()
	if qs == nil {
		return false
	}
	for _, q := range *qs {
		if q.pushWaitingSince.Load() != 0 {
			return true
		}
	}
	return false
}

// wedged opens two streams, allowing their cut if allow, and has the
// server send the first more frames than its queue holds while nothing
// reads them, until the connection's reader waits behind them.
func wedged(t *testing.T, allow bool) (*Connection, []*Stream, []*Stream) {
	t.Helper()
	cc, client, server := pairOfStreams(t, 2)
	if client[0].streamId%FRAME_WORKERS == client[1].streamId%FRAME_WORKERS {
		t.Fatalf("streams %d and %d share a queue", client[0].streamId, client[1].streamId)
	}
	if allow {
		for _, st := range client {
			st.AllowCut()
		}
	}
	go func() {
		for range QUEUE_SIZE + 5 {
			if _, err := server[0].Write(make([]byte, 1024)); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the connection's reader to wait behind the stuck stream", func() bool { return readerWaiting(cc) })
	return cc, client, server
}

// A stream that does not allow it (the Go Dialer's, read by application
// code) is not cut, however long it holds up the others.
func TestCutStuckStreamsOnlyWhereAllowed(t *testing.T) {
	cc, _, _ := wedged(t, false)
	// A wait of 0: every stream that holds up the reader at all counts.
	if n := cc.CutStuckStreams(0); n != 0 {
		t.Fatalf("cut %d streams that did not allow it", n)
	}
}

// A stream whose reader takes nothing while its frames fill its queue and
// then hold up the connection's reader is cut; the other stream's frames
// flow again, and the cut stream's reads say why they ended.
func TestCutStuckStreamsFreesTheOthers(t *testing.T) {
	cc, client, server := wedged(t, true)
	stuck, other := client[0], client[1]
	got := make(chan string, 1)
	go func() {
		b, err := other.ReadData()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	go server[1].Write([]byte("other"))
	if n := cc.CutStuckStreams(time.Hour); n != 0 {
		t.Fatalf("cut %d streams before they were stuck for the wait", n)
	}
	// wedged saw the connection's reader wait behind the stuck stream, so
	// nothing reaches the other stream until the cut.
	if n := cc.CutStuckStreams(0); n != 1 {
		t.Fatalf("cut %d streams, want the stuck one", n)
	}
	select {
	case g := <-got:
		if g != "other" {
			t.Fatalf("the other stream read %q", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other stream still got nothing 10 s after the stuck one was cut")
	}
	if _, err := stuck.Read(make([]byte, 1)); !errors.Is(err, ErrStreamCut) {
		t.Fatalf("the cut stream's read returned %v, want ErrStreamCut", err)
	}
}

// A reader that stops while nothing waits behind its frames holds up no
// one, and is left alone however long it stays away.
func TestCutStuckStreamsLeavesAStreamThatHoldsUpNoOne(t *testing.T) {
	cc, client, server := pairOfStreams(t, 2)
	client[0].AllowCut()
	for range 3 {
		if _, err := server[0].Write(make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a worker to wait for the stopped reader", func() bool { return client[0].deliverySince.Load() != 0 })
	if n := cc.CutStuckStreams(0); n != 0 {
		t.Fatalf("cut %d streams; none held up another", n)
	}
	// The other stream works, and the stopped one has all its frames.
	go server[1].Write([]byte("other"))
	if b, err := client[1].ReadData(); err != nil || string(b) != "other" {
		t.Fatalf("the other stream read %q, %v", b, err)
	}
	for i := range 3 {
		if b, err := client[0].ReadData(); err != nil || len(b) != 1024 {
			t.Fatalf("frame %d: %d bytes, %v", i, len(b), err)
		}
	}
}
