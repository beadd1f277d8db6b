package tunnel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moby/spdystream/spdy"
)

// recordingUpstream keeps what a FirstBytes copy writes to it.
type recordingUpstream struct {
	mu          sync.Mutex
	got         bytes.Buffer
	closedWrite bool
}

func (u *recordingUpstream) Read([]byte) (int, error) { return 0, errors.New("not read") }
func (u *recordingUpstream) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closedWrite {
		return 0, errors.New("write after CloseWrite")
	}
	return u.got.Write(p)
}
func (u *recordingUpstream) CloseWrite() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closedWrite = true
	return nil
}
func (u *recordingUpstream) Close() error { return nil }

func (u *recordingUpstream) state() (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got.String(), u.closedWrite
}

// waitPending waits until f holds bytes read from its client.
func waitPending(t *testing.T, f *FirstBytes) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.pending)
		f.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the client's bytes never arrived")
		}
		time.Sleep(time.Millisecond)
	}
}

// Everything the client sends reaches the upstream once, in order: what a
// dial sent ahead, what came while the dial waited, and what came after;
// then the client's end of input. A stopped copy (the dial failed) hands
// nothing on.
func TestFirstBytesHandsEverythingOnOnceInOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ahead     string // sent ahead by the dial
		waiting   string // sent by the client while the dial waits
		after     string // sent after attach
		stop      bool
		wantAhead string
		wantUp    string
	}{
		{name: "sent ahead, then more", ahead: "GET / HTTP/1.1\r\n", waiting: "Host: x\r\n", after: "\r\n", wantAhead: "GET / HTTP/1.1\r\n", wantUp: "Host: x\r\n\r\n"},
		{name: "sent ahead only", ahead: "PING\n", wantAhead: "PING\n"},
		{name: "nothing ahead", waiting: "PING\n", after: "more", wantUp: "PING\nmore"},
		{name: "silent client", after: "late", wantUp: "late"},
		{name: "much after", ahead: "GET", after: "a longer body than any one read", wantAhead: "GET", wantUp: "a longer body than any one read"},
		{name: "dial failed", ahead: "PING\n", waiting: "lost", stop: true, wantAhead: "PING\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, client := net.Pipe()
			// Odd sizes: the copy after attach reads in pieces.
			bufs := &sync.Pool{New: func() any { b := make([]byte, 3); return &b }}
			f := startFirstBytes(context.Background(), local, make([]byte, 64), bufs)
			var sentAhead string
			if tc.ahead != "" {
				go client.Write([]byte(tc.ahead))
				waitPending(t, f)
				n, err := f.send(func(p []byte) error { sentAhead = string(p); return nil })
				if err != nil || n != len(tc.ahead) {
					t.Fatalf("send: %d, %v; want %d bytes", n, err, len(tc.ahead))
				}
			}
			if sentAhead != tc.wantAhead {
				t.Errorf("sent ahead %q, want %q", sentAhead, tc.wantAhead)
			}
			if tc.waiting != "" {
				go client.Write([]byte(tc.waiting))
				waitPending(t, f)
			}
			up := &recordingUpstream{}
			if tc.stop {
				f.stop()
				local.Close()
			} else {
				f.attach(up)
				if tc.after != "" {
					if _, err := client.Write([]byte(tc.after)); err != nil {
						t.Fatal(err)
					}
				}
				client.Close()
			}
			copied := f.wait()
			got, closedWrite := up.state()
			if got != tc.wantUp {
				t.Errorf("upstream got %q, want %q", got, tc.wantUp)
			}
			if closedWrite == tc.stop {
				t.Errorf("upstream closed for writing: %t, want %t", closedWrite, !tc.stop)
			}
			if want := int64(len(tc.wantAhead) + len(tc.wantUp)); copied != want {
				t.Errorf("copied %d bytes, want %d", copied, want)
			}
			if f.Sent() != len(tc.wantAhead) {
				t.Errorf("Sent() = %d, want %d", f.Sent(), len(tc.wantAhead))
			}
		})
	}
}

// An upstream that got nothing can be taken back (detach) and another
// attached: everything the client sends goes to the second, once. Once any
// byte went out, ahead or after, detach refuses and the first upstream
// keeps the connection.
func TestFirstBytesDetachOnlyBeforeAnythingWentOut(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ahead      string // sent ahead by the dial
		before     string // sent after the first attach, before detach
		wantDetach bool
	}{
		{name: "nothing sent", wantDetach: true},
		{name: "sent ahead", ahead: "PING\n"},
		{name: "sent to the first upstream", before: "PING\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, client := net.Pipe()
			defer client.Close()
			bufs := &sync.Pool{New: func() any { b := make([]byte, 64); return &b }}
			f := startFirstBytes(context.Background(), local, make([]byte, 64), bufs)
			if tc.ahead != "" {
				go client.Write([]byte(tc.ahead))
				waitPending(t, f)
				if _, err := f.send(func([]byte) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}
			first, second := &recordingUpstream{}, &recordingUpstream{}
			f.attach(first)
			if tc.before != "" {
				if _, err := client.Write([]byte(tc.before)); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
					if got, _ := first.state(); got == tc.before {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the first upstream never got the client's bytes")
					}
				}
			}
			if got := f.detach(); got != tc.wantDetach {
				t.Fatalf("detach() = %t, want %t", got, tc.wantDetach)
			}
			if !tc.wantDetach {
				local.Close()
				f.wait()
				return
			}
			// While no upstream is attached, what the client sends waits.
			go client.Write([]byte("later"))
			waitPending(t, f)
			f.attach(second)
			client.Close()
			if copied := f.wait(); copied != int64(len("later")) {
				t.Errorf("copied %d bytes, want %d", copied, len("later"))
			}
			if got, _ := first.state(); got != "" {
				t.Errorf("the detached upstream got %q", got)
			}
			if got, closed := second.state(); got != "later" || !closed {
				t.Errorf("the second upstream got %q (closed for writing: %t), want %q and closed", got, closed, "later")
			}
		})
	}
}

// rawKubelet reads a SPDY client's frames on conn and hands them to the
// test, which answers them as it likes through reply and close.
type rawKubelet struct {
	conn   net.Conn
	fr     *spdy.Framer
	frames chan spdy.Frame
	wmu    sync.Mutex
	// writes logs the sizes of the client's writes to its connection.
	writes *writeLog
}

// writeLog is a net.Conn that logs the size of each Write.
type writeLog struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *writeLog) log() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sizes)
}

func newRawKubelet(t *testing.T, conn net.Conn) *rawKubelet {
	fr, err := spdy.NewFramer(conn, conn)
	if err != nil {
		t.Fatal(err)
	}
	k := &rawKubelet{conn: conn, fr: fr, frames: make(chan spdy.Frame, 64)}
	go func() {
		defer close(k.frames)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			k.frames <- f
		}
	}()
	return k
}

// next returns the next frame the client sent.
func (k *rawKubelet) next(t *testing.T) spdy.Frame {
	t.Helper()
	select {
	case f, ok := <-k.frames:
		if !ok {
			t.Fatal("the client's connection ended")
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame from the client within 5s")
	}
	return nil
}

func (k *rawKubelet) reply(t *testing.T, ids ...spdy.StreamId) {
	t.Helper()
	k.wmu.Lock()
	defer k.wmu.Unlock()
	for _, id := range ids {
		if err := k.fr.WriteFrame(&spdy.SynReplyFrame{StreamId: id, Headers: http.Header{}}); err != nil {
			t.Fatal(err)
		}
	}
}

// opening reads the frames that open a connection, the error stream's
// first (ending kpf's side of it: kpf never writes on it), and the data frame sent ahead with them if want is not empty,
// and returns the streams' ids.
func (k *rawKubelet) opening(t *testing.T, want string) (errID, dataID spdy.StreamId) {
	t.Helper()
	for i, kind := range []string{"error", "data"} {
		syn, ok := k.next(t).(*spdy.SynStreamFrame)
		if !ok || syn.Headers.Get("streamType") != kind {
			t.Fatalf("frame %d: %#v; want the SYN_STREAM of the %s stream", i, syn, kind)
		}
		if kind == "error" {
			errID = syn.StreamId
			if syn.CFHeader.Flags&spdy.ControlFlagFin == 0 {
				t.Error("the error stream's opening frame does not end kpf's side of it")
			}
		} else {
			dataID = syn.StreamId
		}
	}
	if want != "" {
		d, ok := k.next(t).(*spdy.DataFrame)
		if !ok || d.StreamId != dataID || string(d.Data) != want {
			t.Fatalf("third frame %#v; want %q on the data stream %d, before any reply", d, want, dataID)
		}
	}
	return errID, dataID
}

// sessionOverRawKubelet is a Session on kpf's SPDY connection to a
// rawKubelet.
func sessionOverRawKubelet(t *testing.T) (*Session, *rawKubelet) {
	client, server := net.Pipe()
	k := newRawKubelet(t, server)
	k.writes = &writeLog{Conn: client}
	sc, err := newSPDYConnectionWithPings(newFrameConn(k.writes), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(Pod{"ns", "a"}, sc, "test", nil)
	t.Cleanup(func() {
		s.Close()
		server.Close()
	})
	return s, k
}

// firstBytesOf returns a FirstBytes whose client has sent msg, and the
// client's end.
func firstBytesOf(t *testing.T, ctx context.Context, msg string) (*FirstBytes, net.Conn) {
	local, client := net.Pipe()
	f := startFirstBytes(ctx, local, make([]byte, 64), nil)
	go client.Write([]byte(msg))
	waitPending(t, f)
	t.Cleanup(func() {
		f.stop()
		local.Close()
		client.Close()
		f.wait()
	})
	return f, client
}

type dialResult struct {
	c   *Conn
	err error
}

// A dial sends the client's first bytes right behind the frames that open
// its streams, before the kubelet has accepted them, so that the request
// travels in the same round trip, and sends on what the client sends
// until the kubelet answers; the dial then returns once both streams are
// accepted.
func TestDialSendsFirstBytesAhead(t *testing.T) {
	s, k := sessionOverRawKubelet(t)
	f, client := firstBytesOf(t, context.Background(), "PING\n")
	res := make(chan dialResult, 1)
	go func() {
		s.active.Add(1)
		c, err := s.dialReserved(context.Background(), 80, nil, f)
		res <- dialResult{c, err}
	}()
	errID, dataID := k.opening(t, "PING\n")
	if w := k.writes.log(); len(w) != 1 {
		t.Errorf("the opening frames and the first bytes came in writes of %v bytes; want one write", w)
	}
	go client.Write([]byte("more"))
	if d, ok := k.next(t).(*spdy.DataFrame); !ok || d.StreamId != dataID || string(d.Data) != "more" {
		t.Fatalf("next frame %#v; want \"more\" on the data stream %d, before any reply", d, dataID)
	}
	k.reply(t, errID, dataID)
	r := <-res
	if r.err != nil {
		t.Fatalf("dial: %v", r.err)
	}
	r.c.Close()
	if f.Sent() != len("PING\nmore") {
		t.Errorf("Sent() = %d, want %d", f.Sent(), len("PING\nmore"))
	}
}

// A dial with a prefix (kpf's relay's request) sends it first on the data
// stream, right behind the opening frames and ahead of the client's
// bytes, in the same write; and sends it once.
func TestDialSendsItsPrefixAheadOfTheClientsBytes(t *testing.T) {
	s, k := sessionOverRawKubelet(t)
	f, _ := firstBytesOf(t, context.Background(), "PING\n")
	res := make(chan dialResult, 1)
	go func() {
		s.active.Add(1)
		c, err := s.dialReserved(context.Background(), 7000, []byte("REQ"), f)
		res <- dialResult{c, err}
	}()
	errID, dataID := k.opening(t, "REQ")
	if d, ok := k.next(t).(*spdy.DataFrame); !ok || d.StreamId != dataID || string(d.Data) != "PING\n" {
		t.Fatalf("frame after the prefix %#v; want the client's bytes on the data stream %d", d, dataID)
	}
	if w := k.writes.log(); len(w) != 1 {
		t.Errorf("the opening frames, the prefix and the first bytes came in writes of %v bytes; want one write", w)
	}
	k.reply(t, errID, dataID)
	r := <-res
	if r.err != nil {
		t.Fatalf("dial: %v", r.err)
	}
	defer r.c.Close()
	if f.Sent() != len("PING\n") {
		t.Errorf("Sent() = %d: the prefix counts as the client's bytes", f.Sent())
	}
	if w := k.writes.log(); len(w) != 1 {
		t.Errorf("writes after the dial: %v; the prefix went out twice", w)
	}
}

// A dial that sent bytes ahead and then lost its session before the
// kubelet answered reports ErrSentAhead, which forbids a retry; one that
// had nothing to send does not. A dial whose context ends after it sent
// bytes ahead waits for the kubelet's answer instead (its request may be
// with the pod), until the connection's own context ends.
func TestDialAfterSendingAhead(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		first                  string
		cancelDial, cancelConn bool
		lose                   bool // the kubelet's connection ends instead of a reply
		wantAhead              bool // the error wraps ErrSentAhead
		wantErr                bool
	}{
		{name: "session lost after sending", first: "PING\n", lose: true, wantErr: true, wantAhead: true},
		{name: "session lost with nothing sent", lose: true, wantErr: true},
		{name: "dial's context ends after sending", first: "PING\n", cancelDial: true},
		{name: "connection's context ends after sending", first: "PING\n", cancelDial: true, cancelConn: true, wantErr: true, wantAhead: true},
		{name: "dial's context ends with nothing sent", cancelDial: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, k := sessionOverRawKubelet(t)
				connCtx, cancelConn := context.WithCancel(context.Background())
				defer cancelConn()
				var f *FirstBytes
				if tc.first != "" {
					f, _ = firstBytesOf(t, connCtx, tc.first)
				}
				dialCtx, cancelDial := context.WithCancel(context.Background())
				defer cancelDial()
				res := make(chan dialResult, 1)
				go func() {
					s.active.Add(1)
					c, err := s.dialReserved(dialCtx, 80, nil, f)
					res <- dialResult{c, err}
				}()
				errID, dataID := k.opening(t, tc.first)
				if tc.cancelDial {
					cancelDial()
					if tc.cancelConn {
						cancelConn()
					}
					// Let the dial see it before the kubelet answers.
					synctest.Wait()
				}
				if tc.lose {
					k.conn.Close()
				} else {
					k.reply(t, errID, dataID)
				}
				r := <-res
				if r.c != nil {
					r.c.Close()
				}
				if (r.err != nil) != tc.wantErr {
					t.Fatalf("dial: %v; want an error: %t", r.err, tc.wantErr)
				}
				if got := errors.Is(r.err, ErrSentAhead); got != tc.wantAhead {
					t.Errorf("dial: %v; wraps ErrSentAhead: %t, want %t", r.err, got, tc.wantAhead)
				}
			})
		})
	}
}

// writeFrames puts its frames between the frames written through Write,
// never inside one that Write holds in part.
func TestFrameConnWritesFramesBetweenOthers(t *testing.T) {
	rec := &recordingConn{}
	fc := newFrameConn(rec)
	frame := []byte{0, 0, 0, 1, 0, 0, 0, 3, 'a', 'b', 'c'}
	if _, err := fc.Write(frame[:5]); err != nil { // spdystream is mid-frame
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ahead := []byte{0, 0, 0, 3, 0, 0, 0, 2, 'h', 'i'}
	go func() { done <- fc.writeFrames(ahead) }()
	select {
	case err := <-done:
		t.Fatalf("writeFrames returned (%v) while a frame was half written", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := fc.Write(frame[5:]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.writes
	want := [][]byte{frame, ahead}
	if len(got) != len(want) || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
		t.Errorf("writes %q, want %q", got, want)
	}
}
