package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/pkg/control"
	"github.com/kpf-dev/kpf/pkg/forward"
)

// kpfStatus runs `kpf status -o json -f config` and decodes it.
func kpfStatus(t *testing.T, s *suite, config string) (control.Snapshot, int) {
	t.Helper()
	out, err := exec.Command(s.kpf, "status", "-o", "json", "-f", config).Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var snap control.Snapshot
	if code != 3 && len(out) > 0 {
		if err := json.Unmarshal(out, &snap); err != nil {
			t.Fatalf("kpf status -o json: %v\n%s", err, out)
		}
	}
	return snap, code
}

func statusOf(snap control.Snapshot, name string) forward.Status {
	for _, f := range snap.Forwards {
		if f.Name == name {
			return f
		}
	}
	return forward.Status{}
}

// kpf status follows a pod deletion (ready on one pod, then ready on
// another) and reports a failed forward with its reason; with no kpf up
// running it says so and exits 3.
func TestE2EStatusFollowsPodsAndFailures(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "status")
	deployEcho(t, s.primary, ns, 2, startBackend(t, "a"), startBackend(t, "b"))
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults:
  context: e2e
  namespace: %s
forwards:
  - name: echo
    service: echo
    ports: ["%d:80"]
  - name: broken
    service: nope
    ports: ["%d:80"]
`, ns, freePort(t), freePort(t)))
	if _, code := kpfStatus(t, s, cfg); code != 3 {
		t.Fatalf("kpf status with no kpf up: exit %d, want 3", code)
	}
	startKpf(t, s, cfg)
	snap, code := kpfStatus(t, s, cfg)
	if code != 1 {
		t.Errorf("kpf status with a failed forward: exit %d, want 1", code)
	}
	echo, broken := statusOf(snap, "echo"), statusOf(snap, "broken")
	if echo.State != forward.StateReady || echo.Pod == "" {
		t.Fatalf("echo: %+v, want ready on a pod", echo)
	}
	if broken.State != forward.StateFailed || !strings.Contains(broken.Reason, `service "nope" not found`) {
		t.Fatalf("broken: %+v, want failed with the reason", broken)
	}
	if echo.Target != "e2e/"+ns+"/svc/echo" || len(echo.Ports) != 1 {
		t.Errorf("echo target/ports: %q %+v", echo.Target, echo.Ports)
	}

	first := echo.Pod
	kubectlE2E(t, s, "-n", ns, "delete", "pod", first, "--wait=false")
	waitUntil(t, 30*time.Second, "status to show echo ready on another pod", func(context.Context) (bool, error) {
		snap, _ := kpfStatus(t, s, cfg)
		e := statusOf(snap, "echo")
		return e.State == forward.StateReady && e.Pod != "" && e.Pod != first, nil
	})
	table, _ := exec.Command(s.kpf, "status", "-f", cfg).Output()
	for _, want := range []string{"FORWARD", "echo", "ready", "broken", "failed", `service "nope" not found`} {
		if !strings.Contains(string(table), want) {
			t.Errorf("kpf status table lacks %q:\n%s", want, table)
		}
	}
}
