package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/relaypod"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// Relays gives forwards the relay through which they reach what has no
// pod; *relaypod.Manager implements it.
type Relays interface {
	Acquire(kctx, namespace string, settings config.Relay, onChange func()) *relaypod.Handle
}

// route resolves the forward's target as the namespace's resolver does,
// except what has no pod: a host, a service that NeedsRelay, and every UDP
// port resolve to the relay pod's endpoints, each with the destination
// the relay reaches for it. The relay is acquired on first need and
// released by close.
type route struct {
	connect.Resolver
	spec     config.Forward
	relays   Relays
	onChange func()

	mu     sync.Mutex
	handle *relaypod.Handle
}

// errNoRelay is what a forward that needs the relay resolves to in a
// process that runs none.
var errNoRelay = errors.New("this forward is reached through kpf's relay, which this kpf does not run")

// Resolve implements connect.Resolver for TCP.
func (rt *route) Resolve(target config.Target, remote config.Port) ([]kube.Endpoint, error) {
	if target.Kind == config.Host {
		return rt.viaRelay(target.Name, remote.Number, relay.TCP)
	}
	eps, err := rt.Resolver.Resolve(target, remote)
	if target.Kind == config.Service && errors.Is(err, kube.ErrNeedsRelay) {
		host, port, derr := rt.RelayDest(target.Name, remote, false)
		if derr != nil {
			return nil, derr
		}
		return rt.viaRelay(host, port, relay.TCP)
	}
	return eps, err
}

// resolveUDP resolves a UDP port: always through the relay, to the host,
// or to where RelayDest says the service's UDP port is.
func (rt *route) resolveUDP(remote config.Port) ([]kube.Endpoint, error) {
	switch rt.spec.Target.Kind {
	case config.Host:
		return rt.viaRelay(rt.spec.Target.Name, remote.Number, relay.UDP)
	case config.Service:
		host, port, err := rt.RelayDest(rt.spec.Target.Name, remote, true)
		if err != nil {
			return nil, err
		}
		return rt.viaRelay(host, port, relay.UDP)
	}
	return nil, fmt.Errorf("UDP reaches hosts and services only, not %s", rt.spec.Target)
}

func (rt *route) viaRelay(host string, port uint16, kind relay.Kind) ([]kube.Endpoint, error) {
	d, err := relay.ParseDest(net.JoinHostPort(host, strconv.Itoa(int(port))) + "/" + kind.String())
	if err != nil {
		return nil, err
	}
	h := rt.acquire()
	if h == nil {
		return nil, errNoRelay
	}
	return h.Resolve(d)
}

func (rt *route) acquire() *relaypod.Handle {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.handle == nil && rt.relays != nil {
		rt.handle = rt.relays.Acquire(rt.spec.Context, rt.spec.Namespace, rt.spec.Relay, rt.onChange)
	}
	return rt.handle
}

// close releases the relay, if the forward acquired one.
func (rt *route) close() {
	rt.mu.Lock()
	h := rt.handle
	rt.handle = nil
	rt.mu.Unlock()
	if h != nil {
		h.Release()
	}
}

// dialEndpoint opens a connection to ep through pool: to the pod's port,
// sending the client's first bytes along when it can; or, for a relay
// endpoint, through the relay (relaypod.Dial: no round trip more).
func dialEndpoint(ctx context.Context, pool *tunnel.Lease, ep kube.Endpoint, first *tunnel.FirstBytes) (tunnel.Upstream, error) {
	if ep.Dest == "" {
		return pool.DialFirst(ctx, tunnel.Pod{Namespace: ep.Namespace, Name: ep.Pod}, ep.Port, first)
	}
	rc, _, err := relaypod.Dial(ctx, pool, ep, first)
	if err != nil {
		return nil, err
	}
	return rc, nil
}
