package spdyconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/testnet"
	"github.com/moby/spdystream"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// The server side of these tests is spdystream, which is what a kubelet
// (through client-go's SPDY server connection) answers port-forwards with.

// server starts a spdystream server on one end of a loopback connection
// and returns a Conn on the other. handle runs for each stream the client
// opens; it replies or refuses.
func server(t *testing.T, handle func(*spdystream.Stream)) (*Conn, *spdystream.Connection) {
	t.Helper()
	cc, sc := testnet.TCPPair(t)
	srv, err := spdystream.NewConnection(sc, true)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(handle)
	c, err := New(cc, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c, srv
}

// echo replies to a stream and sends back what it reads until the client
// closes its side, then closes its own.
func echo(s *spdystream.Stream) {
	s.SendReply(http.Header{}, false)
	go func() {
		io.Copy(s, s)
		s.Close()
	}()
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// exchange sends data on a new stream, closes the sending side and reads
// until the end of the stream.
func exchange(c *Conn, data []byte) ([]byte, error) {
	s, err := c.CreateStream(http.Header{"Streamtype": {"data"}})
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	defer s.Reset()
	werr := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.Close()
		}
		werr <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		return got, fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return got, fmt.Errorf("write: %w", err)
	}
	return got, nil
}

func TestStreamCarriesDataBothWays(t *testing.T) {
	for _, n := range []int{0, 1, smallFrame, smallFrame + 1, chunkSize, maxDataFrame + 1, 1<<20 + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, _ := server(t, echo)
			want := randomBytes(n, uint64(n))
			got, err := exchange(c, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echoed %d bytes, want the %d sent back unchanged", len(got), len(want))
			}
		})
	}
}

func TestHeadersReachTheServer(t *testing.T) {
	got := make(chan http.Header, 2)
	c, _ := server(t, func(s *spdystream.Stream) {
		got <- s.Headers()
		s.SendReply(http.Header{}, false)
	})
	for _, h := range []http.Header{
		{"Streamtype": {"error"}, "Port": {"8080"}, "Requestid": {"1"}},
		{"Streamtype": {"data"}, "Port": {"8080"}, "Requestid": {"1"}},
	} {
		if _, err := c.CreateStream(h); err != nil {
			t.Fatal(err)
		}
		// Header compression keeps state across frames: the second
		// block only decodes if the first was compressed right.
		if g := <-got; fmt.Sprint(g) != fmt.Sprint(h) {
			t.Errorf("server got headers %v, want %v", g, h)
		}
	}
}

func TestManyStreamsAtOnce(t *testing.T) {
	c, _ := server(t, echo)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			want := randomBytes(256<<10+i, uint64(i))
			got, err := exchange(c, want)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("stream %d: echoed %d bytes, not the %d sent", i, len(got), len(want))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestRefusedStream(t *testing.T) {
	c, _ := server(t, func(s *spdystream.Stream) { s.Refuse() })
	_, err := c.CreateStream(http.Header{})
	if !errors.Is(err, ErrStreamReset) {
		t.Fatalf("CreateStream on a refused stream: %v, want %v", err, ErrStreamReset)
	}
	// The connection goes on.
	if _, err := c.CreateStream(http.Header{}); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("second CreateStream: %v, want %v", err, ErrStreamReset)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("connection ended: %v", err)
	}
}

func TestServerResetEndsReadsAfterQueuedData(t *testing.T) {
	c, _ := server(t, func(s *spdystream.Stream) {
		s.SendReply(http.Header{}, false)
		s.Write([]byte("partial answer"))
		s.Reset()
	})
	s, err := c.CreateStream(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "partial answer" {
		t.Fatalf("read %q, %v; want what was sent before the reset, then the end", got, err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("Write after the server's reset: %v, want %v", err, ErrStreamReset)
	}
}

func TestLocalResetTellsTheServer(t *testing.T) {
	ended := make(chan error, 1)
	c, _ := server(t, func(s *spdystream.Stream) {
		s.SendReply(http.Header{}, false)
		go func() {
			_, err := io.Copy(io.Discard, s)
			ended <- err
		}()
	})
	s, err := c.CreateStream(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	s.Reset()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the server's read did not end after the client's reset")
	}
	if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after Reset: %d, %v; want 0, EOF", n, err)
	}
}

func TestRemovedStreamStopsWaiting(t *testing.T) {
	c, _ := server(t, func(s *spdystream.Stream) {
		s.SendReply(http.Header{}, false) // and never finish it
	})
	s, err := c.CreateStream(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(s)
		readErr <- err
	}()
	c.RemoveStreams(s, nil)
	select {
	case err := <-readErr:
		if err != nil {
			t.Fatalf("read of a removed stream ended with %v, want its end", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read of a removed stream still waits: nothing can reach it any more")
	}
}

func TestServerGoneEndsEverything(t *testing.T) {
	opened := make(chan *spdystream.Stream, 1)
	c, srv := server(t, func(s *spdystream.Stream) {
		s.SendReply(http.Header{}, false)
		opened <- s
	})
	s, err := c.CreateStream(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	<-opened
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(s)
		readErr <- err
	}()
	srv.Close() // go-away, then the connection closes
	select {
	case <-c.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("CloseChan still open after the server went away")
	}
	if err := <-readErr; err != nil {
		t.Fatalf("a blocked Read ended with %v, want the end of the stream", err)
	}
	if c.Err() == nil {
		t.Fatal("Err is nil on an ended connection")
	}
	if _, err := c.CreateStream(http.Header{}); err == nil {
		t.Fatal("CreateStream on an ended connection succeeded")
	}
}

func TestCloseDoesNotWaitForABlockedWrite(t *testing.T) {
	c, _ := server(t, func(s *spdystream.Stream) {
		s.SendReply(http.Header{}, false) // and never read
	})
	s, err := c.CreateStream(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := s.Write(buf); err != nil {
				written <- err
				return
			}
		}
	}()
	// spdystream's server queues frames until its frame queue is full;
	// then the socket buffers fill. Wait until the writer is stuck.
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-written:
		t.Fatalf("write failed before the close: %v", err)
	default:
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > closeWriteTimeout+500*time.Millisecond {
		t.Errorf("Close took %s with a write blocked", d)
	}
	select {
	case err := <-written:
		if err == nil {
			t.Fatal("blocked write ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked write still blocked 5 s after Close")
	}
}

func TestServerPingIsAnswered(t *testing.T) {
	_, srv := server(t, echo)
	done := make(chan error, 1)
	go func() {
		_, err := srv.Ping()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server's ping was not answered")
	}
}

func TestClientPingsKeepTheConnectionBusy(t *testing.T) {
	cc, sc := testnet.TCPPair(t)
	c, err := New(cc, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two ping frames arrive: 12 bytes each (8 of header, 4 of id).
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 24)
	if _, err := io.ReadFull(sc, buf); err != nil {
		t.Fatalf("no pings from the client: %v", err)
	}
	for i := 0; i < 24; i += 12 {
		if buf[i] != 0x80 || buf[i+1] != 3 || buf[i+3] != 6 {
			t.Fatalf("frame % x is not a SPDY/3 ping", buf[i:i+12])
		}
	}
}

func TestSlowReaderLosesNothing(t *testing.T) {
	const size = 4 << 20
	want := randomBytes(size, 7)
	c, _ := server(t, func(s *spdystream.Stream) {
		if s.Headers().Get("Streamtype") == "data" {
			echo(s)
			return
		}
		s.SendReply(http.Header{}, false)
		go func() {
			for off := 0; off < size; off += 8 << 10 {
				s.Write(want[off : off+8<<10])
			}
			s.Close()
		}()
	})
	s, err := c.CreateStream(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	// Let the server fill the stream's window and the sockets.
	time.Sleep(300 * time.Millisecond)
	// With the window full the connection's reader waits for this
	// stream's reader, so another stream can only finish after it reads.
	other := make(chan error, 1)
	go func() {
		got, err := exchange(c, []byte("other"))
		if err == nil && string(got) != "other" {
			err = fmt.Errorf("echoed %d bytes, not the 5 sent", len(got))
		}
		other <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("slow reader got %d bytes (%v), want the %d sent, unchanged", len(got), err, size)
	}
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("another stream, once the slow one was read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another stream still waiting after the slow one was read")
	}
}

// FuzzRead feeds the client whatever a broken or hostile server could
// send. The connection must end or go on; never panic, never hang Close.
func FuzzRead(f *testing.F) {
	f.Add([]byte{0x80, 3, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1})             // reply to stream 1, no headers
	f.Add([]byte{0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 5}) // reset of stream 1
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 3, 'a', 'b', 'c'})             // data, fin
	f.Add([]byte{0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2})             // ping
	f.Add([]byte{0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}) // go-away
	f.Add([]byte{0x80, 3, 0, 2, 0xff, 0xff, 0xff, 0xff})             // oversized
	f.Fuzz(func(t *testing.T, data []byte) {
		cc, sc := net.Pipe()
		defer sc.Close()
		c, err := New(cc, 0)
		if err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, sc) // whatever the client writes
		opened := make(chan httpstream.Stream, 1)
		go func() {
			s, _ := c.CreateStream(http.Header{})
			opened <- s
		}()
		sc.SetWriteDeadline(time.Now().Add(time.Second))
		sc.Write(data)
		done := make(chan struct{})
		go func() { c.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close hung")
		}
		if s := <-opened; s != nil {
			io.ReadAll(s)
		}
	})
}
