package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kpf-dev/kpf/internal/tunnel"
)

// realDialError is what dialing a loopback port nobody listens on gives.
func realDialError(t *testing.T) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = http.Get("https://" + addr + "/api")
	if err == nil {
		t.Fatal("dialing a closed port succeeded")
	}
	return err
}

// realTLSError is what a client that does not trust the server's CA gets.
func realTLSError(t *testing.T) error {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := (&http.Client{}).Get(srv.URL)
	if err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	return err
}

func TestExplain(t *testing.T) {
	cfg := &rest.Config{Host: "https://api.dev.example.com:6443"}
	withPlugin := &rest.Config{Host: cfg.Host, ExecProvider: &clientcmdapi.ExecConfig{Command: "kubelogin"}}
	at := `the API server https://api.dev.example.com:6443 of context "dev"`
	pods := schema.GroupResource{Resource: "pods"}
	tests := []struct {
		name  string
		err   error
		cfg   *rest.Config
		cause Cause
		want  string // the whole message
	}{
		{"refused", realDialError(t), cfg, CauseRefused,
			at + " refused the connection: is the cluster running, and your VPN or tunnel up?"},
		{"dns", fmt.Errorf("Get: %w", &net.DNSError{Err: "no such host", Name: "api.dev.example.com", IsNotFound: true}), cfg, CauseDNS,
			"cannot resolve api.dev.example.com, the host of " + at + ": is your VPN up, and does the cluster still exist?"},
		{"timeout", fmt.Errorf("list pods: %w", context.DeadlineExceeded), cfg, CauseTimeout,
			at + " did not answer in time: is your VPN up? (a firewall that drops packets looks like this too)"},
		{"stalled session", fmt.Errorf("probe: %w", &tunnel.StallError{Pod: tunnel.Pod{Namespace: "shop", Name: "web-0"}, Silence: 10 * time.Second}), cfg, CauseTimeout,
			at + " stopped answering: port-forward session to pod shop/web-0 stalled: no stream opened and no data moved on it for 10s: is your network or VPN up? (a laptop that slept, or a firewall that drops packets, looks like this too); kpf reconnects"},
		{"401 with a token", apierrors.NewUnauthorized("Unauthorized"), cfg, CauseCredentials,
			at + " rejected the credentials (401): they are expired, revoked or wrong; get new ones (your cluster's login tool rewrites the kubeconfig) and kpf retries"},
		{"401 with an exec plugin", apierrors.NewUnauthorized("Unauthorized"), withPlugin, CauseCredentials,
			at + ` rejected the credentials (401): they are expired, revoked or wrong; they come from the plugin "kubelogin": run your cluster's login command (e.g. aws sso login, gcloud auth login, az login, kubelogin) and kpf retries`},
		{"exec plugin fails", errors.New(`Get "https://api.dev.example.com:6443/api": getting credentials: exec: executable kubelogin failed with exit code 1`), withPlugin, CauseCredPlugin,
			`the credential plugin "kubelogin" of context "dev" failed: exec: executable kubelogin failed with exit code 1 (run your cluster's login command, or the plugin by hand to see why)`},
		{"403", apierrors.NewForbidden(pods, "", errors.New(`User "alice" cannot list resource "pods" in API group "" in the namespace "shop"`)), cfg, CauseForbidden,
			at + `: permission denied: pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "shop" (ask for the role in kpf's docs/rbac.md)`},
		{"404", apierrors.NewNotFound(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, ""), cfg, CauseNotFound,
			at + ` does not serve an API kpf needs: endpointslices.discovery.k8s.io "" not found (kpf needs Kubernetes 1.21 or later, with discovery.k8s.io/v1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(tt.err, "dev", tt.cfg)
			ce, ok := errors.AsType[*ClusterError](got)
			if !ok {
				t.Fatalf("Explain(%v) = %v, not a *ClusterError", tt.err, got)
			}
			if ce.Cause != tt.cause || got.Error() != tt.want {
				t.Errorf("Explain(%v)\n= %s: %s\nwant %s: %s", tt.err, ce.Cause, got, tt.cause, tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Error("the original error is not wrapped")
			}
			if errors.Is(got, ErrUnauthorized) != (tt.cause == CauseCredentials) {
				t.Errorf("wraps ErrUnauthorized: %v", errors.Is(got, ErrUnauthorized))
			}
			if Explain(got, "dev", tt.cfg) != got {
				t.Error("explaining twice changed the error")
			}
		})
	}

	t.Run("tls", func(t *testing.T) {
		got := Explain(realTLSError(t), "dev", cfg)
		ce, ok := errors.AsType[*ClusterError](got)
		if !ok || ce.Cause != CauseTLSAuthority || !strings.HasPrefix(got.Error(), at+": its certificate is signed by an authority the kubeconfig does not trust") {
			t.Errorf("Explain(untrusted certificate) = %v", got)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		e := errors.New("something else")
		if got := Explain(e, "dev", cfg); got != e {
			t.Errorf("Explain(unknown) = %v, want it unchanged", got)
		}
		if Explain(nil, "dev", cfg) != nil {
			t.Error("Explain(nil) is not nil")
		}
	})
}

// A refused port-forward upgrade, as the API server answers one to a user
// without create on pods/portforward: the dialer keeps only its sentence.
func TestNamespaceExplainRefusedUpgrade(t *testing.T) {
	c := newCluster("dev", &rest.Config{Host: "https://dev.example:6443"}, nil, slog.New(slog.DiscardHandler))
	n := &Namespace{cluster: c, name: "shop"}
	sentence := `pods "web-0" is forbidden: User "system:serviceaccount:shop:kpf" cannot create resource "pods/portforward" in API group "" in the namespace "shop"`
	err := fmt.Errorf("port-forward to pod shop/web-0: unable to upgrade connection: %s", sentence)
	got := n.Explain(err)
	ce, ok := errors.AsType[*ClusterError](got)
	if !ok || ce.Cause != CauseForbidden {
		t.Fatalf("Explain = %v, want a CauseForbidden ClusterError", got)
	}
	want := `the API server https://dev.example:6443 of context "dev": permission denied: create pods/portforward in namespace "shop" is not allowed for your user (` +
		sentence + `); ask for the role in kpf's docs/rbac.md`
	if got.Error() != want {
		t.Errorf("Explain =\n%s\nwant\n%s", got, want)
	}
	// Another failed upgrade is not a permission problem.
	if got := n.Explain(errors.New("unable to upgrade connection: container not found")); errors.Is(got, ErrUnauthorized) || strings.Contains(got.Error(), "permission denied") {
		t.Errorf("Explain(container not found) = %v", got)
	}
}
