package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzSOCKS5Request feeds arbitrary bytes to the SOCKS5 handshake: it must
// not panic, must read no more than a handshake can hold, and must accept
// only requests it can dial.
func FuzzSOCKS5Request(f *testing.F) {
	for _, seed := range []string{
		"\x05\x01\x00\x05\x01\x00\x03\x07echo.ns\x1f\x90",
		"\x05\x02\x00\x02\x05\x01\x00\x03\x1athanos-query.monitoring.svc\x23\x82",
		"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
		"\x05\x01\x00\x05\x01\x00\x04\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbb",
		"\x05\x01\x00\x05\x02\x00\x03\x03web\x00\x50",
		"\x05\x01\x02",
		"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
		"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50",
		"\x05\xff",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var out bytes.Buffer
		req, err := handshake(struct {
			io.Reader
			io.Writer
		}{r, &out})
		// Greeting: 2+255 bytes, request: 4+1+255+2.
		if read := len(data) - r.Len(); read > 2+255+4+1+255+2 {
			t.Fatalf("read %d bytes", read)
		}
		if out.Len() > 2+10 {
			t.Fatalf("wrote %d bytes", out.Len())
		}
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(req.addr)
		if err != nil || host == "" || port == "" {
			t.Fatalf("accepted request with address %q: %v", req.addr, err)
		}
		// readRequest alone agrees with the handshake.
		again, err := readRequest(bytes.NewReader(data[2+int(data[1]):]))
		if err != nil || again != req {
			t.Fatalf("readRequest = %+v, %v; handshake read %+v", again, err, req)
		}
	})
}

// FuzzHTTPProxyRequest feeds arbitrary bytes as a client connection to a
// running HTTP proxy: no request may make a handler panic, which
// http.Server would only log, and classify must not panic either.
func FuzzHTTPProxyRequest(f *testing.F) {
	for _, seed := range []string{
		"GET http://web.ns:8080/path HTTP/1.1\r\nHost: web.ns:8080\r\n\r\n",
		"GET http://web.ns/ HTTP/1.1\r\nHost: web.ns\r\nProxy-Authorization: Basic eDp5\r\nConnection: X-A, close\r\nX-A: 1\r\n\r\n",
		"POST http://web.ns:8080/submit HTTP/1.1\r\nHost: web.ns:8080\r\nContent-Length: 5\r\n\r\nhello",
		"POST http://web.ns:8080/submit HTTP/1.1\r\nHost: web.ns:8080\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"CONNECT echo.ns:7 HTTP/1.1\r\nHost: echo.ns:7\r\n\r\nping",
		"CONNECT nope.ns:443 HTTP/1.1\r\nHost: nope.ns:443\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"GET https://web.ns/ HTTP/1.0\r\n\r\n",
		"GET http://[::1]/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET http://web.ns/ HTTP/1.1\r\nHost: web.ns\r\n\r\nGET http://web.ns/two HTTP/1.1\r\nHost: web.ns\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}

	// One proxy for the whole run. Its dial function connects web.ns:* to
	// a tiny in-memory HTTP server and echo.ns:* to an echo, both over
	// net.Pipe, and refuses everything else.
	var wg sync.WaitGroup
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		var serve func(net.Conn)
		switch host {
		case "web.ns":
			serve = func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok")
				}
			}
		case "echo.ns":
			serve = func(c net.Conn) { io.Copy(c, c) }
		default:
			return nil, ErrRefused
		}
		c1, c2 := net.Pipe()
		wg.Go(func() {
			defer c2.Close()
			serve(c2)
		})
		return c1, nil
	}
	panics := &panicLog{}
	ln := &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- (&HTTP{Dial: dial, Log: slog.New(panics)}).Serve(ctx, ln)
	}()
	f.Cleanup(func() {
		cancel()
		<-errc
		wg.Wait()
	})

	f.Fuzz(func(t *testing.T, data []byte) {
		if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data))); err == nil {
			classify(req)
		}
		c := newScriptConn(data)
		select {
		case ln.conns <- c:
		case <-time.After(5 * time.Second):
			t.Fatal("proxy does not accept")
		}
		select {
		case <-c.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("proxy did not close the connection; it wrote %q", c.written())
		}
		if p := panics.String(); p != "" {
			t.Fatalf("handler panicked on %q: %s", data, p)
		}
	})
}

// panicLog is a slog.Handler that keeps the messages that report a panic.
type panicLog struct {
	mu  sync.Mutex
	msg strings.Builder
}

func (*panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.mu.Lock()
		h.msg.WriteString(r.Message)
		h.mu.Unlock()
	}
	return nil
}
func (h *panicLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicLog) WithGroup(string) slog.Handler      { return h }
func (h *panicLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msg.String()
}

// chanListener hands out the connections sent on conns.
type chanListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// scriptConn is a client connection that sends a fixed script and then
// half-closes (its reads return EOF), and records what it is sent.
type scriptConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	once   sync.Once
	closed chan struct{}
}

func newScriptConn(script []byte) *scriptConn {
	return &scriptConn{r: bytes.NewReader(script), closed: make(chan struct{})}
}

func (c *scriptConn) Read(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r.Read(b)
}

func (c *scriptConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out.Len() < 1<<20 {
		c.out.Write(b)
	}
	return len(b), nil
}

func (c *scriptConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *scriptConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3128}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
