package e2e

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpf-dev/kpf/test/cluster/localcluster"
)

func TestE2ENodeReady(t *testing.T) {
	e := needCluster(t)
	out := kubectl(t, e, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if want := e.cluster.NodeName + "=True"; !strings.Contains(out, want) {
		t.Fatalf("kubectl get nodes: want %q, got %q", want, out)
	}
	ver := kubectl(t, e, "version", "-o", "json")
	if !strings.Contains(ver, `"gitVersion": "`+localcluster.KubernetesVersion+`"`) {
		t.Fatalf("server version is not %s:\n%s", localcluster.KubernetesVersion, ver)
	}
}

func TestE2EUpReportsRunningCluster(t *testing.T) {
	e := needCluster(t)
	c, err := localcluster.Up(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !c.AlreadyRunning || c.Server != e.cluster.Server {
		t.Fatalf("second Up: want the running cluster at %s reported, got running=%v server=%s", e.cluster.Server, c.AlreadyRunning, c.Server)
	}
	for _, comp := range e.cluster.Components {
		if got := c.Component(comp.Name); got == nil || got.PID != comp.PID {
			t.Errorf("%s: pid changed from %d: %+v", comp.Name, comp.PID, got)
		}
	}
}

func TestE2EComponentDyingOnStartReportsItsLog(t *testing.T) {
	needCluster(t)
	o := clusterOptions("e2e-broken")
	o.ExtraArgs = map[string][]string{localcluster.APIServer: {"--no-such-flag=1"}}
	t.Cleanup(func() { localcluster.Down(context.Background(), o) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := localcluster.Up(ctx, o)
	if err == nil {
		t.Fatal("Up succeeded with a broken kube-apiserver flag")
	}
	for _, want := range []string{"kube-apiserver exited", "unknown flag: --no-such-flag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// The etcd started before it must have been stopped.
	c, lerr := localcluster.Load(o.StateDir, o.Name)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if p := c.Component(localcluster.Etcd); p != nil {
		if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) {
			if stat, _ := os.ReadFile("/proc/" + itoa(p.PID) + "/stat"); !strings.Contains(string(stat), ") Z") {
				t.Errorf("etcd (pid %d) still running after a failed start", p.PID)
			}
		}
	}
}

func TestE2EDeploymentGetsReadyEndpoints(t *testing.T) {
	e := needCluster(t)
	ns := newNamespace(t, e)
	a, b := startBackend(t, "backend-a"), startBackend(t, "backend-b")
	deployEcho(t, e, ns, 2, a, b)
	waitUntil(t, 60*time.Second, "2 ready endpoints", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		return len(pods) == 2, err
	})
	// Each replica was assigned its own backend.
	pods, err := e.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var assigned []string
	for _, p := range pods.Items {
		assigned = append(assigned, p.Annotations["test.kpf.dev/assigned-forward-8080"])
	}
	slices.Sort(assigned)
	want := []string{itoa(a.port), itoa(b.port)}
	slices.Sort(want)
	if !slices.Equal(assigned, want) {
		t.Fatalf("backend assignments: got %v, want %v", assigned, want)
	}
}

func TestE2EKubectlPortForward(t *testing.T) {
	e := needCluster(t)
	ns := newNamespace(t, e)
	a := startBackend(t, "backend-a")
	deployEcho(t, e, ns, 1, a)
	waitUntil(t, 60*time.Second, "1 ready endpoint", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		return len(pods) == 1, err
	})
	for _, ws := range []bool{false, true} {
		name := map[bool]string{false: "spdy", true: "websocket"}[ws]
		t.Run(name, func(t *testing.T) {
			pf := startPortForward(t, e, ns, "svc/echo", 80, ws)
			for range 3 {
				got, err := greeting(pf.addr)
				if err != nil {
					t.Fatalf("through kubectl port-forward (%s): %v\n%s", name, err, pf.stderr.String())
				}
				if got != "hello from backend-a" {
					t.Fatalf("through kubectl port-forward (%s): got %q", name, got)
				}
			}
		})
	}
}

func TestE2EPodDeletionEndsKubectlAndIsReplaced(t *testing.T) {
	e := needCluster(t)
	ns := newNamespace(t, e)
	a, b := startBackend(t, "backend-a"), startBackend(t, "backend-b")
	deployEcho(t, e, ns, 2, a, b)
	var before []string
	waitUntil(t, 60*time.Second, "2 ready endpoints", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		before = pods
		return len(pods) == 2, err
	})
	for _, ws := range []bool{false, true} {
		name := map[bool]string{false: "spdy", true: "websocket"}[ws]
		t.Run(name, func(t *testing.T) {
			var victim string
			pods, err := readyEndpoints(context.Background(), e, ns, "echo")
			if err != nil || len(pods) == 0 {
				t.Fatalf("no ready endpoints: %v", err)
			}
			victim = pods[0]
			pf := startPortForward(t, e, ns, "pod/"+victim, 8080, ws)
			if _, err := greeting(pf.addr); err != nil {
				t.Fatalf("before deletion: %v\n%s", err, pf.stderr.String())
			}
			kubectl(t, e, "-n", ns, "delete", "pod", victim, "--wait=false")
			select {
			case <-pf.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("kubectl port-forward did not exit after its pod was deleted\n%s", pf.stderr.String())
			}
			pf.done <- nil // for the cleanup
			if !strings.Contains(pf.stderr.String(), "lost connection to pod") {
				t.Fatalf("kubectl stderr lacks %q:\n%s", "lost connection to pod", pf.stderr.String())
			}
			waitUntil(t, 60*time.Second, "a replacement pod", func(ctx context.Context) (bool, error) {
				pods, err := readyEndpoints(ctx, e, ns, "echo")
				return len(pods) == 2 && !slices.Contains(pods, victim), err
			})
		})
	}
	after, _ := readyEndpoints(context.Background(), e, ns, "echo")
	t.Logf("endpoints before %v, after %v", before, after)
}

func TestE2EReadyAnnotationDrivesEndpointReadiness(t *testing.T) {
	e := needCluster(t)
	ns := newNamespace(t, e)
	deployEcho(t, e, ns, 1, startBackend(t, "backend-a"))
	var pod string
	waitUntil(t, 60*time.Second, "1 ready endpoint", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		if len(pods) == 1 {
			pod = pods[0]
		}
		return len(pods) == 1, err
	})
	kubectl(t, e, "-n", ns, "annotate", "pod", pod, "test.kpf.dev/ready=false")
	waitUntil(t, 30*time.Second, "the endpoint to become not ready", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		return len(pods) == 0, err
	})
	phase := kubectl(t, e, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
	if phase != "Running" {
		t.Fatalf("not-ready pod phase = %q, want Running", phase)
	}
	kubectl(t, e, "-n", ns, "annotate", "--overwrite", "pod", pod, "test.kpf.dev/ready=true")
	waitUntil(t, 30*time.Second, "the endpoint to become ready again", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		return len(pods) == 1, err
	})
}

func TestE2EForwardWithoutBackendFailsLikeAKubelet(t *testing.T) {
	e := needCluster(t)
	ns := newNamespace(t, e)
	deployEcho(t, e, ns, 1, closedBackend(t))
	waitUntil(t, 60*time.Second, "1 ready endpoint", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, e, ns, "echo")
		return len(pods) == 1, err
	})
	pf := startPortForward(t, e, ns, "svc/echo", 80, false)
	got, gerr := greeting(pf.addr)
	if gerr == nil && got != "" {
		t.Fatalf("got %q through a forward to a port nothing listens on", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(pf.stderr.String(), "failed to connect to localhost:8080") {
		if time.Now().After(deadline) {
			t.Fatalf("kubectl did not report the failed forward within 10s (client saw %q, %v); kubectl stderr:\n%s", got, gerr, pf.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
