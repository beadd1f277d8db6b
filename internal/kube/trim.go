package kube

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trim is the informers' transform: it keeps of each object only what kpf
// reads, before the object enters the cache. A pod as the API server
// sends it carries its managed fields, annotations, volumes, environment,
// images and statuses per container, typically 5-20 KB, of which kpf
// reads its name, labels, readiness and container ports; every watched
// namespace's pods were held whole, whatever the forwards used.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return trimPod(o), nil
	case *appsv1.Deployment:
		return &appsv1.Deployment{ObjectMeta: trimMeta(o.ObjectMeta), Spec: appsv1.DeploymentSpec{Selector: o.Spec.Selector}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{ObjectMeta: trimMeta(o.ObjectMeta), Spec: appsv1.StatefulSetSpec{Selector: o.Spec.Selector}}, nil
	case metav1.Object:
		// Services and EndpointSlices are read whole but for the
		// metadata kpf never reads.
		o.SetManagedFields(nil)
		o.SetAnnotations(nil)
		return obj, nil
	}
	return obj, nil
}

// trimMeta keeps the identity, labels and deletion mark of an object.
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, DeletionTimestamp: m.DeletionTimestamp,
	}
}

// trimPod keeps what PodReady, containerPort and label selection read.
func trimPod(p *corev1.Pod) *corev1.Pod {
	t := &corev1.Pod{ObjectMeta: trimMeta(p.ObjectMeta)}
	t.Status.Phase = p.Status.Phase
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			t.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return t
}
