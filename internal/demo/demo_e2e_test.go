package demo

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// e2eCluster is the local cluster the end-to-end test uses. forwards.yaml
// names context "kpf"; Run hands kpf a copy of this cluster's kubeconfig
// with its context renamed, so the test never touches the cluster "kpf"
// that `go tool -modfile=tools/go.mod task demo` uses.
const e2eCluster = "demo-e2e"

// TestDemoE2E runs the demo with --smoke semantics on a real local cluster
// and checks that each of forwards.yaml's five local ports answers from its
// own backend. It starts the cluster demo-e2e and stops it at the end, or
// reuses it and leaves it running if it was running already.
func TestDemoE2E(t *testing.T) {
	if os.Getenv("KPF_E2E") != "1" {
		t.Skip("end-to-end test: set KPF_E2E=1 to run it (it starts the local cluster demo-e2e; the first build takes 10-15 minutes)")
	}
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	out := t.Output()
	c, err := UpCluster(t.Context(), repo, e2eCluster, out)
	if err != nil {
		t.Fatal(err)
	}
	if c.AlreadyRunning {
		t.Logf("reusing the running cluster %s; leaving it running", c.Name)
	} else {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := DownCluster(ctx, repo, c.Name, out); err != nil {
				t.Errorf("stop the cluster: %v", err)
			}
		})
	}

	results, err := Run(t.Context(), c, Options{
		Repo:   repo,
		Smoke:  true,
		Stdin:  strings.NewReader(""),
		Stdout: out,
		Stderr: out,
		Log:    slog.New(slog.NewTextHandler(out, nil)),
	})
	if err != nil {
		t.Error(err)
	}
	// What each forward's backend says, independently of the checks' own
	// verdicts.
	want := map[string]string{
		"web":     "web backend ",
		"api":     `{"service":"api","backend":`,
		"echo":    "echo backend ",
		"db":      "db: select 1",
		"metrics": `kpf_demo_backend_info{service="metrics"`,
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(results), len(want), results)
	}
	for _, r := range results {
		prefix, ok := want[r.Forward]
		switch {
		case !ok:
			t.Errorf("unexpected forward %s", r.Forward)
		case r.Err != nil:
			t.Errorf("%s on %s: %v", r.Forward, r.Addr, r.Err)
		case !strings.HasPrefix(r.Answer, prefix):
			t.Errorf("%s on %s answered %q, want it to start with %q", r.Forward, r.Addr, r.Answer, prefix)
		}
		delete(want, r.Forward)
	}
}
