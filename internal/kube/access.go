package kube

import (
	"context"
	"fmt"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpf-dev/kpf/internal/config"
)

// Permission is one verb on one resource of a namespace, as RBAC names it.
type Permission struct {
	Verb, Group, Resource, Subresource string
}

// String is "VERB RESOURCE[/SUBRESOURCE][.GROUP]", as kubectl auth can-i
// takes it.
func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions returns what kpf needs in a namespace whose forwards target
// the given kinds: list and watch on the services, EndpointSlices and pods
// its informers cache (and Deployments or StatefulSets when a target is
// one), and get and create on pods/portforward (a WebSocket port-forward
// is a GET, which API servers from 1.31 also check as create; SPDY is a
// POST). docs/rbac.md is the Role that grants exactly these.
func Permissions(kinds ...config.TargetKind) []Permission {
	var ps []Permission
	watch := func(group, resource string) {
		for _, verb := range []string{"list", "watch"} {
			ps = append(ps, Permission{Verb: verb, Group: group, Resource: resource})
		}
	}
	watch("", "services")
	watch("discovery.k8s.io", "endpointslices")
	watch("", "pods")
	if slices.Contains(kinds, config.Deployment) {
		watch("apps", "deployments")
	}
	if slices.Contains(kinds, config.StatefulSet) {
		watch("apps", "statefulsets")
	}
	for _, verb := range []string{"get", "create"} {
		ps = append(ps, Permission{Verb: verb, Resource: "pods", Subresource: "portforward"})
	}
	return ps
}

// RelayPermissions is what kpf's relay needs, in the namespace it runs in,
// besides Permissions: create, get, list and delete on Jobs. docs/relay.md
// is the Role that grants them.
func RelayPermissions() []Permission {
	var ps []Permission
	for _, verb := range []string{"create", "get", "list", "delete"} {
		ps = append(ps, Permission{Verb: verb, Group: "batch", Resource: "jobs"})
	}
	return ps
}

// Denied asks the API server, with one SelfSubjectAccessReview per
// permission, which of perms the context's user lacks in namespace ns, and
// returns those (in the order given) with the authorizer's reason for each
// when it gave one. Creating a SelfSubjectAccessReview changes nothing in
// the cluster; every authenticated user may, by the system:basic-user role.
func (c *Cluster) Denied(ctx context.Context, ns string, perms []Permission) ([]Permission, []string, error) {
	var denied []Permission
	var reasons []string
	for _, p := range perms {
		r, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, nil, Explain(fmt.Errorf("ask whether you may %s in namespace %q: %w", p, ns, err), c.Name, c.Config)
		}
		if !r.Status.Allowed {
			denied = append(denied, p)
			reasons = append(reasons, r.Status.Reason)
		}
	}
	return denied, reasons, nil
}

// WhoAmI returns the user name the API server sees for the context's
// credentials, with a SelfSubjectReview (Kubernetes 1.28 and later). It
// runs the exec credential plugin if the context has one. On an older API
// server, which lacks that API, it checks the credentials with a
// SelfSubjectAccessReview instead and returns "" for the name.
func (c *Cluster) WhoAmI(ctx context.Context) (string, error) {
	r, err := c.Client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", Explain(err, c.Name, c.Config)
		}
		return "", nil
	}
	if err != nil {
		return "", Explain(err, c.Name, c.Config)
	}
	return r.Status.UserInfo.Username, nil
}
