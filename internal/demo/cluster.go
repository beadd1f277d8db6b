package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ForwardsContext is the kube context that the repository's forwards.yaml
// names in its defaults.
const ForwardsContext = "kpf"

// Cluster is the description that `kpfcluster up -json` prints.
type Cluster struct {
	Name       string `json:"name"`
	Dir        string `json:"dir"`
	Kubeconfig string `json:"kubeconfig"`
	Server     string `json:"server"`
	NodeName   string `json:"nodeName"`
	// Components are the cluster's processes.
	Components []Component `json:"components"`
	// AlreadyRunning is set when the cluster was running before; whoever
	// started it is the one to stop it.
	AlreadyRunning bool `json:"alreadyRunning"`
}

// The names of two components in kpfcluster's -json output. They are
// test/cluster/localcluster's APIServer and NodeAgent, repeated here
// because that package lives in a module of its own.
const (
	ComponentAPIServer = "kube-apiserver"
	ComponentNodeAgent = "node-agent"
)

// Component is one process of the cluster: etcd, kube-apiserver,
// kube-controller-manager or node-agent.
type Component struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// PID returns the process id of the component name, 0 if there is none.
func (c *Cluster) PID(name string) int {
	for _, comp := range c.Components {
		if comp.Name == name {
			return comp.PID
		}
	}
	return 0
}

// FindRepo returns the kpf repository root: the first directory from dir
// upwards that holds test/cluster/go.mod and forwards.yaml.
func FindRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find repository: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if isFile(filepath.Join(d, "test", "cluster", "go.mod")) && isFile(filepath.Join(d, "forwards.yaml")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no kpf repository (test/cluster/go.mod and forwards.yaml) at or above %s", dir)
		}
	}
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// UpCluster starts the local cluster name (state under repo/.cluster) with
// the test/cluster module's kpfcluster command, or reports the one already
// running. The first run builds the cluster's binaries, which takes minutes;
// the command's progress goes to progress as it happens. Cancelling ctx
// kills the command.
func UpCluster(ctx context.Context, repo, name string, progress io.Writer) (*Cluster, error) {
	out, err := kpfcluster(ctx, repo, progress, "up", "-name", name, "-dir", filepath.Join(repo, ".cluster"), "-json")
	if err != nil {
		return nil, fmt.Errorf("start cluster %q: %w", name, err)
	}
	var c Cluster
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("start cluster %q: parse kpfcluster output: %w", name, err)
	}
	if c.Kubeconfig == "" {
		return nil, fmt.Errorf("start cluster %q: kpfcluster reported no kubeconfig", name)
	}
	return &c, nil
}

// DownCluster stops the local cluster name and removes its state.
func DownCluster(ctx context.Context, repo, name string, progress io.Writer) error {
	if _, err := kpfcluster(ctx, repo, progress, "down", "-name", name, "-dir", filepath.Join(repo, ".cluster")); err != nil {
		return fmt.Errorf("stop cluster %q: %w", name, err)
	}
	return nil
}

// kpfcluster runs `go run ./cmd/kpfcluster ARGS` in repo/test/cluster and
// returns its stdout; its stderr goes to progress.
func kpfcluster(ctx context.Context, repo string, progress io.Writer, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"-C", filepath.Join(repo, "test", "cluster"), "run", "./cmd/kpfcluster"}, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, progress
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("kpfcluster %s: %w (its messages are above)", args[0], err)
		}
		return nil, fmt.Errorf("kpfcluster %s: %w", args[0], err)
	}
	return stdout.Bytes(), nil
}

// kubeconfigForForwards returns a kubeconfig in which context
// ForwardsContext reaches cluster c, and a func that removes any file it
// wrote. The local cluster's kubeconfig names its context after the cluster,
// so for the cluster named "kpf" that is its own kubeconfig; for another
// cluster it is a copy, written to a temporary directory, with the context
// renamed.
func kubeconfigForForwards(c *Cluster) (string, func(), error) {
	if c.Name == ForwardsContext {
		return c.Kubeconfig, func() {}, nil
	}
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return "", nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	kctx, ok := cfg.Contexts[c.Name]
	if !ok {
		return "", nil, fmt.Errorf("kubeconfig %s has no context %q", c.Kubeconfig, c.Name)
	}
	cfg.Contexts = map[string]*clientcmdapi.Context{ForwardsContext: kctx}
	cfg.CurrentContext = ForwardsContext
	dir, err := os.MkdirTemp("", "kpf-demo-")
	if err != nil {
		return "", nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, cleanup, nil
}
