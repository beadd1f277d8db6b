package readbatch

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

func TestNewReadBatcherFindsTheTCPSocket(t *testing.T) {
	if !Supported() {
		t.Skip("this system does not batch reads")
	}
	client, server := testsupport.TCPPair(t)
	if New(client) == nil {
		t.Error("no batcher for a *net.TCPConn")
	}
	if New(tls.Client(server, &tls.Config{})) == nil {
		t.Error("no batcher for a *tls.Conn over TCP")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if New(p1) != nil {
		t.Error("a batcher for a connection with no socket")
	}
}

// TestReceiveLowatWakesWhenLowered checks the two kernel behaviours that
// batching relies on, on a real socket: a reader that waits is not woken
// for fewer bytes than the mark, and lowering the mark under bytes already
// queued wakes it. Without the second, a transfer's tail would wait for
// bytes that never come.
func TestReceiveLowatWakesWhenLowered(t *testing.T) {
	if !Supported() {
		t.Skip("this system does not batch reads")
	}
	client, server := testsupport.TCPPair(t)
	raw, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := setReceiveLowat(raw, Lowat); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := server.Read(buf)
		got <- buf[:n]
	}()
	time.Sleep(50 * time.Millisecond) // let the reader wait in the poller
	if _, err := client.Write([]byte("the end")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		t.Fatalf("woken for %d bytes below a mark of %d", len(b), Lowat)
	case <-time.After(200 * time.Millisecond):
	}
	if err := setReceiveLowat(raw, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "the end" {
			t.Fatalf("read %q, want %q", b, "the end")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lowering the mark did not wake the reader")
	}
}

// TestReadBatchingOnASocket runs the batcher on a real socket: a bulk
// transfer raises the mark, and the few bytes that follow it still arrive,
// with the mark back at one byte.
func TestReadBatchingOnASocket(t *testing.T) {
	if !Supported() {
		t.Skip("this system does not batch reads")
	}
	client, server := testsupport.TCPPair(t)
	b := New(server)
	rec := &lowatRecorder{}
	set := b.setLowat
	b.setLowat = func(v int) error {
		rec.setLowat(v)
		return set(v)
	}
	conn := Wrap(server, b)

	bulk := make([]byte, 4<<20)
	tail := []byte("the end")
	go func() {
		client.Write(bulk)
		time.Sleep(100 * time.Millisecond)
		client.Write(tail)
	}()
	if _, err := io.ReadFull(conn, make([]byte, len(bulk))); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(tail))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("the tail was not delivered: %v", err)
	}
	if string(got) != string(tail) {
		t.Fatalf("tail = %q, want %q", got, tail)
	}
	// A pause in the bulk (the writer not scheduled for Idle) ends
	// batching and the next burst starts it again; the marks alternate.
	calls := rec.calls()
	if len(calls) < 2 || len(calls)%2 != 0 {
		t.Fatalf("SO_RCVLOWAT set to %v, want it raised to %d and lowered to 1", calls, Lowat)
	}
	for i, v := range calls {
		if want := []int{Lowat, 1}[i%2]; v != want {
			t.Fatalf("SO_RCVLOWAT set to %v, want %d and 1 in turn", calls, Lowat)
		}
	}
	if v := receiveLowat(t, server); v != 1 {
		t.Errorf("SO_RCVLOWAT after the tail = %d, want 1", v)
	}
}

func receiveLowat(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}
