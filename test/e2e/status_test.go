//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/control"
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

func statusOf(snap control.Snapshot, name string) control.Forward {
	for _, f := range snap.Forwards {
		if f.Name == name {
			return f
		}
	}
	return control.Forward{}
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
	if echo.State != control.StateReady || echo.Pod == "" {
		t.Fatalf("echo: %+v, want ready on a pod", echo)
	}
	if broken.State != control.StateFailed || !strings.Contains(broken.Reason, `service "nope" not found`) {
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
		return e.State == control.StateReady && e.Pod != "" && e.Pod != first, nil
	})
	table, _ := exec.Command(s.kpf, "status", "-f", cfg).Output()
	for _, want := range []string{"FORWARD", "echo", "ready", "broken", "failed", `service "nope" not found`} {
		if !strings.Contains(string(table), want) {
			t.Errorf("kpf status table lacks %q:\n%s", want, table)
		}
	}
}

// --metrics-addr serves Prometheus metrics that promtool accepts and that
// count the traffic.
func TestE2EMetrics(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "metrics")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	port, mport := freePort(t), freePort(t)
	startKpf(t, s, writeConfig(t, echoConfig(ns, port)), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport))
	for range 3 {
		if _, err := greeting(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var body string
	waitUntil(t, 10*time.Second, "the metrics to count 3 connections", func(context.Context) (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err == nil && strings.Contains(body, fmt.Sprintf(`kpf_forward_connections_total{forward="echo",local="localhost:%d"} 3`, port)), nil
	})
	for _, want := range []string{`kpf_forward_up{forward="echo"} 1`, `kpf_forward_state{forward="echo",state="ready"} 1`, "kpf_forward_dial_duration_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (.ci/run installs Debian's prometheus package)")
		}
		t.Skip("promtool not installed; apt-get install prometheus to check the exposition format")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// A failing health check moves the forward to another ready pod: for TCP,
// nothing listens on the pod's port any more; for HTTP, /healthz answers
// 500.
func TestE2EHealthCheckRetargets(t *testing.T) {
	s := needSuite(t)
	for _, kind := range []string{"tcp", "http"} {
		t.Run(kind, func(t *testing.T) {
			ns := newNamespace(t, s.primary, "health-"+kind)
			var good1, good2, broken backend
			health := "tcp: true"
			if kind == "tcp" {
				good1, good2 = startBackend(t, "one"), startBackend(t, "two")
				broken = closedBackend(t)
			} else {
				good1, good2 = startHTTPBackend(t, "one", 200), startHTTPBackend(t, "two", 200)
				broken = startHTTPBackend(t, "broken", 500)
				health = "http: /healthz"
			}
			deployEcho(t, s.primary, ns, 2, good1, good2)
			port := freePort(t)
			cfg := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: e2e
    namespace: %s
    service: echo
    ports: ["%d:80"]
    health: {%s, interval: 1s, timeout: 900ms, threshold: 2}
`, ns, port, health))
			startKpf(t, s, cfg)
			var first control.Forward
			waitUntil(t, 30*time.Second, "the forward to be ready", func(context.Context) (bool, error) {
				snap, _ := kpfStatus(t, s, cfg)
				first = statusOf(snap, "echo")
				return first.State == control.StateReady && first.Pod != "", nil
			})
			// Point the serving pod's port at the broken backend.
			kubectlE2E(t, s, "-n", ns, "annotate", "--overwrite", "pod", first.Pod, fmt.Sprintf("test.kpf.dev/assigned-forward-8080=%d", broken.port))
			broke := time.Now()
			waitUntil(t, 30*time.Second, "the forward to move to the healthy pod", func(context.Context) (bool, error) {
				snap, _ := kpfStatus(t, s, cfg)
				e := statusOf(snap, "echo")
				return e.State == control.StateReady && e.Pod != "" && e.Pod != first.Pod, nil
			})
			t.Logf("%s check: moved off %s %s after its port broke", kind, first.Pod, time.Since(broke).Round(100*time.Millisecond))
		})
	}
}

// kpf restart re-dials one forward, SIGHUP and kpf reload reload the
// file, and a disabled forward is listed as such without making status
// fail.
func TestE2ERestartReloadAndDisabled(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "control")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	port := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - name: echo
    service: echo
    ports: ["%d:80"]
  - name: off
    service: echo
    ports: ["%d:80"]
    enabled: false
`, ns, port, freePort(t)))
	p := startKpf(t, s, cfg)
	snap, code := kpfStatus(t, s, cfg)
	if code != 0 {
		t.Errorf("kpf status exit %d with one ready and one disabled forward, want 0", code)
	}
	if off := statusOf(snap, "off"); off.State != control.StateDisabled {
		t.Errorf("disabled forward: %+v", off)
	}
	before := statusOf(snap, "echo")

	out, err := runKpf(s, "restart", "-f", cfg, "echo")
	if err != nil || !strings.Contains(out, "restarted echo") {
		t.Fatalf("kpf restart echo: %v\n%s", err, out)
	}
	if out, err := runKpf(s, "restart", "-f", cfg, "nope"); err == nil || !strings.Contains(out, `no forward "nope" is running`) {
		t.Errorf("kpf restart nope: %v\n%s", err, out)
	}
	waitUntil(t, 15*time.Second, "echo to be ready again after the restart", func(context.Context) (bool, error) {
		snap, _ := kpfStatus(t, s, cfg)
		e := statusOf(snap, "echo")
		return e.State == control.StateReady && e.Since.After(before.Since), nil
	})
	if !strings.Contains(p.stderr.String(), "restarted on request") {
		t.Errorf("kpf did not log the restart")
	}

	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 10*time.Second, "the SIGHUP reload to be logged", func(context.Context) (bool, error) {
		return strings.Contains(p.stderr.String(), "asked_by=SIGHUP"), nil
	})
	if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil || g != "hello from a" {
		t.Fatalf("after restart and SIGHUP: %q, %v", g, err)
	}

	// kpf reload, the way to reload on Windows: an invalid file is
	// reported with its line and exit status 1, and the forwards keep
	// running.
	valid, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	replaceConfig(t, cfg, string(valid)+"    bogus: true\n")
	out, code = exitCode(t, exec.Command(s.kpf, "reload", "-f", cfg))
	if code != 1 || !strings.Contains(out, "forwards.yaml:11") || !strings.Contains(out, "bogus") {
		t.Errorf("kpf reload of an invalid file: exit %d\n%s\nwant exit 1 and the bad line (11)", code, out)
	}
	if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil || g != "hello from a" {
		t.Fatalf("after an invalid reload: %q, %v", g, err)
	}
	// A valid file with one more forward: once kpf reload returns, kpf up
	// runs it.
	extra := freePort(t)
	replaceConfig(t, cfg, string(valid)+fmt.Sprintf("  - name: more\n    service: echo\n    ports: [\"%d:80\"]\n", extra))
	if out, err := runKpf(s, "reload", "-f", cfg); err != nil || !strings.Contains(out, "reloaded") {
		t.Fatalf("kpf reload: %v\n%s", err, out)
	}
	if snap, _ := kpfStatus(t, s, cfg); statusOf(snap, "more").Name != "more" {
		t.Errorf("right after kpf reload, status does not list the new forward: %+v", snap.Forwards)
	}
	if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", extra), 15*time.Second); err != nil || g != "hello from a" {
		t.Errorf("the forward added by kpf reload: %q, %v", g, err)
	}
}
