// Package e2e checks the local cluster itself: the facts every kpf
// end-to-end test, benchmark and the demo rely on. The tests run only with
// KPF_E2E=1; they start a cluster named "e2e" (or reuse a running one, which
// they then leave running) and stop the one they started.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/test/cluster/localcluster"
)

// env is the cluster the tests share.
type env struct {
	opts    localcluster.Options
	cluster *localcluster.Cluster
	client  kubernetes.Interface
}

var shared *env // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	if os.Getenv("KPF_E2E") == "" {
		fmt.Println("e2e: skipped (set KPF_E2E=1 to run against a local cluster)")
		os.Exit(m.Run())
	}
	e, cleanup, err := start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
		os.Exit(1)
	}
	shared = e
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func clusterOptions(name string) localcluster.Options {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	root, _ := filepath.Abs("../../..")
	return localcluster.Options{
		Name:      name,
		StateDir:  filepath.Join(root, ".cluster"),
		CacheDir:  filepath.Join(cache, "kpf-cluster"),
		ModuleDir: "..",
		Out:       os.Stderr,
	}
}

func start() (*env, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	o := clusterOptions("e2e")
	c, err := localcluster.Up(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		if !c.AlreadyRunning {
			if err := localcluster.Down(context.Background(), o); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: stop cluster:", err)
			}
		}
	}
	rest, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return &env{opts: o, cluster: c, client: client}, cleanup, nil
}

func needCluster(t *testing.T) *env {
	t.Helper()
	if shared == nil {
		t.Skip("set KPF_E2E=1 to run end-to-end tests")
	}
	return shared
}
