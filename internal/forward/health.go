package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// errTransport marks a probe failure of the port-forward session itself
// (no stream could be opened), as opposed to the pod's port failing.
var errTransport = errors.New("tunnel")

// sharedCheck runs the health check through sess, sharing the result with
// the other forwards on the same session that check the same port the same
// way: at most one check of a pod port per half interval, however many
// forwards share the session.
func (r *Runner) sharedCheck(ctx context.Context, sess *tunnel.Session, port uint16, dest string) error {
	h := r.spec.Health
	interval := h.Interval
	if r.opts.ProbeInterval > 0 {
		interval = r.opts.ProbeInterval
	}
	key := fmt.Sprintf("health port=%d path=%q timeout=%s dest=%q", port, h.HTTPPath, h.Timeout, dest)
	return sess.Coalesce(ctx, key, interval/2, func(ctx context.Context) error { return r.check(ctx, sess, port, dest) })
}

// check runs the forward's health check once against port of the session's
// pod, or when dest is set against what the relay there reaches. A
// failure to open the stream wraps errTransport.
func (r *Runner) check(ctx context.Context, sess *tunnel.Session, port uint16, dest string) error {
	tc, err := sess.Dial(ctx, port)
	if err != nil {
		return fmt.Errorf("%w: %w", errTransport, err)
	}
	defer tc.Close()
	// Streams have no deadlines: end the check by closing the stream.
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	var c checkConn = tc
	if dest != "" {
		d, err := relay.ParseDest(dest)
		if err != nil {
			return err
		}
		rc, err := relay.Open(tc, d)
		if err != nil {
			return fmt.Errorf("%w: %w", errTransport, err)
		}
		if r.spec.Health.HTTPPath == "" || d.Kind == relay.UDP {
			// The relay answers once it has reached the destination (or
			// opened its UDP socket): that answer is the check.
			if err := relay.ReadReply(tc); err != nil {
				if rerr := tc.RemoteErr(); rerr != nil {
					return rerr
				}
				if ctx.Err() != nil {
					return fmt.Errorf("the relay did not reach %s within %s", dest, r.spec.Health.Timeout)
				}
				return err
			}
			return nil
		}
		c = relayCheckConn{rc, tc}
	}

	if path := r.spec.Health.HTTPPath; path != "" {
		req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kpf-health\r\nConnection: close\r\n\r\n", path)
		if _, err := io.WriteString(c, req); err != nil {
			return fmt.Errorf("http %s: %w", path, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			if rerr := c.RemoteErr(); rerr != nil {
				return rerr
			}
			if ctx.Err() != nil {
				return fmt.Errorf("http %s: no answer within %s", path, r.spec.Health.Timeout)
			}
			return fmt.Errorf("http %s: %w", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return fmt.Errorf("http %s: %s", path, resp.Status)
		}
		return nil
	}

	// TCP: the kubelet reports at once on the error stream when nothing
	// listens on the port; a listening server answers, waits or closes.
	return tcpCheck(ctx, tc, r.spec.Health.Timeout)
}

// checkConn is the stream a health check talks over.
type checkConn interface {
	io.ReadWriter
	RemoteErr() error
}

// relayCheckConn is a stream through the relay: reads check the relay's
// reply first, and RemoteErr is the kubelet's.
type relayCheckConn struct {
	*relay.Conn
	tc *tunnel.Conn
}

func (c relayCheckConn) RemoteErr() error { return c.tc.RemoteErr() }

// tcpCheck passes when the pod's port accepted the stream c: it answered,
// closed, or reported nothing within a second.
func tcpCheck(ctx context.Context, c *tunnel.Conn, timeout time.Duration) error {
	c.CloseWrite()
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if rerr := c.RemoteErr(); rerr != nil {
			return rerr
		}
		if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil && !strings.Contains(err.Error(), "reset") {
			return err
		}
		return nil
	case <-time.After(min(time.Second, timeout)):
		// No error reported: the port accepted the connection.
		c.Close()
		<-done
		return c.RemoteErr()
	case <-ctx.Done():
		c.Close()
		<-done
		return nil
	}
}
