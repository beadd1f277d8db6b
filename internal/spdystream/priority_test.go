/*
   Copyright 2014-2021 Docker Inc.

   Licensed under the Apache License, Version 2.0 (the "License");
   you may not use this file except in compliance with the License.
   You may obtain a copy of the License at

       http://www.apache.org/licenses/LICENSE-2.0

   Unless required by applicable law or agreed to in writing, software
   distributed under the License is distributed on an "AS IS" BASIS,
   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
   See the License for the specific language governing permissions and
   limitations under the License.
*/

package spdystream

import (
	"sync"
	"testing"
	"testing/synctest"

	"github.com/moby/spdystream/spdy"
)

func TestPriorityQueueOrdering(t *testing.T) {
	queue := NewPriorityFrameQueue(150)
	data1 := &spdy.DataFrame{}
	data2 := &spdy.DataFrame{}
	data3 := &spdy.DataFrame{}
	data4 := &spdy.DataFrame{}
	queue.Push(data1, 2)
	queue.Push(data2, 1)
	queue.Push(data3, 1)
	queue.Push(data4, 0)

	if queue.Pop() != data4 {
		t.Fatalf("Wrong order, expected data4 first")
	}
	if queue.Pop() != data2 {
		t.Fatalf("Wrong order, expected data2 second")
	}
	if queue.Pop() != data3 {
		t.Fatalf("Wrong order, expected data3 third")
	}
	if queue.Pop() != data1 {
		t.Fatalf("Wrong order, expected data1 fourth")
	}

	// Insert 50 Medium priority frames
	for i := spdy.StreamId(50); i < 100; i++ {
		queue.Push(&spdy.DataFrame{StreamId: i}, 1)
	}
	// Insert 50 low priority frames
	for i := spdy.StreamId(100); i < 150; i++ {
		queue.Push(&spdy.DataFrame{StreamId: i}, 2)
	}
	// Insert 50 high priority frames
	for i := spdy.StreamId(0); i < 50; i++ {
		queue.Push(&spdy.DataFrame{StreamId: i}, 0)
	}

	for i := spdy.StreamId(0); i < 150; i++ {
		frame := queue.Pop()
		if frame.(*spdy.DataFrame).StreamId != i {
			t.Fatalf("Wrong frame\nActual: %d\nExpecting: %d", frame.(*spdy.DataFrame).StreamId, i)
		}
	}
}

func TestPriorityQueueSync(t *testing.T) {
	queue := NewPriorityFrameQueue(150)
	var wg sync.WaitGroup
	insertRange := func(start, stop spdy.StreamId, priority uint8) {
		for i := start; i < stop; i++ {
			queue.Push(&spdy.DataFrame{StreamId: i}, priority)
		}
		wg.Done()
	}
	wg.Add(3)
	go insertRange(spdy.StreamId(100), spdy.StreamId(150), 2)
	go insertRange(spdy.StreamId(0), spdy.StreamId(50), 0)
	go insertRange(spdy.StreamId(50), spdy.StreamId(100), 1)

	wg.Wait()
	for i := spdy.StreamId(0); i < 150; i++ {
		frame := queue.Pop()
		if frame.(*spdy.DataFrame).StreamId != i {
			t.Fatalf("Wrong frame\nActual: %d\nExpecting: %d", frame.(*spdy.DataFrame).StreamId, i)
		}
	}
}

// TestPriorityQueueBlocking runs in a synctest bubble: a Push into a
// full queue must stay blocked until a Pop makes room, and then finish.
// Upstream's version waited a millisecond of real time for each step and
// failed under load (kpf's CI, stop 17), so the wait is now
// synctest.Wait, which returns once every goroutine in the bubble is
// durably blocked (here, in sync.Cond.Wait) or done.
func TestPriorityQueueBlocking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		queue := NewPriorityFrameQueue(15)
		for i := 0; i < 15; i++ {
			queue.Push(&spdy.DataFrame{}, 2)
		}
		doneChan := make(chan struct{})
		go func() {
			queue.Push(&spdy.DataFrame{}, 2)
			close(doneChan)
		}()
		synctest.Wait()
		select {
		case <-doneChan:
			t.Fatalf("Push succeeded, expected to block")
		default:
		}

		queue.Pop()
		synctest.Wait()
		select {
		case <-doneChan:
		default:
			t.Fatalf("Push still blocked after a Pop made room")
		}

		for i := 0; i < 15; i++ {
			queue.Pop()
		}
	})
}
