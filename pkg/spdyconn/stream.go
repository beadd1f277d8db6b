package spdyconn

import (
	"bufio"
	"io"
	"net/http"
	"sync"

	"github.com/moby/spdystream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// Stream is one SPDY stream of a Conn. Read and Write may be called
// concurrently with each other, and Reset and Close with both.
type Stream struct {
	conn    *Conn
	id      uint32
	headers http.Header
	reply   chan error // the server's reply (nil) or reset, once

	mu   sync.Mutex
	cond sync.Cond // on mu: data queued, space freed, or the stream ended
	// queue holds received data not yet read: queue[0][off:], then the
	// rest whole. queued counts its bytes.
	queue  []*[]byte
	off    int
	queued int
	// replyDone is set once the server replied (or refused); data
	// before it is dropped.
	replyDone bool
	// remoteFin: the server sent its last frame; reads end after the
	// queue. ended: reset (by either side) or the connection ended;
	// reads end after the queue, writes fail. localFin: this side sent
	// its last frame.
	remoteFin bool
	ended     bool
	localFin  bool
	// reading is set while the connection's reader waits for room.
	reading bool
}

var _ httpstream.Stream = (*Stream)(nil)

func newStream(c *Conn, headers http.Header) *Stream {
	s := &Stream{conn: c, headers: headers, reply: make(chan error, 1)}
	s.cond.L = &s.mu
	return s
}

// Headers returns the headers the stream was opened with.
func (s *Stream) Headers() http.Header { return s.headers }

// Identifier returns the stream's id.
func (s *Stream) Identifier() uint32 { return s.id }

// Read reads what the server sent: everything queued, up to len(p), in
// one call. After the server's last frame, a reset or the end of the
// connection, it returns what is queued and then io.EOF.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	for s.queued == 0 && !s.remoteFin && !s.ended {
		s.cond.Wait()
	}
	if s.queued == 0 {
		s.mu.Unlock()
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && len(s.queue) > 0 {
		b := s.queue[0]
		m := copy(p[n:], (*b)[s.off:])
		n += m
		s.off += m
		if s.off == len(*b) {
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.off = 0
			s.conn.putChunk(b)
		}
	}
	if len(s.queue) == 0 {
		s.queue = s.queue[:0:0]
	}
	wasFull := s.queued >= streamWindow
	s.queued -= n
	if wasFull && s.reading {
		s.cond.Broadcast()
	}
	s.mu.Unlock()
	return n, nil
}

// receive queues a data frame's payload of length bytes, read from r. It
// waits while the stream's queue is full; if the stream ends meanwhile,
// the payload is read and dropped.
func (s *Stream) receive(r *bufio.Reader, length int) error {
	if length == 0 {
		return nil
	}
	if length <= smallFrame {
		// Copy small payloads (a reply, a prompt) into the queue's last
		// chunk when it has room, rather than give each a chunk.
		var small [smallFrame]byte
		if _, err := io.ReadFull(r, small[:length]); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.waitRoomLocked() {
			return nil
		}
		if k := len(s.queue); k > 0 && cap(*s.queue[k-1])-len(*s.queue[k-1]) >= length {
			*s.queue[k-1] = append(*s.queue[k-1], small[:length]...)
		} else {
			b := s.conn.getChunk()
			*b = append((*b)[:0], small[:length]...)
			s.queue = append(s.queue, b)
		}
		s.queued += length
		s.cond.Broadcast()
		return nil
	}
	for length > 0 {
		b := s.conn.getChunk()
		n := min(length, chunkSize)
		*b = (*b)[:n]
		if _, err := io.ReadFull(r, *b); err != nil {
			s.conn.putChunk(b)
			return err
		}
		length -= n
		s.mu.Lock()
		if !s.waitRoomLocked() {
			s.mu.Unlock()
			s.conn.putChunk(b)
			if _, err := r.Discard(length); err != nil {
				return err
			}
			return nil
		}
		s.queue = append(s.queue, b)
		s.queued += n
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	return nil
}

// waitRoomLocked waits until the queue has room for more; it reports
// false if the stream ended meanwhile. The caller holds mu.
func (s *Stream) waitRoomLocked() bool {
	for s.queued >= streamWindow && !s.ended {
		s.reading = true
		s.cond.Wait()
		s.reading = false
	}
	return !s.ended
}

// Write sends p in data frames of at most 64 KiB.
func (s *Stream) Write(p []byte) (int, error) {
	n := 0
	for {
		if err := s.writable(); err != nil {
			return n, err
		}
		k := min(len(p)-n, maxDataFrame)
		if err := s.conn.writeData(s.id, false, p[n:n+k]); err != nil {
			return n, err
		}
		n += k
		if n == len(p) {
			return n, nil
		}
	}
}

// writable reports why the stream cannot send, or nil.
func (s *Stream) writable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.localFin:
		return ErrWriteClosed
	case s.ended:
		if err := s.conn.Err(); err != nil {
			return err
		}
		return ErrStreamReset
	}
	return nil
}

// Close closes the sending side: the server reads the end of the stream.
// Reading goes on.
func (s *Stream) Close() error {
	if err := s.writable(); err != nil {
		return err
	}
	s.mu.Lock()
	s.localFin = true
	done := s.remoteFin
	s.mu.Unlock()
	if done {
		s.conn.forget(s)
	}
	return s.conn.writeData(s.id, true, nil)
}

// Reset ends the stream both ways: the server is told to drop it, queued
// data is dropped, and reads and writes end.
func (s *Stream) Reset() error {
	s.conn.forget(s)
	s.mu.Lock()
	tell := !s.ended && !(s.localFin && s.remoteFin)
	s.endLocked()
	s.dropLocked()
	s.mu.Unlock()
	if !tell {
		return nil
	}
	return s.conn.writeControl(&spdy.RstStreamFrame{StreamId: spdy.StreamId(s.id), Status: spdy.Cancel})
}

// isReplied reports whether the server has replied.
func (s *Stream) isReplied() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replyDone
}

// replied records the server's reply (err nil) or refusal.
func (s *Stream) replied(err error) {
	s.mu.Lock()
	first := !s.replyDone
	s.replyDone = true
	s.mu.Unlock()
	if first {
		s.reply <- err
	}
}

// remoteFinished records the server's last frame.
func (s *Stream) remoteFinished() {
	s.mu.Lock()
	s.remoteFin = true
	s.cond.Broadcast()
	done := s.localFin
	s.mu.Unlock()
	if done {
		s.conn.forget(s)
	}
}

// remoteReset records the server's reset: what is queued can still be
// read, then reads end.
func (s *Stream) remoteReset() {
	s.replied(ErrStreamReset)
	s.mu.Lock()
	s.endLocked()
	s.mu.Unlock()
}

// connEnded ends the stream because its connection did.
func (s *Stream) connEnded() {
	s.mu.Lock()
	replied := s.replyDone
	s.endLocked()
	s.mu.Unlock()
	if !replied {
		s.replied(s.conn.Err())
	}
}

// endLocked marks the stream ended and wakes everyone waiting on it. The
// caller holds mu.
func (s *Stream) endLocked() {
	s.ended = true
	s.cond.Broadcast()
}

// dropLocked releases the queue. The caller holds mu.
func (s *Stream) dropLocked() {
	for _, b := range s.queue {
		s.conn.putChunk(b)
	}
	s.queue, s.off, s.queued = nil, 0, 0
}
