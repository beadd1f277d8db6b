package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Server is the relay: it serves streams that kpf opens to it through
// port-forwards, each reaching one allowed destination.
type Server struct {
	// Allow is the exact list of destinations the relay reaches; it
	// refuses every other.
	Allow []Dest
	// HeartbeatTimeout is how long Serve runs without a heartbeat
	// (counted from its start, then from the last beat) before it returns
	// ErrNoHeartbeat; 0 means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// UDPIdle closes a UDP stream after this long without a datagram in
	// either direction; 0 means DefaultUDPIdle.
	UDPIdle time.Duration
	// DialTimeout bounds reaching a TCP destination; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Log receives a line per refused or failed stream; nil discards.
	Log *slog.Logger

	beatsOnce sync.Once
	beats     chan struct{} // a heartbeat arrived
}

// Defaults of Server's durations.
const (
	DefaultUDPIdle     = 2 * time.Minute
	DefaultDialTimeout = 10 * time.Second
	// requestTimeout bounds reading a stream's request.
	requestTimeout = 10 * time.Second
)

// ErrNoHeartbeat is Serve's error when no heartbeat came in time: the kpf
// that started the relay is gone.
var ErrNoHeartbeat = errors.New("no heartbeat from kpf")

// Serve accepts streams on ln until ctx ends (it then returns nil) or no
// heartbeat comes for HeartbeatTimeout (ErrNoHeartbeat). It closes ln and
// every stream before it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if watchdog(ctx, s.beatChan(), s.heartbeatTimeout()) {
			cancel(ErrNoHeartbeat)
		}
	})
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				if cause := context.Cause(ctx); errors.Is(cause, ErrNoHeartbeat) {
					return cause
				}
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() { s.ServeConn(ctx, c) })
	}
}

// watchdog returns true when timeout passes without a value on beats,
// false when ctx ends first.
func watchdog(ctx context.Context, beats <-chan struct{}, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-beats:
			timer.Reset(timeout)
		case <-timer.C:
			return true
		}
	}
}

// ServeConn serves one stream until it ends or ctx does, and closes it.
// Serve calls it for each stream it accepts; its heartbeats count for
// Serve's watchdog.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	s.handle(ctx, c, s.beatChan())
}

func (s *Server) beatChan() chan struct{} {
	s.beatsOnce.Do(func() { s.beats = make(chan struct{}, 1) })
	return s.beats
}

func (s *Server) handle(ctx context.Context, c net.Conn, beats chan<- struct{}) {
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := ReadRequest(c)
	if err != nil {
		if errors.Is(err, errBadRequest) {
			WriteReply(c, Reply{Code: BadRequest, Message: err.Error()})
		}
		s.log().Warn("stream without a request", "err", err)
		return
	}
	c.SetReadDeadline(time.Time{})
	if req.Kind == Heartbeat {
		s.heartbeat(c, beats)
		return
	}
	dest, err := ParseDest(req.Dest + "/" + req.Kind.String())
	if err != nil {
		WriteReply(c, Reply{Code: BadRequest, Message: err.Error()})
		return
	}
	if !slices.Contains(s.Allow, dest) {
		s.log().Warn("refused a destination not allowed", "dest", dest.String())
		WriteReply(c, Reply{Code: Refused, Message: fmt.Sprintf("%s is not among the destinations this relay was started with", dest)})
		return
	}
	if dest.Kind == UDP {
		s.relayUDP(ctx, c, dest)
		return
	}
	s.relayTCP(ctx, c, dest)
}

// heartbeat answers and then passes every byte read on as a beat.
func (s *Server) heartbeat(c net.Conn, beats chan<- struct{}) {
	if WriteReply(c, Reply{Code: OK}) != nil {
		return
	}
	beat := func() {
		select {
		case beats <- struct{}{}:
		default:
		}
	}
	beat()
	var b [1]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
		beat()
	}
}

func (s *Server) relayTCP(ctx context.Context, c net.Conn, dest Dest) {
	dctx, cancel := context.WithTimeout(ctx, s.dialTimeout())
	var d net.Dialer
	up, err := d.DialContext(dctx, "tcp", dest.Addr())
	cancel()
	if err != nil {
		s.log().Warn("could not reach a destination", "dest", dest.String(), "err", err)
		WriteReply(c, Reply{Code: Unreachable, Message: err.Error()})
		return
	}
	defer up.Close()
	if WriteReply(c, Reply{Code: OK}) != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(up, c)
		closeWrite(up)
	}()
	io.Copy(c, up)
	closeWrite(c)
	<-done
}

// closeWrite half-closes c when it can, so that the peer reading it sees
// the end of what was sent while its own answer still flows.
func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
}

func (s *Server) relayUDP(ctx context.Context, c net.Conn, dest Dest) {
	var d net.Dialer
	up, err := d.DialContext(ctx, "udp", dest.Addr())
	if err != nil {
		WriteReply(c, Reply{Code: Unreachable, Message: err.Error()})
		return
	}
	defer up.Close()
	if WriteReply(c, Reply{Code: OK}) != nil {
		return
	}
	idle := newIdleTimer(s.udpIdle(), func() { c.Close(); up.Close() })
	defer idle.stop()
	go func() {
		defer c.Close()
		buf := make([]byte, MaxDatagram)
		for {
			n, err := up.Read(buf)
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // an ICMP unreachable for one datagram does not end the stream
			}
			if err != nil {
				return
			}
			idle.touch()
			if WriteDatagram(c, buf[:n]) != nil {
				return
			}
		}
	}()
	buf := make([]byte, MaxDatagram)
	for {
		n, err := ReadDatagram(c, buf)
		if err != nil {
			return
		}
		idle.touch()
		up.Write(buf[:n]) // a datagram may be lost; so may UDP's
	}
}

// idleTimer calls fire once no touch came for d.
type idleTimer struct {
	mu    sync.Mutex
	timer *time.Timer
	d     time.Duration
}

func newIdleTimer(d time.Duration, fire func()) *idleTimer {
	return &idleTimer{timer: time.AfterFunc(d, fire), d: d}
}

func (t *idleTimer) touch() {
	t.mu.Lock()
	t.timer.Reset(t.d)
	t.mu.Unlock()
}

func (t *idleTimer) stop() { t.timer.Stop() }

func (s *Server) heartbeatTimeout() time.Duration {
	if s.HeartbeatTimeout > 0 {
		return s.HeartbeatTimeout
	}
	return DefaultHeartbeatTimeout
}

func (s *Server) udpIdle() time.Duration {
	if s.UDPIdle > 0 {
		return s.UDPIdle
	}
	return DefaultUDPIdle
}

func (s *Server) dialTimeout() time.Duration {
	if s.DialTimeout > 0 {
		return s.DialTimeout
	}
	return DefaultDialTimeout
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
