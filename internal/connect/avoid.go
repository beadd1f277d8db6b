package connect

import (
	"sync"
	"time"

	"github.com/kpf-dev/kpf/internal/kube"
)

// Avoid is a set of pods to avoid for new connections while others are
// ready, each until a time. Entries are dropped once their time has
// passed, so the set stays as small as the pods avoided now, however many
// pods come and go. The zero value is empty; a nil *Avoid avoids nothing.
// It is safe for concurrent use.
type Avoid struct {
	mu    sync.Mutex
	until map[avoidKey]time.Time
}

type avoidKey struct{ namespace, pod string }

// Mark avoids ep's pod for d from now (or longer, if it already was).
func (a *Avoid) Mark(ep kube.Endpoint, d time.Duration) {
	if a == nil {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.until == nil {
		a.until = map[avoidKey]time.Time{}
	}
	a.prune(now)
	k := avoidKey{ep.Namespace, ep.Pod}
	if until := now.Add(d); until.After(a.until[k]) {
		a.until[k] = until
	}
}

// Avoided reports whether ep's pod is avoided now.
func (a *Avoid) Avoided(ep kube.Endpoint) bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.until[avoidKey{ep.Namespace, ep.Pod}]
	return ok && time.Now().Before(until)
}

// Usable returns the endpoints of eps that are not avoided, or eps itself
// when every one is: a pod that failed is better than none.
func (a *Avoid) Usable(eps []kube.Endpoint) []kube.Endpoint {
	if a == nil {
		return eps
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.until) == 0 {
		return eps
	}
	a.prune(now)
	usable := eps[:0:0]
	for _, ep := range eps {
		if until, ok := a.until[avoidKey{ep.Namespace, ep.Pod}]; !ok || !now.Before(until) {
			usable = append(usable, ep)
		}
	}
	if len(usable) == 0 {
		return eps
	}
	return usable
}

// Len is how many pods are avoided now.
func (a *Avoid) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prune(time.Now())
	return len(a.until)
}

// prune drops the entries whose time has passed; a.mu is held.
func (a *Avoid) prune(now time.Time) {
	for k, until := range a.until {
		if !now.Before(until) {
			delete(a.until, k)
		}
	}
}
