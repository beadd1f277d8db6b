package tunnel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// A port-forward connection hands every frame it receives to one of a few
// shared workers (spdystream has five, chosen by stream id), and a worker
// holding a data frame waits until that frame's stream is read. A stream
// nobody reads therefore holds up the replies and data of every other
// stream behind it on the same worker. So kpf reads each stream from the
// moment the kubelet accepts it: errorWatch reads an error stream to its
// end, and a data stream accepted before its error stream is read by an
// earlyReader until its connection's first Read. (When the error stream
// is accepted first, the dial returns at once and its caller reads.)
// Without them, a dial waiting for its error stream's reply while the pod's
// greeting sat undelivered on its data stream could wait on another dial
// doing the same, and a burst of connections to a pod that speaks first
// stalled whole sessions.

// maxEarlyData bounds what earlyReader keeps for a connection's first Read.
// Past it, it stops reading and the stream waits for its reader as it
// would have without it: a greeting is a few bytes, and the first Read
// normally comes within microseconds of the dial.
const maxEarlyData = 64 << 10

// earlyReader reads a data stream ahead of its connection's first Read
// and keeps what it read for it.
type earlyReader struct {
	mu      sync.Mutex
	changed *sync.Cond // signalled when a read ends or the pump stops
	chunks  [][]byte
	size    int
	err     error       // what ended the stream, once a read returned it
	claimed bool        // the connection's reader has come; the pump stops
	stopped bool        // the pump has stopped; what it read is in chunks and err
	drained atomic.Bool // stopped and everything handed on: read the stream
}

// startEarlyRead starts reading st.
func startEarlyRead(st httpstream.Stream) *earlyReader {
	e := &earlyReader{}
	e.changed = sync.NewCond(&e.mu)
	go e.pump(st)
	return e
}

// frameReader is implemented by spdystream's streams: ReadData returns a
// whole frame without copying it.
type frameReader interface {
	ReadData() ([]byte, error)
}

func (e *earlyReader) pump(st httpstream.Stream) {
	var buf []byte
	for {
		var chunk []byte
		var err error
		if fr, ok := st.(frameReader); ok {
			chunk, err = fr.ReadData()
		} else {
			if buf == nil {
				buf = make([]byte, 16<<10)
			}
			var n int
			n, err = st.Read(buf)
			chunk = append([]byte(nil), buf[:n]...)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's read deadline, set before its first
			// Read: stop, and let its reads meet the deadline
			// themselves (a timeout ends nothing).
			e.mu.Lock()
			e.stopped = true
			e.changed.Broadcast()
			e.mu.Unlock()
			return
		}
		e.mu.Lock()
		if len(chunk) > 0 {
			e.chunks = append(e.chunks, chunk)
			e.size += len(chunk)
		}
		e.err = err
		stop := err != nil || e.claimed || e.size >= maxEarlyData
		e.stopped = stop
		e.changed.Broadcast()
		e.mu.Unlock()
		if stop {
			return
		}
	}
}

// read serves a connection's Read: what the pump read, then the read it
// had in flight when the reader came, then its error if the stream ended.
// ok is false once all that is handed on: the caller reads the stream
// itself from then on.
func (e *earlyReader) read(p []byte) (n int, err error, ok bool) {
	if e.drained.Load() {
		return 0, nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.claimed = true
	for len(e.chunks) == 0 && !e.stopped {
		e.changed.Wait()
	}
	if len(e.chunks) > 0 {
		n = copy(p, e.chunks[0])
		if n < len(e.chunks[0]) {
			e.chunks[0] = e.chunks[0][n:]
		} else {
			e.chunks[0] = nil
			e.chunks = e.chunks[1:]
		}
		return n, nil, true
	}
	if e.err != nil {
		return 0, e.err, true
	}
	e.drained.Store(true)
	return 0, nil, false
}

// errorWatch reads a connection's error stream to its end. The kubelet
// writes to it only when forwarding the connection failed; a failure
// resets the data stream, once there is one, so that its reader stops.
type errorWatch struct {
	done chan struct{} // closed when the error stream has ended
	err  error         // what the kubelet reported; set before done closes

	mu     sync.Mutex
	data   httpstream.Stream
	failed bool
}

// watchErrorStream starts reading st; the kubelet's message is prefixed
// with pod.
func watchErrorStream(pod Pod, st httpstream.Stream) *errorWatch {
	w := &errorWatch{done: make(chan struct{})}
	go func() {
		msg, err := io.ReadAll(st)
		var reported error
		switch {
		case len(msg) > 0:
			reported = fmt.Errorf("%s: %s", pod, strings.TrimSpace(string(msg)))
		case err != nil && !isClosed(err):
			reported = fmt.Errorf("%s: read error stream: %w", pod, err)
		}
		w.mu.Lock()
		w.err = reported
		w.failed = reported != nil
		data := w.data
		w.mu.Unlock()
		close(w.done)
		if reported != nil && data != nil {
			data.Reset()
		}
	}()
	return w
}

// wait waits at most d for the error stream st to end, resetting it
// then, and returns what the kubelet reported.
func (w *errorWatch) wait(d time.Duration, st httpstream.Stream) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		st.Reset()
		<-w.done
	}
	return w.err
}

// attach gives the watch the connection's data stream to reset on a
// failure, resetting it at once if the failure came first.
func (w *errorWatch) attach(data httpstream.Stream) {
	w.mu.Lock()
	w.data = data
	failed := w.failed
	w.mu.Unlock()
	if failed {
		data.Reset()
	}
}
