package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

func TestParseDest(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Dest
		err  bool
	}{
		{in: "db.example.com:5432", want: Dest{Kind: TCP, Host: "db.example.com", Port: 5432}},
		{in: "DB.Example.COM.:5432/tcp", want: Dest{Kind: TCP, Host: "db.example.com", Port: 5432}},
		{in: "10.0.0.53:53/udp", want: Dest{Kind: UDP, Host: "10.0.0.53", Port: 53}},
		{in: "[fd00::1]:53/udp", want: Dest{Kind: UDP, Host: "fd00::1", Port: 53}},
		{in: "_sip._udp.example.com:5060/udp", want: Dest{Kind: UDP, Host: "_sip._udp.example.com", Port: 5060}},
		{in: "db:0", err: true},
		{in: "db:65536", err: true},
		{in: "db:http", err: true},
		{in: "db", err: true},
		{in: "db:5432/sctp", err: true},
		{in: "-db:5432", err: true},
		{in: "db..example:5432", err: true},
		{in: "db example:5432", err: true},
		{in: ":5432", err: true},
	} {
		got, err := ParseDest(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseDest(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil {
			if again, err := ParseDest(got.String()); err != nil || again != got {
				t.Errorf("ParseDest(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
			}
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	for _, r := range []Request{{Kind: TCP, Dest: "db:5432"}, {Kind: UDP, Dest: "[::1]:53"}, {Kind: Heartbeat}} {
		b.Reset()
		if err := WriteRequest(&b, r); err != nil {
			t.Fatal(err)
		}
		got, err := ReadRequest(&b)
		if err != nil || got != r {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
	}
	for name, in := range map[string]string{
		"magic":   "HTTP/1.1",
		"version": "KPFR\x02\x01\x00\x00",
		"kind":    "KPFR\x01\x09\x00\x00",
		"length":  "KPFR\x01\x01\xff\xff",
	} {
		if _, err := ReadRequest(bytes.NewReader([]byte(in))); !errors.Is(err, errBadRequest) {
			t.Errorf("%s: ReadRequest(%q) = %v, want a bad request", name, in, err)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("KPFR\x01\x01\x00\x07db:5432"))
	f.Add([]byte("KPFR\x01\x03\x00\x00"))
	f.Add([]byte("KPFR\x01\x02\x00\x08[::1]:53"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ReadRequest(bytes.NewReader(in))
		if err != nil {
			return
		}
		if r.Kind < TCP || r.Kind > Heartbeat || len(r.Dest) > maxDest {
			t.Fatalf("ReadRequest(%q) accepted %+v", in, r)
		}
		if _, err := ParseDest(r.Dest + "/" + r.Kind.String()); err != nil {
			return
		}
	})
}

// startRelay serves s on a loopback listener and returns its address and
// a function that waits for Serve's result.
func startRelay(t *testing.T, s *Server) (string, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	wait := sync.OnceValue(func() error { return <-done })
	t.Cleanup(func() {
		cancel()
		wait()
	})
	return ln.Addr().String(), wait
}

func dialRelay(t *testing.T, addr string, dest Dest) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, err := Open(c, dest)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// tcpEcho serves an echo that answers after its client half-closes,
// returning its port.
func tcpEcho(t *testing.T) uint16 {
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
				data, _ := io.ReadAll(c)
				c.Write(data)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestServerRelaysAllowedTCP(t *testing.T) {
	port := tcpEcho(t)
	dest := Dest{Kind: TCP, Host: "127.0.0.1", Port: port}
	addr, _ := startRelay(t, &Server{Allow: []Dest{dest}})
	c := dialRelay(t, addr, dest)
	want := make([]byte, 1<<20)
	rand.Read(want)
	go func() {
		c.Write(want)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (equal: %v), %v; want the %d sent back", len(got), bytes.Equal(got, want), err, len(want))
	}
}

func TestServerRefusesWhatItWasNotStartedWith(t *testing.T) {
	port := tcpEcho(t)
	allowed := Dest{Kind: TCP, Host: "127.0.0.1", Port: port}
	addr, _ := startRelay(t, &Server{Allow: []Dest{allowed}})
	for _, d := range []Dest{
		{Kind: TCP, Host: "127.0.0.1", Port: port + 1},
		{Kind: UDP, Host: "127.0.0.1", Port: port},
		{Kind: TCP, Host: "localhost", Port: port}, // the same place by another name is not what was declared
	} {
		c := dialRelay(t, addr, d)
		_, err := c.Read(make([]byte, 1))
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != Refused || !errors.Is(err, ErrRefused) {
			t.Errorf("%s: first read = %v, want a refusal", d, err)
		}
	}
}

func TestServerSaysWhenItCannotReach(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	dest := Dest{Kind: TCP, Host: "127.0.0.1", Port: port}
	addr, _ := startRelay(t, &Server{Allow: []Dest{dest}})
	_, err = dialRelay(t, addr, dest).Read(make([]byte, 1))
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != Unreachable {
		t.Fatalf("first read = %v, want unreachable", err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(int(port)); !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not name %s", err, want)
	}
}

func TestServerAnswersGarbageWithBadRequest(t *testing.T) {
	addr, _ := startRelay(t, &Server{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	var re *ReplyError
	if err := ReadReply(c); !errors.As(err, &re) || re.Code != BadRequest {
		t.Fatalf("reply = %v, want bad request", err)
	}
}

func TestServerRelaysUDPByteExact(t *testing.T) {
	dest := Dest{Kind: UDP, Host: "127.0.0.1", Port: uint16(testsupport.UDPEcho(t))}
	addr, _ := startRelay(t, &Server{Allow: []Dest{dest}})
	c := dialRelay(t, addr, dest)
	// One datagram at a time, each answered before the next, so that no
	// loss on a busy loopback can make the test wrong.
	buf := make([]byte, MaxDatagram)
	for _, size := range []int{0, 1, 512, 1400, 8192, MaxDatagram} {
		want := make([]byte, size)
		rand.Read(want)
		if err := WriteDatagram(c, want); err != nil {
			t.Fatal(err)
		}
		n, err := ReadDatagram(c, buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram of %d bytes: got %d bytes (equal: %v), %v", size, n, bytes.Equal(buf[:n], want), err)
		}
	}
}

func TestServerExitsWithoutHeartbeat(t *testing.T) {
	_, wait := startRelay(t, &Server{HeartbeatTimeout: 100 * time.Millisecond})
	if err := wait(); !errors.Is(err, ErrNoHeartbeat) {
		t.Fatalf("Serve = %v, want ErrNoHeartbeat", err)
	}
}

func TestHeartbeatKeepsTheRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		beats := make(chan struct{}, 1)
		lost := make(chan bool, 1)
		go func() { lost <- watchdog(t.Context(), beats, time.Minute) }()
		for range 10 { // ten minutes of beats every 50 s
			time.Sleep(50 * time.Second)
			beats <- struct{}{}
		}
		synctest.Wait()
		select {
		case <-lost:
			t.Fatal("the watchdog fired while beats came")
		default:
		}
		start := time.Now()
		if !<-lost {
			t.Fatal("watchdog returned false without ctx ending")
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("fired %v after the last beat, want 1m", waited)
		}
	})
}

func TestBeatFeedsTheWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		s := &Server{}
		beats := make(chan struct{}, 1)
		go s.handle(t.Context(), server, beats)
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- Beat(ctx, client, HeartbeatInterval) }()
		for range 3 {
			<-beats
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("Beat = %v", err)
		}
		client.Close()
	})
}
