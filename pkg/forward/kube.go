package forward

import (
	"sync"
	"time"

	"github.com/kpf-dev/kpf/pkg/kube"
	"github.com/kpf-dev/kpf/pkg/tunnel"
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

func (k kubeCluster) Connector() *tunnel.Connector { return k.conn }

func (k kubeCluster) Sessions() *tunnel.Pool { return k.pool }
