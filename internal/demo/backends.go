package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backends are the loopback servers that stand in for the demo's
// containers. The node agent forwards a port-forward to a pod's container
// port to the backend that the pod's annotation names.
type Backends struct {
	// Ports holds each app's backend ports, one per replica, in replica
	// order (replica 1 first).
	Ports map[string][]int

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartBackends starts every app's backends on free 127.0.0.1 ports and
// returns once they all listen. They serve until ctx is done or Close is
// called. If one fails to start, the ones already started are closed before
// StartBackends returns.
func StartBackends(ctx context.Context, log *slog.Logger) (*Backends, error) {
	ctx, cancel := context.WithCancel(ctx)
	b := &Backends{Ports: map[string][]int{}, cancel: cancel}
	for _, a := range apps() {
		for replica := 1; replica <= a.replicas; replica++ {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Close()
				return nil, fmt.Errorf("start %s backend %d: %w", a.name, replica, err)
			}
			b.Ports[a.name] = append(b.Ports[a.name], ln.Addr().(*net.TCPAddr).Port)
			blog := log.With("backend", fmt.Sprintf("%s-%d", a.name, replica), "addr", ln.Addr().String())
			serve := a.serve(replica)
			b.wg.Go(func() {
				if err := serve(ctx, ln); err != nil {
					blog.Error("backend stopped", "err", err)
				}
			})
		}
	}
	return b, nil
}

// Close stops every backend, closing its listener and open connections,
// and returns once all have stopped.
func (b *Backends) Close() {
	b.cancel()
	b.wg.Wait()
}

// server serves one backend on ln until ctx is done, then closes ln.
type server func(ctx context.Context, ln net.Listener) error

// webGreeting is what web backend replica answers on every path.
func webGreeting(replica int) string {
	return fmt.Sprintf("web backend %d: hello from the kpf demo\n", replica)
}

func serveWeb(replica int) server {
	return serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, webGreeting(replica))
	}))
}

// apiAnswer is the JSON body of the api backends.
type apiAnswer struct {
	Service string `json:"service"`
	Backend int    `json:"backend"`
	Path    string `json:"path"`
	Time    string `json:"time"`
}

func serveAPI(replica int) server {
	return serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(apiAnswer{Service: "api", Backend: replica, Path: r.URL.Path, Time: time.Now().UTC().Format(time.RFC3339)})
	}))
}

// metricsInfoLine is the sample that identifies the metrics backend.
func metricsInfoLine(replica int) string {
	return fmt.Sprintf(`kpf_demo_backend_info{service="metrics",backend="%d"} 1`, replica)
}

func serveMetrics(replica int) server {
	var scrapes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP kpf_demo_backend_info Which demo backend answered.\n# TYPE kpf_demo_backend_info gauge\n%s\n", metricsInfoLine(replica))
		fmt.Fprintf(w, "# HELP kpf_demo_scrapes_total Scrapes of this endpoint.\n# TYPE kpf_demo_scrapes_total counter\nkpf_demo_scrapes_total %d\n", n)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "metrics are at /metrics", http.StatusNotFound)
	})
	return serveHTTP(mux)
}

func serveHTTP(h http.Handler) server {
	return func(ctx context.Context, ln net.Listener) error {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		stop := context.AfterFunc(ctx, func() {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(shutdownCtx)
		})
		defer stop()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// echoGreeting is the first line the echo backend replica sends.
func echoGreeting(replica int) string { return fmt.Sprintf("echo backend %d", replica) }

func serveEcho(replica int) server {
	return serveLines(echoGreeting(replica), func(line string) string { return line })
}

// dbReply is the db backend's answer to one line.
func dbReply(line string) string { return "db: " + line }

func serveDB(int) server { return serveLines("", dbReply) }

// serveLines serves a line protocol: greeting first (if any), then one
// reply line per line received.
func serveLines(greeting string, reply func(string) string) server {
	return func(ctx context.Context, ln net.Listener) error {
		var wg sync.WaitGroup
		var mu sync.Mutex
		conns := map[net.Conn]struct{}{}
		stop := context.AfterFunc(ctx, func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for c := range conns {
				c.Close()
			}
		})
		defer stop()
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				if greeting != "" {
					if _, err := fmt.Fprintln(c, greeting); err != nil {
						return
					}
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintln(c, reply(strings.TrimRight(sc.Text(), "\r"))); err != nil {
						return
					}
				}
			})
		}
	}
}
