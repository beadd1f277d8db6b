package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Cluster is one kube context: its REST configuration, a clientset and the
// namespaces being watched. Namespaces are watched while at least one
// caller holds them (see Watch).
type Cluster struct {
	Name   string
	Config *rest.Config
	Client kubernetes.Interface
	log    *slog.Logger

	mu         sync.Mutex
	namespaces map[string]*Namespace
}

// NewCluster creates the client of one context. It does not contact the
// API server.
func NewCluster(name string, cfg *rest.Config, log *slog.Logger) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	// Informers for many namespaces start at once; client-go's default of 5
	// requests/s would make 200 forwards take a minute to come up.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("context %q: create client: %w", name, err)
	}
	return newCluster(name, cfg, client, log), nil
}

func newCluster(name string, cfg *rest.Config, client kubernetes.Interface, log *slog.Logger) *Cluster {
	return &Cluster{Name: name, Config: cfg, Client: client, log: log.With("context", name), namespaces: map[string]*Namespace{}}
}

// Watch returns the watched namespace ns, starting its informers on first
// use, and a release function. onChange is called (without blocking for
// long: it should only kick) after every change the namespace's informers
// see. When the last holder releases, the informers stop.
func (c *Cluster) Watch(ns string, onChange func()) (*Namespace, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.namespaces[ns]
	if n == nil {
		n = newNamespace(c, ns)
		c.namespaces[ns] = n
	}
	id := n.addListener(onChange)
	var once sync.Once
	return n, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if n.removeListener(id) == 0 {
				delete(c.namespaces, ns)
				n.stop()
			}
		})
	}
}

// Namespace watches one namespace of one cluster: EndpointSlices, Services
// and Pods always; Deployments and StatefulSets once a target needs them.
type Namespace struct {
	cluster *Cluster
	name    string
	factory informers.SharedInformerFactory
	cancel  context.CancelFunc
	ctx     context.Context

	mu        sync.Mutex
	listeners map[int]func()
	nextID    int
	informers map[string]cache.SharedIndexInformer
	lastErr   map[string]error
	started   map[string]time.Time // when each informer started, for silentFor
}

const (
	kindEndpointSlices = "endpointslices"
	kindServices       = "services"
	kindPods           = "pods"
	kindDeployments    = "deployments"
	kindStatefulSets   = "statefulsets"
)

func newNamespace(c *Cluster, ns string) *Namespace {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Namespace{
		cluster:   c,
		name:      ns,
		factory:   informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace(ns)),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[int]func(){},
		informers: map[string]cache.SharedIndexInformer{},
		lastErr:   map[string]error{},
		started:   map[string]time.Time{},
	}
	for _, kind := range []string{kindEndpointSlices, kindServices, kindPods} {
		n.ensure(kind)
	}
	c.log.Debug("watching namespace", "namespace", ns)
	return n
}

// ensure registers and starts the informer of kind if it is not running.
func (n *Namespace) ensure(kind string) cache.SharedIndexInformer {
	n.mu.Lock()
	defer n.mu.Unlock()
	if inf, ok := n.informers[kind]; ok {
		return inf
	}
	var inf cache.SharedIndexInformer
	switch kind {
	case kindEndpointSlices:
		inf = n.factory.Discovery().V1().EndpointSlices().Informer()
		// Before the informer starts, so that its cache indexes every
		// slice: a resolution finds its service's slices without scanning
		// the namespace's (hundreds of forwards each resolve on every
		// health check).
		if err := inf.AddIndexers(cache.Indexers{indexServiceName: sliceServiceName}); err != nil {
			n.cluster.log.Warn("cannot index EndpointSlices by service; resolutions will scan the namespace", "namespace", n.name, "err", err)
		}
	case kindServices:
		inf = n.factory.Core().V1().Services().Informer()
	case kindPods:
		inf = n.factory.Core().V1().Pods().Informer()
	case kindDeployments:
		inf = n.factory.Apps().V1().Deployments().Informer()
	case kindStatefulSets:
		inf = n.factory.Apps().V1().StatefulSets().Informer()
	default:
		panic("kube: unknown informer kind " + kind)
	}
	if err := inf.SetTransform(trim); err != nil {
		n.cluster.log.Warn("cannot trim cached objects; they are kept whole", "kind", kind, "err", err)
	}
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		err = Explain(err, n.cluster.Name, n.cluster.Config)
		n.mu.Lock()
		changed := n.lastErr[kind] == nil || n.lastErr[kind].Error() != err.Error()
		n.lastErr[kind] = err
		n.mu.Unlock()
		if changed {
			n.notify()
		}
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.clearErr(kind); n.notify() },
		UpdateFunc: func(any, any) { n.notify() },
		DeleteFunc: func(any) { n.notify() },
	})
	n.informers[kind] = inf
	n.started[kind] = time.Now()
	n.factory.Start(n.ctx.Done())
	// Tell the listeners once the cache has synced: an empty list brings
	// no add event, and a resolution that was waiting for the sync must
	// run again.
	go func() {
		if cache.WaitForCacheSync(n.ctx.Done(), inf.HasSynced) {
			n.notify()
		}
	}()
	return inf
}

// indexServiceName indexes EndpointSlices by the service they belong to.
const indexServiceName = "service-name"

// sliceServiceName is the index function of indexServiceName.
func sliceServiceName(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
		return []string{name}, nil
	}
	return nil, nil
}

// indexer returns the cache of kind's informer, starting it if need be.
// The informer map is read under the lock: another forward may be
// starting an informer in the same namespace.
func (n *Namespace) indexer(kind string) cache.Indexer {
	return n.ensure(kind).GetIndexer()
}

func (n *Namespace) clearErr(kind string) {
	n.mu.Lock()
	delete(n.lastErr, kind)
	n.mu.Unlock()
}

func (n *Namespace) addListener(f func()) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nextID++
	n.listeners[n.nextID] = f
	return n.nextID
}

func (n *Namespace) removeListener(id int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.listeners, id)
	return len(n.listeners)
}

func (n *Namespace) notify() {
	n.mu.Lock()
	fs := make([]func(), 0, len(n.listeners))
	for _, f := range n.listeners {
		fs = append(fs, f)
	}
	n.mu.Unlock()
	for _, f := range fs {
		if f != nil {
			f()
		}
	}
}

func (n *Namespace) stop() {
	n.cancel()
	n.factory.Shutdown()
	n.cluster.log.Debug("stopped watching namespace", "namespace", n.name)
}

// synced reports whether the informers of kinds have synced; if not, it
// returns why, when that is known: the explained error of their last list
// or watch, or, when the API server has not answered at all for a while
// (a VPN down drops packets rather than refuse), a ClusterError of
// CauseTimeout saying for how long.
func (n *Namespace) synced(kinds ...string) (bool, error) {
	for _, k := range kinds {
		inf := n.ensure(k)
		if !inf.HasSynced() {
			n.mu.Lock()
			err, started := n.lastErr[k], n.started[k]
			n.mu.Unlock()
			// A timeout says for how long the server has been silent,
			// not only that one request gave up.
			if ce, ok := errors.AsType[*ClusterError](err); err == nil || ok && ce.Cause == CauseTimeout {
				if silent := n.cluster.silentFor(time.Since(started)); silent != nil {
					err = silent
				}
			}
			return false, err
		}
	}
	return true, nil
}

// Explain is the package's Explain for this namespace's context.
// A refused port-forward upgrade carries no Status to quote, so it is
// named here: the verb, resource and namespace RBAC denied.
func (n *Namespace) Explain(err error) error {
	if hasStatus(err, metav1.StatusReasonForbidden) && !apierrors.IsForbidden(err) {
		msg := fmt.Sprintf("the API server %s of context %q: permission denied: create pods/portforward in namespace %q is not allowed for your user",
			n.cluster.Config.Host, n.cluster.Name, n.name)
		if sentence := upgradeSentence(err); sentence != "" {
			msg += " (" + sentence + ")"
		}
		return &ClusterError{Cause: CauseForbidden, Context: n.cluster.Name, Server: n.cluster.Config.Host, Err: err,
			msg: msg + "; ask for the role in kpf's docs/rbac.md"}
	}
	return Explain(err, n.cluster.Name, n.cluster.Config)
}

// silentSteps are the waits after which an API server that has not
// answered is reported, and the elapsed times the report names: one line
// per step, not one per second.
var silentSteps = []time.Duration{2 * time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// silentFor is the error for an API server that has not answered for d,
// or nil if d is below the first step.
func (c *Cluster) silentFor(d time.Duration) error {
	var step time.Duration
	for _, s := range silentSteps {
		if d >= s {
			step = s
		}
	}
	if step == 0 {
		return nil
	}
	at := fmt.Sprintf("the API server %s of context %q", c.Config.Host, c.Name)
	return &ClusterError{Cause: CauseTimeout, Context: c.Name, Server: c.Config.Host, Err: context.DeadlineExceeded,
		msg: fmt.Sprintf("%s has not answered for %s: is your VPN up? (a firewall that drops packets looks like this too)", at, step)}
}

// WaitSynced blocks until the base informers have synced or ctx is done,
// whichever comes first; in the second case it returns ctx.Err(). While it
// waits, it calls report (if not nil) with the reason they have not
// synced (see synced) each time that reason changes, within 20 ms.
func (n *Namespace) WaitSynced(ctx context.Context, report func(error)) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var last string
	for {
		ok, err := n.synced(kindEndpointSlices, kindServices, kindPods)
		if ok {
			return nil
		}
		if err != nil && report != nil && err.Error() != last {
			last = err.Error()
			report(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Clusters hands out one Cluster per context name, created on first use
// from the kubeconfig. It is safe for concurrent use.
type Clusters struct {
	kubeconfig *Kubeconfig
	log        *slog.Logger

	mu     sync.Mutex
	byName map[string]*Cluster
}

// NewClusters returns an empty registry over kubeconfig.
func NewClusters(kubeconfig *Kubeconfig, log *slog.Logger) *Clusters {
	return &Clusters{kubeconfig: kubeconfig, log: log, byName: map[string]*Cluster{}}
}

// Get returns the cluster of context name ("" for the current context). A
// context the kubeconfig lacks makes Get re-read the kubeconfig once, so a
// context added while kpf runs is found on the next retry.
func (c *Clusters) Get(name string) (*Cluster, error) {
	name, err := c.kubeconfig.ResolveContext(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.byName[name]; ok {
		return cl, nil
	}
	cfg, err := c.kubeconfig.RESTConfig(name)
	if errors.Is(err, ErrNoContext) {
		if rerr := c.kubeconfig.Reload(); rerr == nil {
			cfg, err = c.kubeconfig.RESTConfig(name)
		}
	}
	if err != nil {
		return nil, err
	}
	cl, err := NewCluster(name, cfg, c.log)
	if err != nil {
		return nil, err
	}
	c.byName[name] = cl
	return cl, nil
}
