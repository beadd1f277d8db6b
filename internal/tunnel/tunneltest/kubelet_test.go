package tunneltest

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/kpf-dev/kpf/internal/tunnel"
)

func TestAPairReachesThePortsHandler(t *testing.T) {
	k := New()
	k.Serve("ns", "a", 80, Echo)
	pool := k.Pool()
	defer pool.Close()
	lease := pool.Lease()
	defer lease.Close()
	c, err := lease.Dial(context.Background(), tunnel.Pod{Namespace: "ns", Name: "a"}, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("read %q, %v; want the echo of ping", got, err)
	}
	if k.Opened() != 1 {
		t.Errorf("sessions opened = %d, want 1", k.Opened())
	}
}

func TestAPortNobodyServesIsRefusedWithTheKubeletsReason(t *testing.T) {
	k := New()
	k.Serve("ns", "a", 80, Echo)
	pool := k.Pool()
	defer pool.Close()
	lease := pool.Lease()
	defer lease.Close()
	c, err := lease.Dial(context.Background(), tunnel.Pod{Namespace: "ns", Name: "a"}, 81)
	if err == nil {
		_, err = io.ReadAll(c)
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want the kubelet's refusal", err)
	}
}

func TestDeleteEndsThePodsSessions(t *testing.T) {
	k := New()
	k.Serve("ns", "a", 80, Echo)
	pool := k.Pool()
	defer pool.Close()
	lease := pool.Lease()
	defer lease.Close()
	s, err := lease.Get(context.Background(), tunnel.Pod{Namespace: "ns", Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	k.Delete("ns", "a")
	<-s.Done()
	if _, err := k.Connect(context.Background(), tunnel.Pod{Namespace: "ns", Name: "a"}); err == nil {
		t.Fatal("a session to a deleted pod opened")
	}
}
