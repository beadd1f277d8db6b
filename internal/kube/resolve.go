package kube

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kpf-dev/kpf/internal/config"
)

// Endpoint is one ready pod a forward may use, with the pod port that the
// forward's remote port resolved to.
type Endpoint struct {
	Namespace string
	Pod       string
	UID       types.UID
	Port      uint16
	// Dest, when set, marks the pod as kpf's relay and names what it
	// reaches for this endpoint ("host:port/proto"): a connection to Port
	// speaks the relay's protocol first.
	Dest string
}

// String is namespace/pod:port, followed for a relay by " via relay to
// DEST".
func (e Endpoint) String() string {
	s := fmt.Sprintf("%s/%s:%d", e.Namespace, e.Pod, e.Port)
	if e.Dest != "" {
		s = e.Dest + " via relay " + s
	}
	return s
}

// ErrNotSynced means the namespace's caches are not filled yet; Err may
// hold the reason (for example an RBAC denial).
var ErrNotSynced = errors.New("waiting for the namespace's caches to sync")

// notSynced is ErrNotSynced with its cause, which is also its message.
type notSynced struct{ cause error }

func (e notSynced) Error() string   { return e.cause.Error() }
func (e notSynced) Unwrap() []error { return []error{ErrNotSynced, e.cause} }

// ErrNoReadyEndpoints means the target exists but has no ready pod now.
var ErrNoReadyEndpoints = errors.New("no ready endpoints")

// Resolve returns the ready endpoints of target for remote port, sorted by
// pod name, from the informers' caches. A target that does not exist, or a
// port name that it does not define, is an error that names it; a target
// with no ready pod returns ErrNoReadyEndpoints.
func (n *Namespace) Resolve(target config.Target, remote config.Port) ([]Endpoint, error) {
	kinds := []string{kindEndpointSlices, kindServices, kindPods}
	switch target.Kind {
	case config.Deployment:
		kinds = append(kinds, kindDeployments)
	case config.StatefulSet:
		kinds = append(kinds, kindStatefulSets)
	}
	if ok, err := n.synced(kinds...); !ok {
		if err != nil {
			// The cause first: it is what the user can act on.
			return nil, notSynced{err}
		}
		return nil, ErrNotSynced
	}
	return resolveIn(n.indexer, n.name, target, remote)
}

// PortSpelling returns remote with both its number and its name as the
// target defines it (a service port's number and name; a container
// port's, looked up in the pod of eps[0]), so that applications can find
// it by either; Name is "" for a port without one. eps are the endpoints
// Resolve just returned for target and remote: PortSpelling reads the
// caches once more, not the whole resolution. It returns remote as it is
// when the caches cannot say.
func (n *Namespace) PortSpelling(target config.Target, remote config.Port, eps []Endpoint) config.Port {
	return portSpelling(n.indexer, n.name, target, remote, eps)
}

func portSpelling(stores func(kind string) cache.Indexer, ns string, target config.Target, remote config.Port, eps []Endpoint) config.Port {
	if target.Kind == config.Service {
		svc, err := corelisters.NewServiceLister(stores(kindServices)).Services(ns).Get(target.Name)
		if err != nil {
			return remote
		}
		for _, p := range svc.Spec.Ports {
			if (remote.Name != "" && p.Name == remote.Name) || (remote.Name == "" && p.Port == int32(remote.Number)) {
				return config.Port{Number: uint16(p.Port), Name: p.Name}
			}
		}
		return remote
	}
	if len(eps) == 0 {
		return remote
	}
	pod, err := corelisters.NewPodLister(stores(kindPods)).Pods(ns).Get(eps[0].Pod)
	if err != nil {
		return remote
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if (remote.Name != "" && cp.Name == remote.Name) || (remote.Name == "" && cp.ContainerPort == int32(remote.Number)) {
				return config.Port{Number: uint16(cp.ContainerPort), Name: cp.Name}
			}
		}
	}
	return remote
}

// resolveIn resolves target in namespace ns from the caches that stores
// returns by kind: the informers' of a watched namespace, or the lists of
// a NamespaceSnapshot. Both resolve alike.
func resolveIn(stores func(kind string) cache.Indexer, ns string, target config.Target, remote config.Port) ([]Endpoint, error) {
	pods := corelisters.NewPodLister(stores(kindPods)).Pods(ns)
	var eps []Endpoint
	var err error
	switch target.Kind {
	case config.Service:
		eps, err = resolveService(stores, ns, target.Name, remote, pods)
	case config.Pod:
		pod, gerr := pods.Get(target.Name)
		if gerr != nil {
			return nil, notFound("pod", target.Name, ns, gerr)
		}
		eps, err = podEndpoints([]*corev1.Pod{pod}, remote)
	case config.Deployment:
		d, gerr := appslisters.NewDeploymentLister(stores(kindDeployments)).Deployments(ns).Get(target.Name)
		if gerr != nil {
			return nil, notFound("deployment", target.Name, ns, gerr)
		}
		eps, err = selectPods(pods, d.Spec.Selector, remote)
	case config.StatefulSet:
		s, gerr := appslisters.NewStatefulSetLister(stores(kindStatefulSets)).StatefulSets(ns).Get(target.Name)
		if gerr != nil {
			return nil, notFound("statefulset", target.Name, ns, gerr)
		}
		eps, err = selectPods(pods, s.Spec.Selector, remote)
	case config.Selector:
		sel, perr := labels.Parse(target.Selector)
		if perr != nil {
			return nil, fmt.Errorf("selector %q: %w", target.Selector, perr)
		}
		list, lerr := pods.List(sel)
		if lerr != nil {
			return nil, lerr
		}
		eps, err = podEndpoints(list, remote)
	default:
		return nil, fmt.Errorf("unsupported target %v", target)
	}
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 {
		return nil, ErrNoReadyEndpoints
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Pod < eps[j].Pod })
	for i := range eps {
		eps[i].Namespace = ns
	}
	return eps, nil
}

func notFound(kind, name, ns string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %q not found in namespace %q", kind, name, ns)
	}
	return fmt.Errorf("get %s %q: %w", kind, name, err)
}

// resolveService maps a service port (number or name) to the endpoints of
// the service's EndpointSlices: the slice port carrying the service port's
// name holds the resolved targetPort number of each endpoint.
//
// The pod cache is consulted too: a pod being deleted is skipped even before
// the EndpointSlice controller has marked its endpoint terminating.
func resolveService(stores func(string) cache.Indexer, ns, name string, remote config.Port, pods corelisters.PodNamespaceLister) ([]Endpoint, error) {
	svc, err := corelisters.NewServiceLister(stores(kindServices)).Services(ns).Get(name)
	if err != nil {
		return nil, notFound("service", name, ns, err)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, &NeedsRelay{Service: name, Why: "an ExternalName service for " + svc.Spec.ExternalName}
	}
	sp, err := servicePort(svc, remote, false)
	if err != nil {
		return nil, err
	}
	eps, others, err := serviceEndpoints(stores, ns, name, sp, pods)
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 && len(svc.Spec.Selector) == 0 && others > 0 {
		return nil, &NeedsRelay{Service: name, Why: "a service without a selector whose endpoints are not pods"}
	}
	return eps, nil
}

// NeedsRelay is Resolve's error for a service that no pod backs, which kpf
// reaches through its relay: an ExternalName service, or one without a
// selector whose endpoints are not pods. RelayDest says where the relay
// goes. It wraps ErrNeedsRelay.
type NeedsRelay struct {
	Service string
	Why     string // "an ExternalName service for db.example.com"
}

func (e *NeedsRelay) Error() string {
	return fmt.Sprintf("service %q is %s: reached through the relay", e.Service, e.Why)
}

func (e *NeedsRelay) Unwrap() error { return ErrNeedsRelay }

// ErrNeedsRelay is wrapped by a NeedsRelay error.
var ErrNeedsRelay = errors.New("reached through the relay")

// RelayDest returns where kpf's relay reaches the service's port remote,
// over TCP or (udp) UDP: for an ExternalName service its external name
// and the port (a number, or the service port of that name); else the
// service's cluster IP and port, through which the cluster's own proxy
// balances; for a headless service the first ready endpoint's address
// and port.
func (n *Namespace) RelayDest(service string, remote config.Port, udp bool) (host string, port uint16, err error) {
	if ok, err := n.synced(kindServices, kindEndpointSlices); !ok {
		if err != nil {
			return "", 0, notSynced{err}
		}
		return "", 0, ErrNotSynced
	}
	return relayDest(n.indexer, n.name, service, remote, udp)
}

func relayDest(stores func(string) cache.Indexer, ns, name string, remote config.Port, udp bool) (string, uint16, error) {
	svc, err := corelisters.NewServiceLister(stores(kindServices)).Services(ns).Get(name)
	if err != nil {
		return "", 0, notFound("service", name, ns, err)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		host := strings.TrimSuffix(svc.Spec.ExternalName, ".")
		if remote.Name == "" {
			return host, remote.Number, nil
		}
		sp, err := servicePort(svc, remote, udp)
		if err != nil {
			return "", 0, err
		}
		return host, uint16(sp.Port), nil
	}
	sp, err := servicePort(svc, remote, udp)
	if err != nil {
		return "", 0, err
	}
	if hasClusterIP(svc) {
		return svc.Spec.ClusterIP, uint16(sp.Port), nil
	}
	slices, err := serviceSlices(stores(kindEndpointSlices), ns, name)
	if err != nil {
		return "", 0, err
	}
	for _, s := range slices {
		port := slicePort(s, sp.Name)
		if port == nil {
			continue
		}
		for _, ep := range s.Endpoints {
			if endpointReady(ep) && len(ep.Addresses) > 0 {
				return ep.Addresses[0], uint16(*port), nil
			}
		}
	}
	return "", 0, ErrNoReadyEndpoints
}

func hasClusterIP(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

// servicePort returns the service's port remote (a number or name) of the
// protocol asked, or an error that names the ports it has.
func servicePort(svc *corev1.Service, remote config.Port, udp bool) (*corev1.ServicePort, error) {
	want, other := corev1.ProtocolTCP, "udp"
	if udp {
		want, other = corev1.ProtocolUDP, "tcp"
	}
	var wrongProto *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if (remote.Name != "" && p.Name == remote.Name) || (remote.Name == "" && p.Port == int32(remote.Number)) {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if proto == want {
				return p, nil
			}
			wrongProto = p
		}
	}
	if wrongProto != nil {
		proto := wrongProto.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if proto == corev1.ProtocolSCTP {
			return nil, fmt.Errorf("service %q port %s is SCTP; kpf forwards TCP and UDP", svc.Name, remote)
		}
		return nil, fmt.Errorf("service %q port %s is %s, not %s (write the mapping with /%s)", svc.Name, remote, proto, want, other)
	}
	return nil, fmt.Errorf("service %q has no port %s (it has %s)", svc.Name, remote, servicePorts(svc))
}

// slicePort returns the port number of an EndpointSlice's port named name.
func slicePort(s *discoveryv1.EndpointSlice, name string) *int32 {
	var port *int32
	for _, p := range s.Ports {
		if p.Name != nil && *p.Name == name && p.Port != nil {
			port = p.Port
		}
	}
	return port
}

// serviceEndpoints returns the ready pods behind the service port sp, and
// how many ready endpoints are not pods.
func serviceEndpoints(stores func(string) cache.Indexer, ns, name string, sp *corev1.ServicePort, pods corelisters.PodNamespaceLister) ([]Endpoint, int, error) {
	slices, err := serviceSlices(stores(kindEndpointSlices), ns, name)
	if err != nil {
		return nil, 0, err
	}
	seen := map[types.UID]bool{}
	var eps []Endpoint
	others := 0
	for _, s := range slices {
		port := slicePort(s, sp.Name)
		if port == nil {
			continue
		}
		for _, ep := range s.Endpoints {
			if !endpointReady(ep) {
				continue
			}
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				others++
				continue
			}
			if seen[ep.TargetRef.UID] {
				continue
			}
			if p, err := pods.Get(ep.TargetRef.Name); err == nil && (p.UID != ep.TargetRef.UID || !PodReady(p)) {
				continue
			}
			seen[ep.TargetRef.UID] = true
			eps = append(eps, Endpoint{Pod: ep.TargetRef.Name, UID: ep.TargetRef.UID, Port: uint16(*port)})
		}
	}
	return eps, others, nil
}

// serviceSlices returns the EndpointSlices of the service name, from the
// index by service (the cache holds one namespace).
func serviceSlices(idx cache.Indexer, ns, name string) ([]*discoveryv1.EndpointSlice, error) {
	objs, err := idx.ByIndex(indexServiceName, name)
	if err != nil {
		// Not indexed (see ensure): scan the namespace.
		sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
		return discoverylisters.NewEndpointSliceLister(idx).EndpointSlices(ns).List(sel)
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, s)
		}
	}
	return slices, nil
}

// endpointReady follows the EndpointSlice API: a nil ready condition means
// ready, and a terminating endpoint is never used for new connections.
func endpointReady(ep discoveryv1.Endpoint) bool {
	if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
		return false
	}
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

func servicePorts(svc *corev1.Service) string {
	s := ""
	for i, p := range svc.Spec.Ports {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(p.Port)
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			s += "/" + strings.ToLower(string(p.Protocol))
		}
		if p.Name != "" {
			s += fmt.Sprintf(" (%s)", p.Name)
		}
	}
	if s == "" {
		return "no ports"
	}
	return s
}

func selectPods(pods corelisters.PodNamespaceLister, ls *metav1.LabelSelector, remote config.Port) ([]Endpoint, error) {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("workload selector: %w", err)
	}
	list, err := pods.List(sel)
	if err != nil {
		return nil, err
	}
	return podEndpoints(list, remote)
}

// podEndpoints keeps the ready pods and resolves the container port.
func podEndpoints(pods []*corev1.Pod, remote config.Port) ([]Endpoint, error) {
	var eps []Endpoint
	var portErr error
	for _, p := range pods {
		if !PodReady(p) {
			continue
		}
		port, err := containerPort(p, remote)
		if err != nil {
			portErr = err
			continue
		}
		eps = append(eps, Endpoint{Pod: p.Name, UID: p.UID, Port: port})
	}
	if len(eps) == 0 && portErr != nil {
		return nil, portErr
	}
	return eps, nil
}

// PodReady reports whether the pod is running, not being deleted, and has
// the Ready condition.
func PodReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func containerPort(p *corev1.Pod, remote config.Port) (uint16, error) {
	if remote.Name == "" {
		return remote.Number, nil
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == remote.Name {
				if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
					return 0, fmt.Errorf("pod %q port %q is %s; only TCP can be forwarded", p.Name, remote.Name, cp.Protocol)
				}
				return uint16(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("pod %q has no container port named %q", p.Name, remote.Name)
}
