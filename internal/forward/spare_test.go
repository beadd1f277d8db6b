package forward

import (
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// tcpUpstream is a tunnel.Upstream over a loopback TCP connection.
type tcpUpstream struct{ *net.TCPConn }

// parkedTo parks a loopback connection as a spare to pod; the returned
// conn is the pod's end.
func parkedTo(t *testing.T, set *spareSet, pod string) net.Conn {
	t.Helper()
	ours, theirs := testsupport.TCPPair(t)
	set.add(parkedSpare{Parked: tunnel.Park(tcpUpstream{ours}, "ns/"+pod+":80", set.wake), pod: pod})
	return theirs
}

func TestSpareSetTakesTheYoungestToAUsablePod(t *testing.T) {
	set := newSpareSet(4)
	parkedTo(t, set, "a")
	parkedTo(t, set, "b")
	podB2 := parkedTo(t, set, "b")
	parkedTo(t, set, "a")
	onlyB := func(pod string) bool { return pod == "b" }

	up, label, ok := set.take(onlyB)
	if !ok || label != "ns/b:80" {
		t.Fatalf("take = %q, %v; want a spare to b", label, ok)
	}
	defer up.Close()
	// It is the last spare parked to b: what that pod end writes reaches it.
	podB2.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(up, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q, %v from the taken spare; want the youngest spare to b", buf, err)
	}
	if n, l := set.takes.Load(), set.len(); n != 1 || l != 3 {
		t.Fatalf("after one take: takes %d, parked %d; want 1 and 3", n, l)
	}
	select {
	case <-set.changed:
	default:
		t.Fatal("a take did not wake the keeper")
	}
	if _, _, ok := set.take(func(string) bool { return false }); ok {
		t.Fatal("took a spare to a pod that is not usable")
	}
	set.closeAll()
	if _, _, ok := set.take(func(string) bool { return true }); ok {
		t.Fatal("took a spare after closeAll")
	}
}

func TestSpareSetPrune(t *testing.T) {
	set := newSpareSet(3)
	dying := parkedTo(t, set, "a")
	gone := parkedTo(t, set, "b")
	parkedTo(t, set, "a")

	dying.Close() // the pod ends this spare at once: a young death
	waitFor(t, set.changed)
	young, learned := set.prune(func(pod string) bool { return pod == "a" })
	if learned != 0 {
		t.Errorf("a young death taught a max age of %s", learned)
	}
	if len(young) != 1 || young[0].pod != "a" {
		t.Fatalf("prune returned %d young deaths, want the one spare to a the pod closed", len(young))
	}
	if set.len() != 1 {
		t.Fatalf("%d spares left, want 1 (the live one to a)", set.len())
	}
	// The spare to b, no longer usable, was closed.
	gone.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := gone.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the pod's end of the pruned spare read %v, want EOF", err)
	}
	if set.settled() {
		t.Fatal("settled with only a fresh spare")
	}
}

// pipeUpstream is an in-memory tunnel.Upstream, which blocks durably in a
// synctest bubble.
type pipeUpstream struct{ net.Conn }

func (pipeUpstream) CloseWrite() error { return nil }

// pipedTo is parkedTo over an in-memory connection.
func pipedTo(set *spareSet, pod string) net.Conn {
	ours, theirs := net.Pipe()
	set.add(parkedSpare{Parked: tunnel.Park(pipeUpstream{ours}, "ns/"+pod+":80", set.wake), pod: pod})
	return theirs
}

// In a synctest bubble, time stands still until every goroutine waits:
// the ages below are exact.
func TestSpareSetLearnsTheServersIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := newSpareSet(3)
		closing := pipedTo(set, "a")
		old := pipedTo(set, "a")
		pipedTo(set, "a")
		// As if the first two were parked 4 s and 3.5 s ago.
		set.parked[0].Since = time.Now().Add(-4 * time.Second)
		set.parked[1].Since = time.Now().Add(-3500 * time.Millisecond)
		if !set.nextExpiry().IsZero() {
			t.Fatal("spares expire before the pod closed any")
		}
		closing.Close() // the server's idle timeout, after 4 s
		<-set.changed
		young, learned := set.prune(func(string) bool { return true })
		if len(young) != 0 {
			t.Fatalf("a spare that lived 4 s counted as a young death")
		}
		if learned != 3*time.Second {
			t.Fatalf("learned max age %s, want 3/4 of 4 s", learned)
		}
		// The spare parked 3.5 s ago is past the max age: closed and removed.
		if set.len() != 1 {
			t.Fatalf("%d spares left, want 1 (the fresh one)", set.len())
		}
		if _, err := old.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("the expired spare's pod end read %v, want EOF", err)
		}
		if at := set.nextExpiry(); time.Until(at) != 3*time.Second {
			t.Fatalf("next expiry in %v, want 3 s (the fresh spare's max age)", time.Until(at))
		}
		set.closeAll()
	})
}

func waitFor(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
}

func TestSpareRetry(t *testing.T) {
	for _, tt := range []struct {
		failures int
		want     time.Duration
	}{
		{1, 250 * time.Millisecond},
		{2, 500 * time.Millisecond},
		{3, time.Second},
		{8, 30 * time.Second},
		{100, 30 * time.Second},
	} {
		if got := spareRetry(tt.failures); got != tt.want {
			t.Errorf("spareRetry(%d) = %s, want %s", tt.failures, got, tt.want)
		}
	}
}
