// Command kpf-demo runs kpf's demo: it starts (or reuses) the local cluster
// named kpf, serves stand-in backends on loopback, applies the workloads
// that forwards.yaml names and runs kpf up on them until Ctrl-C. Run it with
// `go tool -modfile=tools/go.mod task demo` from the repository.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kpf-dev/kpf/internal/demo"
)

const usage = `Usage: kpf-demo [--once | --smoke] [-v]

Start (or reuse) the local cluster "kpf", serve the demo backends on
127.0.0.1, apply the demo workloads and run kpf up with forwards.yaml until
Ctrl-C. The cluster keeps running afterwards: go tool -modfile=tools/go.mod task cluster:down
stops it.

Examples:
    $ go tool -modfile=tools/go.mod task demo
    $ go tool -modfile=tools/go.mod task demo -- --once     # exit 0 once every forward is ready
    $ go tool -modfile=tools/go.mod task demo -- --smoke    # also check each local port's answer

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second Ctrl-C kills the process.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("kpf-demo", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	once := fs.Bool("once", false, "pass --once to kpf up: exit 0 as soon as every forward is ready")
	smoke := fs.Bool("smoke", false, "once kpf is up, check each forward's local port answers from the right backend, then exit")
	smokeTimeout := fs.Duration("smoke-timeout", 2*time.Minute, "with --smoke, how long to wait for every port to answer")
	cluster := fs.String("cluster", demo.ForwardsContext, "local cluster `NAME` to start or reuse")
	verbose := fs.Bool("v", false, "verbose: debug logs here and -v for kpf up")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kpf-demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	level := slog.LevelInfo
	var kpfArgs []string
	if *verbose {
		level = slog.LevelDebug
		kpfArgs = append(kpfArgs, "-v")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kpf-demo: %v\n", err)
		return 1
	}
	repo, err := demo.FindRepo(wd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kpf-demo: %v\n\thint: run it from the kpf repository: go tool -modfile=tools/go.mod task demo\n", err)
		return 1
	}
	log.Info("starting the local cluster (the first run builds it: 10-15 minutes)", "cluster", *cluster)
	c, err := demo.UpCluster(ctx, repo, *cluster, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kpf-demo: %v\n", err)
		return 1
	}
	log.Info("cluster is up", "cluster", c.Name, "alreadyRunning", c.AlreadyRunning, "kubeconfig", c.Kubeconfig)

	_, err = demo.Run(ctx, c, demo.Options{
		Repo: repo, Once: *once, Smoke: *smoke, SmokeTimeout: *smokeTimeout, KpfArgs: kpfArgs,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Log: log,
	})
	down := "go tool -modfile=tools/go.mod task cluster:down"
	if c.Name != demo.ForwardsContext {
		down = "CLUSTER=" + c.Name + " " + down
	}
	fmt.Fprintf(os.Stderr, "\nkpf-demo: the cluster %q keeps running; stop it with: %s\n", c.Name, down)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kpf-demo: %v\n", err)
		return 1
	}
	return 0
}
