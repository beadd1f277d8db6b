package forward

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// A UDP socket keeps a stream per local peer, at most maxPeers: a new
// peer past that ends the stream of the one heard from least recently,
// which gets a new one when it speaks again. The streams here reach a
// real relay server over pipes, and through it a loopback UDP echo.
func TestUDPPeersAreBounded(t *testing.T) {
	echo := loopbackEcho(t)
	dest := relay.Dest{Kind: relay.UDP, Host: "127.0.0.1", Port: echo}
	srv := &relay.Server{Allow: []relay.Dest{dest}}
	var open, opened atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &udpServer{
		pc: pc,
		dial: func(ctx context.Context) (net.Conn, string, error) {
			client, server := net.Pipe()
			opened.Add(1)
			open.Add(1)
			go func() {
				defer open.Add(-1)
				srv.ServeConn(context.Background(), server)
			}()
			c, err := relay.Open(client, dest)
			return c, "relay", err
		},
		wait: 5 * time.Second, idle: time.Minute, log: slog.New(slog.DiscardHandler),
		stats: &tunnel.Stats{}, peers: map[string]*udpPeer{}, maxPeers: 3,
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	exchange := func(c net.Conn, msg string) {
		t.Helper()
		buf := make([]byte, 64)
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], []byte(msg)) {
			t.Fatalf("%s: got %q, %v", msg, buf[:n], err)
		}
	}
	var peers []net.Conn
	for i := range 5 {
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		peers = append(peers, c)
		exchange(c, "peer "+strconv.Itoa(i))
	}
	waitUntil(t, "the relay streams of evicted peers to end", func() bool { return open.Load() == 3 })
	s.mu.Lock()
	n := len(s.peers)
	s.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d peers kept, want 3", n)
	}
	// The first peer, evicted, speaks again: a new stream, and another
	// peer's goes.
	exchange(peers[0], "again")
	if opened.Load() != 6 {
		t.Errorf("%d streams opened, want 6", opened.Load())
	}
	waitUntil(t, "still at most 3 streams", func() bool { return open.Load() == 3 })
}
