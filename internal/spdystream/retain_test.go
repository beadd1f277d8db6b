package spdystream

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"weak"
)

// Frames that the reader has taken are garbage once it drops them, even
// after they waited in a full frame queue: Pop must not leave them in the
// queue's backing array (upstream v0.5.1 did, 50 of 60 here).
func TestConsumedFramesAreCollectable(t *testing.T) {
	_, client, server := pairOfStreams(t, 1)
	st, sst := client[0], server[0]
	const frames = QUEUE_SIZE + 10
	var written atomic.Int64
	go func() {
		for range frames {
			if _, err := sst.Write(make([]byte, 32<<10)); err != nil {
				return
			}
			written.Add(1)
		}
	}()
	// Let the stream's queue fill while nothing reads: the writer
	// stops once it is full. (How full it got only decides whether
	// the test could catch the retention, not whether it passes.)
	for last, deadline := int64(-1), time.Now().Add(10*time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		n := written.Load()
		if n == last && n >= QUEUE_SIZE {
			break
		}
		last = n
	}
	var taken []weak.Pointer[byte]
	for range frames {
		b, err := st.ReadData()
		if err != nil {
			t.Fatal(err)
		}
		taken = append(taken, weak.Make(&b[0]))
	}
	runtime.GC()
	alive := 0
	for _, w := range taken {
		if w.Value() != nil {
			alive++
		}
	}
	if alive > 0 {
		t.Errorf("%d of %d frames the reader took and dropped are still reachable", alive, frames)
	}
}
