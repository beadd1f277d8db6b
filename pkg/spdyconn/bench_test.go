package spdyconn

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/kpf-dev/kpf/internal/testnet"
	"github.com/moby/spdystream"
	"k8s.io/apimachinery/pkg/util/httpstream"
	k8sspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
)

// BenchmarkDownload moves size bytes from a spdystream server (the
// kubelet's side), written 32 KiB at a time as a kubelet copies from a
// pod, to a client that reads them in 64 KiB reads, as kpf's copy loop
// does: once through this package and once through client-go's
// spdystream-based connection. Over plain loopback TCP, so the figures
// are the SPDY layers' own cost without TLS or WebSocket framing.
//
//	go test -run '^$' -bench Download -benchmem ./pkg/spdyconn
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	clients := []struct {
		name string
		dial func(b *testing.B, conn *net.TCPConn) httpstream.Connection
	}{
		{"spdyconn", func(b *testing.B, c *net.TCPConn) httpstream.Connection {
			conn, err := New(c, 0)
			if err != nil {
				b.Fatal(err)
			}
			return conn
		}},
		{"client-go", func(b *testing.B, c *net.TCPConn) httpstream.Connection {
			conn, err := k8sspdy.NewClientConnection(c)
			if err != nil {
				b.Fatal(err)
			}
			return conn
		}},
	}
	for _, cl := range clients {
		b.Run(cl.name, func(b *testing.B) {
			cc, sc := testnet.TCPPair(b)
			srv, err := spdystream.NewConnection(sc, true)
			if err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 32<<10)
			go srv.Serve(func(s *spdystream.Stream) {
				s.SendReply(http.Header{}, false)
				go func() {
					for n := 0; n < size; n += len(payload) {
						if _, err := s.Write(payload); err != nil {
							return
						}
					}
					s.Close()
				}()
			})
			defer srv.Close()
			conn := cl.dial(b, cc)
			defer conn.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				s, err := conn.CreateStream(http.Header{})
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, readerOnly{s}, buf)
				if err != nil || n != size {
					b.Fatal(fmt.Errorf("read %d bytes, %v; want %d", n, err, size))
				}
				s.Reset()
				conn.RemoveStreams(s)
			}
		})
	}
}

type readerOnly struct{ io.Reader }
