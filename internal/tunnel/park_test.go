package tunnel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

// tcpUpstream is an Upstream over one end of a loopback TCP connection
// (buffered, as a stream is); the test plays the pod on the other end.
type tcpUpstream struct{ *net.TCPConn }

func parkPipe(t *testing.T) (*Parked, net.Conn) {
	t.Helper()
	ours, pod := testsupport.TCPPair(t)
	return Park(tcpUpstream{ours}, "test/pod:80", nil), pod
}

func waitEnded(t *testing.T, p *Parked) {
	t.Helper()
	select {
	case <-p.Ended():
	case <-time.After(5 * time.Second):
		t.Fatal("the parked connection did not end")
	}
}

func TestParkedKeepsWhatThePodSentForTheClient(t *testing.T) {
	defer goleak.VerifyNone(t)
	p, pod := parkPipe(t)
	if _, err := pod.Write([]byte("220 greeting\r\n")); err != nil {
		t.Fatal(err)
	}
	up, ok := p.Take()
	if !ok {
		t.Fatalf("Take of a live connection failed: %v", p.Err())
	}
	go func() {
		pod.Write([]byte("after the take"))
		buf := make([]byte, 4)
		io.ReadFull(pod, buf)
		pod.Write(buf) // echo what the client sent
		pod.Close()
	}()
	if _, err := up.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(up)
	if err != nil {
		t.Fatal(err)
	}
	if want := "220 greeting\r\nafter the takeping"; string(got) != want {
		t.Fatalf("client read %q, want %q", got, want)
	}
	up.Close()
	if _, ok := p.Take(); ok {
		t.Fatal("a connection was taken twice")
	}
}

// pipeUpstream is an in-memory upstream, whose reads block durably in a
// synctest bubble.
type pipeUpstream struct{ net.Conn }

func (pipeUpstream) CloseWrite() error { return nil }

func TestParkedHandsOverTheReadInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		ours, pod := net.Pipe()
		p := Park(pipeUpstream{ours}, "test/pod:80", nil)
		// Nothing sent yet: the pump is blocked in a read when the
		// client takes the connection.
		synctest.Wait()
		up, ok := p.Take()
		if !ok {
			t.Fatal("Take failed")
		}
		go func() {
			pod.Write([]byte("first"))
			pod.Write([]byte("second"))
			pod.Close()
		}()
		got, err := io.ReadAll(up)
		if err != nil || string(got) != "firstsecond" {
			t.Fatalf("client read %q, %v; want %q", got, err, "firstsecond")
		}
		up.Close()
	})
}

func TestParkedEndsWhenThePodCloses(t *testing.T) {
	defer goleak.VerifyNone(t)
	p, pod := parkPipe(t)
	pod.Close()
	waitEnded(t, p)
	if !errors.Is(p.Err(), io.EOF) {
		t.Fatalf("Err = %v, want EOF", p.Err())
	}
	if _, ok := p.Take(); ok {
		t.Fatal("an ended connection was taken")
	}
}

func TestParkedEndsWhenThePodSendsTooMuch(t *testing.T) {
	defer goleak.VerifyNone(t)
	p, pod := parkPipe(t)
	go pod.Write(bytes.Repeat([]byte("x"), maxParkedData+1))
	waitEnded(t, p)
	if !errors.Is(p.Err(), ErrParkedOverflow) {
		t.Fatalf("Err = %v, want ErrParkedOverflow", p.Err())
	}
	// The connection to the pod is closed.
	if _, err := pod.Read(make([]byte, 1)); err == nil {
		t.Fatal("the pod's side is still open")
	}
}

func TestParkedCloseClosesAnUntakenConnection(t *testing.T) {
	defer goleak.VerifyNone(t)
	p, pod := parkPipe(t)
	p.Close()
	if _, err := pod.Read(make([]byte, 1)); err == nil {
		t.Fatal("the pod's side is still open after Close")
	}
	if _, ok := p.Take(); ok {
		t.Fatal("a closed connection was taken")
	}
	if !errors.Is(p.Err(), ErrParkedClosed) {
		t.Fatalf("Err = %v, want ErrParkedClosed", p.Err())
	}
}
