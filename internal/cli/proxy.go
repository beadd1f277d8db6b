package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/proxy"
	"github.com/kpf-dev/kpf/internal/relaypod"
	"github.com/kpf-dev/kpf/internal/svcdial"
)

// proxies runs the SOCKS5 and HTTP proxies that forwards.yaml's proxy
// block declares, routing through a cluster Dialer that shares kpf up's
// clients. Apply restarts them only when the block changed.
type proxies struct {
	clusters       connect.ClusterSource
	defaultContext string // --context, for contexts written as ""
	log            *slog.Logger
	// relays carries services that no pod backs: kpf up's relay manager.
	relays *relaypod.Manager

	mu      sync.Mutex
	current *config.Proxy
	stop    func()
}

// Apply converges the running proxies to p (nil: none).
func (x *proxies) Apply(ctx context.Context, p *config.Proxy) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.current.Equal(p) && (p == nil) == (x.stop == nil) {
		return
	}
	if x.stop != nil {
		x.stop()
		x.stop = nil
	}
	x.current = p
	if p == nil {
		return
	}
	contexts := make([]string, len(p.Contexts))
	for i, c := range p.Contexts {
		if c == "" {
			c = x.defaultContext
		}
		contexts[i] = c
	}
	opts := svcdial.Options{Namespaces: p.Namespaces, Domains: map[string]string{}, Relays: x.relays}
	if len(contexts) > 0 {
		opts.DefaultContext = contexts[0]
	}
	for _, c := range contexts {
		if c != "" {
			opts.Domains[c] = c // name.namespace.svc.CONTEXT:port
		}
	}
	d := svcdial.NewWithClusters(x.clusters, opts, x.log)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if errors.Is(err, svcdial.ErrRefused) {
			err = fmt.Errorf("%w: %w", proxy.ErrRefused, err)
		}
		return c, err
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	serve := func(kind, addr string, run func(context.Context, net.Listener) error) {
		if addr == "" {
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			x.log.Error("proxy cannot listen", "proxy", kind, "addr", addr, "err", err)
			return
		}
		x.log.Info("proxy listening", "proxy", kind, "addr", addr, "namespaces", p.Namespaces, "contexts", contexts)
		wg.Go(func() {
			if err := run(pctx, ln); err != nil {
				x.log.Error("proxy stopped", "proxy", kind, "err", err)
			}
		})
	}
	serve("socks5", p.SOCKS5, (&proxy.SOCKS5{Dial: dial, Log: x.log.With("proxy", "socks5")}).Serve)
	serve("http", p.HTTP, (&proxy.HTTP{Dial: dial, Log: x.log.With("proxy", "http")}).Serve)
	x.stop = func() {
		cancel()
		wg.Wait()
		d.Close()
	}
}

// Stop stops the proxies and waits for them.
func (x *proxies) Stop() { x.Apply(context.Background(), nil) }
