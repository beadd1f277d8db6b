// Package tunnel carries TCP connections to pod ports over Kubernetes
// port-forward connections.
//
// A Session is one port-forward connection to one pod (WebSocket first,
// SPDY as fallback, like kubectl). Unlike client-go's PortForwarder it does
// not own listeners and never closes itself because one stream failed: each
// Dial opens its own error/data stream pair, an error reported on that pair
// ends that connection only, and the pair is always removed from the
// session when the connection closes. Serve runs a local listener whose
// connections are dialled through whatever session the caller picks, so the
// listener stays bound while the pod behind it changes.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
	"github.com/kpf-dev/kpf/internal/deadline"
	"github.com/kpf-dev/kpf/internal/readbatch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	spdytransport "k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/transport/websocket"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// Pod names the pod a session forwards to.
type Pod struct {
	Namespace, Name string
}

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// Connector opens port-forward sessions with one cluster's credentials.
type Connector struct {
	config *rest.Config
	// websocket is false when KUBECTL_PORT_FORWARD_WEBSOCKETS=false asks
	// for SPDY only, as kubectl honours it.
	websocket bool
}

// NewConnector returns a Connector for cfg.
func NewConnector(cfg *rest.Config) *Connector {
	return &Connector{config: cfg, websocket: !strings.EqualFold(os.Getenv("KUBECTL_PORT_FORWARD_WEBSOCKETS"), "false")}
}

// Connect opens a port-forward session to pod. It returns when the upgrade
// has completed, failed, or ctx is done.
func (c *Connector) Connect(ctx context.Context, pod Pod) (*Session, error) {
	u, err := url.Parse(c.config.Host)
	if err != nil {
		return nil, fmt.Errorf("parse API server address: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward", pod.Namespace, pod.Name)
	type result struct {
		conn      httpstream.Connection
		protocol  string
		transport io.Closer
		err       error
	}
	// Neither dial takes a context: dial in the background and, if ctx
	// ends first, close whatever arrives later.
	done := make(chan result, 1)
	go func() {
		var r result
		if c.websocket {
			r.conn, r.protocol, r.transport, r.err = c.dialWebSocket(u)
			if r.err == nil || !fallBack(r.err) {
				done <- r
				return
			}
		}
		r = result{}
		r.conn, r.protocol, r.err = c.dialSPDY(u)
		done <- r
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("port-forward to pod %s: %w", pod, r.err)
		}
		return newSession(pod, r.conn, r.protocol, r.transport), nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				if r.transport != nil {
					r.transport.Close()
				}
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, ctx.Err())
	}
}

// fallBack reports whether a failed WebSocket dial should be tried again
// over SPDY, as kubectl does. client-go's WebSocket transport reports a
// failed upgrade with k8s.io/streaming's error type, not apimachinery's:
// checking only the latter never fell back.
//
// A 401 is not retried: credentials are rejected whatever the protocol,
// and SPDY's error would lose the status that says so.
func fallBack(err error) bool {
	var up *streamhttp.UpgradeFailureError
	if errors.As(err, &up) && apierrors.IsUnauthorized(up.Cause) {
		return false
	}
	return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) ||
		streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
}

// dialWebSocket opens a port-forward session tunnelled over WebSocket, as
// client-go's SPDY-over-WebSocket dialer does, but keeps the tunnel so that
// Session.Close can close it first (see there).
func (c *Connector) dialWebSocket(u *url.URL) (httpstream.Connection, string, io.Closer, error) {
	rt, holder, err := websocket.RoundTripperFor(c.config)
	if err != nil {
		return nil, "", nil, fmt.Errorf("websocket round tripper: %w", err)
	}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", nil, err
	}
	ws, err := websocket.Negotiate(rt, holder, req, pfconst.WebsocketsSPDYTunnelingPortForwardV1)
	if err != nil {
		return nil, "", nil, err
	}
	if ws == nil {
		return nil, "", nil, errors.New("websocket negotiation returned no connection")
	}
	tunnel := portforward.NewTunnelingConnection("client", ws)
	batcher := readbatch.New(ws.UnderlyingConn())
	conn, err := newSPDYConnection(newFrameConn(readbatch.Wrap(tunnel, batcher)))
	if err != nil {
		tunnel.Close()
		return nil, "", nil, err
	}
	return conn, strings.TrimPrefix(ws.Subprotocol(), pfconst.WebsocketsSPDYTunnelingPrefix), tunnel, nil
}

// dialSPDY opens a port-forward session over an HTTP upgrade to SPDY.
func (c *Connector) dialSPDY(u *url.URL) (httpstream.Connection, string, error) {
	rt, upgrader, err := spdyRoundTripperFor(c.config)
	if err != nil {
		return nil, "", fmt.Errorf("spdy round tripper: %w", err)
	}
	return spdytransport.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
}

// Session is one port-forward connection to a pod, multiplexing any number
// of forwarded TCP connections. It is safe for concurrent use.
type Session struct {
	Pod      Pod
	Protocol string

	conn httpstream.Connection
	// transport, if known, is what carries conn (the WebSocket tunnel).
	transport io.Closer
	requestID atomic.Int64
	active    atomic.Int64
	// parked counts the connections of active that are spares (Park).
	parked    atomic.Int64
	done      chan struct{}
	closeOnce sync.Once
	// cause is why the session ended, when known (see end); read after
	// done is closed.
	cause    error
	lastUsed atomic.Int64 // unix nanoseconds
	// Traffic, for Busy: when a connection last read data or finished a
	// write (unix nanoseconds), and how many writes are in progress.
	lastMoved atomic.Int64
	lastWrote atomic.Int64
	writing   atomic.Int64
	// lastOpened is when a stream pair was last acknowledged (unix
	// nanoseconds), for Dial's stall check.
	lastOpened atomic.Int64
	// onIdle, if set before the session is shared, is called when the
	// last open connection closes.
	onIdle func()
	// onBulk and onEnd, if set before the session is shared, hear of each
	// connection that has moved bulkBytes, and of each connection that
	// closes: what it moved and whether it had become bulk.
	onBulk func()
	onEnd  func(moved int64, bulk bool)
	// released announces each connection that closes (Pool.pick waits
	// on it).
	released broadcast.Changes

	sharedMu sync.Mutex
	shared   map[string]*sharedRun
}

// NewSession returns a session to pod over conn, a port-forward
// connection speaking protocol (as the API server named it when
// upgrading): for tests, over an in-memory connection (see tunneltest).
func NewSession(pod Pod, conn httpstream.Connection, protocol string) *Session {
	return newSession(pod, conn, protocol, nil)
}

func newSession(pod Pod, conn httpstream.Connection, protocol string, transport io.Closer) *Session {
	s := &Session{Pod: pod, Protocol: protocol, conn: conn, transport: transport, done: make(chan struct{})}
	s.lastUsed.Store(time.Now().UnixNano())
	s.lastWrote.Store(s.lastUsed.Load())
	go func() {
		select {
		case <-conn.CloseChan():
			s.end(errConnectionEnded)
			// The far end went away; closing our side as well releases the
			// connection's goroutines and streams.
			s.closeConn()
		case <-s.done:
		}
	}()
	return s
}

// Done is closed when the session has ended, by Close or because the
// connection to the API server was lost.
func (s *Session) Done() <-chan struct{} { return s.done }

// Transport names what carries the session: "websocket" (SPDY tunnelled
// over WebSocket, the default) or "spdy" (an HTTP upgrade to SPDY).
func (s *Session) Transport() string {
	if s.transport != nil {
		return "websocket"
	}
	return "spdy"
}

// Alive reports whether the session has not ended.
func (s *Session) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// ended is Alive's opposite, and also true from the moment the underlying
// connection closes, before the goroutine that closes done has run: a
// stream read that ended because its connection did must see it.
func (s *Session) ended() bool {
	select {
	case <-s.done:
		return true
	case <-s.conn.CloseChan():
		return true
	default:
		return false
	}
}

// fastPinger is a connection whose pings can be hurried (spdyConnection).
type fastPinger interface{ pingFastUntil(time.Time) }

// leaving tells the session whether its pod has left the endpoints that
// kpf forwards to. A leaving session pings the far end at once and then
// every leavingPingPeriod for leavingPingWindow, so that if the pod is
// gone its end reaches kpf within a round trip rather than at the next
// regular ping (see spdyConnection), and the connections still open
// through it are reset rather than left hanging.
func (s *Session) leaving(on bool) {
	p, ok := s.conn.(fastPinger)
	if !ok || !s.Alive() {
		return
	}
	if on {
		p.pingFastUntil(time.Now().Add(leavingPingWindow))
	} else {
		p.pingFastUntil(time.Time{})
	}
}

// Active is the number of connections open or being opened through the
// session.
func (s *Session) Active() int64 { return s.active.Load() }

// load is Active without the parked connections (spares), which wait
// idle for a client.
func (s *Session) load() int64 { return s.active.Load() - s.parked.Load() }

// setParked counts c among its session's parked connections, or stops
// counting it.
func (c *Conn) setParked(parked bool) {
	if parked {
		c.session.parked.Add(1)
	} else {
		c.session.parked.Add(-1)
	}
}

// IdleSince is when the last connection through the session closed, or
// when it opened, if it has none now.
func (s *Session) IdleSince() time.Time { return time.Unix(0, s.lastUsed.Load()) }

// Busy reports whether the session has carried data since t with no write
// stuck since then. A health check that could not open a stream in time on
// a busy session met a queue (a thousand streams ahead of it), not a dead
// connection. A session is not busy when a write has been blocked since
// before t with none finishing since: a pod that stopped reading one
// connection holds spdystream's frame-write lock, and no other stream can
// send, nor a new one open, until the session is closed.
func (s *Session) Busy(t time.Time) bool {
	since := t.UnixNano()
	if s.writing.Load() > 0 && s.lastWrote.Load() < since {
		return false
	}
	return s.lastMoved.Load() >= since
}

// stalledWrite is how long a write may take before the session counts as
// held up (writeStalled).
const stalledWrite = 250 * time.Millisecond

// writeStalled reports whether a connection's write has been in progress
// for stalledWrite with no write on the session finishing meanwhile: its
// pod or a peer on the way has stopped taking data, and while that write
// holds the session's frame-write lock, no other connection on it can
// send or open.
func (s *Session) writeStalled(now time.Time) bool {
	return s.writing.Load() > 0 && now.Sub(time.Unix(0, s.lastWrote.Load())) >= stalledWrite
}

// progressed reports whether, since t, a stream was acknowledged on the
// session or it was busy carrying data (see Busy).
func (s *Session) progressed(t time.Time) bool {
	return s.lastOpened.Load() >= t.UnixNano() || s.Busy(t)
}

// Close ends the session and every connection open through it. It does
// not wait for a peer that has stopped reading.
func (s *Session) Close() error {
	s.end(nil)
	return s.closeConn()
}

// end marks the session ended, for cause (nil: closed on purpose) if it
// had not ended already.
func (s *Session) end(cause error) {
	s.closeOnce.Do(func() {
		s.cause = cause
		close(s.done)
	})
}

// errConnectionEnded is the cause of a session whose connection the far
// end closed: the API server, or something on the way to it.
var errConnectionEnded = errors.New("the connection to the API server ended")

// closedErr is ErrSessionClosed with why the session ended, when known.
func (s *Session) closedErr() error {
	select {
	case <-s.done:
		if s.cause != nil {
			return fmt.Errorf("%w: %w", ErrSessionClosed, s.cause)
		}
	default:
	}
	return ErrSessionClosed
}

// StallError is why a session was closed as stalled: for Silence,
// nothing moved on it and a stream it asked for was not acknowledged.
// It wraps ErrSessionStalled.
type StallError struct {
	Pod     Pod
	Silence time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("port-forward session to pod %s stalled: no stream opened and no data moved on it for %s", e.Pod, e.Silence)
}

func (e *StallError) Unwrap() error { return ErrSessionStalled }

// Timeout reports true: a stall is the far end not answering in time.
func (e *StallError) Timeout() bool { return true }

// Silent is how long the API server was heard from no more (kube.Explain
// names it).
func (e *StallError) Silent() time.Duration { return e.Silence }

// closeConn closes the connection. A stream write blocked because the far
// end stopped reading (a pod that accepts and never reads fills every
// buffer on the way) holds spdystream's frame-write lock, and closing the
// connection writes a reset frame per stream under that lock: it would
// wait for as long as the pod does not read. Closing the transport first
// makes the blocked write fail. (Over the SPDY fallback the transport is
// not at hand, and such a close still waits.)
func (s *Session) closeConn() error {
	var err error
	if s.transport != nil {
		err = s.transport.Close()
	}
	if cerr := s.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrSessionClosed is returned by Dial on a session that has ended.
var ErrSessionClosed = errors.New("port-forward session closed")

// ErrSessionStalled is returned, wrapped with ErrSessionClosed, by the Dial
// that found its session stalled and closed it (see StreamOpenStall).
var ErrSessionStalled = errors.New("port-forward session stalled")

// StreamOpenStall is how long Dial waits for its streams on a session on
// which, meanwhile, no other stream opened and no data moved. Past it the
// session is taken for wedged and closed, so that the caller reconnects
// rather than wait out its whole deadline on it. A stream is normally
// acknowledged within a round trip to the kubelet (which replies before it
// dials the pod); a connection whose every reader has stopped
// acknowledges nothing, and neither will its other streams.
const StreamOpenStall = 10 * time.Second

// Dial opens a connection to port of the session's pod. The returned
// net.Conn reports an error that the kubelet sends for this connection
// (for example "connection refused" inside the pod) from Read, and closing
// it releases its streams. ctx bounds stream creation only.
func (s *Session) Dial(ctx context.Context, port uint16) (*Conn, error) {
	s.active.Add(1)
	return s.dialReserved(ctx, port, nil, nil)
}

// release undoes a reservation made by Pool.pick or Dial, or accounts for
// a closed connection.
func (s *Session) release() {
	s.lastUsed.Store(time.Now().UnixNano())
	left := s.active.Add(-1)
	s.released.Notify()
	if left == 0 && s.onIdle != nil {
		s.onIdle()
	}
}

// dialReserved is Dial for a connection already counted in active; a
// failure releases it.
func (s *Session) dialReserved(ctx context.Context, port uint16, prefix []byte, first *FirstBytes) (*Conn, error) {
	c, err := s.dial(ctx, port, prefix, first)
	if err != nil {
		s.release()
	}
	return c, err
}

// dial opens a connection to port. When the connection can send data
// before the kubelet accepts its streams, it sends what first holds along
// with the opening frames; if it then fails without a clear answer, its
// error wraps ErrSentAhead.
//
// Both streams are created at once: the kubelet pairs them by request id
// in whatever order they come, so the connection costs one round trip to
// it instead of two. Each stream is read from the moment the kubelet
// accepts it (see earlyReader), while the dial waits for the other.
// Nothing but prefix and the client's first bytes (aheadSender) is
// written before both are accepted.
//
// prefix, if not empty, goes first on the data stream, ahead with the
// opening frames when the transport allows, else as the connection's
// first write: a protocol's own request before the client's bytes (kpf's
// relay). It does not count as the client's bytes: a dial that sent only
// it may be retried elsewhere.
func (s *Session) dial(ctx context.Context, port uint16, prefix []byte, first *FirstBytes) (*Conn, error) {
	if !s.Alive() {
		return nil, s.closedErr()
	}
	id := s.requestID.Add(1)
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.FormatInt(id, 10))
	res := make(chan streamPair, 1)
	var ahead aheadSender
	go func() { res <- s.openPair(h, prefix, first, &ahead) }()
	r, err := s.awaitPair(ctx, port, first, &ahead, res)
	if err != nil {
		return nil, err
	}
	s.lastOpened.Store(time.Now().UnixNano())
	c := &Conn{session: s, port: port, data: r.data, errStream: r.errStream, watch: r.watch, early: r.early, closed: make(chan struct{})}
	if len(prefix) > 0 && !ahead.prefixWasSent() {
		if _, err := c.Write(prefix); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// streamPair is the outcome of opening a connection's two streams.
type streamPair struct {
	errStream, data httpstream.Stream
	watch           *errorWatch
	early           *earlyReader
	err             error
}

// acceptedErrorStream is the outcome of creating an error stream; the
// stream is closed on our side when closeIt is set (it is read-only for
// us).
func acceptedErrorStream(pod Pod, st httpstream.Stream, err error, closeIt bool) streamPair {
	if err != nil {
		return streamPair{err: err}
	}
	if closeIt {
		st.Close()
	}
	return streamPair{errStream: st, watch: watchErrorStream(pod, st)}
}

// openPair creates the error and data streams of one connection and
// waits until the kubelet has answered both.
func (s *Session) openPair(h http.Header, prefix []byte, first *FirstBytes, ahead *aheadSender) streamPair {
	dh := h.Clone()
	dh.Set(corev1.StreamType, corev1.StreamTypeData)
	errc := make(chan streamPair, 1)
	var (
		data httpstream.Stream
		derr error
		// stopAhead stops sending the client's bytes ahead; it returns
		// once nothing more will be sent that way.
		stopAhead = func() {}
	)
	if ac, ok := s.conn.(aheadConn); ok {
		var err error
		data, derr, stopAhead, err = s.openAhead(ac, h, dh, prefix, first, ahead, errc)
		if err != nil {
			return streamPair{err: err}
		}
	} else {
		go func() {
			st, err := s.conn.CreateStream(h)
			errc <- acceptedErrorStream(s.Pod, st, err, true)
		}()
		data, derr = s.conn.CreateStream(dh)
	}
	defer stopAhead()
	return s.pair(errc, data, derr)
}

// openAhead sends both opening frames, error stream first, and the
// client's first bytes right behind them, then waits for the kubelet to
// accept the data stream; the error stream's answer arrives on errc. The
// error stream's frame goes first so that the kubelet, which reads a data
// stream's data only once its pair is complete, has its pair before the
// data. It also ends our side of the error stream, which is read-only for
// us, saving the frame that would end it later.
//
// The two frames and the bytes the client has sent by then go out in one
// write (holdFrames): one TLS record and one WebSocket message, which the
// API server relays in one piece. A non-nil err means no stream is left
// open; derr is the data stream's refusal.
func (s *Session) openAhead(ac aheadConn, h, dh http.Header, prefix []byte, first *FirstBytes, ahead *aheadSender, errc chan<- streamPair) (data httpstream.Stream, derr error, stopAhead func(), err error) {
	stopAhead = func() {}
	release := ac.holdFrames()
	errSt, err := ac.openStream(h, true)
	if err != nil {
		release() //nolint:errcheck // the error is err's
		return nil, nil, stopAhead, fmt.Errorf("create error stream: %w", err)
	}
	data, derr = ac.openStream(dh, false)
	if derr != nil {
		release() //nolint:errcheck // the error is derr's
		errSt.Reset()
		s.conn.RemoveStreams(errSt)
		return nil, nil, stopAhead, fmt.Errorf("create data stream: %w", derr)
	}
	send := func(p []byte) error { return ac.sendAhead(data, p) }
	if len(prefix) > 0 {
		// A failed send fails the release below.
		send(prefix) //nolint:errcheck
		ahead.sentPrefix()
	}
	if first != nil {
		ahead.sendNow(first, send)
	}
	if err := release(); err != nil {
		errSt.Reset()
		data.Reset()
		s.conn.RemoveStreams(errSt, data)
		return nil, nil, stopAhead, fmt.Errorf("send the streams' opening frames: %w", err)
	}
	if first != nil {
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			ahead.run(first, send, stop)
		}()
		stopAhead = func() {
			close(stop)
			<-stopped
		}
	}
	go func() { errc <- acceptedErrorStream(s.Pod, errSt, ac.waitStream(errSt), false) }()
	if derr = ac.waitStream(data); derr != nil {
		data.Reset()
		return nil, derr, stopAhead, nil
	}
	return data, nil, stopAhead, nil
}

// pair joins the data stream (or its refusal, derr) with the error
// stream's outcome from errc. When the data stream was accepted first, it
// is read early while the error stream is awaited.
func (s *Session) pair(errc <-chan streamPair, data httpstream.Stream, derr error) streamPair {
	var (
		e     streamPair
		early *earlyReader
	)
	select {
	case e = <-errc:
		// Both accepted (the usual order): the caller reads from here.
	default:
		if derr == nil {
			early = startEarlyRead(data)
		}
		e = <-errc
	}
	switch {
	case e.err == nil && derr != nil:
		// When forwarding fails at once (nothing listens on the port) the
		// kubelet may reset the data stream before replying to it; its
		// reason is on the error stream. Report it through the
		// connection, as when the pair was created first.
		if reason := e.watch.wait(time.Second, e.errStream); reason != nil {
			return streamPair{errStream: e.errStream, data: refusedStream{}, watch: e.watch}
		}
		s.conn.RemoveStreams(e.errStream)
		return streamPair{err: fmt.Errorf("create data stream: %w", derr)}
	case e.err != nil || derr != nil:
		for _, st := range []httpstream.Stream{e.errStream, data} {
			if st != nil {
				st.Reset()
			}
		}
		s.conn.RemoveStreams(e.errStream, data)
		if e.err == nil {
			return streamPair{err: fmt.Errorf("create data stream: %w", derr)}
		}
		return streamPair{err: fmt.Errorf("create error stream: %w", e.err)}
	default:
		e.watch.attach(data)
		return streamPair{errStream: e.errStream, data: data, watch: e.watch, early: early}
	}
}

// awaitPair waits for openPair's outcome on res, until ctx ends (or,
// once the client's bytes were sent ahead, until the client gives up),
// the session ends, or the session stalls: a wait of StreamOpenStall
// with no stream opened and no data moved closes the session.
func (s *Session) awaitPair(ctx context.Context, port uint16, first *FirstBytes, ahead *aheadSender, res chan streamPair) (streamPair, error) {
	failed := func(err error) (streamPair, error) {
		if ahead.giveUp() {
			return streamPair{}, fmt.Errorf("%w: %w", ErrSentAhead, err)
		}
		return streamPair{}, err
	}
	abandon := func() {
		go func() {
			if r := <-res; r.err == nil {
				r.data.Reset()
				r.errStream.Reset() // ends its watch
				s.conn.RemoveStreams(r.errStream, r.data)
			}
		}()
	}
	since := time.Now()
	stall := time.NewTimer(StreamOpenStall)
	defer stall.Stop()
	ctxDone := ctx.Done()
	for {
		select {
		case r := <-res:
			if r.err != nil {
				return failed(fmt.Errorf("dial %s:%d: %w", s.Pod, port, r.err))
			}
			return r, nil
		case <-ctxDone:
			if keep := first.keepWaiting(); ahead.wasSent() && keep != nil && ctxDone != keep {
				// The request may be with the pod already: its answer
				// decides, not the dial's deadline.
				ctxDone = keep
				continue
			}
			ahead.giveUp()
			abandon()
			err := ctx.Err()
			if err == nil {
				err = first.ctx.Err()
			}
			return failed(fmt.Errorf("dial %s:%d: %w", s.Pod, port, err))
		case <-s.done:
			return failed(s.closedErr())
		case <-stall.C:
			if s.progressed(since) {
				// Slow, not stuck: a queue of streams ahead of ours.
				since = time.Now()
				stall.Reset(StreamOpenStall)
				continue
			}
			ahead.giveUp()
			abandon()
			s.end(&StallError{Pod: s.Pod, Silence: StreamOpenStall})
			s.closeConn()
			return failed(fmt.Errorf("dial %s:%d: %w", s.Pod, port, s.closedErr()))
		}
	}
}

// refusedStream stands for the data stream of a pair the kubelet refused:
// reads end at once (Conn.Read then reports the kubelet's reason) and
// writes fail.
type refusedStream struct{}

func (refusedStream) Read([]byte) (int, error)  { return 0, io.EOF }
func (refusedStream) Write([]byte) (int, error) { return 0, errRefused }
func (refusedStream) Close() error              { return nil }
func (refusedStream) Reset() error              { return nil }
func (refusedStream) Headers() http.Header      { return http.Header{} }
func (refusedStream) Identifier() uint32        { return 0 }

var errRefused = errors.New("the kubelet refused the connection")

// Conn is one forwarded TCP connection: a data stream and its error stream.
// It implements net.Conn, deadlines included: a Read or Write waiting at
// its deadline, or begun after it, fails with an error that wraps
// os.ErrDeadlineExceeded and is a net.Error whose Timeout is true. A
// timed-out Read consumes nothing. A Write that times out while the
// session cannot take its bytes (the pod does not read) reports 0 bytes
// written, but its bytes still go out once the session takes them, before
// those of any later Write: as for any net.Conn, a connection whose write
// timed out is best closed.
type Conn struct {
	session   *Session
	port      uint16
	data      httpstream.Stream
	errStream httpstream.Stream
	watch     *errorWatch  // reads errStream
	early     *earlyReader // nil unless the data stream was accepted first

	closeOnce  sync.Once
	closed     chan struct{} // closed by Close
	writeClose sync.Once
	// moved counts the bytes read and written until they reach bulkBytes,
	// when bulk is set.
	moved atomic.Int64
	bulk  atomic.Bool

	// Write deadlines. Until the first SetWriteDeadline or SetDeadline,
	// writes go straight to the stream; from then on each runs in a
	// goroutine that the writer can leave at the deadline (see
	// writeByDeadline), and pending holds the outcome of a write left
	// so, which the next one waits for.
	writeDeadline deadline.Deadline
	deadlines     atomic.Bool
	writeMu       sync.Mutex
	pending       chan writeResult
	// writing counts the writes in the stream now; Close does not wait
	// for them (see Close).
	writing atomic.Int32
}

// writeResult is the outcome of a write.
type writeResult struct {
	n   int
	err error
}

// count adds n bytes moved to c's count, and tells the session once c has
// moved bulkBytes.
func (c *Conn) count(n int) {
	if c.bulk.Load() {
		return
	}
	if c.moved.Add(int64(n)) >= bulkBytes && c.bulk.CompareAndSwap(false, true) && c.session.onBulk != nil {
		c.session.onBulk()
	}
}

// Read reads from the pod. When the pod side ends with an error the kubelet
// reported, Read returns that error instead of io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	var (
		n       int
		err     error
		handled bool
	)
	if c.early != nil {
		n, err, handled = c.early.read(p)
	}
	if !handled {
		n, err = c.data.Read(p)
	}
	if n > 0 {
		c.session.lastMoved.Store(time.Now().UnixNano())
		c.count(n)
	}
	if err != nil && n == 0 {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
		// The kubelet writes any error before closing the data stream,
		// and closes the error stream right after.
		select {
		case <-c.watch.done:
			if c.watch.err != nil {
				return 0, c.watch.err
			}
		case <-time.After(50 * time.Millisecond):
		}
		if isClosed(err) {
			if c.session.ended() {
				// The data stream did not end: the connection carrying it
				// did (API server or kubelet gone, or the session closed).
				// Whatever the pod was sending was cut short, and the
				// client must not take the end for a complete answer.
				return 0, fmt.Errorf("%w before %s:%d finished", c.session.closedErr(), c.session.Pod, c.port)
			}
			return 0, io.EOF
		}
	}
	return n, err
}

// Write writes to the pod.
func (c *Conn) Write(p []byte) (int, error) {
	// A reset stream takes writes without a word: the far end drops them.
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if c.deadlines.Load() {
		return c.writeByDeadline(p)
	}
	return c.write(p)
}

// writeByDeadline writes p in a goroutine and waits for it until the
// write deadline: a write to a session whose pod does not read blocks in
// the session's connection, where it cannot be cancelled without ending
// every stream of the session. p is copied, since the caller may reuse it
// once Write returns.
func (c *Conn) writeByDeadline(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	expired := c.writeDeadline.Expired()
	if c.pending != nil {
		select {
		case r := <-c.pending:
			c.pending = nil
			if r.err != nil {
				return 0, r.err
			}
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	select {
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	default:
	}
	buf := append([]byte(nil), p...)
	done := make(chan writeResult, 1)
	go func() {
		n, err := c.write(buf)
		done <- writeResult{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-expired:
		c.pending = done
		return 0, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

// InterruptibleWrites makes every later Write wait for its bytes in a
// goroutine that a write deadline or Close can leave, as writeByDeadline
// does once a deadline is set: for connections that application code
// writes (the Go Dialer's), which may set a deadline or close while a
// write is blocked (a database driver cancelling a query). kpf's own copy
// from a local socket does not need it and writes directly.
func (c *Conn) InterruptibleWrites() { c.deadlines.Store(true) }

// write writes p to the pod's stream.
func (c *Conn) write(p []byte) (int, error) {
	c.writing.Add(1)
	defer c.writing.Add(-1)
	c.session.writing.Add(1)
	n, err := c.data.Write(p)
	c.session.writing.Add(-1)
	if err == nil {
		now := time.Now().UnixNano()
		c.session.lastWrote.Store(now)
		c.session.lastMoved.Store(now)
		c.count(n)
	}
	return n, err
}

// CutWhenStuck lets the session reset this connection when its reader
// takes nothing for StuckStreamWait while other connections wait behind
// it. kpf's own copy to a local socket allows it: by then the client has
// stopped reading for as long as the kernel's buffers took to fill. The
// Go Dialer's connections, read by application code, do not.
func (c *Conn) CutWhenStuck() {
	if st, ok := c.data.(interface{ AllowCut() }); ok {
		st.AllowCut()
	}
}

// CloseWrite tells the pod that nothing more will be sent; reading goes on.
func (c *Conn) CloseWrite() error {
	var err error
	c.writeClose.Do(func() { err = c.data.Close() })
	return err
}

// Close ends the connection and removes its streams from the session.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		// A write blocked in the session's connection (its pod does not
		// read) holds the lock the reset frame needs: send it once that
		// write is through, rather than wait for it here.
		if c.writing.Load() > 0 {
			go c.data.Reset()
		} else {
			c.data.Reset()
		}
		c.session.conn.RemoveStreams(c.errStream, c.data)
		if c.session.onEnd != nil {
			c.session.onEnd(c.moved.Load(), c.bulk.Load())
		}
		c.session.release()
	})
	return nil
}

// RemoteErr returns the error the kubelet reported for this connection, if
// it has reported one yet.
func (c *Conn) RemoteErr() error {
	select {
	case <-c.watch.done:
		return c.watch.err
	default:
		return nil
	}
}

// LocalAddr is a placeholder naming the session's pod.
func (c *Conn) LocalAddr() net.Addr { return addr("kpf") }

// RemoteAddr names the pod and port, e.g. "ns/pod:8080".
func (c *Conn) RemoteAddr() net.Addr { return addr(fmt.Sprintf("%s:%d", c.session.Pod, c.port)) }

// SetDeadline sets the read and write deadlines (see Conn).
func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// readDeadliner is implemented by spdystream's streams, whose read
// deadline is each stream's own.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// SetReadDeadline sets the deadline of reads (see Conn); a zero t clears
// it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	st, ok := c.data.(readDeadliner)
	if !ok {
		return fmt.Errorf("set read deadline of %s:%d: %w", c.session.Pod, c.port, errors.ErrUnsupported)
	}
	return st.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline of writes (see Conn); a zero t
// clears it.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.deadlines.Store(true)
	c.writeDeadline.Set(t)
	return nil
}

type addr string

func (a addr) Network() string { return "kpf" }
func (a addr) String() string  { return string(a) }

func isClosed(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "stream reset") || strings.Contains(s, "use of closed") || strings.Contains(s, "connection reset")
}

// sharedRun is one run of Session.Coalesce's function.
type sharedRun struct {
	done  chan struct{} // closed when the run has finished
	err   error
	at    time.Time // when it finished
	valid bool      // false if its caller's context ended during the run
}

// Coalesce runs fn for key once among all its callers on this session: a
// caller that comes while a run is in flight waits for it, and one that
// comes within fresh of the last run's end gets that run's result without
// running fn. Forwards that share a session use it to share one health
// check of a pod port rather than each probing it. A run whose ctx ended
// before it finished is not shared: its waiters run fn themselves.
// Coalesce returns ctx's error if ctx ends while waiting.
func (s *Session) Coalesce(ctx context.Context, key string, fresh time.Duration, fn func(context.Context) error) error {
	for {
		s.sharedMu.Lock()
		if s.shared == nil {
			s.shared = map[string]*sharedRun{}
		}
		run := s.shared[key]
		if run != nil {
			select {
			case <-run.done:
				if !run.valid || time.Since(run.at) >= fresh {
					run = nil
				}
			default:
			}
		}
		if run == nil {
			run = &sharedRun{done: make(chan struct{})}
			s.shared[key] = run
			s.sharedMu.Unlock()
			err := fn(ctx)
			s.sharedMu.Lock()
			run.err, run.at, run.valid = err, time.Now(), ctx.Err() == nil
			close(run.done)
			s.sharedMu.Unlock()
			return err
		}
		s.sharedMu.Unlock()
		select {
		case <-run.done:
			if run.valid {
				return run.err
			}
			// Its caller gave up: run it ourselves.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
