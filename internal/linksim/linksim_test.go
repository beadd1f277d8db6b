package linksim

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testServer builds and starts toxiproxy once for the package's tests;
// it needs the tools module, so it runs with KPF_E2E=1 only.
var (
	serverOnce sync.Once
	server     *Server
	serverDir  string
	serverErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil {
		server.Close()
	}
	if serverDir != "" {
		os.RemoveAll(serverDir)
	}
	os.Exit(code)
}

func testServer(t *testing.T) *Server {
	t.Helper()
	if os.Getenv("KPF_E2E") == "" {
		t.Skip("builds toxiproxy from tools/go.mod: set KPF_E2E=1")
	}
	serverOnce.Do(func() {
		serverDir, serverErr = os.MkdirTemp("", "linksim-")
		if serverErr != nil {
			return
		}
		bin, err := Build(context.Background(), filepath.Join("..", ".."), serverDir)
		if err != nil {
			serverErr = err
			return
		}
		server, serverErr = Start(context.Background(), bin)
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return server
}

// newLink creates a link of the test's server, removed when the test
// ends.
func newLink(t *testing.T, s *Server, name, upstream string, p Profile) *Link {
	t.Helper()
	l, err := s.Link(context.Background(), name, upstream, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// echoLines answers each line with the same line.
func echoLines(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line on c and waits up to wait for it to come back.
func roundTrip(c net.Conn, wait time.Duration) (time.Duration, error) {
	c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	start := time.Now()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("echo mangled: " + line)
	}
	return time.Since(start), nil
}

func TestLinkAddsItsRoundTrip(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()
	l := newLink(t, s, t.Name(), echoLines(t), WAN)
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		d, err := roundTrip(c, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// A round trip cannot beat the latency added; the upper bound
		// only catches a link that adds it twice.
		if d < WAN.RTT || d > 2*WAN.RTT+50*time.Millisecond {
			t.Errorf("round trip %v through %v", d, WAN)
		}
	}
	if err := l.Spike(ctx, 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d, err := roundTrip(c, 5*time.Second); err != nil || d < 400*time.Millisecond {
		t.Errorf("during a 400ms spike: round trip %v, %v", d, err)
	}
	if err := l.Steady(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := roundTrip(c, 5*time.Second); err != nil || d > 2*WAN.RTT+50*time.Millisecond {
		t.Errorf("steady again: round trip %v, %v", d, err)
	}
}

func TestBlackholeDropsUntilHealedThenClosesOldConnections(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()
	l := newLink(t, s, t.Name(), echoLines(t), LAN)
	old, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := roundTrip(old, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Blackhole(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(old, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through the blackhole: %v, want no answer", err)
	}
	if err := l.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(old, 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection open during the blackhole, after the heal: %v, want it closed", err)
	}
	fresh, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := roundTrip(fresh, 5*time.Second); err != nil {
		t.Errorf("a new connection after the heal: %v", err)
	}
}

func TestDownRefusesUpServesAndCloseRemoves(t *testing.T) {
	s := testServer(t)
	ctx := context.Background()
	l := newLink(t, s, t.Name(), echoLines(t), LAN)
	old, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(old, 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("open connection after Down: %v, want closed", err)
	}
	if c, err := net.Dial("tcp", l.Addr()); err == nil {
		c.Close()
		t.Error("a new connection was accepted while down")
	}
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrip(c, 5*time.Second); err != nil {
		t.Errorf("after Up: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("open connection after Close: %v, want closed", err)
	}
	if c, err := net.Dial("tcp", l.Addr()); err == nil {
		c.Close()
		t.Error("a new connection was accepted after Close")
	}
	// The name is free again.
	newLink(t, s, t.Name(), echoLines(t), LAN)
}

func TestProfileNamed(t *testing.T) {
	for _, p := range Profiles() {
		if got, err := ProfileNamed(p.Name); err != nil || got != p {
			t.Errorf("ProfileNamed(%q) = %v, %v", p.Name, got, err)
		}
	}
	if _, err := ProfileNamed("moon"); err == nil || err.Error() != `unknown link "moon" (want lan, wan, far)` {
		t.Errorf("ProfileNamed(moon): %v", err)
	}
	if s := Far.String(); s != "far (150ms RTT ±10ms)" {
		t.Errorf("Far.String() = %q", s)
	}
}
