package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"
)

// HTTP is an HTTP/1.1 forward proxy. It tunnels CONNECT host:port (what
// clients use for HTTPS_PROXY and for WebSockets) and forwards requests with
// an absolute http:// URI, which clients send to an http_proxy, without the
// hop-by-hop and proxy authentication headers. Other requests get 400.
type HTTP struct {
	// Dial opens every upstream connection. It must be set.
	Dial DialFunc
	// Log gets one Debug line per request; nil discards. Header values are
	// never logged.
	Log *slog.Logger
}

// idleTimeout is how long a client's keep-alive connection may stay idle.
const idleTimeout = 2 * time.Minute

// Serve accepts HTTP proxy clients on ln until ctx is done or Accept fails.
// Then it closes ln, every client connection and tunnel, and the idle
// upstream connections, cancels the requests in flight, waits for their
// handlers, and returns nil (or Accept's error).
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := logger(h.Log).With("proxy", "http")
	tr := &http.Transport{
		DialContext:           h.Dial,
		Proxy:                 nil,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	defer tr.CloseIdleConnections()
	p := &httpHandler{dial: h.Dial, log: log}
	p.forward = &httputil.ReverseProxy{
		// The request already has its absolute URL; Out has the hop-by-hop
		// headers (Proxy-Authorization among them) removed and no
		// X-Forwarded-* headers.
		Rewrite:      func(*httputil.ProxyRequest) {},
		Transport:    tr,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: p.forwardError,
	}
	srv := &http.Server{
		Handler:           p,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	stopped := false
	select {
	case <-ctx.Done():
		stopped = true
		srv.Close()
		err = <-errc
	case err = <-errc:
		cancel() // cancels the requests in flight
		srv.Close()
	}
	p.g.shutdown()
	if stopped || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http proxy: %w", err)
}

// httpHandler is the proxy's http.Handler.
type httpHandler struct {
	dial    DialFunc
	log     *slog.Logger
	forward *httputil.ReverseProxy
	// g tracks tunnels and handlers, which http.Server.Close leaves alone.
	g group
}

// hopHeaders are removed from forwarded requests and responses
// (RFC 9110 section 7.6.1, plus the proxy authentication headers).
// httputil.ReverseProxy removes them from the outgoing request and the
// response; Upgrade is removed here beforehand so that it does not re-add
// it: WebSockets go through CONNECT.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders removes the headers named in Connection, then
// hopHeaders.
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// route is what the proxy does with a request.
type route int

const (
	routeReject  route = iota // answer with status and msg
	routeConnect              // tunnel to dest
	routeForward              // forward to dest
)

// classify decides what to do with r; for routeReject it returns the status
// and a plain-text message.
func classify(r *http.Request) (rt route, dest string, status int, msg string) {
	if r.Method == http.MethodConnect {
		host, port, err := net.SplitHostPort(r.Host)
		if err != nil || host == "" || port == "" {
			return routeReject, "", http.StatusBadRequest, fmt.Sprintf("CONNECT needs host:port, got %q", r.Host)
		}
		return routeConnect, r.Host, 0, ""
	}
	if !r.URL.IsAbs() {
		return routeReject, "", http.StatusBadRequest,
			"this is a proxy: send requests with an absolute URI (curl --proxy http://HOST:PORT http://svc.ns:8080/) or use CONNECT"
	}
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		return routeReject, "", http.StatusBadRequest,
			fmt.Sprintf("unsupported URL scheme %q: forward http:// URLs, tunnel https with CONNECT", r.URL.Scheme)
	}
	host, port := r.URL.Host, r.URL.Port()
	if port == "" {
		host = net.JoinHostPort(strings.Trim(r.URL.Host, "[]"), "80")
	}
	return routeForward, host, 0, ""
}

func (p *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.g.enter() {
		http.Error(w, "proxy is stopping", http.StatusServiceUnavailable)
		return
	}
	defer p.g.exit()
	start := time.Now()
	rt, dest, status, msg := classify(r)
	cw := &countingWriter{ResponseWriter: w}
	outcome := "ok"
	var up, down int64
	defer func() {
		if rt == routeForward {
			down, status = cw.n, cw.status
		}
		p.log.Debug("request done", "client", r.RemoteAddr, "method", r.Method, "destination", dest,
			"status", status, "outcome", outcome, "bytesUp", up, "bytesDown", down,
			"duration", time.Since(start).Round(time.Millisecond))
	}()
	switch rt {
	case routeReject:
		outcome = "rejected"
		http.Error(w, msg, status)
	case routeConnect:
		status, outcome, up, down = p.connect(w, r)
	case routeForward:
		removeHopHeaders(r.Header)
		body := &countingReader{r: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = body
		}
		st := &forwardState{dest: dest, outcome: "ok"}
		p.forward.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), forwardKey{}, st)))
		outcome = st.outcome
		up = body.n.Load()
	}
}

// forwardState is what forwardError needs to know about, and tells of, a
// forwarded request. It is in the request's context under forwardKey{}.
type forwardState struct {
	dest    string
	outcome string
}

type forwardKey struct{}

// connect tunnels r to its destination.
func (p *httpHandler) connect(w http.ResponseWriter, r *http.Request) (status int, outcome string, up, down int64) {
	upc, err := p.dial(r.Context(), "tcp", r.Host)
	if err != nil {
		return dialError(w, r.Host, err), err.Error(), 0, 0
	}
	if !p.g.add(upc) {
		return http.StatusServiceUnavailable, "proxy stopped", 0, 0
	}
	defer p.g.remove(upc)
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot tunnel on this connection", http.StatusInternalServerError)
		return http.StatusInternalServerError, "hijack: " + err.Error(), 0, 0
	}
	if !p.g.add(c) {
		return http.StatusServiceUnavailable, "proxy stopped", 0, 0
	}
	defer p.g.remove(c)
	c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return http.StatusOK, "write response: " + err.Error(), 0, 0
	}
	// Bytes the client sent right after its request are already buffered.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := upc.Write(b); err != nil {
			return http.StatusOK, "write upstream: " + err.Error(), 0, 0
		}
		up = int64(n)
	}
	u, d := pipe(c, upc)
	return http.StatusOK, "ok", up + u, d
}

// dialError answers a failed dial: 403 for a refused destination, 502
// otherwise. It returns the status.
func dialError(w http.ResponseWriter, dest string, err error) int {
	if errors.Is(err, ErrRefused) {
		http.Error(w, fmt.Sprintf("kpf proxy: %s is refused: the proxy reaches only services in the namespaces it serves, by names such as svc.ns, svc.ns.svc or svc.ns.svc.cluster.local (%v)", dest, err), http.StatusForbidden)
		return http.StatusForbidden
	}
	http.Error(w, fmt.Sprintf("kpf proxy: cannot reach %s: %v", dest, err), http.StatusBadGateway)
	return http.StatusBadGateway
}

// forwardError is the ReverseProxy's ErrorHandler.
func (p *httpHandler) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	dest := r.URL.Host
	if st, ok := r.Context().Value(forwardKey{}).(*forwardState); ok {
		st.outcome = err.Error()
		dest = st.dest
	}
	if r.Context().Err() != nil {
		// The client went away or the proxy is stopping: nobody to answer.
		return
	}
	dialError(w, dest, err)
}

// countingWriter counts the body bytes written and keeps the final status.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingReader counts the bytes read. The count is atomic: the HTTP
// transport may still be sending a request body from its own goroutine
// after the response has come back and the handler logs the count.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.n.Add(int64(n))
	return n, err
}

func (r *countingReader) Close() error { return r.r.Close() }
