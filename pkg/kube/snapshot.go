package kube

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/kpf-dev/kpf/pkg/config"
)

// NamespaceSnapshot is one namespace of one cluster listed once, for a
// one-off check such as kpf doctor. It resolves targets with the same code
// as a watched Namespace, so the check and kpf up agree; it starts no
// informer and keeps nothing up to date.
type NamespaceSnapshot struct {
	cluster *Cluster
	name    string
	stores  map[string]cache.Indexer
}

// Snapshot lists the namespace ns once: its EndpointSlices, Services and
// Pods, and its Deployments or StatefulSets when withKinds names them (as
// config.Deployment or config.StatefulSet). The first list that fails
// ends it, with the error explained (see Explain); a namespace that does
// not exist lists as empty, as it does for kpf up.
func (c *Cluster) Snapshot(ctx context.Context, ns string, withKinds ...config.TargetKind) (*NamespaceSnapshot, error) {
	kinds := []string{kindServices, kindEndpointSlices, kindPods}
	if slices.Contains(withKinds, config.Deployment) {
		kinds = append(kinds, kindDeployments)
	}
	if slices.Contains(withKinds, config.StatefulSet) {
		kinds = append(kinds, kindStatefulSets)
	}
	s := &NamespaceSnapshot{cluster: c, name: ns, stores: map[string]cache.Indexer{}}
	for _, kind := range kinds {
		objs, err := c.list(ctx, ns, kind)
		if err != nil {
			return nil, Explain(fmt.Errorf("list %s in namespace %q: %w", kind, ns, err), c.Name, c.Config)
		}
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{
			cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
			indexServiceName:     sliceServiceName,
		})
		for _, o := range objs {
			if err := idx.Add(o); err != nil {
				return nil, fmt.Errorf("index %s: %w", kind, err)
			}
		}
		s.stores[kind] = idx
	}
	return s, nil
}

// list returns every object of kind in ns, one page of up to 500 at a
// time, as the informers' first list does.
func (c *Cluster) list(ctx context.Context, ns, kind string) ([]runtime.Object, error) {
	var out []runtime.Object
	opts := metav1.ListOptions{Limit: 500}
	for {
		var objs []runtime.Object
		var cont string
		switch kind {
		case kindServices:
			l, err := c.Client.CoreV1().Services(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
			cont = l.Continue
		case kindEndpointSlices:
			l, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
			cont = l.Continue
		case kindPods:
			l, err := c.Client.CoreV1().Pods(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
			cont = l.Continue
		case kindDeployments:
			l, err := c.Client.AppsV1().Deployments(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
			cont = l.Continue
		case kindStatefulSets:
			l, err := c.Client.AppsV1().StatefulSets(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				objs = append(objs, &l.Items[i])
			}
			cont = l.Continue
		default:
			panic("kube: unknown kind " + kind)
		}
		out = append(out, objs...)
		if cont == "" {
			return out, nil
		}
		opts.Continue = cont
	}
}

// Resolve is Namespace.Resolve on the listed objects.
func (s *NamespaceSnapshot) Resolve(target config.Target, remote config.Port) ([]Endpoint, error) {
	return resolveIn(s.store, s.name, target, remote)
}

// store returns the listed objects of kind; a kind not listed is empty.
func (s *NamespaceSnapshot) store(kind string) cache.Indexer {
	if idx, ok := s.stores[kind]; ok {
		return idx
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{indexServiceName: sliceServiceName})
	s.stores[kind] = idx
	return idx
}

// Names returns the sorted names of the listed objects of kind (for a
// did-you-mean); nil for config.Selector.
func (s *NamespaceSnapshot) Names(kind config.TargetKind) []string {
	var k string
	switch kind {
	case config.Service:
		k = kindServices
	case config.Pod:
		k = kindPods
	case config.Deployment:
		k = kindDeployments
	case config.StatefulSet:
		k = kindStatefulSets
	default:
		return nil
	}
	keys := s.store(k).ListKeys()
	names := make([]string, 0, len(keys))
	for _, key := range keys {
		if _, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
