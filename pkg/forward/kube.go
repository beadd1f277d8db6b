package forward

import (
	"sync"

	"github.com/kpf-dev/kpf/pkg/kube"
	"github.com/kpf-dev/kpf/pkg/tunnel"
)

// KubeClusters adapts a kube.Clusters registry to a ClusterSource, with one
// tunnel.Connector per context.
func KubeClusters(clusters *kube.Clusters) ClusterSource {
	var mu sync.Mutex
	connectors := map[string]*tunnel.Connector{}
	return func(name string) (Cluster, error) {
		c, err := clusters.Get(name)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		conn, ok := connectors[c.Name]
		if !ok {
			conn = tunnel.NewConnector(c.Config)
			connectors[c.Name] = conn
		}
		return kubeCluster{c, conn}, nil
	}
}

type kubeCluster struct {
	c    *kube.Cluster
	conn *tunnel.Connector
}

func (k kubeCluster) Watch(ns string, onChange func()) (Resolver, func()) {
	return k.c.Watch(ns, onChange)
}

func (k kubeCluster) Connector() *tunnel.Connector { return k.conn }
