package kube

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/kpf-dev/kpf/internal/config"
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

// list returns every object of kind in ns, 500 at a time, as the
// informers' first list does.
func (c *Cluster) list(ctx context.Context, ns, kind string) ([]runtime.Object, error) {
	core, apps, disc := c.Client.CoreV1(), c.Client.AppsV1(), c.Client.DiscoveryV1()
	switch kind {
	case kindServices:
		return listAll(func(o metav1.ListOptions) ([]corev1.Service, string, error) {
			l, err := core.Services(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return l.Items, l.Continue, nil
		})
	case kindEndpointSlices:
		return listAll(func(o metav1.ListOptions) ([]discoveryv1.EndpointSlice, string, error) {
			l, err := disc.EndpointSlices(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return l.Items, l.Continue, nil
		})
	case kindPods:
		return listAll(func(o metav1.ListOptions) ([]corev1.Pod, string, error) {
			l, err := core.Pods(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return l.Items, l.Continue, nil
		})
	case kindDeployments:
		return listAll(func(o metav1.ListOptions) ([]appsv1.Deployment, string, error) {
			l, err := apps.Deployments(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return l.Items, l.Continue, nil
		})
	case kindStatefulSets:
		return listAll(func(o metav1.ListOptions) ([]appsv1.StatefulSet, string, error) {
			l, err := apps.StatefulSets(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return l.Items, l.Continue, nil
		})
	}
	panic("kube: unknown kind " + kind)
}

// listAll calls page until it returns no continue token, and returns
// every item as a runtime.Object.
func listAll[T any, PT interface {
	*T
	runtime.Object
}](page func(metav1.ListOptions) ([]T, string, error)) ([]runtime.Object, error) {
	var out []runtime.Object
	opts := metav1.ListOptions{Limit: 500}
	for {
		items, cont, err := page(opts)
		if err != nil {
			return nil, err
		}
		for i := range items {
			out = append(out, PT(&items[i]))
		}
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

// RelayDest returns where kpf's relay reaches the service's port, as
// Namespace.RelayDest does.
func (s *NamespaceSnapshot) RelayDest(service string, remote config.Port, udp bool) (string, uint16, error) {
	return relayDest(s.store, s.name, service, remote, udp)
}
