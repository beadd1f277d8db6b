package tunnel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// fakeConn stands in for a port-forward connection: streams accept writes
// and end when reset or removed, as the kubelet ends a pair once its data
// stream goes.
type fakeConn struct {
	// refuse, if set, makes the fake kubelet refuse every pair at once:
	// it resets the data stream before replying and writes refuse on the
	// error stream.
	refuse string
	// stall, if set, makes stream creation wait until the connection
	// closes, as on a connection that nothing reads any more.
	stall bool
	// writesBlock, if set, makes writes to data streams wait until it is
	// closed or the stream ends, as to a pod that stopped reading.
	writesBlock chan struct{}
	mu          sync.Mutex
	nextID      uint32
	closed      chan bool
	closing     sync.Once
	// leaving records the calls of pingFastUntil: whether each asked for
	// fast pings (a non-zero time) or stopped them.
	leaving []bool
}

func (f *fakeConn) pingFastUntil(t time.Time) {
	f.mu.Lock()
	f.leaving = append(f.leaving, !t.IsZero())
	f.mu.Unlock()
}

func (f *fakeConn) leavingCalls() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.leaving...)
}

func newFakeConn() *fakeConn { return &fakeConn{closed: make(chan bool)} }

func (f *fakeConn) CreateStream(h http.Header) (httpstream.Stream, error) {
	if f.stall {
		<-f.closed
	}
	select {
	case <-f.closed:
		return nil, errors.New("connection closed")
	default:
	}
	if f.refuse != "" && h.Get("streamType") == "data" {
		return nil, errors.New("stream reset")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	st := &fakeStream{id: f.nextID, headers: h, done: make(chan struct{})}
	if h.Get("streamType") == "data" {
		st.writesBlock = f.writesBlock
	}
	if f.refuse != "" {
		st.msg = []byte(f.refuse)
		st.Reset()
	}
	return st, nil
}

func (f *fakeConn) Close() error {
	f.closing.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeConn) CloseChan() <-chan bool       { return f.closed }
func (f *fakeConn) SetIdleTimeout(time.Duration) {}
func (f *fakeConn) RemoveStreams(streams ...httpstream.Stream) {
	for _, s := range streams {
		if s != nil {
			s.Reset()
		}
	}
}

func (f *fakeConn) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

type fakeStream struct {
	writesBlock chan struct{} // see fakeConn
	msg         []byte        // what reads return before io.EOF
	id          uint32
	headers     http.Header
	done        chan struct{}
	once        sync.Once
}

func (s *fakeStream) Read(p []byte) (int, error) {
	<-s.done
	if len(s.msg) > 0 {
		n := copy(p, s.msg)
		s.msg = s.msg[n:]
		return n, nil
	}
	return 0, io.EOF
}
func (s *fakeStream) Write(p []byte) (int, error) {
	if s.writesBlock != nil {
		select {
		case <-s.writesBlock:
		case <-s.done:
			return 0, errors.New("stream reset")
		}
	}
	return len(p), nil
}
func (s *fakeStream) Close() error { return nil }
func (s *fakeStream) Reset() error {
	s.once.Do(func() { close(s.done) })
	return nil
}
func (s *fakeStream) Headers() http.Header { return s.headers }
func (s *fakeStream) Identifier() uint32   { return s.id }

// fakePool is a Pool whose sessions run over fakeConns; conns lists them
// in the order they were opened.
type fakePool struct {
	*Pool
	mu    sync.Mutex
	conns []*fakeConn
}

func newFakePool() *fakePool {
	fp := &fakePool{}
	fp.Pool = newPool(func(_ context.Context, pod Pod) (*Session, error) {
		c := newFakeConn()
		fp.mu.Lock()
		fp.conns = append(fp.conns, c)
		fp.mu.Unlock()
		return newSession(pod, c, "fake", nil), nil
	}, time.Second)
	return fp
}

func (fp *fakePool) opened() []*fakeConn {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]*fakeConn(nil), fp.conns...)
}

var podA, podB = Pod{"ns", "a"}, Pod{"ns", "b"}

func TestLeasesShareOneSessionPerPod(t *testing.T) {
	fp := newFakePool()
	defer fp.Close()
	ctx := context.Background()
	var seen1, seen2 atomic.Int64
	l1, l2 := fp.Lease(), fp.Lease()
	l1.OnSession = func(*Session) { seen1.Add(1) }
	l2.OnSession = func(*Session) { seen2.Add(1) }
	s1, err := l1.Get(ctx, podA)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := l2.Get(ctx, podA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Get(ctx, podA); err != nil {
		t.Fatal(err)
	}
	if s1 != s2 || len(fp.opened()) != 1 {
		t.Fatalf("two leases of one pod: sessions %p and %p, %d opened; want one shared", s1, s2, len(fp.opened()))
	}
	if seen1.Load() != 1 || seen2.Load() != 1 {
		t.Errorf("OnSession calls = %d, %d; want 1 each", seen1.Load(), seen2.Load())
	}
	l1.Close()
	if !s1.Alive() {
		t.Fatal("session closed while another lease holds its pod")
	}
	l2.Close()
	if s1.Alive() || !fp.opened()[0].isClosed() {
		t.Fatal("session still open after the last lease let go")
	}
	if _, err := l1.Get(ctx, podA); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Get after Close: %v, want ErrSessionClosed", err)
	}
}

func TestSessionOutlivesLeaseWhileConnectionOpen(t *testing.T) {
	fp := newFakePool()
	defer fp.Close()
	ctx := context.Background()
	l := fp.Lease()
	s, err := l.Get(ctx, podA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Dial(ctx, 80)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if !s.Alive() {
		t.Fatal("letting go of the pod cut an open connection's session")
	}
	c.Close()
	if s.Alive() {
		t.Fatal("session still open after its last connection closed with no lease holding it")
	}
}

func TestRetainLetsGoOfDroppedPodsOnly(t *testing.T) {
	fp := newFakePool()
	defer fp.Close()
	ctx := context.Background()
	l, other := fp.Lease(), fp.Lease()
	defer other.Close()
	a, _ := l.Get(ctx, podA)
	b, _ := l.Get(ctx, podB)
	if _, err := other.Get(ctx, podB); err != nil {
		t.Fatal(err)
	}
	l.Retain(func(p Pod) bool { return p == podB })
	if a.Alive() || !b.Alive() {
		t.Fatalf("after Retain(b): a alive %t, b alive %t; want false, true", a.Alive(), b.Alive())
	}
	l.Retain(func(Pod) bool { return false })
	if !b.Alive() {
		t.Fatal("b closed although another lease holds it")
	}
	l.Close()
}

func TestLeaseRedialsAnEndedSession(t *testing.T) {
	fp := newFakePool()
	defer fp.Close()
	ctx := context.Background()
	var seen atomic.Int64
	l := fp.Lease()
	defer l.Close()
	l.OnSession = func(*Session) { seen.Add(1) }
	s1, _ := l.Get(ctx, podA)
	fp.opened()[0].Close() // the API server went away
	<-s1.Done()
	s2, err := l.Get(ctx, podA)
	if err != nil {
		t.Fatal(err)
	}
	if s2 == s1 || !s2.Alive() || seen.Load() != 2 {
		t.Fatalf("after the session ended: same %t, alive %t, OnSession calls %d; want a new live session and 2 calls", s2 == s1, s2.Alive(), seen.Load())
	}
}

func TestSharedRunsOncePerFreshWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSession(podA, newFakeConn(), "fake", nil)
		defer s.Close()
		ctx := context.Background()
		var runs atomic.Int64
		release := make(chan struct{})
		fn := func(context.Context) error {
			runs.Add(1)
			<-release
			return errors.New("refused")
		}
		// Concurrent callers share the run in flight and its result.
		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Coalesce(ctx, "k", 5*time.Second, fn) })
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		for i, err := range errs {
			if err == nil || err.Error() != "refused" {
				t.Errorf("caller %d: %v, want the shared run's error", i, err)
			}
		}
		if runs.Load() != 1 {
			t.Fatalf("runs = %d, want 1", runs.Load())
		}
		// A caller within the fresh window gets the same result; another
		// key runs on its own.
		time.Sleep(4 * time.Second)
		if err := s.Coalesce(ctx, "k", 5*time.Second, fn); err == nil || runs.Load() != 1 {
			t.Errorf("within the window: %v, runs %d; want the cached error and no run", err, runs.Load())
		}
		s.Coalesce(ctx, "other", 5*time.Second, fn)
		if runs.Load() != 2 {
			t.Errorf("another key: runs = %d, want 2", runs.Load())
		}
		// After the window, fn runs again.
		time.Sleep(2 * time.Second)
		s.Coalesce(ctx, "k", 5*time.Second, fn)
		if runs.Load() != 3 {
			t.Errorf("after the window: runs = %d, want 3", runs.Load())
		}
	})
}

func TestSharedDoesNotShareACancelledRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSession(podA, newFakeConn(), "fake", nil)
		defer s.Close()
		var runs atomic.Int64
		cctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			first <- s.Coalesce(cctx, "k", time.Minute, func(ctx context.Context) error {
				runs.Add(1)
				<-ctx.Done()
				return nil // a cancelled check says nothing about the pod
			})
		}()
		synctest.Wait()
		second := make(chan error, 1)
		go func() {
			second <- s.Coalesce(context.Background(), "k", time.Minute, func(context.Context) error {
				runs.Add(1)
				return errors.New("refused")
			})
		}()
		synctest.Wait()
		cancel()
		<-first
		if err := <-second; err == nil || runs.Load() != 2 {
			t.Fatalf("waiter of a cancelled run: %v after %d runs; want its own run's error after 2", err, runs.Load())
		}
	})
}

// When the kubelet resets the data stream before replying to it (it does
// when forwarding fails at once, and the two streams are created at
// once), Dial still returns a connection whose Read reports the kubelet's
// reason, as a connection refused later does.
func TestDialReportsAnImmediateRefusalThroughTheConnection(t *testing.T) {
	fc := newFakeConn()
	fc.refuse = "error forwarding port 81 to pod: connection refused"
	s := newSession(podA, fc, "fake", nil)
	defer s.Close()
	c, err := s.Dial(context.Background(), 81)
	if err != nil {
		t.Fatalf("Dial: %v, want a connection that reports the refusal", err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil || err.Error() != "ns/a: "+fc.refuse {
		t.Errorf("Read: %v, want the kubelet's reason", err)
	}
	if err := c.RemoteErr(); err == nil {
		t.Error("RemoteErr is nil after a refusal")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("Write to a refused connection succeeded")
	}
}

func TestDialSpreadsConcurrentConnectionsOverSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePool()
		defer fp.Close()
		ctx := context.Background()
		l := fp.Lease()
		// Connections one after another share the main session.
		for range 3 {
			c, err := l.Dial(ctx, podA, 80)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		if n := len(fp.opened()); n != 1 {
			t.Fatalf("sequential connections opened %d sessions, want 1", n)
		}
		// Open ones spread over maxSessionsPerPod sessions.
		var conns []*Conn
		perSession := map[*Session]int{}
		for range 2 * maxSessionsPerPod {
			c, err := l.Dial(ctx, podA, 80)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			perSession[c.session]++
		}
		if n := len(fp.opened()); n != maxSessionsPerPod || len(perSession) != maxSessionsPerPod {
			t.Fatalf("%d open connections: %d sessions opened, %d used; want %d", len(conns), n, len(perSession), maxSessionsPerPod)
		}
		for s, n := range perSession {
			if n != 2 {
				t.Errorf("session %p carries %d connections, want 2", s, n)
			}
		}
		for _, c := range conns {
			c.Close()
		}
		// Idle extra sessions close after ExtraSessionIdle; the main one
		// stays while the pod is held.
		time.Sleep(ExtraSessionIdle / 2)
		synctest.Wait()
		if open := countOpen(fp.opened()); open != maxSessionsPerPod {
			t.Fatalf("%d sessions open half-way through the idle time, want %d", open, maxSessionsPerPod)
		}
		time.Sleep(ExtraSessionIdle)
		synctest.Wait()
		if open := countOpen(fp.opened()); open != 1 {
			t.Fatalf("%d sessions open after the idle time, want only the main one", open)
		}
		l.Close()
		if open := countOpen(fp.opened()); open != 0 {
			t.Fatalf("%d sessions open after the lease let go, want 0", open)
		}
	})
}

// mustDial opens a connection to port 80 of pod through l.
func mustDial(t *testing.T, l *Lease, pod Pod) *Conn {
	t.Helper()
	c, err := l.Dial(context.Background(), pod, 80)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A pod whose connections have been short keeps new ones on its main
// session, even many at once; once a connection moves bulkBytes, those
// opened beside it spread again.
func TestDialSpreadsOnlyWhileThePodCarriesBulkTransfers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePool()
		defer fp.Close()
		l := fp.Lease()
		defer l.Close()
		dial := func() *Conn { return mustDial(t, l, podA) }
		// Short exchanges: a request and an answer's worth of bytes.
		for range shortRunBeforeOneSession {
			c := dial()
			if _, err := c.Write([]byte("PING\n")); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		var open []*Conn
		for range 2 * maxSessionsPerPod {
			open = append(open, dial())
		}
		synctest.Wait()
		if n := len(fp.opened()); n != 1 {
			t.Fatalf("after short connections, %d open ones opened %d sessions, want only the main one", len(open), n)
		}
		for _, c := range open[1:] {
			if c.session != open[0].session {
				t.Fatal("a connection went to another session than the main one")
			}
		}
		// One of them becomes a bulk transfer.
		chunk := make([]byte, 64<<10)
		for moved := 0; moved < bulkBytes; moved += len(chunk) {
			if _, err := open[0].Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		next := dial()
		synctest.Wait()
		if n := len(fp.opened()); n != 2 || next.session == open[0].session {
			t.Fatalf("beside a bulk transfer, a new connection went to the main session (%d sessions opened); want an extra one", n)
		}
		// The bulk transfer ends; the pod stays spread until a run of
		// short connections ends.
		open[0].Close()
		for _, c := range append(open[1:], next) {
			c.Close()
		}
		fp.Pool.mu.Lock()
		spread := fp.traffic[podA].spread()
		fp.Pool.mu.Unlock()
		if !spread {
			t.Fatal("the pod stopped spreading when its bulk transfer ended")
		}
	})
}

// On a pod whose connections have been short, a new connection still
// avoids the main session once a write there has been held up for
// stalledWrite: it would queue behind a pod that stopped reading.
func TestDialAvoidsAMainSessionWithAStalledWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePool()
		defer fp.Close()
		l := fp.Lease()
		defer l.Close()
		dial := func() *Conn { return mustDial(t, l, podA) }
		for range shortRunBeforeOneSession {
			c := dial()
			c.moved.Store(5) // as if it had read an answer
			c.Close()
		}
		// From now on the main session's pod stops reading.
		fp.mu.Lock()
		fp.conns[0].writesBlock = make(chan struct{})
		fp.mu.Unlock()
		stuck := dial()
		done := make(chan error, 1)
		go func() {
			_, err := stuck.Write([]byte("upload"))
			done <- err
		}()
		synctest.Wait()
		early := dial()
		defer early.Close()
		if early.session != stuck.session {
			t.Fatal("a connection opened just as a write began went to an extra session")
		}
		time.Sleep(stalledWrite)
		late := dial()
		defer late.Close()
		synctest.Wait()
		if late.session == stuck.session {
			t.Fatalf("a connection opened while the main session's write was held up for %v shared that session", stalledWrite)
		}
		stuck.Close()
		if err := <-done; err == nil {
			t.Error("the held-up write succeeded")
		}
	})
}

func TestLeaseCloseClosesIdleExtraSessionsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePool()
		defer fp.Close()
		ctx := context.Background()
		l := fp.Lease()
		a, _ := l.Dial(ctx, podA, 80)
		b, _ := l.Dial(ctx, podA, 80)
		if a.session == b.session {
			t.Fatal("two open connections share a session")
		}
		a.Close()
		b.Close()
		l.Close()
		if open := countOpen(fp.opened()); open != 0 {
			t.Fatalf("%d sessions open after the lease let go, want 0", open)
		}
	})
}

func countOpen(conns []*fakeConn) int {
	n := 0
	for _, c := range conns {
		if !c.isClosed() {
			n++
		}
	}
	return n
}

// When an extra session cannot be opened quickly (the API server cannot
// reach etcd, say), a connection shares the live main session after
// extraSessionWait instead of waiting for the dial to time out.
func TestDialSharesTheMainSessionWhenAnExtraOneIsSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		p := newPool(func(ctx context.Context, pod Pod) (*Session, error) {
			if calls.Add(1) > 1 {
				<-ctx.Done() // the API server never answers
				return nil, ctx.Err()
			}
			return newSession(pod, newFakeConn(), "fake", nil), nil
		}, 15*time.Second)
		defer p.Close()
		l := p.Lease()
		defer l.Close()
		ctx := context.Background()
		first, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		start := time.Now()
		second, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		if waited := time.Since(start); waited != extraSessionWait {
			t.Errorf("the second connection waited %s, want %s", waited, extraSessionWait)
		}
		if second.session != first.session {
			t.Errorf("the second connection did not share the main session")
		}
		time.Sleep(15 * time.Second) // the extra dial times out
		synctest.Wait()
	})
}

// A connection waiting for an extra session shares the live one as soon as
// a connection on it ends (short connections turn over faster than a
// session opens), while connections that stay open still spread.
func TestDialWaitingForAnExtraSessionSharesALiveOneThatTurnsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		extraDial := make(chan struct{})
		var calls atomic.Int32
		p := newPool(func(ctx context.Context, pod Pod) (*Session, error) {
			if calls.Add(1) > 1 {
				select { // the extra session opens when the test says
				case <-extraDial:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return newSession(pod, newFakeConn(), "fake", nil), nil
		}, 15*time.Second)
		defer p.Close()
		l := p.Lease()
		defer l.Close()
		ctx := context.Background()
		first, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		type dialed struct {
			c   *Conn
			err error
		}
		second := make(chan dialed, 1)
		go func() {
			c, err := l.Dial(ctx, podA, 80)
			second <- dialed{c, err}
		}()
		synctest.Wait()
		select {
		case d := <-second:
			t.Fatalf("the second connection did not wait for the extra session: %v, %v", d.c, d.err)
		default:
		}
		if n := calls.Load(); n != 2 {
			t.Fatalf("%d sessions dialed, want the main one and an extra", n)
		}
		start := time.Now()
		main := first.session
		first.Close()
		synctest.Wait()
		var d dialed
		select {
		case d = <-second:
		default:
			t.Fatal("the second connection still waits after a connection on the main session ended")
		}
		if d.err != nil {
			t.Fatal(d.err)
		}
		defer d.c.Close()
		if d.c.session != main {
			t.Error("the second connection did not share the main session")
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the second connection waited %s after the release, want no wait", waited)
		}
		// The extra session still opens and takes the next connection
		// while the main one carries the second.
		close(extraDial)
		synctest.Wait()
		third, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		defer third.Close()
		if third.session == main {
			t.Error("the third connection shared the busy main session although an idle extra one is open")
		}
	})
}

// InUse lists the sessions, main and extra, that carry connections to the
// lease's pods, and drops each as its last connection closes.
func TestInUseListsSessionsCarryingConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePool()
		defer fp.Close()
		ctx := context.Background()
		l := fp.Lease()
		defer l.Close()
		if _, err := l.Get(ctx, podB); err != nil { // held, no connection
			t.Fatal(err)
		}
		if got := l.InUse(); len(got) != 0 {
			t.Fatalf("InUse with no connection = %v, want none", got)
		}
		var conns []*Conn
		for range 3 {
			c, err := l.Dial(ctx, podA, 80)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		got := l.InUse()
		if len(got) != 1 || len(got[podA]) != 3 {
			t.Fatalf("InUse with 3 connections spread over 3 sessions to %s = %v", podA, got)
		}
		for _, c := range conns {
			if !slices.Contains(got[podA], c.session) {
				t.Errorf("a connection's session is missing from InUse")
			}
		}
		conns[0].Close()
		if n := len(l.InUse()[podA]); n != 2 {
			t.Errorf("after one connection closed, InUse lists %d sessions, want 2", n)
		}
		conns[1].Close()
		conns[2].Close()
		if got := l.InUse(); len(got) != 0 {
			t.Errorf("after every connection closed, InUse = %v, want none", got)
		}
	})
}

func TestSparesDoNotMakeASessionBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePool()
		defer fp.Close()
		ctx := context.Background()
		l := fp.Lease()
		main, err := l.Get(ctx, podA)
		if err != nil {
			t.Fatal(err)
		}
		var spares []*Parked
		for range 2 {
			c, err := main.Dial(ctx, 80)
			if err != nil {
				t.Fatal(err)
			}
			spares = append(spares, Park(c, "a:80", nil))
		}
		// Two idle spares on the main session: a client's connection
		// still goes there, with no extra session.
		c, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		if c.session != main || len(fp.opened()) != 1 {
			t.Fatalf("with only spares on the main session a connection opened %d sessions", len(fp.opened()))
		}
		c.Close()
		// A taken spare is a client's connection: the next one spreads.
		up, ok := spares[0].Take()
		if !ok {
			t.Fatal("Take failed")
		}
		c, err = l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		if c.session == main {
			t.Fatal("a connection shared the main session with a client's connection instead of spreading")
		}
		c.Close()
		up.Close()
		spares[1].Close()
		if n := main.parked.Load(); n != 0 {
			t.Fatalf("%d connections still counted as parked", n)
		}
		l.Close()
	})
}

// A pod that no lease holds any more has left its endpoints: its sessions
// that still carry connections are told at once (and ping the far end, so
// that a deleted pod's end reaches kpf), and told again when a lease takes
// the pod back.
func TestPoolTellsSessionsWhenTheirPodLeavesAndReturns(t *testing.T) {
	fp := newFakePool()
	defer fp.Close()
	ctx := context.Background()
	l1, l2 := fp.Lease(), fp.Lease()
	defer l1.Close()
	defer l2.Close()
	c1, err := l1.Dial(ctx, podA, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := l1.Dial(ctx, podA, 80) // the first session is busy: an extra one
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := l2.Get(ctx, podA); err != nil {
		t.Fatal(err)
	}
	conns := fp.opened()
	if len(conns) != 2 {
		t.Fatalf("%d sessions opened for two concurrent connections; want 2", len(conns))
	}
	calls := func() [][]bool {
		var out [][]bool
		for _, c := range conns {
			out = append(out, c.leavingCalls())
		}
		return out
	}
	l1.Retain(func(Pod) bool { return false })
	if got := calls(); len(got[0])+len(got[1]) != 0 {
		t.Fatalf("pod still held by another lease, yet sessions were told %v", got)
	}
	l2.Retain(func(Pod) bool { return false })
	if got, want := calls(), [][]bool{{true}, {true}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the last lease let go: calls %v, want %v", got, want)
	}
	if !c1.session.Alive() || !c2.session.Alive() {
		t.Fatal("letting go of the pod ended sessions that carry connections")
	}
	if _, err := l2.Get(ctx, podA); err != nil {
		t.Fatal(err)
	}
	if got, want := calls(), [][]bool{{true, false}, {true, false}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a lease took the pod back: calls %v, want %v", got, want)
	}
}

// Where opening a session takes two round trips of a far API server
// (farOpen or more), a connection that would wait for an extra session
// shares the live one at once; the extra session still opens, for the
// connections after it. Near, it waits (TestDialSpreadsConcurrentConnectionsOverSessions).
func TestFarPoolSharesRatherThanWaitForAnExtraSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var opened atomic.Int32
		p := newPool(func(ctx context.Context, pod Pod) (*Session, error) {
			opened.Add(1)
			time.Sleep(100 * time.Millisecond) // TLS and the upgrade, 50 ms away
			return newSession(pod, newFakeConn(), "fake", nil), nil
		}, 15*time.Second)
		defer p.Close()
		l := p.Lease()
		defer l.Close()
		ctx := context.Background()
		first, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if !p.Far() {
			t.Fatal("a pool whose session took 100ms to open is not far")
		}
		start := time.Now()
		second, err := l.Dial(ctx, podA, 80)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the second connection waited %s for a session", waited)
		}
		if second.session != first.session {
			t.Error("the second connection did not share the live session")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := opened.Load(); n != 2 {
			t.Errorf("%d sessions opened, want the main one and an extra one for later connections", n)
		}
	})
}

func TestPoolIsNotFarUntilASessionOpensSlowly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		delay := time.Duration(0)
		p := newPool(func(ctx context.Context, pod Pod) (*Session, error) {
			time.Sleep(delay)
			return newSession(pod, newFakeConn(), "fake", nil), nil
		}, 15*time.Second)
		defer p.Close()
		if p.Far() {
			t.Fatal("a pool that has opened nothing is far")
		}
		l := p.Lease()
		defer l.Close()
		delay = 5 * time.Millisecond
		if _, err := l.Get(context.Background(), podA); err != nil {
			t.Fatal(err)
		}
		if p.Far() {
			t.Error("far after a 5ms open")
		}
		// One fast open among slow ones means the API server is near:
		// the slow ones waited on something else.
		delay = time.Second
		if _, err := l.Get(context.Background(), podB); err != nil {
			t.Fatal(err)
		}
		if p.Far() {
			t.Error("far although the fastest recent open took 5ms")
		}
	})
}
