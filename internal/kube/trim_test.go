package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/json"

	"github.com/kpf-dev/kpf/internal/config"
)

// A pod keeps what kpf reads and loses the rest; TestResolve, whose
// informers trim, shows that the rest is not needed.
func TestTrimPod(t *testing.T) {
	p := pod("web-0", true, map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(make([]byte, 4096))}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: string(make([]byte, 2048))}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
	got, err := trim(p)
	if err != nil {
		t.Fatal(err)
	}
	tp := got.(*corev1.Pod)
	after, _ := json.Marshal(tp)
	if !PodReady(tp) || tp.Labels["app"] != "web" || tp.UID != p.UID || tp.Name != "web-0" {
		t.Errorf("trimmed pod lost what kpf reads: %+v", tp)
	}
	if port, err := containerPort(tp, config.Port{Name: "http"}); err != nil || port != 8080 {
		t.Errorf("container port: %d, %v", port, err)
	}
	if tp.Annotations != nil || tp.ManagedFields != nil || len(tp.Spec.Containers) != 1 || tp.Spec.Containers[0].Env != nil || len(tp.Status.Conditions) != 1 {
		t.Errorf("trimmed pod kept what kpf does not read: %s", after)
	}
}
