package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Container ports of the stand-in pods; the node agent maps a port-forward
// to container port P onto the loopback port in the pod's annotation
// test.kpf.dev/forward-P.
const (
	sinkContainerPort  = 9000
	httpContainerPort  = 8080
	forwardAnnotation  = "test.kpf.dev/forward-"
	assignedAnnotation = "test.kpf.dev/assigned-forward-"
)

// Names of the objects in the main namespace.
const (
	mainService = "sink" // ports 80 (source/sink) and 8080 (HTTP)
	mainApp     = "backend"
	rcService   = "rc" // port 80, two replicas
	scaleApp    = "scale"
)

// podTemplate is a pod labelled app=app whose container ports sink (9000)
// and, when httpPort is non-zero, http (8080) reach the loopback ports
// given. sinkPorts may be a comma list: one entry per replica.
func podTemplate(app, sinkPorts string, httpPort int) corev1.PodTemplateSpec {
	ann := map[string]string{forwardAnnotation + strconv.Itoa(sinkContainerPort): sinkPorts}
	ports := []corev1.ContainerPort{{Name: "sink", ContainerPort: sinkContainerPort}}
	if httpPort != 0 {
		ann[forwardAnnotation+strconv.Itoa(httpContainerPort)] = strconv.Itoa(httpPort)
		ports = append(ports, corev1.ContainerPort{Name: "http", ContainerPort: httpContainerPort})
	}
	grace := int64(2)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}, Annotations: ann},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "main", Image: "kpf.dev/bench:latest", Ports: ports}},
		},
	}
}

// createDeployment creates Deployment name with the template.
func createDeployment(ctx context.Context, client kubernetes.Interface, ns, name string, replicas int32, tmpl corev1.PodTemplateSpec) error {
	_, err := client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: tmpl,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create deployment %s/%s: %w", ns, name, err)
	}
	return nil
}

// createService creates Service name selecting app=app; ports maps each
// service port to the named container port.
func createService(ctx context.Context, client kubernetes.Interface, ns, name, app string, ports map[int32]string) error {
	var sp []corev1.ServicePort
	for port, target := range ports {
		sp = append(sp, corev1.ServicePort{Name: target, Port: port, TargetPort: intstr.FromString(target)})
	}
	_, err := client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": app}, Ports: sp},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s/%s: %w", ns, name, err)
	}
	return nil
}

// freshNamespace deletes namespace ns if it exists (a leftover of an
// interrupted run), waits for it to be gone, creates it and waits for its
// default service account.
func freshNamespace(ctx context.Context, client kubernetes.Interface, ns string, log *slog.Logger) error {
	if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		log.Info("deleting a leftover namespace", "namespace", ns)
		if err := deleteNamespace(ctx, client, ns, 3*time.Minute); err != nil {
			return err
		}
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return poll(ctx, time.Minute, "default service account in "+ns, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// deleteNamespace deletes ns and waits up to timeout for it to be gone.
func deleteNamespace(ctx context.Context, client kubernetes.Interface, ns string, timeout time.Duration) error {
	err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	return poll(ctx, timeout, "namespace "+ns+" to be gone", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// readyEndpoints returns the pods behind the service's ready endpoints.
func readyEndpoints(ctx context.Context, client kubernetes.Interface, ns, svc string) ([]string, error) {
	slices, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, fmt.Errorf("list endpoint slices of %s/%s: %w", ns, svc, err)
	}
	seen := map[string]bool{}
	var pods []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && ep.TargetRef != nil && !seen[ep.TargetRef.Name] {
				seen[ep.TargetRef.Name] = true
				pods = append(pods, ep.TargetRef.Name)
			}
		}
	}
	return pods, nil
}

// waitEndpoints waits until the service has exactly n ready endpoints and
// no pod of app=app is terminating.
func waitEndpoints(ctx context.Context, client kubernetes.Interface, ns, svc, app string, n int, timeout time.Duration) error {
	return poll(ctx, timeout, fmt.Sprintf("%d ready endpoints of %s/%s", n, ns, svc), func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, client, ns, svc)
		if err != nil || len(pods) != n {
			return false, nil
		}
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, nil
		}
		return len(list.Items) == n, nil
	})
}

// livePod returns the first pod of app=app, not being deleted, that ok
// accepts, or what describes the pods it wanted.
func livePod(ctx context.Context, client kubernetes.Interface, ns, app, want string, ok func(*corev1.Pod) bool) (string, error) {
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return "", fmt.Errorf("list pods of %s/%s: %w", ns, app, err)
	}
	for i := range list.Items {
		if p := &list.Items[i]; p.DeletionTimestamp == nil && ok(p) {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no live pod of %s/%s %s", ns, app, want)
}

// podServing returns the live pod of app=app whose sink port is assigned
// the loopback port.
func podServing(ctx context.Context, client kubernetes.Interface, ns, app string, port int) (string, error) {
	key, want := assignedAnnotation+strconv.Itoa(sinkContainerPort), strconv.Itoa(port)
	return livePod(ctx, client, ns, app, "serves backend port "+want, func(p *corev1.Pod) bool {
		return strings.TrimSpace(p.Annotations[key]) == want
	})
}

// runningPod returns a live, running pod of app=app.
func runningPod(ctx context.Context, client kubernetes.Interface, ns, app string) (string, error) {
	return livePod(ctx, client, ns, app, "is running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
}

// deletePod deletes the pod with its grace period.
func deletePod(ctx context.Context, client kubernetes.Interface, ns, name string) error {
	if err := client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// poll calls cond every 100 ms until it is true, it fails, ctx is done or
// timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, cond wait.ConditionWithContextFunc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	return nil
}
