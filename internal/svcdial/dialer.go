// Package svcdial owns dialing Kubernetes services by their cluster names:
// it routes "name.namespace[.svc[.DOMAIN]]:port" to a kube context,
// watches the namespaces it is asked to reach, keeps one session pool per
// pod, lets go of sessions to pods that left, and dials through
// internal/connect. pkg/dialer is its public face; kpf up's proxies use it
// directly (NewWithClusters) to share kpf up's clients and informers.
//
// It knows nothing of local listeners, forwards.yaml or the proxies'
// protocols.
package svcdial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/broadcast"
	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/relaypod"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// ErrRefused is returned (wrapped) for an address the Dialer will not
// route: not a cluster name, or a namespace or context it is not allowed to
// reach, when there is no Fallback.
var ErrRefused = errors.New("destination refused")

// ErrClosed is returned by DialContext after Close, and by the dials
// Close interrupts.
var ErrClosed = errors.New("dialer closed")

// The causes a failed DialContext wraps, for errors.Is, besides ErrRefused
// and ErrClosed and the context's own error: no ready endpoint in the
// time allowed, or credentials the API server rejects. (A *kube.ClusterError
// in the chain tells the other API server failures apart.)
var (
	ErrNoReadyEndpoints = kube.ErrNoReadyEndpoints
	ErrUnauthorized     = kube.ErrUnauthorized
)

// Options configure a Dialer.
type Options struct {
	// DefaultContext serves the short names (name.namespace,
	// name.namespace.svc) and the cluster.local domain. "" means the
	// kubeconfig's current context.
	DefaultContext string
	// Domains maps other cluster domains to kube contexts, so that
	// "api.shop.svc.prod.local:80" can reach context "prod" with
	// {"prod.local": "prod"}.
	Domains map[string]string
	// Namespaces, if not empty, are the only namespaces reachable. A
	// two-label name (name.namespace) counts as a cluster name only when
	// its namespace is listed here, so that "example.com:443" is not
	// mistaken for service "example" in namespace "com"; the .svc forms
	// always count as cluster names (and are refused if not listed).
	Namespaces []string
	// Fallback dials addresses that are not cluster names. nil refuses
	// them with ErrRefused.
	Fallback func(ctx context.Context, network, addr string) (net.Conn, error)
	// Wait bounds how long a dial waits for a ready endpoint when ctx has
	// no earlier deadline; 0 means 30 s.
	Wait time.Duration
	// Relays, if set, reaches the services that no pod backs (ExternalName
	// services, services without a selector whose endpoints are not pods)
	// through kpf's relay in their namespace; nil leaves them unreachable.
	Relays *relaypod.Manager
}

// Dialer dials cluster services through port-forwards.
type Dialer struct {
	opts     Options
	clusters connect.ClusterSource
	log      *slog.Logger

	// life ends with Close, and with it the dials in flight.
	life  context.Context
	close context.CancelFunc

	mu         sync.Mutex
	namespaces map[nsKey]*watched
	pools      map[string]*tunnel.Pool
	leases     map[string]*tunnel.Lease
	workers    sync.WaitGroup // releaseLeftPods, one per watched namespace
	rr         atomic.Uint64
}

type nsKey struct{ context, namespace string }

// watched is a namespace the Dialer watches, and the services it has
// dialled there.
type watched struct {
	ns      connect.Resolver
	release func()
	changed broadcast.Changes
	kick    chan struct{} // a change for releaseLeftPods to look at
	stop    chan struct{} // closed by Close

	// avoid holds the namespace's pods whose dial failed lately.
	avoid connect.Avoid
	// relays, if set, is where the relay handle comes from.
	relays       *relaypod.Manager
	kctx, nsName string

	mu      sync.Mutex
	targets map[dialTarget]bool
	relay   *relaypod.Handle // acquired on the first service that needs it
}

// resolve returns the ready endpoints of a service port: its pods, or,
// for a service that no pod backs, the relay's (when the Dialer has
// relays).
func (w *watched) resolve(service string, port config.Port) ([]kube.Endpoint, error) {
	target := config.Target{Kind: config.Service, Name: service}
	eps, err := w.ns.Resolve(target, port)
	if !errors.Is(err, kube.ErrNeedsRelay) || w.relays == nil {
		return eps, err
	}
	host, number, derr := w.ns.RelayDest(service, port, false)
	if derr != nil {
		return nil, derr
	}
	dest, derr := relay.ParseDest(net.JoinHostPort(host, strconv.Itoa(int(number))))
	if derr != nil {
		return nil, derr
	}
	w.mu.Lock()
	if w.relay == nil {
		w.relay = w.relays.Acquire(w.kctx, w.nsName, config.Relay{}, w.changed.Notify)
	}
	h := w.relay
	w.mu.Unlock()
	return h.Resolve(dest)
}

// dialTarget is a service port dialled in a watched namespace.
type dialTarget struct {
	service string
	port    config.Port
}

// readyPods returns the pods that are ready endpoints of the services
// dialled in the namespace, or false while the caches are not synced.
func (w *watched) readyPods() (map[string]bool, bool) {
	w.mu.Lock()
	targets := make([]dialTarget, 0, len(w.targets))
	for t := range w.targets {
		targets = append(targets, t)
	}
	w.mu.Unlock()
	ready := map[string]bool{}
	for _, t := range targets {
		eps, err := w.resolve(t.service, t.port)
		if errors.Is(err, kube.ErrNotSynced) {
			return nil, false
		}
		for _, ep := range eps {
			ready[ep.Pod] = true
		}
	}
	return ready, true
}

// New returns a Dialer over the user's kubeconfig contexts.
func New(kubeconfig *kube.Kubeconfig, opts Options, log *slog.Logger) *Dialer {
	return NewWithClusters(connect.KubeClusters(kube.NewClusters(kubeconfig, log)), opts, log)
}

// NewWithClusters returns a Dialer over an existing cluster source, so
// that kpf up's proxies share its clients.
func NewWithClusters(clusters connect.ClusterSource, opts Options, log *slog.Logger) *Dialer {
	if opts.Wait == 0 {
		opts.Wait = 30 * time.Second
	}
	life, closeLife := context.WithCancel(context.Background())
	return &Dialer{opts: opts, clusters: clusters, log: log, life: life, close: closeLife,
		namespaces: map[nsKey]*watched{}, pools: map[string]*tunnel.Pool{}, leases: map[string]*tunnel.Lease{}}
}

// errNotCluster marks addresses that are not cluster names at all, which
// may go to Fallback; other refusals never do, so a cluster name is never
// looked up on the open network.
var errNotCluster = fmt.Errorf("not a cluster service address: %w", ErrRefused)

// Route returns the parsed address and the kube context it goes to, or an
// error wrapping ErrRefused if the Dialer would not route it.
func (d *Dialer) Route(addr string) (Target, string, error) {
	t, ok := ParseAddress(addr)
	if !ok {
		return t, "", errNotCluster
	}
	listed := false
	for _, ns := range d.opts.Namespaces {
		listed = listed || ns == t.Namespace
	}
	switch {
	case t.Short && !listed:
		return t, "", errNotCluster
	case len(d.opts.Namespaces) > 0 && !listed:
		return t, "", fmt.Errorf("namespace %q is not reachable through this dialer: %w", t.Namespace, ErrRefused)
	}
	if t.Domain == "" || t.Domain == "cluster.local" {
		return t, d.opts.DefaultContext, nil
	}
	if kctx, ok := d.opts.Domains[t.Domain]; ok {
		return t, kctx, nil
	}
	return t, "", fmt.Errorf("cluster domain %q is not mapped to a context: %w", t.Domain, ErrRefused)
}

// DialContext connects to addr. Cluster addresses go through a
// port-forward to a ready endpoint of the service; others go to Fallback
// or are refused. Only "tcp", "tcp4" and "tcp6" are supported.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s %s: only tcp is supported", network, addr)
	}
	t, kctx, err := d.Route(addr)
	if errors.Is(err, errNotCluster) && d.opts.Fallback != nil {
		return d.opts.Fallback(ctx, network, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.opts.Wait)
		defer cancel()
	}
	// Close ends the dials in flight.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.life, cancel)()
	w, pool, err := d.watch(kctx, t.Namespace)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	w.mu.Lock()
	w.targets[dialTarget{t.Service, t.Port}] = true
	w.mu.Unlock()
	target := connect.Target{
		Resolve: func() ([]kube.Endpoint, error) { return w.resolve(t.Service, t.Port) },
		Changes: &w.changed,
		Explain: w.ns.Explain,
	}
	opts := connect.Options{
		Avoid: &w.avoid,
		Pick:  func(eps []kube.Endpoint) kube.Endpoint { return eps[int(d.rr.Add(1)-1)%len(eps)] },
		Log:   d.log,
	}
	c, ep, err := connect.Dial(ctx, target, opts, func(ctx context.Context, ep kube.Endpoint) (net.Conn, error) {
		pod := tunnel.Pod{Namespace: ep.Namespace, Name: ep.Pod}
		if ep.Dest == "" {
			tc, err := pool.Dial(ctx, pod, ep.Port)
			if err != nil {
				return nil, err
			}
			// Application code may cancel a blocked write with a
			// deadline, or close the connection under it.
			tc.InterruptibleWrites()
			return tc, nil
		}
		rc, tc, err := relaypod.Dial(ctx, pool, ep, nil)
		if err != nil {
			return nil, err
		}
		tc.InterruptibleWrites()
		return rc, nil
	})
	if err != nil {
		if d.life.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, ErrClosed)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	d.log.Debug("dialled through port-forward", "addr", addr, "pod", ep.String())
	return c, nil
}

// watch returns the watched namespace and the session pool of a context,
// starting them on first use.
func (d *Dialer) watch(kctx, namespace string) (*watched, *tunnel.Lease, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.life.Err() != nil {
		return nil, nil, ErrClosed
	}
	cl, err := d.clusters(kctx)
	if err != nil {
		return nil, nil, err
	}
	lease := d.leases[kctx]
	if lease == nil {
		// The Dialer's own pool: its sessions to ready pods stay warm for
		// the next dial until Close.
		pool := cl.NewPool()
		lease = pool.Lease()
		d.pools[kctx], d.leases[kctx] = pool, lease
	}
	key := nsKey{kctx, namespace}
	w := d.namespaces[key]
	if w == nil {
		w = &watched{kick: make(chan struct{}, 1), stop: make(chan struct{}), targets: map[dialTarget]bool{},
			relays: d.opts.Relays, kctx: kctx, nsName: namespace}
		w.ns, w.release = cl.Watch(namespace, func() {
			w.changed.Notify()
			select {
			case w.kick <- struct{}{}:
			default:
			}
		})
		d.namespaces[key] = w
		d.workers.Go(func() { releaseLeftPods(w, namespace, lease) })
	}
	return w, lease, nil
}

// releaseLeftPods follows w's changes until Close and lets go of the
// sessions to pods of namespace that are no longer ready endpoints of a
// service dialled there: idle ones close, and those still carrying
// connections are told their pod is leaving (see tunnel.Pool), so that
// the connections end at once if the pod is gone.
func releaseLeftPods(w *watched, namespace string, lease *tunnel.Lease) {
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		if ready, ok := w.readyPods(); ok {
			lease.Retain(func(p tunnel.Pod) bool { return p.Namespace != namespace || ready[p.Name] })
		}
	}
}

// Close closes every session (and so every connection) and stops every
// informer the Dialer started. Dials after Close fail with ErrClosed.
func (d *Dialer) Close() error {
	d.close()
	d.mu.Lock()
	for _, p := range d.pools {
		p.Close()
	}
	for _, w := range d.namespaces {
		close(w.stop)
		w.release()
		w.mu.Lock()
		if w.relay != nil {
			w.relay.Release()
		}
		w.mu.Unlock()
	}
	d.pools, d.leases, d.namespaces = map[string]*tunnel.Pool{}, map[string]*tunnel.Lease{}, map[nsKey]*watched{}
	d.mu.Unlock()
	d.workers.Wait()
	return nil
}
