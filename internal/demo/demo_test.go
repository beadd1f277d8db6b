package demo

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	coreac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/kpf-dev/kpf/internal/config"
)

// TestChecksAgainstBackends runs every smoke check straight against the
// backends (replica 1's port standing in for the forward's local port),
// so a check and its backend cannot drift apart.
func TestChecksAgainstBackends(t *testing.T) {
	b, err := StartBackends(t.Context(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, c := range Checks() {
		t.Run(c.Forward, func(t *testing.T) {
			ports := b.Ports[c.Forward]
			if len(ports) == 0 {
				t.Fatalf("no backend for forward %s", c.Forward)
			}
			for _, p := range ports {
				c.Port = p
				if r := c.Run(t.Context()); r.Err != nil {
					t.Errorf("port %d: %v", p, r.Err)
				}
			}
		})
	}
}

// TestChecksRejectOtherBackends makes sure a check fails when its port is
// served by another app's backend: the smoke test tells backends apart.
func TestChecksRejectOtherBackends(t *testing.T) {
	b, err := StartBackends(t.Context(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, c := range Checks() {
		for app, ports := range b.Ports {
			if app == c.Forward {
				continue
			}
			c.Port = ports[0]
			// A line backend may wait for input that never comes: give up
			// soon, that is a failed check too.
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			r := c.Run(ctx)
			cancel()
			if r.Err == nil {
				t.Errorf("check %s passed against the %s backend: %q", c.Forward, app, r.Answer)
			}
		}
	}
}

func TestBackendsClose(t *testing.T) {
	b, err := StartBackends(t.Context(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	for _, c := range Checks() {
		c.Port = b.Ports[c.Forward][0]
		if r := c.Run(t.Context()); r.Err == nil {
			t.Errorf("%s backend still answers after Close", c.Forward)
		}
	}
}

// TestMatchesForwardsYAML keeps the demo's workloads and checks in step with
// the repository's forwards.yaml: each forward reaches an app of the demo
// through the right kind, namespace and port, on the local port its check
// dials.
func TestMatchesForwardsYAML(t *testing.T) {
	cfg, _, err := config.Load(filepath.Join("..", "..", "forwards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Context != ForwardsContext {
		t.Errorf("forwards.yaml defaults.context = %q, the demo assumes %q", cfg.Defaults.Context, ForwardsContext)
	}
	byName := map[string]app{}
	for _, a := range apps() {
		byName[a.name] = a
	}
	checks := map[string]Check{}
	for _, c := range Checks() {
		checks[c.Forward] = c
	}
	if len(cfg.Forwards) != len(checks) {
		t.Errorf("forwards.yaml has %d forwards, the demo checks %d", len(cfg.Forwards), len(checks))
	}
	for _, f := range cfg.Forwards {
		c, ok := checks[f.Name]
		if !ok {
			t.Errorf("forward %s: no smoke check", f.Name)
			continue
		}
		if len(f.Ports) != 1 || int(f.Ports[0].Local) != c.Port {
			t.Errorf("forward %s: ports %v, check dials %d", f.Name, f.Ports, c.Port)
			continue
		}
		remote := f.Ports[0].Remote
		var a app
		switch f.Target.Kind {
		case config.Service:
			a, ok = byName[f.Target.Name]
			ok = ok && a.servicePort != 0 && remote.Name == a.portName
		case config.Deployment:
			a, ok = byName[f.Target.Name]
			ok = ok && a.kind == deployment && int32(remote.Number) == a.port
		case config.StatefulSet:
			a, ok = byName[f.Target.Name]
			ok = ok && a.kind == statefulSet && int32(remote.Number) == a.port
		case config.Selector:
			name, found := strings.CutPrefix(f.Target.Selector, "app=")
			a, ok = byName[name]
			ok = ok && found && int32(remote.Number) == a.port
		default:
			ok = false
		}
		if !ok || a.namespace != f.Namespace || a.name != f.Name {
			t.Errorf("forward %s (%s %s in %s) matches no demo app", f.Name, f.Target, remote, f.Namespace)
		}
	}
}

func TestObjects(t *testing.T) {
	for _, a := range apps() {
		ports := make([]int, a.replicas)
		for i := range ports {
			ports[i] = 40000 + i
		}
		o := a.objects(ports)
		var tmpl *coreac.PodTemplateSpecApplyConfiguration
		switch {
		case a.kind == deployment && o.deployment != nil && o.statefulSet == nil:
			tmpl = o.deployment.Spec.Template
		case a.kind == statefulSet && o.statefulSet != nil && o.deployment == nil && *o.statefulSet.Spec.ServiceName == a.name:
			tmpl = o.statefulSet.Spec.Template
		default:
			t.Errorf("%s: want exactly one workload of kind %d (statefulsets with serviceName %s)", a.name, a.kind, a.name)
			continue
		}
		key := forwardAnnotation + strconv.Itoa(int(a.port))
		want := "40000"
		if a.replicas == 2 {
			want = "40000,40001"
		}
		if got := tmpl.Annotations[key]; got != want {
			t.Errorf("%s: annotation %s = %q, want %q", a.name, key, got, want)
		}
		if got := tmpl.Spec.Containers[0].Ports[0]; *got.Name != a.portName || *got.ContainerPort != a.port {
			t.Errorf("%s: container port %s/%d, want %s/%d", a.name, *got.Name, *got.ContainerPort, a.portName, a.port)
		}
		if (o.service != nil) != (a.servicePort != 0) {
			t.Errorf("%s: service %v, want one: %v", a.name, o.service != nil, a.servicePort != 0)
		}
	}
}
