package tunnel

import (
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// A Dial on a session that acknowledges no stream and carries no data
// gives up after StreamOpenStall, closes the session and says so; the
// same wait on a session that is merely slow (data keeps moving, or other
// streams open) goes on until the caller's deadline, and the session
// stays.
func TestDialClosesAStalledSessionOnly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		traffic   func(*Session) // run every second while the dial waits
		wantStall bool
	}{
		{name: "nothing moves", traffic: func(*Session) {}, wantStall: true},
		{name: "data moves", traffic: func(s *Session) { s.lastMoved.Store(time.Now().UnixNano()) }},
		{name: "other streams open", traffic: func(s *Session) { s.lastOpened.Store(time.Now().UnixNano()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				conn := newFakeConn()
				conn.stall = true
				s := newSession(Pod{"ns", "a"}, conn, "fake", nil)
				ctx, cancel := context.WithTimeout(context.Background(), 3*StreamOpenStall)
				defer cancel()
				stop := make(chan struct{})
				go func() {
					tick := time.NewTicker(time.Second)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							tc.traffic(s)
						}
					}
				}()
				start := time.Now()
				_, err := s.Dial(ctx, 80)
				waited := time.Since(start)
				close(stop)
				if tc.wantStall {
					if !errors.Is(err, ErrSessionStalled) || !errors.Is(err, ErrSessionClosed) {
						t.Fatalf("Dial: %v; want ErrSessionStalled and ErrSessionClosed", err)
					}
					if waited != StreamOpenStall {
						t.Errorf("gave up after %s, want %s", waited, StreamOpenStall)
					}
					if s.Alive() {
						t.Error("the stalled session was left open")
					}
				} else {
					if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrSessionStalled) {
						t.Fatalf("Dial: %v; want the caller's deadline, not a stall", err)
					}
					if !s.Alive() {
						t.Error("a slow but working session was closed")
					}
					s.Close()
				}
				if got := s.Active(); got != 0 {
					t.Errorf("Active = %d after the failed dial", got)
				}
				synctest.Wait()
			})
		})
	}
}

// A connection's read ends with io.EOF when its pod finished (the data
// stream ended on a live session), and with an error wrapping
// ErrSessionClosed when the stream ended because the session did: the
// answer was cut short, and Serve must reset the client, not close it
// cleanly.
func TestReadTellsACutFromAFinish(t *testing.T) {
	for _, tc := range []struct {
		name        string
		sessionEnds bool
	}{
		{name: "pod finished"},
		{name: "session lost", sessionEnds: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				conn := newFakeConn()
				s := newSession(Pod{"ns", "a"}, conn, "fake", nil)
				defer s.Close()
				c, err := s.Dial(context.Background(), 80)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if tc.sessionEnds {
					conn.Close()
				}
				c.data.Reset() // the fake's end of stream
				_, err = c.Read(make([]byte, 1))
				if tc.sessionEnds {
					if !errors.Is(err, ErrSessionClosed) {
						t.Fatalf("Read after the session ended: %v, want ErrSessionClosed", err)
					}
				} else if err != io.EOF {
					t.Fatalf("Read after the pod finished: %v, want io.EOF", err)
				}
			})
		})
	}
}
