package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Annotations the local cluster's node agent reads (see
// test/cluster/nodeagent): forwardAnnotation+"<containerPort>" names the
// loopback port, or a comma list of ports one per replica, that a
// port-forward to that container port reaches.
const forwardAnnotation = "test.kpf.dev/forward-"

// fieldManager owns the fields the demo applies (server-side apply).
const fieldManager = "kpf-demo"

// Namespaces the demo uses.
const (
	nsDemo = "demo"
	nsData = "demo-data"
)

// workloadKind is the controller that runs an app's pods.
type workloadKind int

const (
	deployment workloadKind = iota
	statefulSet
)

// app is one demo workload: its pods, the Service in front of it (if any)
// and the backend that stands in for its container.
type app struct {
	name      string
	namespace string
	kind      workloadKind
	replicas  int
	// portName and port are the container port the forwards reach.
	portName string
	port     int32
	// servicePort, when non-zero, puts a Service named like the app in
	// front of it, with a port named portName that targets the container
	// port by name. headless makes it a headless Service.
	servicePort int32
	headless    bool
	serve       func(replica int) server
}

// apps returns the demo's workloads, matching forwards.yaml: web (service,
// port named http), api (deployment, port 8080), echo (service, port named
// tcp), db (statefulset, port 5432) and metrics (pods labelled app=metrics
// in demo-data, port 9090).
func apps() []app {
	return []app{
		{name: "web", namespace: nsDemo, kind: deployment, replicas: 2, portName: "http", port: 8080, servicePort: 80, serve: serveWeb},
		{name: "api", namespace: nsDemo, kind: deployment, replicas: 2, portName: "http", port: 8080, serve: serveAPI},
		{name: "echo", namespace: nsDemo, kind: deployment, replicas: 2, portName: "tcp", port: 7000, servicePort: 7000, serve: serveEcho},
		{name: "db", namespace: nsDemo, kind: statefulSet, replicas: 1, portName: "postgres", port: 5432, servicePort: 5432, headless: true, serve: serveDB},
		{name: "metrics", namespace: nsData, kind: deployment, replicas: 1, portName: "metrics", port: 9090, serve: serveMetrics},
	}
}

func (a app) labels() map[string]string {
	return map[string]string{"app": a.name, "app.kubernetes.io/part-of": "kpf-demo"}
}

// podTemplate is the app's pod template; backendPorts are the loopback
// ports of its replicas' backends, in replica order.
func (a app) podTemplate(backendPorts []int) *coreac.PodTemplateSpecApplyConfiguration {
	ports := make([]string, len(backendPorts))
	for i, p := range backendPorts {
		ports[i] = strconv.Itoa(p)
	}
	return coreac.PodTemplateSpec().
		WithLabels(a.labels()).
		WithAnnotations(map[string]string{forwardAnnotation + strconv.Itoa(int(a.port)): strings.Join(ports, ",")}).
		WithSpec(coreac.PodSpec().
			// Nothing runs the image: the node agent only reports the pod
			// Running and forwards its port to a loopback backend.
			WithContainers(coreac.Container().
				WithName(a.name).
				WithImage("kpf.invalid/demo/" + a.name + ":none").
				WithPorts(coreac.ContainerPort().WithName(a.portName).WithContainerPort(a.port))))
}

// objects is what the demo applies for one app.
type objects struct {
	service     *coreac.ServiceApplyConfiguration
	deployment  *appsac.DeploymentApplyConfiguration
	statefulSet *appsac.StatefulSetApplyConfiguration
}

func (a app) objects(backendPorts []int) objects {
	var o objects
	if a.servicePort != 0 {
		spec := coreac.ServiceSpec().
			WithSelector(map[string]string{"app": a.name}).
			WithPorts(coreac.ServicePort().WithName(a.portName).WithPort(a.servicePort).WithTargetPort(intstr.FromString(a.portName)))
		if a.headless {
			spec.WithClusterIP("None")
		}
		o.service = coreac.Service(a.name, a.namespace).WithLabels(a.labels()).WithSpec(spec)
	}
	selector := metaac.LabelSelector().WithMatchLabels(map[string]string{"app": a.name})
	switch a.kind {
	case deployment:
		o.deployment = appsac.Deployment(a.name, a.namespace).WithLabels(a.labels()).WithSpec(appsac.DeploymentSpec().
			WithReplicas(int32(a.replicas)).WithSelector(selector).WithTemplate(a.podTemplate(backendPorts)))
	case statefulSet:
		o.statefulSet = appsac.StatefulSet(a.name, a.namespace).WithLabels(a.labels()).WithSpec(appsac.StatefulSetSpec().
			WithServiceName(a.name).WithReplicas(int32(a.replicas)).WithSelector(selector).WithTemplate(a.podTemplate(backendPorts)))
	}
	return o
}

// applyAll creates or updates (server-side apply, so running it again is a
// no-op unless the backend ports changed) the namespaces and every app's
// objects.
func applyAll(ctx context.Context, client kubernetes.Interface, backendPorts map[string][]int) error {
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	for _, ns := range []string{nsDemo, nsData} {
		if _, err := client.CoreV1().Namespaces().Apply(ctx, coreac.Namespace(ns), opts); err != nil {
			return fmt.Errorf("apply namespace %s: %w", ns, err)
		}
	}
	for _, a := range apps() {
		o := a.objects(backendPorts[a.name])
		if o.service != nil {
			if _, err := client.CoreV1().Services(a.namespace).Apply(ctx, o.service, opts); err != nil {
				return fmt.Errorf("apply service %s/%s: %w", a.namespace, a.name, err)
			}
		}
		if o.deployment != nil {
			if _, err := client.AppsV1().Deployments(a.namespace).Apply(ctx, o.deployment, opts); err != nil {
				return fmt.Errorf("apply deployment %s/%s: %w", a.namespace, a.name, err)
			}
		}
		if o.statefulSet != nil {
			if _, err := client.AppsV1().StatefulSets(a.namespace).Apply(ctx, o.statefulSet, opts); err != nil {
				return fmt.Errorf("apply statefulset %s/%s: %w", a.namespace, a.name, err)
			}
		}
	}
	return nil
}

// waitReady polls until every app has rolled out (all replicas updated and
// ready) and every Service has one ready endpoint per replica, or timeout
// passes; the error then says what was still missing.
func waitReady(ctx context.Context, client kubernetes.Interface, timeout time.Duration, log *slog.Logger) error {
	var pending error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var errs []error
		for _, a := range apps() {
			if err := appReady(ctx, client, a); err != nil {
				errs = append(errs, err)
			}
		}
		if p := errors.Join(errs...); p != nil && (pending == nil || p.Error() != pending.Error()) {
			log.Debug("waiting for the demo workloads", "pending", p.Error())
			pending = p
		}
		return len(errs) == 0, nil
	})
	switch {
	case err == nil:
		return nil
	case pending != nil:
		return fmt.Errorf("wait for the demo workloads: %w; still waiting for: %w", err, pending)
	default:
		return fmt.Errorf("wait for the demo workloads: %w", err)
	}
}

// appReady returns nil when a has rolled out and its Service (if any) has
// a ready endpoint per replica, or an error that says what is missing.
func appReady(ctx context.Context, client kubernetes.Interface, a app) error {
	want := int32(a.replicas)
	switch a.kind {
	case deployment:
		d, err := client.AppsV1().Deployments(a.namespace).Get(ctx, a.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("deployment %s/%s: %w", a.namespace, a.name, err)
		}
		if !deploymentRolledOut(d, want) {
			return fmt.Errorf("deployment %s/%s: %d of %d replicas updated and ready (%d in all)",
				a.namespace, a.name, min(d.Status.UpdatedReplicas, d.Status.ReadyReplicas), want, d.Status.Replicas)
		}
	case statefulSet:
		s, err := client.AppsV1().StatefulSets(a.namespace).Get(ctx, a.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("statefulset %s/%s: %w", a.namespace, a.name, err)
		}
		if !statefulSetRolledOut(s, want) {
			return fmt.Errorf("statefulset %s/%s: %d of %d replicas updated and ready",
				a.namespace, a.name, min(s.Status.UpdatedReplicas, s.Status.ReadyReplicas), want)
		}
	}
	if a.servicePort == 0 {
		return nil
	}
	slices, err := client.DiscoveryV1().EndpointSlices(a.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + a.name,
	})
	if err != nil {
		return fmt.Errorf("endpoints of service %s/%s: %w", a.namespace, a.name, err)
	}
	var ready int32
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				ready++
			}
		}
	}
	if ready != want {
		return fmt.Errorf("service %s/%s: %d of %d endpoints ready", a.namespace, a.name, ready, want)
	}
	return nil
}

func deploymentRolledOut(d *appsv1.Deployment, want int32) bool {
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.Replicas == want && s.UpdatedReplicas == want && s.ReadyReplicas == want
}

func statefulSetRolledOut(st *appsv1.StatefulSet, want int32) bool {
	s := st.Status
	return s.ObservedGeneration >= st.Generation && s.Replicas == want && s.UpdatedReplicas == want &&
		s.ReadyReplicas == want && s.CurrentRevision == s.UpdateRevision
}
