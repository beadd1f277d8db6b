package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// frameStream is a stream whose data arrives in frames, handed over one
// at a time to a waiting reader as spdystream's frame workers do: a frame
// nobody reads holds up its sender.
type frameStream struct {
	id      uint32
	headers http.Header
	replied chan struct{} // closed when the fake kubelet accepts it
	frames  chan []byte
	reset   chan struct{}
	once    sync.Once
	unread  []byte
	ended   bool
}

func newFrameStream(id uint32, h http.Header) *frameStream {
	return &frameStream{id: id, headers: h, replied: make(chan struct{}), frames: make(chan []byte), reset: make(chan struct{})}
}

// send hands frame to the stream's reader, waiting for one; it reports
// false if the stream was reset meanwhile.
func (s *frameStream) send(frame []byte) bool {
	select {
	case s.frames <- frame:
		return true
	case <-s.reset:
		return false
	}
}

// end ends the stream's data: its reader sees io.EOF.
func (s *frameStream) end() { close(s.frames) }

func (s *frameStream) Read(p []byte) (int, error) {
	if len(s.unread) == 0 {
		if s.ended {
			return 0, io.EOF
		}
		select {
		case f, ok := <-s.frames:
			if !ok {
				s.ended = true
				return 0, io.EOF
			}
			s.unread = f
		case <-s.reset:
			return 0, errors.New("stream reset")
		}
	}
	n := copy(p, s.unread)
	s.unread = s.unread[n:]
	return n, nil
}

func (s *frameStream) Write(p []byte) (int, error) { return len(p), nil }
func (s *frameStream) Close() error                { return nil }
func (s *frameStream) Reset() error {
	s.once.Do(func() { close(s.reset) })
	return nil
}
func (s *frameStream) Headers() http.Header { return s.headers }
func (s *frameStream) Identifier() uint32   { return s.id }

// frameDataStream adds spdystream's ReadData to a frameStream.
type frameDataStream struct{ *frameStream }

func (s frameDataStream) ReadData() ([]byte, error) {
	if len(s.unread) > 0 {
		f := s.unread
		s.unread = nil
		return f, nil
	}
	select {
	case f, ok := <-s.frames:
		if !ok {
			return nil, io.EOF
		}
		return f, nil
	case <-s.reset:
		return nil, errors.New("stream reset")
	}
}

// oneWorkerConn is a port-forward connection that, like spdystream,
// delivers what it receives in order on a worker that waits for each data
// frame's reader; it has one worker where spdystream has five shared by
// stream id. Its fake kubelet accepts a pair once both streams have come
// and then sends, in this order: the data stream's reply, the pod's
// greeting on it, the error stream's reply. That is the order in which,
// under a burst of dials, a greeting stood before a reply another dial
// waited for, and sessions stalled.
type oneWorkerConn struct {
	greeting  []byte
	readData  bool // streams offer ReadData, as spdystream's do
	queue     chan func()
	closed    chan bool
	closeOnce sync.Once

	mu      sync.Mutex
	nextID  uint32
	pending map[string]*frameStream // the first stream of each pair, by request id
	streams []*frameStream
}

func newOneWorkerConn(greeting string, readData bool) *oneWorkerConn {
	c := &oneWorkerConn{greeting: []byte(greeting), readData: readData, queue: make(chan func(), 64), closed: make(chan bool), pending: map[string]*frameStream{}}
	go func() {
		for {
			select {
			case work := <-c.queue:
				work()
			case <-c.closed:
				return
			}
		}
	}()
	return c
}

func (c *oneWorkerConn) CreateStream(h http.Header) (httpstream.Stream, error) {
	c.mu.Lock()
	c.nextID++
	st := newFrameStream(c.nextID, h)
	c.streams = append(c.streams, st)
	id := h.Get(corev1.PortForwardRequestIDHeader)
	first := c.pending[id]
	if first == nil {
		c.pending[id] = st
	} else {
		delete(c.pending, id)
		data, errStream := st, first
		if h.Get(corev1.StreamType) == corev1.StreamTypeError {
			data, errStream = first, st
		}
		c.queue <- func() { close(data.replied) }
		c.queue <- func() { data.send(c.greeting) }
		c.queue <- func() { close(errStream.replied) }
	}
	c.mu.Unlock()
	select {
	case <-st.replied:
	case <-c.closed:
		return nil, errors.New("connection closed")
	}
	if c.readData {
		return frameDataStream{st}, nil
	}
	return st, nil
}

// Close ends the connection and with it every stream.
func (c *oneWorkerConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.streams {
		st.Reset()
	}
	return nil
}
func (c *oneWorkerConn) CloseChan() <-chan bool       { return c.closed }
func (c *oneWorkerConn) SetIdleTimeout(time.Duration) {}

// RemoveStreams ends streams, as the kubelet ends a pair once its data
// stream is reset.
func (c *oneWorkerConn) RemoveStreams(streams ...httpstream.Stream) {
	for _, st := range streams {
		if st != nil {
			st.Reset()
		}
	}
}

// A dial to a pod that greets at once returns as soon as both streams are
// accepted, even when the greeting comes before the second acceptance on
// the one worker that delivers both; the greeting then reaches the
// connection's reader. Before kpf read data streams from their
// acceptance on, such a dial waited for a reply queued behind its own
// unread greeting, and the session was closed as stalled.
func TestDialDoesNotWaitBehindItsOwnGreeting(t *testing.T) {
	for _, readData := range []bool{false, true} {
		name := "Read"
		if readData {
			name = "ReadData"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				conn := newOneWorkerConn("hello from the pod\n", readData)
				s := newSession(Pod{"ns", "a"}, conn, "fake", nil)
				defer s.Close()
				for i := range 3 {
					start := time.Now()
					c, err := s.Dial(context.Background(), 80)
					if err != nil {
						t.Fatalf("dial %d: %v", i, err)
					}
					if waited := time.Since(start); waited != 0 {
						t.Errorf("dial %d waited %s", i, waited)
					}
					got := make([]byte, 64)
					n, err := c.Read(got)
					if err != nil || string(got[:n]) != "hello from the pod\n" {
						t.Errorf("dial %d read %q, %v; want the greeting", i, got[:n], err)
					}
					c.Close()
				}
				if !s.Alive() {
					t.Error("the session was closed")
				}
			})
		})
	}
}

// An earlyReader hands its connection's reader everything, in order:
// what it read before the first Read, the read it had in flight then, and
// from then on what the reader reads itself, or the end of the stream.
func TestEarlyReaderHandsOverEverythingInOrder(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 40<<10)
	for _, tc := range []struct {
		name   string
		before [][]byte // frames sent before the first Read
		after  [][]byte // frames sent after it
		end    bool     // the stream ends after the frames
	}{
		{name: "nothing before", after: [][]byte{[]byte("a"), []byte("b")}},
		{name: "greeting before", before: [][]byte{[]byte("hello\n")}, after: [][]byte{[]byte("more")}},
		{name: "several frames before", before: [][]byte{[]byte("one "), []byte("two "), []byte("three")}, after: [][]byte{[]byte(" four")}},
		{name: "ended before", before: [][]byte{[]byte("bye\n")}, end: true},
		{name: "ended at once", end: true},
		{name: "more than it keeps before", before: [][]byte{big, big, []byte("tail")}, after: [][]byte{[]byte("after")}, end: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newFrameStream(1, nil)
				e := startEarlyRead(st)
				var want []byte
				sent := make(chan struct{})
				go func() {
					defer close(sent)
					for _, f := range tc.before {
						st.send(f)
					}
					if tc.end && len(tc.after) == 0 {
						st.end()
					}
				}()
				for _, f := range tc.before {
					want = append(want, f...)
				}
				// The pump takes frames up to maxEarlyData; past it, the
				// sender waits for the reader, as spdystream's worker does.
				synctest.Wait()
				if total(tc.before) < maxEarlyData {
					select {
					case <-sent:
					default:
						t.Fatal("frames sent before the first Read were not taken")
					}
				}
				var got []byte
				buf := make([]byte, 7)
				read := func() error {
					n, err := readVia(e, st, buf)
					got = append(got, buf[:n]...)
					return err
				}
				for len(got) < total(tc.before) {
					if err := read(); err != nil {
						t.Fatalf("read: %v after %d bytes", err, len(got))
					}
				}
				<-sent
				go func() {
					for _, f := range tc.after {
						st.send(f)
					}
					if tc.end && len(tc.after) > 0 {
						st.end()
					}
				}()
				for _, f := range tc.after {
					want = append(want, f...)
				}
				for len(got) < len(want) {
					if err := read(); err != nil {
						t.Fatalf("read: %v after %d of %d bytes", err, len(got), len(want))
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("read %d bytes %.40q..., want %d bytes %.40q...", len(got), got, len(want), want)
				}
				if tc.end {
					if err := read(); !errors.Is(err, io.EOF) {
						t.Errorf("read at the end: %v, want io.EOF", err)
					}
				}
			})
		})
	}
}

// readVia reads as Conn.Read does: through e until it is drained, then
// from st itself.
func readVia(e *earlyReader, st httpstream.Stream, p []byte) (int, error) {
	if n, err, ok := e.read(p); ok {
		return n, err
	}
	return st.Read(p)
}

func total(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}

// The kubelet's report on the error stream ends the connection with that
// report, whether it comes before the data stream is attached or after.
func TestErrorWatchResetsTheDataStream(t *testing.T) {
	for _, attachFirst := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			errStream := newFrameStream(1, nil)
			data := newFrameStream(3, nil)
			w := watchErrorStream(Pod{"ns", "a"}, errStream)
			if attachFirst {
				w.attach(data)
			}
			go func() {
				errStream.send([]byte("failed to connect to localhost:80: connection refused\n"))
				errStream.end()
			}()
			<-w.done
			if !attachFirst {
				w.attach(data)
			}
			if _, err := data.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
				t.Errorf("data stream read: %v; want it reset", err)
			}
			if w.err == nil || w.err.Error() != "ns/a: failed to connect to localhost:80: connection refused" {
				t.Errorf("reported %v", w.err)
			}
		})
	}
}
