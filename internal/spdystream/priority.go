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

   Modified by the kpf authors in 2026: Pop clears the slot it pops, and
   the queue records since when a push waits (for CutStuckStreams). See
   doc.go.
*/

package spdystream

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream/spdy"
)

type prioritizedFrame struct {
	frame    spdy.Frame
	priority uint8
	insertId uint64
}

type frameQueue []*prioritizedFrame

func (fq frameQueue) Len() int {
	return len(fq)
}

func (fq frameQueue) Less(i, j int) bool {
	if fq[i].priority == fq[j].priority {
		return fq[i].insertId < fq[j].insertId
	}
	return fq[i].priority < fq[j].priority
}

func (fq frameQueue) Swap(i, j int) {
	fq[i], fq[j] = fq[j], fq[i]
}

func (fq *frameQueue) Push(x interface{}) {
	*fq = append(*fq, x.(*prioritizedFrame))
}

func (fq *frameQueue) Pop() interface{} {
	old := *fq
	n := len(old)
	x := old[n-1]
	// kpf: clear the slot, or the backing array keeps the popped frame
	// (and its data) reachable until a later Push reuses the slot.
	old[n-1] = nil
	*fq = old[0 : n-1]
	return x
}

type PriorityFrameQueue struct {
	queue        *frameQueue
	c            *sync.Cond
	size         int
	nextInsertId uint64
	drain        bool

	// pushWaitingSince is when a Push began waiting for room (unix
	// nanoseconds, 0 while none waits): kpf's, for CutStuckStreams.
	pushWaitingSince atomic.Int64
}

func NewPriorityFrameQueue(size int) *PriorityFrameQueue {
	queue := make(frameQueue, 0, size)
	heap.Init(&queue)

	return &PriorityFrameQueue{
		queue: &queue,
		size:  size,
		c:     sync.NewCond(&sync.Mutex{}),
	}
}

func (q *PriorityFrameQueue) Push(frame spdy.Frame, priority uint8) {
	q.c.L.Lock()
	defer q.c.L.Unlock()
	if q.queue.Len() >= q.size {
		q.pushWaitingSince.Store(time.Now().UnixNano())
		for q.queue.Len() >= q.size {
			q.c.Wait()
		}
		q.pushWaitingSince.Store(0)
	}
	pFrame := &prioritizedFrame{
		frame:    frame,
		priority: priority,
		insertId: q.nextInsertId,
	}
	q.nextInsertId = q.nextInsertId + 1
	heap.Push(q.queue, pFrame)
	q.c.Signal()
}

func (q *PriorityFrameQueue) Pop() spdy.Frame {
	q.c.L.Lock()
	defer q.c.L.Unlock()
	for q.queue.Len() == 0 {
		if q.drain {
			return nil
		}
		q.c.Wait()
	}
	frame := heap.Pop(q.queue).(*prioritizedFrame).frame
	q.c.Signal()
	return frame
}

// holdsOtherThan reports whether the queue holds a frame that is not of
// stream id (kpf's, for CutStuckStreams).
func (q *PriorityFrameQueue) holdsOtherThan(id spdy.StreamId) bool {
	q.c.L.Lock()
	defer q.c.L.Unlock()
	for _, pf := range *q.queue {
		if frameStream(pf.frame) != id {
			return true
		}
	}
	return false
}

// frameStream returns the stream a frame belongs to, 0 for a frame of the
// whole connection.
func frameStream(f spdy.Frame) spdy.StreamId {
	switch f := f.(type) {
	case *spdy.DataFrame:
		return f.StreamId
	case *spdy.SynStreamFrame:
		return f.StreamId
	case *spdy.SynReplyFrame:
		return f.StreamId
	case *spdy.RstStreamFrame:
		return f.StreamId
	case *spdy.HeadersFrame:
		return f.StreamId
	}
	return 0
}

func (q *PriorityFrameQueue) Drain() {
	q.c.L.Lock()
	defer q.c.L.Unlock()
	q.drain = true
	q.c.Broadcast()
}
