package localcluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
)

// KubernetesVersion is the version of kube-apiserver and
// kube-controller-manager that the local cluster runs. It must match the
// k8s.io/kubernetes requirement in this module's go.mod.
const KubernetesVersion = "v1.37.2"

// Binaries are the paths of the programs a cluster runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, NodeAgent string
}

// upstream are the packages built from Go modules, keyed by binary name.
var upstream = []struct{ name, pkg string }{
	{"etcd", "go.etcd.io/etcd/server/v3"},
	{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"},
	{"kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"},
}

// Build compiles the cluster's programs into cacheDir, once per machine: the
// upstream binaries are keyed by a hash of go.mod, go.sum and the Go version,
// so a second call only checks that they exist. The node agent is this
// module's own code and is always rebuilt (Go's build cache makes that quick).
// Progress goes to out; the first build takes several minutes.
func Build(ctx context.Context, moduleDir, cacheDir string, out io.Writer) (*Binaries, error) {
	key, err := buildKey(moduleDir)
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(cacheDir, "bin", key)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	b := &Binaries{
		Etcd:              filepath.Join(binDir, "etcd"),
		APIServer:         filepath.Join(binDir, "kube-apiserver"),
		ControllerManager: filepath.Join(binDir, "kube-controller-manager"),
		NodeAgent:         filepath.Join(cacheDir, "bin", "kpf-node-agent"),
	}
	var missing []string
	for _, u := range upstream {
		if _, err := os.Stat(filepath.Join(binDir, u.name)); err != nil {
			missing = append(missing, u.pkg)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(out, "building %d Kubernetes components into %s (the first build on a machine takes 10-15 minutes)\n", len(missing), binDir)
		v := "k8s.io/component-base/version"
		ldflags := fmt.Sprintf("-X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=1 -X %[1]s.gitMinor=37 -X %[1]s.gitTreeState=clean", v, KubernetesVersion)
		tmp, err := os.MkdirTemp(binDir, ".build-")
		if err != nil {
			return nil, fmt.Errorf("create build dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		args := append([]string{"build", "-v", "-ldflags", ldflags, "-o", tmp + "/"}, missing...)
		if err := goBuild(ctx, moduleDir, args, out); err != nil {
			return nil, err
		}
		for _, u := range upstream {
			src := filepath.Join(tmp, filepath.Base(u.pkg))
			if u.pkg == "go.etcd.io/etcd/server/v3" {
				// go build names a /vN module's binary after the element before it.
				src = filepath.Join(tmp, "server")
			}
			if _, err := os.Stat(src); err != nil {
				continue
			}
			if err := os.Rename(src, filepath.Join(binDir, u.name)); err != nil {
				return nil, fmt.Errorf("install %s: %w", u.name, err)
			}
		}
	}
	if err := goBuild(ctx, moduleDir, []string{"build", "-o", b.NodeAgent, "./cmd/kpf-node-agent"}, out); err != nil {
		return nil, err
	}
	return b, nil
}

// goBuild runs the go command in moduleDir, reporting how many packages have
// been compiled every few seconds so a long first build is visibly alive.
func goBuild(ctx context.Context, moduleDir string, args []string, out io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	cmd.Stdout = out
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var compiled atomic.Int64
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			// go build -v prints one import path per package it compiles;
			// anything else is a diagnostic worth keeping.
			if !strings.ContainsAny(line, " \t:") {
				compiled.Add(1)
				continue
			}
			tail = append(tail, line)
			if len(tail) > 40 {
				tail = tail[1:]
			}
		}
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start go build: %w", err)
	}
	stopTicker := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTicker:
				return
			case <-t.C:
				fmt.Fprintf(out, "  ... %d packages compiled, %s elapsed\n", compiled.Load(), time.Since(start).Round(time.Second))
			}
		}
	}()
	err := cmd.Wait()
	close(stopTicker)
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.Join(tail, "\n"))
	}
	return nil
}

// buildKey identifies one set of upstream binaries: the same module
// requirements built by the same Go toolchain give the same programs.
func buildKey(moduleDir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(moduleDir, f))
		if err != nil {
			return "", fmt.Errorf("read %s (is %s the test/cluster module?): %w", f, moduleDir, err)
		}
		h.Write(data)
	}
	h.Write([]byte(runtime.Version()))
	return KubernetesVersion + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}
