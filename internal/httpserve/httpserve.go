// Package httpserve serves kpf's local HTTP endpoints (the control
// endpoint, metrics) for the life of a context.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// ShutdownGrace bounds how long requests in flight may finish once the
// context ends.
const ShutdownGrace = 2 * time.Second

// Serve serves srv on ln until ctx ends, then shuts it down, letting the
// requests in flight finish for at most ShutdownGrace. It returns nil
// after a shutdown, else why serving stopped.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
