// Package proxy serves a SOCKS5 proxy and an HTTP proxy that open every
// upstream connection through a DialFunc, in kpf the cluster Dialer: a
// client names a destination such as "web.monitoring:8080" and the proxy
// hands that name to the DialFunc unresolved.
//
// Both servers have the same life cycle: Serve accepts on the listener it is
// given until its context is done, then closes the listener and every
// connection it opened or accepted, and returns once every goroutine it
// started has returned.
package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DialFunc opens a connection to addr ("host:port"; host may be a name, which
// the DialFunc resolves itself). The proxies call it with a context that is
// cancelled when Serve stops.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// ErrRefused is wrapped by a DialFunc's error when the destination is not
// allowed: not a cluster name, or in a namespace the proxy does not serve.
// The SOCKS5 proxy replies "connection not allowed by ruleset" (0x02) and
// the HTTP proxy 403 Forbidden.
var ErrRefused = errors.New("destination refused")

// handshakeTimeout bounds reading a SOCKS5 handshake or an HTTP request's
// headers.
const handshakeTimeout = 10 * time.Second

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// group tracks a server's live connections and the goroutines serving
// them, so that stopping the server can close every connection and wait for
// every goroutine.
type group struct {
	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
	wg     sync.WaitGroup
}

// add tracks c until remove; it reports false, and closes c, once the group
// is shut down.
func (g *group) add(c io.Closer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return false
	}
	if g.conns == nil {
		g.conns = map[io.Closer]struct{}{}
	}
	g.conns[c] = struct{}{}
	return true
}

// remove stops tracking c and closes it.
func (g *group) remove(c io.Closer) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	c.Close()
}

// enter counts a goroutine that shutdown waits for; it reports false once
// the group is shut down. A true enter must be matched by exit.
func (g *group) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *group) exit() { g.wg.Done() }

// shutdown closes every tracked connection, refuses new ones, and waits for
// every goroutine that entered to exit.
func (g *group) shutdown() {
	g.mu.Lock()
	g.closed = true
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// serve accepts connections on ln and runs handle for each in its own
// goroutine, until ctx is done or Accept fails with a permanent error. Before
// returning it closes ln and every connection, and waits for the handlers.
func serve(ctx context.Context, ln net.Listener, g *group, handle func(context.Context, net.Conn)) error {
	ctx, cancel := context.WithCancel(ctx)
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		ln.Close()
		close(closed)
	}()
	defer func() {
		cancel()
		<-closed
		g.shutdown()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !temporary(err) {
				return err
			}
			// Like net/http: back off on errors such as EMFILE.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		delay = 0
		if !g.add(c) {
			return nil
		}
		if !g.enter() {
			g.remove(c)
			return nil
		}
		go func() {
			defer g.exit()
			defer g.remove(c)
			handle(ctx, c)
		}()
	}
}

func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// pipe copies between a and b in both directions until both directions
// have ended. When one direction reaches EOF it half-closes the writing
// side of the other connection (or closes it when it cannot be half
// closed); when a copy fails both connections are closed. It returns the
// bytes copied from a to b and from b to a.
func pipe(a, b net.Conn) (aToB, bToA int64) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		aToB = copyHalf(b, a)
	}()
	bToA = copyHalf(a, b)
	<-done
	return aToB, bToA
}

func copyHalf(dst, src net.Conn) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		src.Close()
		dst.Close()
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return n
		}
	}
	dst.Close()
	return n
}
