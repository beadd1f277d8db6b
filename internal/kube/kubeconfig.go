// Package kube gives kpf its view of the clusters: a client per kube context
// from the user's own kubeconfig, shared informers per (context, namespace)
// started only while some forward needs them, and the resolution of a
// forward's target to the ready endpoints it may use. It reads listers only;
// it never lists the API on an event.
package kube

import (
	"errors"
	"fmt"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig is the user's kubeconfig, loaded with kubectl's rules: an
// explicit path, else the KUBECONFIG list, else ~/.kube/config. Exec
// credential plugins and auth providers work as they do in kubectl.
type Kubeconfig struct {
	loader *clientcmdLoadingRules
	path   string

	mu  sync.Mutex
	raw *clientcmdapi.Config
}

// LoadKubeconfig reads the kubeconfig; path overrides the KUBECONFIG
// environment variable when non-empty.
func LoadKubeconfig(path string) (*Kubeconfig, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	k := &Kubeconfig{loader: rules, path: path}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads the kubeconfig files again, so that contexts added after
// start are found.
func (k *Kubeconfig) Reload() error {
	raw, err := k.loader.Load()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	k.mu.Lock()
	k.raw = raw
	k.mu.Unlock()
	return nil
}

// CurrentContext is the kubeconfig's current-context, or "" if none is set.
func (k *Kubeconfig) CurrentContext() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.raw.CurrentContext
}

// clientcmdLoadingRules are kubectl's rules for finding the kubeconfig.
type clientcmdLoadingRules = clientcmd.ClientConfigLoadingRules

// ErrNoContext is wrapped by the error (a *ContextError) for a context
// that the kubeconfig does not define, or for any context when no
// kubeconfig was found.
var ErrNoContext = errors.New("context not found in kubeconfig")

// ResolveContext returns name, or the current context when name is empty.
func (k *Kubeconfig) ResolveContext(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	if cur := k.CurrentContext(); cur != "" {
		return cur, nil
	}
	return "", k.contextError("")
}

// RESTConfig builds the client configuration of one context.
func (k *Kubeconfig) RESTConfig(context string) (*rest.Config, error) {
	k.mu.Lock()
	raw := k.raw
	k.mu.Unlock()
	if _, ok := raw.Contexts[context]; !ok {
		return nil, k.contextError(context)
	}
	cc := clientcmd.NewNonInteractiveClientConfig(*raw, context, &clientcmd.ConfigOverrides{}, k.loader)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", context, err)
	}
	return cfg, nil
}

// ErrUnauthorized means the API server rejected the context's credentials
// (HTTP 401): a revoked or expired token, an unknown client certificate.
// Only the user can fix it; kpf keeps retrying with backoff meanwhile.
var ErrUnauthorized = errors.New("unauthorized")

// Files returns the kubeconfig files kubectl's rules look at, in order
// (--kubeconfig, else the KUBECONFIG list, else ~/.kube/config), and
// those of them that exist.
func (k *Kubeconfig) Files() (found, searched []string) {
	e := k.contextError("")
	return e.Found, e.Searched
}

// Contexts returns the names of the contexts the kubeconfig defines,
// sorted.
func (k *Kubeconfig) Contexts() []string {
	return k.contextError("").Contexts
}
