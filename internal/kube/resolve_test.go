package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kpf-dev/kpf/internal/config"
)

func pod(name string, ready bool, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: status},
		}},
	}
}

func endpoint(podName string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{"198.18.0.1"},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: podName, UID: types.UID("uid-" + podName)},
	}
}

func ptr[T any](v T) *T { return &v }

// objects is one namespace with every kind of target.
func objects() []runtime.Object {
	web := map[string]string{"app": "web"}
	httpPort := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	deleting := pod("web-3", true, web, httpPort)
	deleting.DeletionTimestamp = ptr(metav1.Now())
	return []runtime.Object{
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
			Spec: corev1.ServiceSpec{Selector: web, ClusterIP: "10.96.0.5", Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "admin", Port: 9000, TargetPort: intstr.FromInt32(9001)},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			}},
		},
		// Services no pod backs, which kpf reaches through its relay.
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "ns"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com.", Ports: []corev1.ServicePort{
				{Name: "pg", Port: 5432},
			}},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "ns"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{
				{Name: "pg", Port: 5432}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "legacy-1", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "legacy"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432))}, {Name: ptr("dns"), Port: ptr(int32(53))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.2.3"}}},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "ns"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "headless-1", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "headless"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("dns"), Port: ptr(int32(5353))}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.1.2.8"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
				{Addresses: []string{"10.1.2.9"}},
			},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr("http"), Port: ptr(int32(8080))},
				{Name: ptr("admin"), Port: ptr(int32(9001))},
			},
			Endpoints: []discoveryv1.Endpoint{endpoint("web-2", true), endpoint("web-1", true), endpoint("web-0", false), endpoint("web-3", true)},
		},
		// A second service in the namespace: its slice must not reach
		// web's resolutions, nor web's its.
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{
				{Name: "pg", Port: 5432, TargetPort: intstr.FromString("pg")},
			}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "db-xyz", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432))}},
			Endpoints:   []discoveryv1.Endpoint{endpoint("db-0", true)},
		},
		pod("web-0", false, web, httpPort), pod("web-1", true, web, httpPort), pod("web-2", true, web, httpPort), deleting,
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
			Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: web}},
		},
		&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
			Spec:       appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
		},
		pod("db-0", true, map[string]string{"app": "db"}, corev1.ContainerPort{Name: "pg", ContainerPort: 5432}),
	}
}

func TestResolve(t *testing.T) {
	ns, ctx := syncedNamespace(t)
	svc := config.Target{Kind: config.Service, Name: "web"}
	tests := []struct {
		name    string
		target  config.Target
		remote  config.Port
		want    []string // pod:port
		wantErr string
	}{
		{"service port number to named targetPort", svc, config.Port{Number: 80}, []string{"web-1:8080", "web-2:8080"}, ""},
		{"service port name", svc, config.Port{Name: "http"}, []string{"web-1:8080", "web-2:8080"}, ""},
		{"service port to numeric targetPort", svc, config.Port{Name: "admin"}, []string{"web-1:9001", "web-2:9001"}, ""},
		{"service port it lacks", svc, config.Port{Number: 81}, nil, `service "web" has no port 81 (it has 80 (http), 9000 (admin), 53/udp (dns))`},
		{"another service's slices only", config.Target{Kind: config.Service, Name: "db"}, config.Port{Name: "pg"}, []string{"db-0:5432"}, ""},
		{"missing service", config.Target{Kind: config.Service, Name: "nope"}, config.Port{Number: 80}, nil, `service "nope" not found in namespace "ns"`},
		{"pod by name, named port", config.Target{Kind: config.Pod, Name: "web-1"}, config.Port{Name: "http"}, []string{"web-1:8080"}, ""},
		{"pod not ready", config.Target{Kind: config.Pod, Name: "web-0"}, config.Port{Number: 8080}, nil, ErrNoReadyEndpoints.Error()},
		{"pod without that port name", config.Target{Kind: config.Pod, Name: "web-1"}, config.Port{Name: "grpc"}, nil, `pod "web-1" has no container port named "grpc"`},
		{"deployment", config.Target{Kind: config.Deployment, Name: "web"}, config.Port{Number: 8080}, []string{"web-1:8080", "web-2:8080"}, ""},
		{"missing deployment", config.Target{Kind: config.Deployment, Name: "api"}, config.Port{Number: 8080}, nil, `deployment "api" not found`},
		{"statefulset, named port", config.Target{Kind: config.StatefulSet, Name: "db"}, config.Port{Name: "pg"}, []string{"db-0:5432"}, ""},
		{"selector", config.Target{Kind: config.Selector, Selector: "app in (web,db)"}, config.Port{Number: 7}, []string{"db-0:7", "web-1:7", "web-2:7"}, ""},
		{"selector matching nothing", config.Target{Kind: config.Selector, Selector: "app=none"}, config.Port{Number: 7}, nil, ErrNoReadyEndpoints.Error()},
		{"a UDP port over TCP", svc, config.Port{Name: "dns"}, nil, `service "web" port dns is UDP, not TCP (write the mapping with /udp)`},
		{"ExternalName service", config.Target{Kind: config.Service, Name: "ext"}, config.Port{Number: 5432}, nil,
			`service "ext" is an ExternalName service for db.example.com.: reached through the relay`},
		{"service without selector, endpoints not pods", config.Target{Kind: config.Service, Name: "legacy"}, config.Port{Name: "pg"}, nil,
			`service "legacy" is a service without a selector whose endpoints are not pods: reached through the relay`},
	}
	// kpf doctor's one-off snapshot must resolve as kpf up's informers do.
	snap, err := newCluster("test", nil, fake.NewClientset(objects()...), slog.New(slog.DiscardHandler)).
		Snapshot(ctx, "ns", config.Deployment, config.StatefulSet)
	if err != nil {
		t.Fatal(err)
	}
	resolvers := []struct {
		name    string
		resolve func(config.Target, config.Port) ([]Endpoint, error)
	}{{"watched", ns.Resolve}, {"snapshot", snap.Resolve}}
	for _, r := range resolvers {
		for _, tt := range tests {
			t.Run(r.name+"/"+tt.name, func(t *testing.T) {
				eps, err := r.resolve(tt.target, tt.remote)
				// Deployments and StatefulSets are watched from their first
				// use on: wait for that cache.
				for errors.Is(err, ErrNotSynced) && ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
					eps, err = r.resolve(tt.target, tt.remote)
				}
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("err = %v, want %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, ep := range eps {
					got = append(got, ep.Pod+":"+itoa(ep.Port))
					if ep.Namespace != "ns" {
						t.Errorf("endpoint namespace = %q", ep.Namespace)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("endpoints = %v, want %v", got, tt.want)
				}
			})
		}
	}
	if got, want := snap.Names(config.Service), []string{"db", "ext", "headless", "legacy", "web"}; !slices.Equal(got, want) {
		t.Errorf("snapshot service names = %v, want %v", got, want)
	}
}

func TestRelayDest(t *testing.T) {
	ns, _ := syncedNamespace(t)
	for _, tt := range []struct {
		service string
		remote  config.Port
		udp     bool
		want    string
		wantErr string
	}{
		{"ext", config.Port{Number: 5432}, false, "db.example.com:5432", ""},
		{"ext", config.Port{Number: 6379}, false, "db.example.com:6379", ""}, // an ExternalName's ports are advisory
		{"ext", config.Port{Name: "pg"}, false, "db.example.com:5432", ""},
		{"ext", config.Port{Name: "redis"}, false, "", `service "ext" has no port redis`},
		{"legacy", config.Port{Name: "pg"}, false, "10.96.0.10:5432", ""},
		{"legacy", config.Port{Number: 53}, true, "10.96.0.10:53", ""},
		{"legacy", config.Port{Number: 53}, false, "", `service "legacy" port 53 is UDP, not TCP (write the mapping with /udp)`},
		{"headless", config.Port{Name: "dns"}, true, "10.1.2.9:5353", ""},
		{"web", config.Port{Name: "dns"}, true, "10.96.0.5:53", ""},
		{"web", config.Port{Name: "http"}, true, "", `service "web" port http is TCP, not UDP (write the mapping with /tcp)`},
		{"nope", config.Port{Number: 53}, true, "", `service "nope" not found`},
	} {
		host, port, err := ns.RelayDest(tt.service, tt.remote, tt.udp)
		got := ""
		if err == nil {
			got = host + ":" + itoa(port)
		}
		if got != tt.want || (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("RelayDest(%s, %s, udp %v) = %q, %v; want %q, %q", tt.service, tt.remote, tt.udp, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestResolveFollowsChanges(t *testing.T) {
	client := fake.NewClientset(objects()...)
	c := newCluster("test", nil, client, slog.New(slog.NewTextHandler(io.Discard, nil)))
	changed := make(chan struct{}, 100)
	ns, release := c.Watch("ns", func() { changed <- struct{}{} })
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ns.WaitSynced(ctx, nil); err != nil {
		t.Fatal(err)
	}
	target := config.Target{Kind: config.Pod, Name: "web-1"}
	if err := client.CoreV1().Pods("ns").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := ns.Resolve(target, config.Port{Number: 8080})
		if err != nil {
			if !strings.Contains(err.Error(), `pod "web-1" not found`) {
				t.Fatalf("after deletion: %v", err)
			}
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatal("deletion never seen")
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// Forwards sharing a namespace resolve concurrently, and the first to
// target a Deployment or a StatefulSet starts that informer while others
// read theirs: run under -race, this failed until every read of the
// informer map took the namespace's lock.
func TestResolveConcurrentlyWhileInformersStart(t *testing.T) {
	ns, ctx := syncedNamespace(t)
	tests := []struct {
		target config.Target
		port   config.Port
		want   string
	}{
		{config.Target{Kind: config.Service, Name: "web"}, config.Port{Number: 80}, "web-1:8080 web-2:8080"},
		{config.Target{Kind: config.Deployment, Name: "web"}, config.Port{Number: 8080}, "web-1:8080 web-2:8080"},
		{config.Target{Kind: config.StatefulSet, Name: "db"}, config.Port{Name: "pg"}, "db-0:5432"},
		{config.Target{Kind: config.Pod, Name: "web-1"}, config.Port{Number: 8080}, "web-1:8080"},
	}
	got := make([]string, len(tests))
	var wg sync.WaitGroup
	for i, tc := range tests {
		wg.Go(func() {
			for {
				eps, err := ns.Resolve(tc.target, tc.port)
				if errors.Is(err, ErrNotSynced) && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				var names []string
				for _, ep := range eps {
					names = append(names, ep.Pod+":"+itoa(ep.Port))
				}
				slices.Sort(names)
				got[i] = strings.Join(names, " ")
				if err != nil {
					got[i] = "error: " + err.Error()
				}
				return
			}
		})
	}
	wg.Wait()
	for i, tc := range tests {
		if got[i] != tc.want {
			t.Errorf("%s %s port %s: got %q, want %q", tc.target.Kind, tc.target.Name, tc.port, got[i], tc.want)
		}
	}
}

// syncedNamespace watches namespace "ns" of a fake cluster holding
// objects() and waits for its informers to sync. The watch and the
// returned context (10 s) end with the test.
func syncedNamespace(t *testing.T) (*Namespace, context.Context) {
	t.Helper()
	c := newCluster("test", nil, fake.NewClientset(objects()...), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ns, release := c.Watch("ns", nil)
	t.Cleanup(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if err := ns.WaitSynced(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return ns, ctx
}

// A snapshot lists the kinds every forward needs, and Deployments or
// StatefulSets only when a target is one (kpf doctor asks for no more
// than kpf up would watch).
func TestSnapshotListsEveryKind(t *testing.T) {
	snap, err := newCluster("test", nil, fake.NewClientset(objects()...), slog.New(slog.DiscardHandler)).
		Snapshot(context.Background(), "ns")
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Names(config.Pod); len(got) != 5 {
		t.Errorf("pods = %v, want 5", got)
	}
	// Without asking for them, deployments are not listed.
	if got := snap.Names(config.Deployment); len(got) != 0 {
		t.Errorf("deployments = %v, want none", got)
	}
}

func TestPermissions(t *testing.T) {
	str := func(ps []Permission) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.String())
		}
		return strings.Join(s, "; ")
	}
	base := "list services; watch services; list endpointslices.discovery.k8s.io; watch endpointslices.discovery.k8s.io; list pods; watch pods"
	pf := "get pods/portforward; create pods/portforward"
	if got, want := str(Permissions(config.Service, config.Selector)), base+"; "+pf; got != want {
		t.Errorf("services:\n got %s\nwant %s", got, want)
	}
	if got, want := str(Permissions(config.StatefulSet, config.Deployment)),
		base+"; list deployments.apps; watch deployments.apps; list statefulsets.apps; watch statefulsets.apps; "+pf; got != want {
		t.Errorf("workloads:\n got %s\nwant %s", got, want)
	}
}

func TestPortSpelling(t *testing.T) {
	ns, _ := syncedNamespace(t)
	svc := config.Target{Kind: config.Service, Name: "web"}
	pod := config.Target{Kind: config.Pod, Name: "web-1"}
	for _, tt := range []struct {
		name   string
		target config.Target
		remote config.Port
		want   config.Port
	}{
		{"service port by number", svc, config.Port{Number: 80}, config.Port{Number: 80, Name: "http"}},
		{"service port by name", svc, config.Port{Name: "admin"}, config.Port{Number: 9000, Name: "admin"}},
		{"container port by name", pod, config.Port{Name: "http"}, config.Port{Number: 8080, Name: "http"}},
		{"container port by number", pod, config.Port{Number: 8080}, config.Port{Number: 8080, Name: "http"}},
		{"unresolvable: as written", svc, config.Port{Number: 81}, config.Port{Number: 81}},
	} {
		eps, _ := ns.Resolve(tt.target, tt.remote)
		if got := ns.PortSpelling(tt.target, tt.remote, eps); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
