// Package e2e runs kpf end to end: the kpf binary against real local
// clusters (etcd, kube-apiserver, kube-controller-manager and the node agent
// of test/cluster), through the real port-forward path, to real loopback
// backends, with kubectl as the peer to compare with. The tests run only
// with KPF_E2E=1. They start clusters named "e2e" and "e2e2" (or reuse ones
// already running, which they then leave running).
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// cluster is one local cluster as kpfcluster describes it.
type cluster struct {
	Name           string `json:"name"`
	Kubeconfig     string `json:"kubeconfig"`
	Server         string `json:"server"`
	AlreadyRunning bool   `json:"alreadyRunning"`
	Components     []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	} `json:"components"`
	client kubernetes.Interface
}

// suite is what every test shares; TestMain fills it once.
type suite struct {
	root      string
	kpf       string // built binary
	primary   *cluster
	secondary *cluster
	// kubeconfig lists both clusters' kubeconfigs, as KUBECONFIG does.
	kubeconfig string
}

var shared *suite // set once by TestMain; read-only afterwards

func TestMain(m *testing.M) {
	if os.Getenv("KPF_E2E") == "" {
		fmt.Println("e2e: skipped (set KPF_E2E=1 to run against local clusters)")
		os.Exit(m.Run())
	}
	s, cleanup, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	shared = s
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func setup() (*suite, func(), error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, nil, err
	}
	s := &suite{root: root}
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	bin, err := os.MkdirTemp("", "kpf-e2e-")
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(bin) })
	s.kpf = filepath.Join(bin, "kpf")
	if out, err := exec.Command("go", "build", "-o", s.kpf, filepath.Join(root, "cmd/kpf")).CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build kpf: %v\n%s", err, out)
	}
	for _, name := range []string{"e2e", "e2e2"} {
		c, err := clusterUp(root, name)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		if !c.AlreadyRunning {
			cleanups = append(cleanups, func() { clusterDown(root, name) })
		}
		if s.primary == nil {
			s.primary = c
		} else {
			s.secondary = c
		}
	}
	s.kubeconfig = s.primary.Kubeconfig + string(os.PathListSeparator) + s.secondary.Kubeconfig
	return s, cleanup, nil
}

func clusterUp(root, name string) (*cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/kpfcluster", "up", "-name", name, "-dir", filepath.Join(root, ".cluster"), "-json")
	cmd.Dir = filepath.Join(root, "test/cluster")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("start cluster %s: %w", name, err)
	}
	var c cluster
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("cluster %s: parse %q: %w", name, out, err)
	}
	rest, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if c.client, err = kubernetes.NewForConfig(rest); err != nil {
		return nil, err
	}
	return &c, nil
}

func clusterDown(root, name string) {
	cmd := exec.Command("go", "run", "./cmd/kpfcluster", "down", "-name", name, "-dir", filepath.Join(root, ".cluster"))
	cmd.Dir = filepath.Join(root, "test/cluster")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stop cluster %s: %v\n%s", name, err, strings.TrimSpace(string(out)))
	}
}

func needSuite(t *testing.T) *suite {
	t.Helper()
	if shared == nil {
		t.Skip("set KPF_E2E=1 to run end-to-end tests")
	}
	return shared
}

// pid returns the process id of a component ("node-agent", ...).
func (c *cluster) pid(component string) int {
	for _, comp := range c.Components {
		if comp.Name == component {
			return comp.PID
		}
	}
	return 0
}
