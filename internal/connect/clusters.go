package connect

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// KubeClusters adapts a kube.Clusters registry to a ClusterSource, with one
// tunnel.Connector and one shared session pool per context.
func KubeClusters(clusters *kube.Clusters) ClusterSource {
	var mu sync.Mutex
	tunnels := map[string]kubeCluster{}
	return func(name string) (Cluster, error) {
		c, err := clusters.Get(name)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		kc, ok := tunnels[c.Name]
		if !ok {
			conn := tunnel.NewConnector(c.Config)
			kc = kubeCluster{c: c, conn: conn, pool: tunnel.NewPool(conn, sessionDialTimeout)}
			tunnels[c.Name] = kc
		}
		return kc, nil
	}
}

// sessionDialTimeout bounds opening one port-forward session.
const sessionDialTimeout = 15 * time.Second

type kubeCluster struct {
	c    *kube.Cluster
	conn *tunnel.Connector
	pool *tunnel.Pool
}

func (k kubeCluster) Watch(ns string, onChange func()) (Resolver, func()) {
	return k.c.Watch(ns, onChange)
}

func (k kubeCluster) Client() kubernetes.Interface { return k.c.Client }

func (k kubeCluster) NewPool() *tunnel.Pool { return tunnel.NewPool(k.conn, sessionDialTimeout) }

func (k kubeCluster) Sessions() *tunnel.Pool { return k.pool }

// Cluster is what a connection needs of its kube context: a watched
// namespace and port-forward sessions to its pods.
type Cluster interface {
	// Watch starts (or shares) the namespace's informers; onChange is
	// called after every change they see. release stops sharing.
	Watch(namespace string, onChange func()) (Resolver, func())
	// NewPool returns a pool of sessions of the caller's own, which it
	// closes (the Dialer's, so that Close releases exactly its sessions).
	NewPool() *tunnel.Pool
	// Sessions is the context's pool of port-forward sessions, shared by
	// every forward to it: forwards to the same pod share one session.
	Sessions() *tunnel.Pool
	// Client is the context's API client, for what kpf creates in the
	// cluster (its relay).
	Client() kubernetes.Interface
}

// Resolver resolves a target port to ready endpoints from caches.
type Resolver interface {
	Resolve(target config.Target, remote config.Port) ([]kube.Endpoint, error)
	WaitSynced(ctx context.Context, report func(error)) error
	// PortSpelling returns remote with both its number and its name as
	// the target defines them, given the endpoints Resolve returned (see
	// kube.Namespace.PortSpelling).
	PortSpelling(target config.Target, remote config.Port, eps []kube.Endpoint) config.Port
	// Explain turns an error from the context's API server into one that
	// says what failed and what to do (see kube.Explain).
	Explain(err error) error
	// RelayDest returns where kpf's relay reaches a service that no pod
	// backs, over TCP or UDP (see kube.Namespace.RelayDest).
	RelayDest(service string, remote config.Port, udp bool) (host string, port uint16, err error)
}

// ClusterSource finds the Cluster of a context name.
type ClusterSource func(context string) (Cluster, error)
