package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// names maps the cluster names the tests use ("web.ns:8080") to local
// addresses; dial refuses every other destination and records what it was
// asked for.
type names struct {
	mu    sync.Mutex
	m     map[string]string
	asked []string
}

func (n *names) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.asked = append(n.asked, addr)
	to, ok := n.m[addr]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial %s: not a service of a served namespace: %w", addr, ErrRefused)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

func (n *names) lastAsked() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.asked) == 0 {
		return ""
	}
	return n.asked[len(n.asked)-1]
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// echoServer echoes every connection until the client half-closes it.
func echoServer(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// closedAddr returns an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// start runs serve on a loopback listener until the test ends, and checks
// that it returns nil then.
func start(t *testing.T, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	return ln.Addr().String()
}

// logBuffer collects debug logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestPipeHalfClose(t *testing.T) {
	echo := echoServer(t)
	a1, a2 := tcpPair(t)
	up, err := net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan [2]int64)
	go func() {
		u, d := pipe(a2, up)
		done <- [2]int64{u, d}
	}()
	a1.Write([]byte("ping"))
	a1.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(a1)
	if string(got) != "ping" {
		t.Errorf("got %q after half-close, want the echo", got)
	}
	if n := <-done; n != [2]int64{4, 4} {
		t.Errorf("counted %v, want [4 4]", n)
	}
	a1.Close()
	a2.Close()
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	c, s := testsupport.TCPPair(t)
	return c, s
}

func TestServeReturnsOnPermanentAcceptError(t *testing.T) {
	ln := listen(t)
	ln.Close()
	s := &SOCKS5{Dial: (&names{}).dial}
	if err := s.Serve(context.Background(), ln); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SOCKS5.Serve on a closed listener = %v, want net.ErrClosed", err)
	}
	h := &HTTP{Dial: (&names{}).dial}
	if err := h.Serve(context.Background(), ln); !errors.Is(err, net.ErrClosed) {
		t.Errorf("HTTP.Serve on a closed listener = %v, want net.ErrClosed", err)
	}
}
