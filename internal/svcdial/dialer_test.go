package svcdial

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kpf-dev/kpf/internal/connect/connecttest"
)

// newEmptyDialer dials a context whose service web.shop never has a
// ready endpoint.
func newEmptyDialer() *Dialer {
	cl := connecttest.New()
	cl.SetReady("web")
	return NewWithClusters(cl.Source(), Options{Namespaces: []string{"shop"}}, slog.New(slog.DiscardHandler))
}

// A dial that gives up says why, in a way errors.Is can tell: the
// deadline, and that no endpoint was ready. (It was formatted with %v.)
func TestDialErrorWrapsItsCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newEmptyDialer()
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := d.DialContext(ctx, "tcp", "web.shop.svc:80")
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNoReadyEndpoints) {
			t.Fatalf("err = %v; want it to wrap context.DeadlineExceeded and ErrNoReadyEndpoints", err)
		}
	})
}

// Close ends the dials in flight at once, with ErrClosed; they waited for
// their own deadline (30 s by default).
func TestCloseEndsDialsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newEmptyDialer()
		done := make(chan error, 1)
		go func() {
			_, err := d.DialContext(context.Background(), "tcp", "web.shop.svc:80")
			done <- err
		}()
		time.Sleep(time.Second)
		closed := time.Now()
		d.Close()
		err := <-done
		if !errors.Is(err, ErrClosed) {
			t.Errorf("err = %v, want ErrClosed", err)
		}
		if waited := time.Since(closed); waited != 0 {
			t.Errorf("the dial ended %s after Close, want at once", waited)
		}
	})
}
