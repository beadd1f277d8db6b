package tunnel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/spdystream"
)

// Upstream is a connection to a pod that Serve copies a local connection
// to, with the name of the pod for logs.
type Upstream interface {
	io.ReadWriteCloser
	// CloseWrite signals end of input to the pod.
	CloseWrite() error
}

// DialFunc returns an upstream for a newly accepted local connection and a
// label naming where it goes. It should wait, as long as ctx allows, for a
// ready endpoint rather than fail at once. first carries what the client
// has sent meanwhile, for a dial that can send it along (Lease.DialFirst);
// a dial that fails with ErrSentAhead must not be retried.
type DialFunc func(ctx context.Context, first *FirstBytes) (Upstream, string, error)

// Stats counts a listener's traffic. All fields are updated atomically.
type Stats struct {
	Accepted atomic.Int64
	Active   atomic.Int64
	Failed   atomic.Int64 // connections closed because no upstream could be had
	// SentAhead counts connections whose first bytes went out with the
	// frames that opened their streams (FirstBytes).
	SentAhead atomic.Int64
	BytesIn   atomic.Int64 // from the local client to the pod
	BytesOut  atomic.Int64 // from the pod to the local client
	LastError atomic.Pointer[string]
	// Dial is how long accepted connections waited for their upstream.
	Dial Histogram
}

// Server serves one local listener.
type Server struct {
	Listener net.Listener
	Dial     DialFunc
	// Wait bounds how long an accepted connection waits for an upstream.
	Wait  time.Duration
	Log   *slog.Logger
	Stats *Stats
	// BufferSize is the copy buffer per direction; 0 means 64 KiB.
	BufferSize int
}

// Serve accepts connections until ctx is done or the listener fails. When
// it returns, the listener is closed, every connection it accepted is
// closed and every goroutine it started has ended.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { s.Listener.Close() })
	defer stop()
	defer s.Listener.Close()
	bufSize := s.BufferSize
	if bufSize == 0 {
		bufSize = 64 << 10
	}
	pool := &sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	small := &sync.Pool{New: func() any { b := make([]byte, firstBytesBuffer); return &b }}
	for {
		local, err := s.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.Stats.Accepted.Add(1)
		s.Stats.Active.Add(1)
		wg.Go(func() {
			defer s.Stats.Active.Add(-1)
			s.handle(ctx, local, pool, small)
		})
	}
}

func (s *Server) handle(ctx context.Context, local net.Conn, bufs, smallBufs *sync.Pool) {
	start := time.Now()
	// Close the local connection when Serve is stopping.
	stop := context.AfterFunc(ctx, func() { local.Close() })
	defer stop()
	defer local.Close()

	// Read the client from now on: what it sends while the dial opens
	// the connection's streams can go along with them.
	inBuf := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(inBuf)
	first := startFirstBytes(ctx, local, *inBuf, bufs)
	dctx, cancel := context.WithTimeout(ctx, s.Wait)
	up, target, err := s.Dial(dctx, first)
	cancel()
	s.Stats.Dial.Observe(time.Since(start))
	if err != nil {
		s.noUpstream(ctx, local, first, err, start)
		return
	}
	first.attach(up)
	if first.Sent() > 0 {
		s.Stats.SentAhead.Add(1)
	}
	c := relay{Server: s, local: local, up: up, target: target, first: first, start: start,
		debug: s.Log.Enabled(ctx, slog.LevelDebug)}
	c.copyToClient(ctx, bufs)
	c.finish()
}

// noUpstream ends a client's connection for which no upstream could be
// dialled.
func (s *Server) noUpstream(ctx context.Context, local net.Conn, first *FirstBytes, err error, start time.Time) {
	first.stop()
	s.Stats.Failed.Add(1)
	msg := err.Error()
	s.Stats.LastError.Store(&msg)
	if ctx.Err() == nil {
		s.Log.Warn("connection closed: no upstream", "client", local.RemoteAddr().String(), "err", err, "waited", time.Since(start).Round(time.Millisecond))
	}
	if first.Sent() > 0 {
		// The client's request may have reached the pod: reset the
		// connection, so that the client sees a failure rather than a
		// reply that is merely empty.
		if tc, ok := local.(interface{ SetLinger(int) error }); ok {
			tc.SetLinger(0)
		}
	}
	local.Close()
	first.wait()
}

// relay is one client connection with its upstream. The client's bytes
// go upstream through first; copyToClient copies the other way.
type relay struct {
	*Server
	local  net.Conn
	up     Upstream
	target string
	first  *FirstBytes
	start  time.Time
	// debug: per-connection attributes are formatted only when logged,
	// and most connections log nothing.
	debug bool
	log   *slog.Logger

	out   int64 // bytes copied to the client
	upErr error // why the upstream ended; nil when the pod finished
}

// copyToClient copies the upstream to the client until either ends. When
// the session closed before anything moved either way (its pod left as
// the connection was dialled to it: a rollout's old pod that the
// endpoints had not dropped yet), nothing reached either end, so the
// connection is dialled again, once, to another pod.
func (c *relay) copyToClient(ctx context.Context, bufs *sync.Pool) {
	c.log = c.Log
	for redialled := false; ; redialled = true {
		if cw, ok := c.up.(interface{ CutWhenStuck() }); ok {
			cw.CutWhenStuck()
		}
		cur := c.up
		stopUp := context.AfterFunc(ctx, func() { cur.Close() })
		if c.debug {
			c.log = c.Log.With("client", c.local.RemoteAddr().String(), "pod", c.target)
			c.log.Debug("connection opened", "dial", time.Since(c.start).Round(time.Microsecond), "sent_ahead", c.first.Sent(), "redialled", redialled)
		}
		buf := bufs.Get().(*[]byte)
		c.out, c.upErr = io.CopyBuffer(writerOnly{c.local}, readerOnly{c.up}, *buf)
		bufs.Put(buf)
		stopUp()
		if redialled || c.out > 0 || !errors.Is(c.upErr, ErrSessionClosed) || ctx.Err() != nil || !c.first.detach() {
			return
		}
		c.up.Close()
		dctx, cancel := context.WithTimeout(ctx, c.Wait)
		next, nextTarget, err := c.Dial(dctx, c.first)
		cancel()
		if err != nil {
			// upErr stays the reason; first has no upstream any more.
			c.first.stop()
			if c.debug {
				c.log.Debug("connection not redialled", "err", err)
			}
			return
		}
		if c.debug {
			c.log.Debug("connection redialled: its session closed before anything moved", "err", c.upErr)
		}
		c.up, c.target = next, nextTarget
		c.first.attach(c.up)
	}
}

// finish ends both sides, the way that tells the client how the upstream
// ended, and records the connection.
func (c *relay) finish() {
	s := c.Server
	s.Stats.BytesOut.Add(c.out)
	if c.upErr == nil {
		// The pod has finished answering: like kubectl, end the connection.
		if tc, ok := c.local.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
	} else if tc, ok := c.local.(interface{ SetLinger(int) error }); ok {
		// The upstream failed (the session was lost mid-answer, or the
		// kubelet reported an error): reset the connection rather than
		// close it, so that the client sees a failure, not an answer
		// that merely ended early. kubectl closes normally here.
		tc.SetLinger(0)
	}
	c.local.Close()
	c.up.Close()
	in := c.first.wait()
	s.Stats.BytesIn.Add(in)
	reason := "closed"
	if c.upErr != nil {
		reason = c.upErr.Error()
		msg := reason
		s.Stats.LastError.Store(&msg)
	}
	if errors.Is(c.upErr, spdystream.ErrStreamCut) {
		// Worth a warning: the client will see a reset it may not
		// expect, and the user can tell why.
		s.Log.Warn("connection reset: its client stopped reading, and other connections through the session waited behind it",
			"client", c.local.RemoteAddr().String(), "pod", c.target, "waited", StuckStreamWait, "bytes_in", in, "bytes_out", c.out)
		return
	}
	if c.debug {
		c.log.Debug("connection closed", "bytes_in", in, "bytes_out", c.out, "duration", time.Since(c.start).Round(time.Millisecond), "reason", reason)
	}
}

// readerOnly and writerOnly hide ReadFrom/WriteTo so that io.CopyBuffer
// uses the pooled buffer rather than a fresh one per connection.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }
