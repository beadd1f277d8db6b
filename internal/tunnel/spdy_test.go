package tunnel

import (
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moby/spdystream/spdy"

	streamhttp "k8s.io/streaming/pkg/httpstream"
	streamspdy "k8s.io/streaming/pkg/httpstream/spdy"
)

// The SPDY connection kpf runs hands out spdystream's own streams, so that
// earlyReader takes whole frames (ReadData) rather than copying through
// an adapter, and data written by the far end right after accepting a
// stream reaches a dial's first Read.
func TestSPDYConnectionStreamsReadWholeFrames(t *testing.T) {
	client, server := net.Pipe()
	srv, err := streamspdy.NewServerConnection(server, func(st streamhttp.Stream, replySent <-chan struct{}) error {
		go func() {
			<-replySent
			st.Write([]byte("hello"))
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := newSPDYConnection(newFrameConn(client))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.CreateStream(http.Header{"Streamtype": {"data"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.RemoveStreams(st)
	if _, ok := st.(frameReader); !ok {
		t.Fatalf("stream %T cannot read whole frames", st)
	}
	e := startEarlyRead(st)
	got := make([]byte, 16)
	n, err, ok := e.read(got)
	if !ok || err != nil || string(got[:n]) != "hello" {
		t.Errorf("first read: %q, %v (through the early reader: %v); want \"hello\"", got[:n], err, ok)
	}
}

// pingServer reads a SPDY client's frames on conn, records when each ping
// arrived, and if answer is set echoes it, as the kubelet does.
type pingServer struct {
	answer bool
	mu     sync.Mutex
	start  time.Time
	at     []time.Duration
}

func (p *pingServer) serve(conn net.Conn) {
	fr, err := spdy.NewFramer(conn, conn)
	if err != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if ping, ok := f.(*spdy.PingFrame); ok {
			p.mu.Lock()
			p.at = append(p.at, time.Since(p.start))
			p.mu.Unlock()
			if p.answer && fr.WriteFrame(ping) != nil {
				return
			}
		}
	}
}

func (p *pingServer) pings() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.at...)
}

// A connection pings every period; hurried, it pings at once and then
// every leavingPingPeriod until the time it was given, and then every
// period again, or at once back to the period when told to stop. It does
// not wait for answers: a ping the far end never answers (the kubelet
// closed the pod's connection as the ping reached it) does not hold up
// the next.
func TestSPDYConnectionPingSchedule(t *testing.T) {
	for _, answer := range []bool{true, false} {
		t.Run(fmt.Sprintf("answered=%t", answer), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testPingSchedule(t, answer) })
		})
	}
}

func testPingSchedule(t *testing.T, answer bool) {
	client, server := net.Pipe()
	ps := &pingServer{answer: answer, start: time.Now()}
	go ps.serve(server)
	c, err := newSPDYConnectionWithPings(newFrameConn(client), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(25 * time.Second)
	c.pingFastUntil(time.Now().Add(time.Second))
	time.Sleep(15 * time.Second) // to 40 s
	c.pingFastUntil(time.Now().Add(time.Hour))
	time.Sleep(600 * time.Millisecond)
	c.pingFastUntil(time.Time{})
	time.Sleep(15 * time.Second) // to 55.6 s
	c.Close()
	server.Close()
	synctest.Wait()
	ms := time.Millisecond
	want := []time.Duration{
		10 * time.Second, 20 * time.Second, // the period
		25 * time.Second, 25250 * ms, 25500 * ms, 25750 * ms, 26 * time.Second, // hurried for 1 s
		36 * time.Second,                         // the period again
		40 * time.Second, 40250 * ms, 40500 * ms, // hurried, then stopped at 40.6 s
		40750 * ms, 50750 * ms, // the ping due at stop time, then the period
	}
	if got := ps.pings(); !reflect.DeepEqual(got, want) {
		t.Errorf("pings at %v\nwant %v", got, want)
	}
}
