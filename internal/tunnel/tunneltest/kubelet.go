// Package tunneltest is an in-memory stand-in for the API server and the
// kubelets on the far side of port-forward sessions, for unit tests of
// the code above package tunnel (the forward engine, the Dialer): real
// tunnel.Pools and tunnel.Sessions, speaking the port-forward protocol's
// stream pairs over in-memory connections to pods whose ports are Go
// handlers. The end-to-end tests prove the real path; this makes the
// logic above it testable without a cluster.
package tunneltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"

	"github.com/kpf-dev/kpf/internal/tunnel"
)

// Handler serves one connection to a pod's port; the connection ends
// when it returns.
type Handler func(net.Conn)

// Echo is a Handler that writes back what it reads.
func Echo(c net.Conn) { io.Copy(c, c) }

// Name is a Handler that writes s and ends the connection: a pod saying
// who it is.
func Name(s string) Handler {
	return func(c net.Conn) { io.WriteString(c, s) }
}

// Kubelet holds the fake pods. Its methods are safe for concurrent use.
type Kubelet struct {
	mu       sync.Mutex
	pods     map[tunnel.Pod]*pod
	sessions map[tunnel.Pod][]*conn
	opened   int
	// connectDelay is how long opening a session takes (SetConnectDelay).
	connectDelay time.Duration
}

type pod struct {
	ports  map[uint16]Handler
	refuse error // sessions to the pod fail with it
}

// New returns a Kubelet with no pods.
func New() *Kubelet {
	return &Kubelet{pods: map[tunnel.Pod]*pod{}, sessions: map[tunnel.Pod][]*conn{}}
}

// Serve makes port of the pod serve h, creating the pod if needed.
func (k *Kubelet) Serve(namespace, name string, port uint16, h Handler) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := tunnel.Pod{Namespace: namespace, Name: name}
	p := k.pods[key]
	if p == nil {
		p = &pod{ports: map[uint16]Handler{}}
		k.pods[key] = p
	}
	p.ports[port] = h
}

// Refuse makes new sessions to the pod fail with err (nil lets them
// open again); the sessions open now go on.
func (k *Kubelet) Refuse(namespace, name string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p := k.pods[tunnel.Pod{Namespace: namespace, Name: name}]; p != nil {
		p.refuse = err
	}
}

// Delete removes the pod and ends its sessions, as the kubelet does when
// a pod is deleted.
func (k *Kubelet) Delete(namespace, name string) {
	key := tunnel.Pod{Namespace: namespace, Name: name}
	k.mu.Lock()
	delete(k.pods, key)
	open := k.sessions[key]
	delete(k.sessions, key)
	k.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// Drop ends the pod's sessions, as an API server restart or a network
// blip does; the pod stays, and new sessions open.
func (k *Kubelet) Drop(namespace, name string) {
	key := tunnel.Pod{Namespace: namespace, Name: name}
	k.mu.Lock()
	open := k.sessions[key]
	delete(k.sessions, key)
	k.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// Opened is how many sessions have been opened, to any pod.
func (k *Kubelet) Opened() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.opened
}

// Open is how many sessions to the pod are open now.
func (k *Kubelet) Open(namespace, name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.sessions[tunnel.Pod{Namespace: namespace, Name: name}] {
		if !c.isClosed() {
			n++
		}
	}
	return n
}

// SetConnectDelay makes opening a session take d from now on, as it does
// through a far API server (a TLS handshake and an upgrade: two round
// trips).
func (k *Kubelet) SetConnectDelay(d time.Duration) {
	k.mu.Lock()
	k.connectDelay = d
	k.mu.Unlock()
}

// Connect opens a session to p, as tunnel.Connector.Connect does through
// the API server.
func (k *Kubelet) Connect(ctx context.Context, p tunnel.Pod) (*tunnel.Session, error) {
	k.mu.Lock()
	delay := k.connectDelay
	k.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	fp := k.pods[p]
	switch {
	case fp == nil:
		return nil, fmt.Errorf("pods %q not found", p.Name)
	case fp.refuse != nil:
		return nil, fp.refuse
	}
	c := &conn{k: k, pod: p, closed: make(chan bool)}
	k.sessions[p] = append(k.sessions[p], c)
	k.opened++
	return tunnel.NewSession(p, c, "portforward.k8s.io"), nil
}

// Pool returns a session pool over this Kubelet.
func (k *Kubelet) Pool() *tunnel.Pool {
	return tunnel.NewPoolWith(k.Connect, 5*time.Second)
}

// handler returns what serves port of the session's pod now, or why
// nothing does, in the kubelet's words.
func (k *Kubelet) handler(p tunnel.Pod, port uint16) (Handler, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fp := k.pods[p]
	if fp == nil {
		return nil, fmt.Sprintf("pod %s not found", p.Name)
	}
	if h := fp.ports[port]; h != nil {
		return h, ""
	}
	return nil, fmt.Sprintf("an error occurred forwarding %d -> %d: dial tcp4 127.0.0.1:%d: connect: connection refused", port, port, port)
}

// conn is one port-forward session's connection: it pairs error and data
// streams by request id, as the kubelet does, and runs the port's handler
// for each pair.
type conn struct {
	k       *Kubelet
	pod     tunnel.Pod
	mu      sync.Mutex
	pending map[string]*pair // pairs waiting for their other stream, by request id
	streams []*stream
	nextID  uint32
	closed  chan bool
	closing sync.Once
}

func (c *conn) CreateStream(h http.Header) (httpstream.Stream, error) {
	if c.isClosed() {
		return nil, errors.New("connection closed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	st := newStream(c.nextID, h)
	c.streams = append(c.streams, st)
	id := h.Get(corev1.PortForwardRequestIDHeader)
	if c.pending == nil {
		c.pending = map[string]*pair{}
	}
	pr := c.pending[id]
	if pr == nil {
		pr = &pair{}
		c.pending[id] = pr
	}
	switch h.Get(corev1.StreamType) {
	case corev1.StreamTypeError:
		pr.errSt = st
	case corev1.StreamTypeData:
		pr.data = st
	default:
		return nil, fmt.Errorf("unknown stream type %q", h.Get(corev1.StreamType))
	}
	if pr.errSt != nil && pr.data != nil {
		// The pair is complete, in whichever order it came: serve it.
		delete(c.pending, id)
		c.serve(pr)
	}
	return st, nil
}

// pair is a connection's error and data streams.
type pair struct{ errSt, data *stream }

// serve runs the handler of the pair's port, or reports on the error
// stream why there is none and ends the pair, as the kubelet does.
func (c *conn) serve(pr *pair) {
	port, err := strconv.ParseUint(pr.data.headers.Get(corev1.PortHeader), 10, 16)
	handler, refusal := c.k.handler(c.pod, uint16(port))
	if err != nil {
		handler, refusal = nil, "invalid port "+pr.data.headers.Get(corev1.PortHeader)
	}
	if handler == nil {
		go func() {
			pr.errSt.fromW.Write([]byte(refusal))
			pr.errSt.fromW.Close()
		}()
		pr.data.Reset()
		return
	}
	go func() {
		handler(&podConn{s: pr.data})
		pr.data.fromW.Close()
		pr.errSt.fromW.Close()
	}()
}

func (c *conn) Close() error {
	c.closing.Do(func() {
		close(c.closed)
		c.mu.Lock()
		streams := c.streams
		c.mu.Unlock()
		for _, st := range streams {
			st.Reset()
		}
	})
	return nil
}

func (c *conn) CloseChan() <-chan bool       { return c.closed }
func (c *conn) SetIdleTimeout(time.Duration) {}
func (c *conn) RemoveStreams(streams ...httpstream.Stream) {
	for _, s := range streams {
		if s != nil {
			s.Reset()
		}
	}
}

func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// stream is one stream of a pair: toPod carries what kpf writes, fromPod
// what the pod writes. Close ends kpf's side (the pod reads EOF); Reset
// ends both at once.
type stream struct {
	id      uint32
	headers http.Header
	toPodR  *io.PipeReader
	toPodW  *io.PipeWriter
	fromR   *io.PipeReader
	fromW   *io.PipeWriter
}

func newStream(id uint32, h http.Header) *stream {
	st := &stream{id: id, headers: h}
	st.toPodR, st.toPodW = io.Pipe()
	st.fromR, st.fromW = io.Pipe()
	return st
}

var errReset = errors.New("stream reset")

func (s *stream) Read(p []byte) (int, error)  { return s.fromR.Read(p) }
func (s *stream) Write(p []byte) (int, error) { return s.toPodW.Write(p) }
func (s *stream) Close() error                { return s.toPodW.Close() }
func (s *stream) Reset() error {
	s.toPodW.CloseWithError(errReset)
	s.toPodR.CloseWithError(errReset)
	s.fromW.CloseWithError(errReset)
	s.fromR.CloseWithError(errReset)
	return nil
}
func (s *stream) Headers() http.Header { return s.headers }
func (s *stream) Identifier() uint32   { return s.id }

// podConn is the pod's end of a data stream.
type podConn struct{ s *stream }

func (c *podConn) Read(p []byte) (int, error)       { return c.s.toPodR.Read(p) }
func (c *podConn) Write(p []byte) (int, error)      { return c.s.fromW.Write(p) }
func (c *podConn) Close() error                     { c.s.fromW.Close(); c.s.toPodR.Close(); return nil }
func (c *podConn) CloseWrite() error                { return c.s.fromW.Close() }
func (c *podConn) LocalAddr() net.Addr              { return addr("pod") }
func (c *podConn) RemoteAddr() net.Addr             { return addr("kpf") }
func (c *podConn) SetDeadline(time.Time) error      { return nil }
func (c *podConn) SetReadDeadline(time.Time) error  { return nil }
func (c *podConn) SetWriteDeadline(time.Time) error { return nil }

type addr string

func (a addr) Network() string { return "tunneltest" }
func (a addr) String() string  { return string(a) }
