package kube

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/kpf-dev/kpf/internal/suggest"
)

// ContextError is the error for a context kpf cannot use because the
// kubeconfig does not define it, or because no kubeconfig was found at
// all. It says where kpf looked and what it found, and wraps ErrNoContext.
type ContextError struct {
	// Context is the context asked for; "" when none was named and the
	// kubeconfig has no current-context.
	Context string
	// Searched are the kubeconfig files kubectl's rules look at, in order:
	// --kubeconfig, else the KUBECONFIG list, else ~/.kube/config.
	Searched []string
	// FromEnv is true when Searched came from $KUBECONFIG.
	FromEnv bool
	// Found are the files of Searched that exist.
	Found []string
	// Contexts are the contexts the files define, sorted.
	Contexts []string
}

func (e *ContextError) Unwrap() error { return ErrNoContext }

func (e *ContextError) Error() string {
	var b strings.Builder
	switch {
	case len(e.Found) == 0:
		if e.Context != "" {
			fmt.Fprintf(&b, "context %q: ", e.Context)
		}
		fmt.Fprintf(&b, "no kubeconfig found (looked for %s)", e.where())
		b.WriteString("; point KUBECONFIG or --kubeconfig at one, or create ~/.kube/config (your cluster's login tool writes it)")
	case e.Context == "":
		fmt.Fprintf(&b, "no context given and the kubeconfig (%s) has no current-context", strings.Join(e.Found, ", "))
		e.listContexts(&b)
		b.WriteString("; set defaults.context in forwards.yaml, pass --context, or run kubectl config use-context NAME")
	default:
		fmt.Fprintf(&b, "context %q is not in the kubeconfig (%s)", e.Context, strings.Join(e.Found, ", "))
		e.listContexts(&b)
		if s := suggest.Closest(e.Context, e.Contexts); s != "" {
			fmt.Fprintf(&b, "; did you mean %q?", s)
		}
	}
	return b.String()
}

// where describes Searched for a message.
func (e *ContextError) where() string {
	files := strings.Join(e.Searched, ", ")
	if e.FromEnv {
		return "the files of $KUBECONFIG: " + files
	}
	return files
}

func (e *ContextError) listContexts(b *strings.Builder) {
	switch n := len(e.Contexts); {
	case n == 0:
		b.WriteString(", which defines no context")
	case n <= 10:
		fmt.Fprintf(b, ", which defines %s", strings.Join(e.Contexts, ", "))
	default:
		fmt.Fprintf(b, ", which defines %d contexts: %s, ...", n, strings.Join(e.Contexts[:10], ", "))
	}
}

// contextError describes why context cannot be used, from the loading
// rules' search list and the merged kubeconfig's contexts.
func (k *Kubeconfig) contextError(context string) *ContextError {
	k.mu.Lock()
	raw := k.raw
	k.mu.Unlock()
	e := &ContextError{Context: context}
	if k.loader != nil {
		e.Searched = k.loader.GetLoadingPrecedence()
		e.FromEnv = k.loader.ExplicitPath == "" && os.Getenv("KUBECONFIG") != ""
	}
	for _, f := range e.Searched {
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() {
			e.Found = append(e.Found, f)
		}
	}
	if raw != nil {
		for name := range raw.Contexts {
			e.Contexts = append(e.Contexts, name)
		}
		slices.Sort(e.Contexts)
	}
	return e
}
