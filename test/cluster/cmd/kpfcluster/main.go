// Command kpfcluster builds, starts and stops kpf's local Kubernetes cluster:
// etcd, kube-apiserver, kube-controller-manager and a node agent, all on
// 127.0.0.1. Run it from the test/cluster module directory (the Taskfile's
// cluster:up and cluster:down do).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/kpf-dev/kpf/test/cluster/localcluster"
)

const usage = `usage: kpfcluster up|down|status|stop|start [flags]

  up      build (cached) and start a cluster, wait until it is usable,
          print its kubeconfig path; reports a running one instead of
          starting a second copy
  down    stop the cluster and remove its state
  status  report whether the cluster is running
  stop    stop one component (-component) with -signal, to simulate a
          crash (KILL) or a clean stop (TERM); the rest keeps running
  start   start a stopped component again with the same command line and
          port, and wait until it is ready

components: etcd, kube-apiserver, kube-controller-manager, node-agent

examples:
  kpfcluster stop -name fault -component kube-apiserver -signal KILL
  kpfcluster start -name fault -component kube-apiserver

flags:
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kpfcluster:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("missing command")
	}
	verb := os.Args[1]
	fs := flag.NewFlagSet("kpfcluster "+verb, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	cacheDefault, err := os.UserCacheDir()
	if err != nil {
		cacheDefault = os.TempDir()
	}
	o := localcluster.Options{Out: os.Stderr}
	fs.StringVar(&o.Name, "name", "kpf", "cluster name; also the kube context name")
	fs.StringVar(&o.StateDir, "dir", defaultStateDir(), "directory holding one state directory per cluster")
	fs.StringVar(&o.CacheDir, "cache", filepath.Join(cacheDefault, "kpf-cluster"), "directory for built binaries")
	fs.StringVar(&o.ModuleDir, "module", ".", "directory of the test/cluster Go module")
	asJSON := fs.Bool("json", false, "print the cluster description as JSON on stdout")
	component := fs.String("component", "", "with stop and start: the component `NAME`")
	sig := fs.String("signal", "TERM", "with stop: the signal, KILL, TERM or INT")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	switch verb {
	case "up":
		c, err := localcluster.Up(ctx, o)
		if err != nil {
			return err
		}
		return report(c, *asJSON)
	case "down":
		if err := localcluster.Down(ctx, o); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cluster %q stopped\n", o.Name)
		return nil
	case "status":
		c, err := localcluster.Load(o.StateDir, o.Name)
		if err != nil {
			return fmt.Errorf("cluster %q is not running", o.Name)
		}
		if err := c.Healthy(ctx); err != nil {
			return fmt.Errorf("cluster %q is not healthy: %w", o.Name, err)
		}
		c.AlreadyRunning = true
		return report(c, *asJSON)
	case "stop", "start":
		if *component == "" {
			return fmt.Errorf("%s needs -component NAME", verb)
		}
		c, err := localcluster.Load(o.StateDir, o.Name)
		if err != nil {
			return fmt.Errorf("cluster %q is not running", o.Name)
		}
		if verb == "start" {
			if err := c.StartComponent(ctx, *component); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s of cluster %q is ready (pid %d)\n", *component, o.Name, c.Component(*component).PID)
			return nil
		}
		s, ok := localcluster.Signals[strings.TrimPrefix(strings.ToUpper(*sig), "SIG")]
		if !ok {
			return fmt.Errorf("unknown signal %q (want KILL, TERM or INT)", *sig)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := c.StopComponent(sctx, *component, s); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s of cluster %q stopped (%v)\n", *component, o.Name, s)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", verb)
	}
}

func report(c *localcluster.Cluster, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}
	state := "is up"
	if c.AlreadyRunning {
		state = "is already running"
	}
	fmt.Printf("cluster %q %s\n  server:     %s\n  kubeconfig: %s\n", c.Name, state, c.Server, c.Kubeconfig)
	for _, comp := range c.Components {
		fmt.Printf("  %-24s pid %-7d port %-6d log %s\n", comp.Name, comp.PID, comp.Port, comp.Log)
	}
	fmt.Printf("\n  export KUBECONFIG=%s\n", c.Kubeconfig)
	return nil
}

// defaultStateDir is .cluster at the root of the enclosing git work tree,
// or in the current directory outside one.
func defaultStateDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return ".cluster"
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
			return filepath.Join(d, ".cluster")
		}
		if filepath.Dir(d) == d {
			return filepath.Join(wd, ".cluster")
		}
	}
}
