// Package nodeagent stands in for the kubelet of a local test cluster. It
// registers a Node at 127.0.0.1, keeps its Lease fresh, binds unscheduled
// pods to itself, reports them Running (and Ready unless told otherwise),
// finalizes their deletion and serves the kubelet's port-forward endpoint,
// forwarding each pod port to a loopback backend named by an annotation.
// No containers run.
package nodeagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// Config configures an Agent.
type Config struct {
	NodeName string
	// ListenAddr is the host:port the kubelet endpoint listens on; its port
	// is published in the Node's status.
	ListenAddr string
	// TLS serves the kubelet endpoint.
	TLS *tls.Config
	Log *slog.Logger
	// RelayBinary is the kpf-relay program that pods of RelayImage run
	// (see DefaultRelayImage); it is looked up when such a pod starts.
	RelayBinary string
	// RelayImage is the relay's image repository; "" means
	// DefaultRelayImage.
	RelayImage string
}

// Agent is a running node agent.
type Agent struct {
	cfg     Config
	client  kubernetes.Interface
	pods    corelisters.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
	streams *streamSet
	relays  relays

	mu      sync.Mutex
	nextIP  int
	ipByUID map[types.UID]string
	// assigned remembers the backends handed out, by pod UID and
	// annotation key, until the pod is deleted: the lister may not show a
	// sibling's assignment yet when two workers assign at once.
	assigned map[types.UID]map[string]string
}

// Run registers the node and serves until ctx is done.
func Run(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	a := &Agent{
		cfg:      cfg,
		client:   client,
		streams:  newStreamSet(),
		ipByUID:  map[types.UID]string{},
		assigned: map[types.UID]map[string]string{},
		relays:   relays{procs: map[types.UID]*relayProc{}},
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
	}
	defer a.queue.ShutDown()
	defer a.stopAllRelays()

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := a.registerNode(ctx, port); err != nil {
		ln.Close()
		return err
	}

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods()
	a.pods = podInformer.Lister()
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.enqueue,
		UpdateFunc: func(_, obj any) { a.enqueue(obj) },
		DeleteFunc: a.onDelete,
	}); err != nil {
		return fmt.Errorf("add pod handler: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		return errors.New("pod cache did not sync")
	}

	srv := &http.Server{
		Handler:   a.handler(),
		TLSConfig: cfg.TLS,
		// Port-forward needs HTTP/1.1 upgrades; never negotiate HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.ServeTLS(ln, "", "") }()

	var wg sync.WaitGroup
	wg.Go(func() { a.heartbeat(ctx) })
	for range 2 {
		wg.Go(func() {
			for a.processNext(ctx) {
			}
		})
	}
	cfg.Log.Info("node agent ready", "node", cfg.NodeName, "port", port)

	select {
	case <-ctx.Done():
	case err = <-srvErr:
		err = fmt.Errorf("serve kubelet endpoint: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	a.queue.ShutDown()
	wg.Wait()
	return err
}

type connKey struct{}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, r *http.Request) {
		ns, name, uid := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("uid")
		pod, err := a.pods.Pods(ns).Get(name)
		if err != nil || (uid != "" && string(pod.UID) != uid) || pod.Spec.NodeName != a.cfg.NodeName {
			http.Error(w, fmt.Sprintf("pod %s/%s not found on this node", ns, name), http.StatusNotFound)
			return
		}
		if pod.DeletionTimestamp != nil {
			http.Error(w, fmt.Sprintf("pod %s/%s is terminating", ns, name), http.StatusNotFound)
			return
		}
		opts, err := portforward.NewV4Options(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Deleting the pod closes this connection, ending every forward on
		// it, as a real kubelet's stream server does when a sandbox goes.
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			a.streams.add(string(pod.UID), c)
			defer a.streams.remove(string(pod.UID), c)
		}
		a.cfg.Log.Info("port-forward session", "pod", ns+"/"+name, "websocket", r.Header.Get("Upgrade") == "websocket")
		current := func() (*corev1.Pod, error) { return a.pods.Pods(ns).Get(name) }
		fwd := podForwarder{pod: pod, current: current, streams: a.streams}
		if p, ok := a.relay(pod.UID); ok {
			fwd.relayPort = p.port
		}
		portforward.ServePortForward(w, r, fwd, ns+"/"+name, string(pod.UID), opts,
			4*time.Hour, 30*time.Second, portforward.SupportedProtocols)
	}
	mux.HandleFunc("/portForward/{namespace}/{pod}", serve)
	mux.HandleFunc("/portForward/{namespace}/{pod}/{uid}", serve)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	return mux
}

func (a *Agent) enqueue(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != a.cfg.NodeName {
		return
	}
	if pod.Spec.NodeName == "" && pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(pod)
	if err == nil {
		a.queue.Add(key)
	}
}

func (a *Agent) onDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.stopRelay(pod.UID)
	if n := a.streams.closePod(string(pod.UID)); n > 0 {
		a.cfg.Log.Info("closed port-forward connections of deleted pod", "pod", pod.Namespace+"/"+pod.Name, "count", n)
	}
	a.mu.Lock()
	delete(a.ipByUID, pod.UID)
	delete(a.assigned, pod.UID)
	a.mu.Unlock()
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if err := a.sync(ctx, key); err != nil {
		a.cfg.Log.Warn("sync pod", "pod", key, "err", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

// sync drives one pod one step towards its desired state: bound, backends
// assigned, Running with the right readiness, or gone.
func (a *Agent) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	pod, err := a.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case pod.Spec.NodeName == "":
		return a.bind(ctx, pod)
	case pod.DeletionTimestamp != nil:
		a.stopRelay(pod.UID)
		a.streams.closePod(string(pod.UID))
		zero := int64(0)
		err := a.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("finalize deletion: %w", err)
		}
		return nil
	}
	if patch := a.assignments(pod); patch != nil {
		_, err := a.client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return fmt.Errorf("record backend assignment: %w", err)
		}
		return nil // the update event brings the pod back
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil // finished pods stay as they ended
	}
	var relayErr error
	if c, ok := a.relayContainer(pod); ok {
		relayErr = a.startRelay(pod, c)
	}
	status := a.desiredStatus(pod, a.relayStateOf(pod, relayErr))
	if !equality.Semantic.DeepEqual(status, &pod.Status) {
		updated := pod.DeepCopy()
		updated.Status = *status
		if _, err := a.client.CoreV1().Pods(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update status: %w", err)
		}
	}
	return relayErr // retried with backoff, as a kubelet retries a pull
}

func (a *Agent) bind(ctx context.Context, pod *corev1.Pod) error {
	err := a.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// assignments returns a merge patch that assigns a backend to each
// list-valued forward annotation not yet assigned, or nil. Each pod gets the
// entry used by the fewest live pods with the same owner (ties: the first),
// so the replicas of a Deployment spread over the list and a replacement pod
// takes the entry its predecessor left.
func (a *Agent) assignments(pod *corev1.Pod) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	var patch []string
	for k, v := range pod.Annotations {
		port, ok := strings.CutPrefix(k, ForwardAnnotationPrefix)
		if !ok || !strings.Contains(v, ",") {
			continue
		}
		key := AssignedAnnotationPrefix + port
		if _, done := pod.Annotations[key]; done {
			continue
		}
		best, ok := a.assigned[pod.UID][key]
		if !ok {
			use := map[string]int{}
			siblings, _ := a.pods.Pods(pod.Namespace).List(labels.Everything())
			for _, s := range siblings {
				if s.UID == pod.UID || s.DeletionTimestamp != nil || !sameOwner(s, pod) {
					continue
				}
				e, ok := a.assigned[s.UID][key]
				if !ok {
					e, ok = s.Annotations[key]
				}
				if ok {
					use[e]++
				}
			}
			entries := strings.Split(v, ",")
			best = strings.TrimSpace(entries[0])
			for _, e := range entries[1:] {
				e = strings.TrimSpace(e)
				if use[e] < use[best] {
					best = e
				}
			}
			if a.assigned[pod.UID] == nil {
				a.assigned[pod.UID] = map[string]string{}
			}
			a.assigned[pod.UID][key] = best
		}
		patch = append(patch, strconv.Quote(key)+":"+strconv.Quote(best))
	}
	if len(patch) == 0 {
		return nil
	}
	sort.Strings(patch)
	return []byte(`{"metadata":{"annotations":{` + strings.Join(patch, ",") + `}}}`)
}

func sameOwner(a, b *corev1.Pod) bool {
	ao, bo := metav1.GetControllerOf(a), metav1.GetControllerOf(b)
	if ao == nil || bo == nil {
		return ao == nil && bo == nil
	}
	return ao.UID == bo.UID
}

// podIP returns the pod's address: each pod gets its own from 198.18.0.0/15,
// the range reserved for network benchmarks (RFC 2544), kept across agent
// restarts through the pod's status. The API rejects loopback endpoint
// addresses, and nothing ever connects to these: port-forwards name pods,
// and the agent forwards to loopback backends.
func (a *Agent) podIP(pod *corev1.Pod) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.ipByUID[pod.UID]; ok {
		return ip
	}
	ip := pod.Status.PodIP
	if ip == "" {
		used := map[string]bool{}
		for _, v := range a.ipByUID {
			used[v] = true
		}
		for {
			a.nextIP++
			n := a.nextIP%65000 + 2
			ip = fmt.Sprintf("198.18.%d.%d", n/256, n%256)
			if !used[ip] {
				break
			}
		}
	}
	a.ipByUID[pod.UID] = ip
	return ip
}

func (a *Agent) desiredStatus(pod *corev1.Pod, relay relayState) *corev1.PodStatus {
	s := pod.Status.DeepCopy()
	now := metav1.Now()
	ip := a.podIP(pod)
	s.Phase = corev1.PodRunning
	s.HostIP, s.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
	s.PodIP, s.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if s.StartTime == nil {
		s.StartTime = &now
	}
	ready := pod.Annotations[ReadyAnnotation] != "false"
	relay.apply(s, &ready)
	cond := func(t corev1.PodConditionType, ok bool) {
		want := corev1.ConditionTrue
		if !ok {
			want = corev1.ConditionFalse
		}
		for i := range s.Conditions {
			if s.Conditions[i].Type == t {
				if s.Conditions[i].Status != want {
					s.Conditions[i].Status = want
					s.Conditions[i].LastTransitionTime = now
				}
				return
			}
		}
		s.Conditions = append(s.Conditions, corev1.PodCondition{Type: t, Status: want, LastTransitionTime: now})
	}
	cond(corev1.PodScheduled, true)
	cond(corev1.PodReadyToStartContainers, true)
	cond(corev1.PodInitialized, true)
	cond(corev1.ContainersReady, ready)
	cond(corev1.PodReady, ready)

	old := map[string]corev1.ContainerStatus{}
	for _, cs := range s.ContainerStatuses {
		old[cs.Name] = cs
	}
	s.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		cs, ok := old[c.Name]
		if !ok {
			cs = corev1.ContainerStatus{
				Name:        c.Name,
				Image:       c.Image,
				ImageID:     "kpf-local://" + c.Image,
				ContainerID: "kpf-local://" + string(pod.UID) + "/" + c.Name,
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			}
		}
		started := true
		if c.Name == relay.container {
			cs.State = relay.containerState(cs.State)
			started = cs.State.Running != nil
		}
		cs.Started = &started
		cs.Ready = ready
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	return s
}

// registerNode creates or refreshes this agent's Node.
func (a *Agent) registerNode(ctx context.Context, port int) error {
	nodes := a.client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": a.cfg.NodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	node.Status = a.nodeStatus(node.Status, port)
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update node status: %w", err)
	}
	return nil
}

func (a *Agent) nodeStatus(old corev1.NodeStatus, port int) corev1.NodeStatus {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	s := old
	if port != 0 {
		s.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	}
	s.Capacity, s.Allocatable = capacity, capacity
	s.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeHostName, Address: a.cfg.NodeName},
	}
	s.NodeInfo.KubeletVersion = "v1.37.2-kpf-node-agent"
	s.NodeInfo.OperatingSystem, s.NodeInfo.Architecture = "linux", "amd64"
	s.NodeInfo.ContainerRuntimeVersion = "kpf-local://0"
	s.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kpf node agent is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
	}
	for i := range s.Conditions {
		for _, o := range old.Conditions {
			if o.Type == s.Conditions[i].Type && o.Status == s.Conditions[i].Status {
				s.Conditions[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	return s
}

// heartbeat renews the node Lease every 10 s and the Ready condition every
// 40 s, as the kubelet does, so the node lifecycle controller never taints
// the node.
func (a *Agent) heartbeat(ctx context.Context) {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		now := metav1.NewMicroTime(time.Now())
		lease, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			dur := int32(40)
			holder := a.cfg.NodeName
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
			}, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.RenewTime = &now
			_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			a.cfg.Log.Warn("renew lease", "err", err)
		}
		if n%4 == 3 {
			if node, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err == nil {
				node.Status = a.nodeStatus(node.Status, 0)
				if _, err := a.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
					a.cfg.Log.Warn("update node status", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
