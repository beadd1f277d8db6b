package svcdial

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/connect/connecttest"
	"github.com/kpf-dev/kpf/internal/tunnel/tunneltest"
)

// The Dialer against a fake context (connecttest): real tunnel sessions
// and pools, in-memory pods that answer with their names.

func fakeDialer(t *testing.T, pods ...string) (*Dialer, *connecttest.Cluster) {
	t.Helper()
	cl := connecttest.New()
	t.Cleanup(cl.Close)
	for _, p := range pods {
		cl.Kubelet.Serve("ns", p, 80, tunneltest.Name(p))
	}
	d := NewWithClusters(cl.Source(), Options{Namespaces: []string{"ns"}, Wait: 5 * time.Second}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { d.Close() })
	return d, cl
}

// answer dials web.ns:80 and returns what the pod says.
func answer(d *Dialer) (string, error) {
	c, err := d.DialContext(context.Background(), "tcp", "web.ns.svc:80")
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestDialerTakesTurnsAmongReadyPods(t *testing.T) {
	d, cl := fakeDialer(t, "a", "b")
	cl.SetReady("web", "a", "b")
	seen := map[string]int{}
	for range 4 {
		got, err := answer(d)
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("answers %v, want two from each pod", seen)
	}
	if n := cl.Kubelet.Opened(); n != 2 {
		t.Errorf("%d sessions opened, want 2: one per pod, reused", n)
	}
}

func TestDialerWaitsForAReadyPod(t *testing.T) {
	d, cl := fakeDialer(t, "a")
	cl.SetReady("web")
	type result struct {
		got string
		err error
	}
	res := make(chan result, 1)
	go func() {
		got, err := answer(d)
		res <- result{got, err}
	}()
	// The dial watches the namespace before it resolves the service.
	for cl.Watchers() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case r := <-res:
		t.Fatalf("the dial returned %q, %v before any pod was ready", r.got, r.err)
	default:
	}
	cl.SetReady("web", "a")
	if r := <-res; r.err != nil || r.got != "a" {
		t.Fatalf("got %q, %v; want a", r.got, r.err)
	}
}

func TestDialerAvoidsAPodItCannotReach(t *testing.T) {
	d, cl := fakeDialer(t, "a", "b")
	cl.Kubelet.Refuse("ns", "a", errors.New("error dialing backend: connection refused"))
	cl.SetReady("web", "a", "b")
	for i := range 4 {
		if got, err := answer(d); got != "b" {
			t.Fatalf("dial %d: got %q, %v; want b (a refuses sessions)", i, got, err)
		}
	}
}

// A pod that leaves the endpoints is not dialled any more, and the
// Dialer's idle session to it is let go.
func TestDialerLetsGoOfAPodThatLeft(t *testing.T) {
	d, cl := fakeDialer(t, "a", "b")
	cl.SetReady("web", "a")
	if got, err := answer(d); got != "a" {
		t.Fatalf("got %q, %v; want a", got, err)
	}
	cl.SetReady("web", "b")
	if got, err := answer(d); got != "b" {
		t.Fatalf("after a left: got %q, %v; want b", got, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for cl.Kubelet.Open("ns", "a") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session to a is still open 10 s after a left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close ends the connections the Dialer made, and the watches it opened.
func TestDialerCloseEndsItsConnections(t *testing.T) {
	cl := connecttest.New()
	t.Cleanup(cl.Close)
	held := make(chan struct{})
	cl.Kubelet.Serve("ns", "a", 80, func(c net.Conn) { <-held })
	defer close(held)
	cl.SetReady("web", "a")
	d := NewWithClusters(cl.Source(), Options{Namespaces: []string{"ns"}}, slog.New(slog.DiscardHandler))
	c, err := d.DialContext(context.Background(), "tcp", "web.ns:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	d.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a read after Close returned data")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a connection still reads 5 s after Close")
	}
	if n := cl.Watchers(); n != 0 {
		t.Errorf("%d watches open after Close, want 0", n)
	}
	if _, err := d.DialContext(context.Background(), "tcp", "web.ns:80"); !errors.Is(err, ErrClosed) {
		t.Errorf("dial after Close: %v, want ErrClosed", err)
	}
}
