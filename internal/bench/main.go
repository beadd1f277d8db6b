package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kpf-dev/kpf/internal/demo"
	"github.com/kpf-dev/kpf/internal/linksim"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

const usage = `Usage: kpf-bench [--smoke] [--size SIZE] [--rounds N] [--down] [flags]

Measure kpf against kubectl port-forward (SPDY and WebSocket) and against no
tunnel (direct), and for HTTP also the Go Dialer (pkg/dialer) in process, on
the local cluster "bench" (started if needed, left running unless --down):
throughput, connection setup latency, HTTP
requests/s, reconvergence after a pod deletion and kpf at scale. Writes
bench/results/latest.md and latest.json and updates BENCHMARKS.md; --smoke
runs every measurement with tiny sizes and writes to a temporary directory.

Examples:
    $ go tool -modfile=tools/go.mod task bench
    $ go tool -modfile=tools/go.mod task bench -- --size 256MiB
    $ go tool -modfile=tools/go.mod task bench:smoke
    $ go run ./cmd/kpf-bench --phases scale --scale-forwards 200 --cluster perf
    $ go tool -modfile=tools/go.mod task bench:far     # over a 150 ms link

kpf-bench starts itself as "kpf-bench minimal-forwarder" for the minimal-ws
and minimal-spdy columns (the cheapest forwarder process the path allows).

Flags:
`

// Main runs kpf-bench with the command-line arguments args and returns
// the exit code: 0 when every measurement ran, 1 when one failed, 2 for
// bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == minimalCommand {
		return runMinimalForwarder(ctx, args[1:], stdout, stderr)
	}
	cfg, code := parseArgs(args, stderr)
	if cfg == nil {
		return code
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	if _, err := Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "kpf-bench: %v\n", err)
		return 1
	}
	return 0
}

// setDefaults sets defaults on the flags not given.
func setDefaults(fs *flag.FlagSet, defaults map[string]string) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range defaults {
		if !set[name] {
			fs.Set(name, v)
		}
	}
}

// smokeDefaults sets --smoke's tiny defaults on the flags not given.
func smokeDefaults(fs *flag.FlagSet) {
	setDefaults(fs, map[string]string{"size": "4MiB", "rounds": "1", "conns": "200", "http-duration": "1s",
		"scale-forwards": "20", "scale-idle": "3s", "reconverge-window": "3s", "conc-repeats": "1", "cold-idle": "1s", "far-forwards": "5"})
}

// linkDefaults sets a link run's defaults on the flags not given: fewer
// connections (a far one costs a round trip or three of 150 ms), 8 at a
// time, and a minute idle before the first connection.
func linkDefaults(fs *flag.FlagSet, smoke bool) {
	if smoke {
		setDefaults(fs, map[string]string{"conns": "20", "concurrency": "8"})
		return
	}
	setDefaults(fs, map[string]string{"conns": "100", "concurrency": "8", "cold-idle": "60s"})
}

// parsePhases parses --phases: a comma-separated list of at least one of
// tunnels, reconvergence and scale.
func parsePhases(list string) ([]string, error) {
	var only []string
	for _, p := range strings.Split(list, ",") {
		switch p = strings.TrimSpace(p); p {
		case "tunnels", "reconvergence", "scale":
			only = append(only, p)
		case "":
		default:
			return nil, fmt.Errorf("unknown phase %q (want tunnels, reconvergence or scale)", p)
		}
	}
	if len(only) == 0 {
		return nil, errors.New("name at least one phase")
	}
	return only, nil
}

// defaultOut is where results go without --out: bench/results and
// BENCHMARKS.md, or a temporary directory (and no BENCHMARKS.md) for a
// smoke run.
func defaultOut(repo string, smoke bool) (dir, benchmarksMD string, err error) {
	if smoke {
		dir, err := os.MkdirTemp("", "kpf-bench-smoke-")
		return dir, "", err
	}
	return filepath.Join(repo, "bench", "results"), filepath.Join(repo, "BENCHMARKS.md"), nil
}

// findRepo is the kpf repository the working directory is in.
func findRepo() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	repo, err := demo.FindRepo(wd)
	if err != nil {
		return "", fmt.Errorf("%w\n\thint: run it from the kpf repository: go tool -modfile=tools/go.mod task bench", err)
	}
	return repo, nil
}

// parseArgs turns the arguments into a Config; a nil Config comes with the
// exit code.
func parseArgs(args []string, stderr io.Writer) (*Config, int) {
	fs := flag.NewFlagSet("kpf-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	smoke := fs.Bool("smoke", false, "tiny sizes, every measurement and tool once; results go to a temporary directory")
	size := fs.String("size", "1GiB", "bytes per throughput measurement (`SIZE` such as 1GiB, 256MiB)")
	rounds := fs.Int("rounds", 3, "rounds of each measurement")
	streams := fs.Int("streams", 16, "parallel streams of the aggregate throughput")
	conns := fs.Int("conns", 2000, "connections per latency measurement")
	conc := fs.Int("concurrency", 32, "concurrent connections of the concurrent latency measurement")
	concRepeats := fs.Int("conc-repeats", 3, "runs of the concurrent latency measurement in each round (its p99 varies most between runs)")
	coldIdle := fs.Duration("cold-idle", tunnel.ExtraSessionIdle+5*time.Second, "how long every tool sits idle before the first-burst latency measurement")
	httpDur := fs.Duration("http-duration", 5*time.Second, "duration of each HTTP measurement")
	httpWorkers := fs.Int("http-workers", 8, "HTTP client workers")
	probe := fs.Duration("probe-interval", 20*time.Millisecond, "reconvergence: dial interval")
	window := fs.Duration("reconverge-window", 5*time.Second, "reconvergence: how long to watch kpf after the pod deletion")
	scaleN := fs.Int("scale-forwards", 200, "scale: forwards")
	scaleNS := fs.Int("scale-namespaces", 4, "scale: namespaces")
	scaleIdle := fs.Duration("scale-idle", 60*time.Second, "scale: idle window for the CPU measurement")
	cluster := fs.String("cluster", "bench", "local cluster `NAME` to start or reuse (also the kube context)")
	down := fs.Bool("down", false, "stop the cluster at the end")
	out := fs.String("out", "", "results `DIR` (default: bench/results, or a temporary directory with --smoke)")
	verbose := fs.Bool("v", false, "debug logs")
	phases := fs.String("phases", "tunnels,reconvergence,scale", "comma-separated `LIST` of the phases to run: tunnels (throughput, latency, HTTP), reconvergence, scale")
	link := fs.String("link", "", "run over a simulated link `NAME` (lan: 2ms, wan: 50ms, far: 150ms ±10ms round trip) between every tool and the API server instead of the phases: connection setup, HTTP, start-up, reconvergence")
	farForwards := fs.Int("far-forwards", 20, "link run: forwards started at once")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kpf-bench: unexpected argument %q\n", fs.Arg(0))
		return nil, 2
	}
	if *link != "" {
		if _, err := linksim.ProfileNamed(*link); err != nil {
			fmt.Fprintf(stderr, "kpf-bench: --link: %v\n", err)
			return nil, 2
		}
		phasesSet := false
		fs.Visit(func(f *flag.Flag) { phasesSet = phasesSet || f.Name == "phases" })
		if phasesSet {
			fmt.Fprintln(stderr, "kpf-bench: --link runs its own measurements; leave out --phases")
			return nil, 2
		}
		linkDefaults(fs, *smoke) // before smokeDefaults, which would set conns
	}
	if *smoke {
		smokeDefaults(fs)
	}
	n, err := ParseSize(*size)
	if err != nil {
		fmt.Fprintf(stderr, "kpf-bench: --size: %v\n", err)
		return nil, 2
	}
	for name, v := range map[string]int{"rounds": *rounds, "streams": *streams, "conns": *conns, "concurrency": *conc, "conc-repeats": *concRepeats,
		"http-workers": *httpWorkers, "scale-forwards": *scaleN, "scale-namespaces": *scaleNS, "far-forwards": *farForwards} {
		if v < 1 {
			fmt.Fprintf(stderr, "kpf-bench: --%s must be at least 1\n", name)
			return nil, 2
		}
	}
	only, err := parsePhases(*phases)
	if err != nil {
		fmt.Fprintf(stderr, "kpf-bench: --phases: %v\n", err)
		return nil, 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	repo, err := findRepo()
	if err != nil {
		fmt.Fprintf(stderr, "kpf-bench: %v\n", err)
		return nil, 1
	}
	cfg := &Config{
		Repo: repo, Cluster: *cluster, Down: *down,
		Size: n, Streams: *streams, Rounds: *rounds, Conns: *conns, Concurrency: *conc, ConcRepeats: *concRepeats, ColdIdle: *coldIdle,
		HTTPDuration: *httpDur, HTTPWorkers: *httpWorkers, ProbeInterval: *probe, ReconvergeWindow: *window,
		ScaleForwards: *scaleN, ScaleNamespaces: *scaleNS, ScaleIdle: *scaleIdle, Smoke: *smoke,
		Link: *link, FarForwards: *farForwards,
		Phases:  only,
		OutDir:  *out,
		Command: strings.TrimSpace("go run ./cmd/kpf-bench " + strings.Join(args, " ")),
		Log:     log,
	}
	if cfg.OutDir == "" {
		if cfg.OutDir, cfg.BenchmarksMD, err = defaultOut(repo, *smoke); err != nil {
			fmt.Fprintf(stderr, "kpf-bench: %v\n", err)
			return nil, 1
		}
	}
	return cfg, 0
}
