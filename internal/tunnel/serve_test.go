package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer is a loopback TCP echo server; connections to it stand in
// for streams to a pod, for testing Serve's copying and bookkeeping.
func echoServer(t testing.TB) DialFunc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
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
	return func(ctx context.Context, _ *FirstBytes) (Upstream, string, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, "", err
		}
		return c.(*net.TCPConn), "ns/pod:80", nil
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func serve(t testing.TB, dial DialFunc, wait time.Duration) (addr string, stats *Stats, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stats = &Stats{}
	s := &Server{Listener: ln, Dial: dial, Wait: wait, Log: discard(), Stats: stats}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	return ln.Addr().String(), stats, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
}

func TestServeCopiesBothWaysAndCounts(t *testing.T) {
	addr, stats, stop := serve(t, echoServer(t), time.Second)
	defer stop()

	payload := bytes.Repeat([]byte("kpf!"), 100_000)
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c.Write(payload)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("echoed %d bytes, want %d identical", len(got), len(payload))
		}
	}
	stop()
	if got := stats.Accepted.Load(); got != 3 {
		t.Errorf("Accepted = %d, want 3", got)
	}
	if in, out := stats.BytesIn.Load(), stats.BytesOut.Load(); in != 3*int64(len(payload)) || out != in {
		t.Errorf("BytesIn = %d, BytesOut = %d, want %d each", in, out, 3*len(payload))
	}
	if got := stats.Active.Load(); got != 0 {
		t.Errorf("Active = %d after every connection closed", got)
	}
}

func TestServeClosesConnectionWithoutUpstream(t *testing.T) {
	addr, stats, stop := serve(t, func(ctx context.Context, _ *FirstBytes) (Upstream, string, error) {
		<-ctx.Done() // no ready endpoint: wait until the bound
		return nil, "", errors.New("no ready endpoints")
	}, 50*time.Millisecond)
	defer stop()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection was left open past the wait bound")
	}
	waitFor(t, func() bool { return stats.Failed.Load() == 1 })
	if e := stats.LastError.Load(); e == nil || *e != "no ready endpoints" {
		t.Errorf("LastError = %v", e)
	}
}

func TestServeStopClosesOpenConnectionsAndListener(t *testing.T) {
	addr, stats, stop := serve(t, echoServer(t), time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, func() bool { return stats.Active.Load() == 1 })
	stop() // returns only once every connection and goroutine is done
	if got := stats.Active.Load(); got != 0 {
		t.Errorf("Active = %d after Serve returned", got)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("open connection still readable after Serve returned")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("open connection left hanging after Serve returned")
	}
	if c2, err := net.Dial("tcp", addr); err == nil {
		c2.Close()
		t.Error("listener still accepts after Serve returned")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkServeConnection is one short connection through Serve (to a
// loopback echo server standing in for the pod): accept, dial, a round
// trip, close. Its allocations include the client's and the echo
// server's.
func BenchmarkServeConnection(b *testing.B) {
	addr, _, stop := serve(b, echoServer(b), time.Second)
	defer stop()
	buf := make([]byte, 5)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte("PING\n")); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// At debug level every connection logs its opening and closing with the
// client and the pod; at info level it logs nothing (and formats nothing).
func TestServeLogsConnectionsAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var logs testsupport.Buffer
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Listener: ln, Dial: echoServer(t), Wait: time.Second, Stats: &Stats{},
			Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
		client := c.LocalAddr().String()
		c.Close()
		waitFor(t, func() bool { return s.Stats.Active.Load() == 0 })
		cancel()
		<-done
		got := logs.String()
		if level == slog.LevelInfo {
			if got != "" {
				t.Errorf("info level logged:\n%s", got)
			}
			continue
		}
		for _, msg := range []string{`msg="connection opened"`, `msg="connection closed"`} {
			line := ""
			for _, l := range strings.Split(got, "\n") {
				if strings.Contains(l, msg) {
					line = l
				}
			}
			if !strings.Contains(line, "client="+client) || !strings.Contains(line, "pod=ns/pod:80") {
				t.Errorf("%s: want client=%s and pod=ns/pod:80 in %q\nall logs:\n%s", msg, client, line, got)
			}
		}
	}
}

// scriptedUpstream waits for the client's request, sends data, then ends
// its reads with end (io.EOF for a pod that finished its answer, another
// error for a lost session).
type scriptedUpstream struct {
	data      []byte
	end       error
	requested chan struct{}
	reqOnce   sync.Once
}

func (u *scriptedUpstream) Read(p []byte) (int, error) {
	<-u.requested
	if len(u.data) > 0 {
		n := copy(p, u.data)
		u.data = u.data[n:]
		return n, nil
	}
	return 0, u.end
}
func (u *scriptedUpstream) Write(p []byte) (int, error) {
	u.reqOnce.Do(func() { close(u.requested) })
	return len(p), nil
}
func (u *scriptedUpstream) CloseWrite() error { return nil }
func (u *scriptedUpstream) Close() error      { u.reqOnce.Do(func() { close(u.requested) }); return nil }

// A pod that finished its answer ends the client's connection with a FIN
// (EOF after every byte); an upstream that failed mid-answer resets it,
// so that the client cannot take a truncated answer for a complete one.
func TestServeEndsCleanlyOnlyWhenThePodFinished(t *testing.T) {
	for _, tc := range []struct {
		name      string
		end       error
		wantReset bool
	}{
		{"pod finished", io.EOF, false},
		{"session lost", ErrSessionClosed, true},
		{"kubelet error", errors.New("ns/pod: error forwarding port 80: connection refused"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := []byte("partial answer")
			addr, _, stop := serve(t, func(context.Context, *FirstBytes) (Upstream, string, error) {
				return &scriptedUpstream{data: answer, end: tc.end, requested: make(chan struct{})}, "ns/pod:80", nil
			}, time.Second)
			defer stop()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("GET\n")); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if !bytes.Equal(got, answer) {
				t.Errorf("read %q, want %q before the end", got, answer)
			}
			reset := errors.Is(err, syscall.ECONNRESET)
			switch {
			case tc.wantReset && !reset:
				t.Errorf("read ended with %v, want connection reset", err)
			case !tc.wantReset && err != nil:
				t.Errorf("read ended with %v, want a clean end (EOF)", err)
			}
		})
	}
}
