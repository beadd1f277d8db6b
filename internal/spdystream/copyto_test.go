package spdystream

// This file is kpf's, not upstream's: see doc.go.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingSink collects what CopyTo and the connection's reader write.
// TryWrite takes what take says of each frame (the room a socket has);
// Write takes everything, after hold is released if there is one. It
// notes any call made while another is running: the two must never
// overlap, or bytes could land out of order.
type recordingSink struct {
	take func(n int) int
	hold chan struct{}

	busy     atomic.Bool
	overlaps atomic.Int32
	mu       sync.Mutex
	got      bytes.Buffer
	direct   int // bytes TryWrite took
	writes   int // calls to Write
}

func (s *recordingSink) enter() {
	if !s.busy.CompareAndSwap(false, true) {
		s.overlaps.Add(1)
	}
}

func (s *recordingSink) leave() { s.busy.Store(false) }

func (s *recordingSink) TryWrite(p []byte) int {
	s.enter()
	defer s.leave()
	n := s.take(len(p))
	s.mu.Lock()
	s.got.Write(p[:n])
	s.direct += n
	s.mu.Unlock()
	return n
}

func (s *recordingSink) Write(p []byte) (int, error) {
	if s.hold != nil {
		<-s.hold
	}
	s.enter()
	defer s.leave()
	s.mu.Lock()
	s.got.Write(p)
	s.writes++
	s.mu.Unlock()
	return len(p), nil
}

// patterned returns frame i's payload of n bytes: its index, repeated,
// so that bytes from another frame, or a buffer refilled too early, show.
func patterned(i, n int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("<%05d>", i)), n/7+1)[:n]
}

// CopyTo delivers a stream's frames whole and in order, whether the
// connection's reader wrote them itself, in part or whole, or they went
// through the queue because the sink had no room or frames were already
// waiting. Frame sizes span the reused buffer's bounds: a buffer reused
// while a frame's remainder still waited in the queue would show as
// another frame's bytes.
func TestCopyToKeepsOrderAcrossBothPaths(t *testing.T) {
	sizes := []int{1, 100, minReusedData - 1, minReusedData, 10000, reusedDataSize, reusedDataSize, reusedDataSize + 1}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			_, client, server := pairOfStreams(t, 1)
			rng := rand.New(rand.NewPCG(seed, seed))
			var rngMu sync.Mutex
			sink := &recordingSink{take: func(n int) int {
				rngMu.Lock()
				defer rngMu.Unlock()
				switch rng.IntN(4) {
				case 0:
					return 0 // no room
				case 1:
					return rng.IntN(n + 1) // some room
				default:
					return n
				}
			}}
			var want bytes.Buffer
			const frames = 400
			for i := range frames {
				want.Write(patterned(i, sizes[i%len(sizes)]))
			}
			go func() {
				for i := range frames {
					if _, err := server[0].Write(patterned(i, sizes[i%len(sizes)])); err != nil {
						return
					}
				}
				server[0].Close()
			}()
			n, err := client[0].CopyTo(sink)
			if err != nil {
				t.Fatalf("CopyTo: %v", err)
			}
			if n != int64(want.Len()) {
				t.Errorf("CopyTo reports %d bytes, want %d", n, want.Len())
			}
			if !bytes.Equal(sink.got.Bytes(), want.Bytes()) {
				t.Fatalf("the sink got %d bytes that differ from the %d sent", sink.got.Len(), want.Len())
			}
			if sink.overlaps.Load() != 0 {
				t.Errorf("TryWrite and Write overlapped %d times", sink.overlaps.Load())
			}
			// Both paths must have carried data, or this test shows
			// nothing about their order.
			if sink.direct == 0 || sink.writes == 0 {
				t.Errorf("direct bytes %d, queued writes %d: want both paths used", sink.direct, sink.writes)
			}
		})
	}
}

// Bytes a Read left unread go to the sink before any frame that follows.
func TestCopyToStartsWithWhatReadLeft(t *testing.T) {
	_, client, server := pairOfStreams(t, 1)
	if _, err := server[0].Write([]byte("hello world")); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 5)
	if n, err := client[0].Read(head); err != nil || string(head[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", head[:n], err)
	}
	go func() {
		server[0].Write([]byte("!!"))
		server[0].Close()
	}()
	sink := &recordingSink{take: func(n int) int { return n }}
	n, err := client[0].CopyTo(sink)
	if err != nil {
		t.Fatalf("CopyTo: %v", err)
	}
	if got := sink.got.String(); got != " world!!" || n != int64(len(got)) {
		t.Errorf("the sink got %q (CopyTo reports %d bytes), want \" world!!\"", got, n)
	}
}

// A stream copied to a sink that stopped taking anything is cut like one
// whose reader stopped: the other stream's frames flow again, and CopyTo
// says why it ended once its sink returns.
func TestCopyToAStuckSinkIsCut(t *testing.T) {
	cc, client, server := pairOfStreams(t, 2)
	if client[0].streamId%FRAME_WORKERS == client[1].streamId%FRAME_WORKERS {
		t.Fatalf("streams %d and %d share a queue", client[0].streamId, client[1].streamId)
	}
	client[0].AllowCut()
	sink := &recordingSink{take: func(int) int { return 0 }, hold: make(chan struct{})}
	copied := make(chan error, 1)
	go func() {
		_, err := client[0].CopyTo(sink)
		copied <- err
	}()
	go func() {
		for range QUEUE_SIZE + 5 {
			if _, err := server[0].Write(make([]byte, 1024)); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the connection's reader to wait behind the stuck stream", func() bool { return readerWaiting(cc) })
	got := make(chan error, 1)
	go func() {
		_, err := client[1].ReadData()
		got <- err
	}()
	// The server's write waits behind the stuck stream's frames in the
	// pipe until the cut.
	go server[1].Write([]byte("other"))
	time.Sleep(100 * time.Millisecond)
	if n := cc.CutStuckStreams(50 * time.Millisecond); n != 1 {
		t.Fatalf("cut %d streams, want 1", n)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the other stream: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other stream still waits after the cut")
	}
	close(sink.hold)
	select {
	case err := <-copied:
		if !errors.Is(err, ErrStreamCut) {
			t.Fatalf("CopyTo of the cut stream: %v, want ErrStreamCut", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CopyTo of the cut stream did not return")
	}
}
