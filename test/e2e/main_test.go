//go:build linux

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
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// cluster is one local cluster as kpfcluster describes it.
type cluster struct {
	Name           string `json:"name"`
	Dir            string `json:"dir"`
	Kubeconfig     string `json:"kubeconfig"`
	Server         string `json:"server"`
	AlreadyRunning bool   `json:"alreadyRunning"`
	Components     []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
		Port int    `json:"port"`
		Log  string `json:"log"`
	} `json:"components"`
	client kubernetes.Interface
}

// suite is what every test shares; TestMain fills it once.
type suite struct {
	root       string
	kpf        string // built binary
	kpfcluster string // built binary of test/cluster/cmd/kpfcluster
	relay      string // built binary of cmd/kpf-relay
	primary    *cluster
	secondary  *cluster
	// kubeconfig lists both clusters' kubeconfigs, as KUBECONFIG does.
	kubeconfig string
	// fault is the cluster whose components the fault tests kill; it is
	// started by the first test that needs it (see faultCluster).
	fault *lazyCluster
}

// lazyCluster is a cluster started on first use.
type lazyCluster struct {
	name    string
	once    sync.Once
	cluster *cluster
	err     error
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
	if linkServer.s != nil {
		linkServer.s.Close()
	}
	cleanup()
	os.Exit(code)
}

func setup() (*suite, func(), error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, nil, err
	}
	s := &suite{root: root, fault: &lazyCluster{name: "fault"}}
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
	// Tests run kpf as another user too (nobody): it must be able to run
	// the binary.
	if err := os.Chmod(bin, 0o755); err != nil {
		cleanup()
		return nil, nil, err
	}
	s.kpf = filepath.Join(bin, "kpf")
	// KPF_E2E_RACE=1 builds kpf with the race detector; startKpfCmd then
	// fails a test whose kpf reported a data race.
	buildArgs := []string{"build", "-o", s.kpf}
	if os.Getenv("KPF_E2E_RACE") != "" {
		buildArgs = append(buildArgs, "-race")
	}
	if out, err := exec.Command("go", append(buildArgs, filepath.Join(root, "cmd/kpf"))...).CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build kpf: %v\n%s", err, out)
	}
	s.relay = filepath.Join(bin, "kpf-relay")
	if out, err := exec.Command("go", "build", "-o", s.relay, filepath.Join(root, "cmd/kpf-relay")).CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build kpf-relay: %v\n%s", err, out)
	}
	s.kpfcluster = filepath.Join(bin, "kpfcluster")
	build := exec.Command("go", "build", "-o", s.kpfcluster, "./cmd/kpfcluster")
	build.Dir = filepath.Join(root, "test/cluster")
	if out, err := build.CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("build kpfcluster: %v\n%s", err, out)
	}
	// The fault cluster is stopped after the run if the run started it.
	cleanups = append(cleanups, func() {
		if c := s.fault.cluster; c != nil && !c.AlreadyRunning {
			s.clusterDown(s.fault.name)
		}
	})
	for _, name := range []string{"e2e", "e2e2"} {
		c, err := s.clusterUp(name)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		if !c.AlreadyRunning {
			cleanups = append(cleanups, func() { s.clusterDown(name) })
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

// kpfclusterCmd is a kpfcluster command on the cluster name.
func (s *suite) kpfclusterCmd(ctx context.Context, verb, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.kpfcluster, append([]string{verb, "-name", name, "-dir", filepath.Join(s.root, ".cluster"),
		"-module", filepath.Join(s.root, "test/cluster")}, args...)...)
	cmd.Dir = filepath.Join(s.root, "test/cluster")
	return cmd
}

func (s *suite) clusterUp(name string) (*cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := s.kpfclusterCmd(ctx, "up", name, "-json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("start cluster %s: %w", name, err)
	}
	var c cluster
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("cluster %s: parse %q: %w", name, out, err)
	}
	if err := installRelay(s.relay, c.Dir); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
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

// installRelay puts the relay program where the cluster's node agent runs
// it for relay pods (localcluster.RelayBinary), replacing what a cluster
// left running from an earlier run has there.
func installRelay(bin, dir string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "kpf-relay.new")
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		return fmt.Errorf("install kpf-relay: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "kpf-relay")); err != nil {
		return fmt.Errorf("install kpf-relay: %w", err)
	}
	return nil
}

func (s *suite) clusterDown(name string) {
	if out, err := s.kpfclusterCmd(context.Background(), "down", name).CombinedOutput(); err != nil {
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
