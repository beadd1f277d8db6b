package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// chunk is what the source writes, over and over.
const chunkSize = 256 << 10

// sinkServer is the TCP source/sink standing in for a container. Each
// connection sends one command line:
//
//	GET n   the server writes n bytes and closes
//	PUT n   the server reads n bytes, then replies "OK\n"
//	PING    the server replies "PONG\n" and closes
//	WHO     the server replies its name and closes
type sinkServer struct {
	name string
	ln   net.Listener
	log  *slog.Logger

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startSink listens on a free loopback port and serves until close.
func startSink(name string, log *slog.Logger) (*sinkServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for backend %s: %w", name, err)
	}
	s := &sinkServer{name: name, ln: ln, log: log, conns: map[net.Conn]struct{}{}}
	chunk := make([]byte, chunkSize)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				if err := s.serve(c, chunk); err != nil {
					s.log.Debug("backend connection", "backend", name, "err", err)
				}
			})
		}
	})
	return s, nil
}

// port returns the loopback port the server listens on.
func (s *sinkServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// addr returns the server's address.
func (s *sinkServer) addr() string { return s.ln.Addr().String() }

// close stops the server and waits for every connection to end.
func (s *sinkServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *sinkServer) serve(c net.Conn, chunk []byte) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read command: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch cmd {
	case "PING":
		_, err := io.WriteString(c, "PONG\n")
		return err
	case "WHO":
		_, err := io.WriteString(c, s.name+"\n")
		return err
	case "GET":
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad GET %q", arg)
		}
		for n > 0 {
			w, err := c.Write(chunk[:min(n, int64(len(chunk)))])
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			n -= int64(w)
		}
		return nil
	case "PUT":
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad PUT %q", arg)
		}
		if got, err := drain(r, n); err != nil || got != n {
			return fmt.Errorf("read %d of %d bytes: %w", got, n, err)
		}
		_, err = io.WriteString(c, "OK\n")
		return err
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// httpBody is what the HTTP backend answers to GET /.
const httpBody = "hello from the kpf bench backend\n"

// httpServer is the HTTP backend: GET / returns a small body, keep-alive
// capable.
type httpServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startHTTP listens on a free loopback port and serves until close.
func startHTTP(log *slog.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the HTTP backend: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(httpBody)))
		io.WriteString(w, httpBody)
	})
	h := &httpServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP backend", "err", err)
		}
	}()
	return h, nil
}

func (h *httpServer) port() int    { return h.ln.Addr().(*net.TCPAddr).Port }
func (h *httpServer) addr() string { return h.ln.Addr().String() }

// close stops the server at once and waits for it.
func (h *httpServer) close() {
	h.srv.Close()
	<-h.done
}

// backends are every loopback server a run uses.
type backends struct {
	// sink and http serve the 1-replica Deployment (and direct).
	sink *sinkServer
	http *httpServer
	// rc serves the 2-replica Deployment for reconvergence, one per replica.
	rc [2]*sinkServer
	// scale serves every pod of the scale test.
	scale *sinkServer
}

// startBackends starts every backend; close stops them.
func startBackends(ctx context.Context, log *slog.Logger) (_ *backends, err error) {
	b := &backends{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.sink, err = startSink("sink", log); err != nil {
		return nil, err
	}
	if b.http, err = startHTTP(log); err != nil {
		return nil, err
	}
	for i := range b.rc {
		if b.rc[i], err = startSink(fmt.Sprintf("rc-%d", i), log); err != nil {
			return nil, err
		}
	}
	if b.scale, err = startSink("scale", log); err != nil {
		return nil, err
	}
	return b, ctx.Err()
}

// close stops whatever was started.
func (b *backends) close() {
	for _, s := range []*sinkServer{b.sink, b.rc[0], b.rc[1], b.scale} {
		if s != nil {
			s.close()
		}
	}
	if b.http != nil {
		b.http.close()
	}
}
