// Package demo runs kpf's demo: on a local cluster (test/cluster) it starts
// loopback backends that stand in for containers, applies the workloads
// that the repository's forwards.yaml names, waits for them to be ready and
// runs `kpf up` in-process against them. Command kpf-demo is its main.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/cli"
)

// Options configure Run.
type Options struct {
	// Repo is the repository root; Run forwards Repo/forwards.yaml.
	Repo string
	// Once passes --once to kpf up: Run returns as soon as every forward
	// is ready (kpf then stops them).
	Once bool
	// Smoke makes Run check each forward's local port itself once kpf is
	// up, stop kpf and return the results; Once is then ignored.
	Smoke bool
	// SmokeTimeout bounds how long Smoke waits for every port to answer
	// right; zero means two minutes.
	SmokeTimeout time.Duration
	// KpfArgs are extra arguments for kpf up, such as -v.
	KpfArgs []string

	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Log    *slog.Logger
}

// readyTimeout bounds the wait for the demo workloads to roll out.
const readyTimeout = 3 * time.Minute

// Run runs the demo on cluster c and blocks until ctx is done, kpf exits
// (with Once), or the smoke checks are over (with Smoke). The backends and
// kpf stop before Run returns; the cluster and the objects applied to it
// are left as they are. With Smoke, Run returns every check's result and an
// error if any failed.
func Run(ctx context.Context, c *Cluster, o Options) ([]Result, error) {
	log := o.Log
	backends, err := StartBackends(ctx, log)
	if err != nil {
		return nil, err
	}
	defer backends.Close()
	log.Info("backends listening", "ports", fmt.Sprint(backends.Ports))

	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", c.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	if err := applyAll(ctx, client, backends.Ports); err != nil {
		return nil, err
	}
	log.Info("applied the demo workloads; waiting for them to be ready", "namespaces", nsDemo+","+nsData)
	if err := waitReady(ctx, client, readyTimeout, log); err != nil {
		return nil, err
	}
	log.Info("every demo workload is ready")

	kubeconfig, cleanup, err := kubeconfigForForwards(c)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	args := []string{"up", "-f", filepath.Join(o.Repo, "forwards.yaml"), "--kubeconfig", kubeconfig}
	args = append(args, o.KpfArgs...)

	if o.Smoke {
		return smoke(ctx, args, o)
	}
	if o.Once {
		args = append(args, "--once")
	} else {
		printTryIt(o.Stdout, c)
	}
	if code := cli.Main(ctx, args, o.Stdin, o.Stdout, o.Stderr); code != cli.ExitOK {
		return nil, fmt.Errorf("kpf up exited with code %d", code)
	}
	return nil, nil
}

// smoke runs kpf up until every check passes or the smoke timeout passes,
// then stops it and reports.
func smoke(ctx context.Context, args []string, o Options) ([]Result, error) {
	timeout := o.SmokeTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	kpfCtx, stopKpf := context.WithCancel(ctx)
	defer stopKpf()
	checkCtx, stopChecks := context.WithTimeout(ctx, timeout)
	defer stopChecks()
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Main(kpfCtx, args, o.Stdin, o.Stdout, o.Stderr)
		stopChecks() // a kpf that exits early fails the checks at once
	}()
	results := RunChecks(checkCtx, Checks())
	stopKpf()
	code := <-exited

	var errs []error
	w := tabwriter.NewWriter(o.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nsmoke test:")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(w, "  FAIL\t%s\t%s\t%v\n", r.Forward, r.Addr, r.Err)
			errs = append(errs, fmt.Errorf("%s (%s): %w", r.Forward, r.Addr, r.Err))
			continue
		}
		fmt.Fprintf(w, "  ok\t%s\t%s\t%s\n", r.Forward, r.Addr, r.Answer)
	}
	w.Flush()
	if code != cli.ExitOK {
		errs = append(errs, fmt.Errorf("kpf up exited with code %d", code))
	}
	if err := errors.Join(errs...); err != nil {
		return results, fmt.Errorf("smoke test failed: %w", err)
	}
	return results, nil
}

// printTryIt tells the user what to do while the demo runs.
func printTryIt(w io.Writer, c *Cluster) {
	down := "go tool -modfile=tools/go.mod task cluster:down"
	if c.Name != ForwardsContext {
		down = "CLUSTER=" + c.Name + " " + down
	}
	fmt.Fprintf(w, `
kpf is starting the forwards of forwards.yaml. Once it lists them, try:

  curl http://127.0.0.1:18080/                 # web: service port "http", 2 replicas
  curl http://127.0.0.1:18081/                 # api: deployment, container port 8080
  echo hi | nc 127.0.0.1 17000                 # echo: greets, then echoes each line
  echo 'select 1' | nc 127.0.0.1 15432         # db: statefulset, answers each line
  curl http://127.0.0.1:19090/metrics          # metrics: pods labelled app=metrics
  # no nc? bash can do it:
  exec 3<>/dev/tcp/127.0.0.1/17000; echo hi >&3; head -n 2 <&3; exec 3<&-

Delete the web pods and watch kpf move to their replacements:

  kubectl --kubeconfig %s delete pod -n demo -l app=web

Ctrl-C stops kpf and the backends; the cluster keeps running:
%s stops it.

`, c.Kubeconfig, down)
}
