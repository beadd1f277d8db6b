// Package connecttest is a fake kube context for unit tests of the code
// that dials through package connect (the forward engine, the Dialer):
// targets whose ready endpoints the test sets, announced to watchers as
// informers announce changes, and port-forward sessions to in-memory pods
// (tunneltest.Kubelet).
package connecttest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/tunnel"
	"github.com/kpf-dev/kpf/internal/tunnel/tunneltest"
)

// Cluster is one fake kube context. Its methods are safe for concurrent
// use.
type Cluster struct {
	// Kubelet holds the pods sessions reach.
	Kubelet *tunneltest.Kubelet

	pool *tunnel.Pool
	// API is the context's API client: a fake clientset.
	API *fake.Clientset

	mu       sync.Mutex
	ready    map[string][]string // target name -> ready pods, in order
	errs     map[string]error    // target name -> why it resolves to nothing
	ports    map[string]uint16   // named port -> number
	dests    map[string]string   // service name -> relay destination "host:port"
	watchers map[int]watcher
	nextID   int
}

type watcher struct {
	namespace string
	onChange  func()
}

// New returns a context with no targets; Close releases its pool.
func New() *Cluster {
	k := tunneltest.New()
	return &Cluster{Kubelet: k, pool: k.Pool(), API: fake.NewClientset(), ready: map[string][]string{}, errs: map[string]error{},
		ports: map[string]uint16{}, watchers: map[int]watcher{}, dests: map[string]string{}}
}

// Source is a ClusterSource that knows only this context, by any name.
func (c *Cluster) Source() connect.ClusterSource {
	return func(string) (connect.Cluster, error) { return c, nil }
}

// Close closes the shared session pool.
func (c *Cluster) Close() { c.pool.Close() }

// SetReady makes pods the ready endpoints of the target named name (a
// service, deployment, ... of that name; none makes it have no ready
// endpoint), and tells the watchers.
func (c *Cluster) SetReady(name string, pods ...string) {
	c.mu.Lock()
	c.ready[name] = pods
	delete(c.errs, name)
	c.mu.Unlock()
	c.notify()
}

// SetError makes the target named name resolve to err, and tells the
// watchers.
func (c *Cluster) SetError(name string, err error) {
	c.mu.Lock()
	c.errs[name] = err
	c.mu.Unlock()
	c.notify()
}

// NamePort makes the named port resolve to number.
func (c *Cluster) NamePort(name string, number uint16) {
	c.mu.Lock()
	c.ports[name] = number
	c.mu.Unlock()
}

// Watchers is how many watches are open.
func (c *Cluster) Watchers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watchers)
}

func (c *Cluster) notify() {
	c.mu.Lock()
	var fns []func()
	for _, w := range c.watchers {
		fns = append(fns, w.onChange)
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Watch implements connect.Cluster.
func (c *Cluster) Watch(namespace string, onChange func()) (connect.Resolver, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextID
	c.nextID++
	c.watchers[id] = watcher{namespace, onChange}
	var once sync.Once
	return resolver{c, namespace}, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.watchers, id)
			c.mu.Unlock()
		})
	}
}

// Sessions implements connect.Cluster: one pool shared by every caller.
func (c *Cluster) Sessions() *tunnel.Pool { return c.pool }

// Client implements connect.Cluster.
func (c *Cluster) Client() kubernetes.Interface { return c.API }

// SetRelayDest makes RelayDest of service answer addr ("host:port").
func (c *Cluster) SetRelayDest(service, addr string) {
	c.mu.Lock()
	c.dests[service] = addr
	c.mu.Unlock()
	c.notify()
}

// NewPool implements connect.Cluster.
func (c *Cluster) NewPool() *tunnel.Pool { return c.Kubelet.Pool() }

type resolver struct {
	c         *Cluster
	namespace string
}

// Resolve implements connect.Resolver: a target is known by its name, a
// selector by its text.
func (r resolver) Resolve(target config.Target, remote config.Port) ([]kube.Endpoint, error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	key := target.Name
	if target.Kind == config.Selector {
		key = target.Selector
	}
	if err := r.c.errs[key]; err != nil {
		return nil, err
	}
	pods, ok := r.c.ready[key]
	if !ok {
		return nil, fmt.Errorf("%s %q not found in namespace %q", target.Kind, target.Name, r.namespace)
	}
	port := remote.Number
	if remote.Name != "" {
		if port, ok = r.c.ports[remote.Name]; !ok {
			return nil, fmt.Errorf("%s %q has no port named %q", target.Kind, target.Name, remote.Name)
		}
	}
	if len(pods) == 0 {
		return nil, kube.ErrNoReadyEndpoints
	}
	eps := make([]kube.Endpoint, 0, len(pods))
	for _, p := range pods {
		eps = append(eps, kube.Endpoint{Namespace: r.namespace, Pod: p, Port: port})
	}
	return eps, nil
}

// PortSpelling implements connect.Resolver: a named port's number is
// NamePort's; a number's name is the name NamePort gave it, if any.
func (r resolver) PortSpelling(_ config.Target, remote config.Port, _ []kube.Endpoint) config.Port {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	for name, number := range r.c.ports {
		if name == remote.Name || remote.Name == "" && number == remote.Number {
			return config.Port{Number: number, Name: name}
		}
	}
	return remote
}

func (resolver) WaitSynced(context.Context, func(error)) error { return nil }
func (resolver) Explain(err error) error                       { return err }

// RelayDest implements connect.Resolver with SetRelayDest's answers.
func (r resolver) RelayDest(service string, remote config.Port, _ bool) (string, uint16, error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	addr, ok := r.c.dests[service]
	if !ok {
		return "", 0, fmt.Errorf("service %q not found in namespace %q", service, r.namespace)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return host, uint16(n), err
}
