// Package bench measures kpf against kubectl port-forward (SPDY and
// WebSocket) and against no tunnel at all, on the local test cluster: it
// deploys stand-in workloads whose pods the node agent maps to loopback
// servers in this process, runs the real kpf and kubectl binaries against
// them and writes a Markdown and JSON report. Command kpf-bench is its main.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/demo"
	"github.com/kpf-dev/kpf/internal/linksim"
)

// Config is what one run measures and where it writes.
type Config struct {
	// Repo is the kpf repository root.
	Repo string
	// Cluster is the local cluster's name, also its kube context.
	Cluster string
	// Down stops the cluster at the end.
	Down bool

	Size        int64 // bytes per throughput measurement
	Streams     int   // parallel streams of the aggregate measurement
	Rounds      int
	Conns       int // connections per latency measurement
	Concurrency int // of the concurrent latency measurement
	ConcRepeats int // runs of the concurrent latency measurement per round
	// ColdIdle is how long every tool sits idle before the first-burst
	// latency measurement.
	ColdIdle      time.Duration
	HTTPDuration  time.Duration
	HTTPWorkers   int
	ProbeInterval time.Duration // reconvergence dial interval
	// ReconvergeWindow is how long the prober watches kpf after a pod
	// deletion.
	ReconvergeWindow time.Duration
	ScaleForwards    int
	ScaleNamespaces  int
	ScaleIdle        time.Duration
	Smoke            bool
	// Link, if set, names the simulated link (linksim: lan, wan, far)
	// of a link run, which measures connection setup, HTTP, start-up and
	// reconvergence with every tool reaching the API server over it,
	// instead of the phases.
	Link string
	// FarForwards is how many forwards a link run starts at once.
	FarForwards int
	// Phases are the phases to run (tunnels, reconvergence, scale); empty
	// means all. The deploy phase runs when tunnels or reconvergence do.
	Phases []string

	// OutDir receives latest.md and latest.json.
	OutDir string
	// BenchmarksMD, when set, is the BENCHMARKS.md whose results section
	// the run replaces.
	BenchmarksMD string
	// Command is the command line the report names.
	Command string

	Stdout io.Writer
	Stderr io.Writer
	Log    *slog.Logger
}

// Namespaces the run creates (and deletes at the end).
const mainNamespace = "bench"

func scaleNamespace(i int) string { return fmt.Sprintf("bench-scale-%d", i) }

// runner holds what one run shares between its phases.
type runner struct {
	cfg        *Config
	log        *slog.Logger
	client     kubernetes.Interface
	kubeconfig string
	kpfBin     string
	// self is the kpf-bench executable, run in its minimal-forwarder
	// mode for the minimal columns.
	self string
	// apiPID and agentPID are the cluster's kube-apiserver and node
	// agent, whose CPU time the single-stream download records.
	apiPID, agentPID int
	tmp              string
	be               *backends
	col              *collector
	notes            []string
	failures         []string
}

// buildKpf builds the kpf binary the benchmark runs, into its temporary
// directory.
func (r *runner) buildKpf(ctx context.Context) error {
	r.kpfBin = filepath.Join(r.tmp, "kpf")
	var err error
	if r.self, err = os.Executable(); err != nil {
		return fmt.Errorf("find kpf-bench's executable: %w", err)
	}
	r.log.Info("building kpf")
	build := exec.CommandContext(ctx, "go", "build", "-o", r.kpfBin, "./cmd/kpf")
	build.Dir, build.Stdout, build.Stderr = r.cfg.Repo, r.cfg.Stderr, r.cfg.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build kpf: %w", err)
	}
	return nil
}

// installRelay builds kpf-relay where the cluster's node agent runs it for
// relay pods (the kpf-relay file in the cluster's directory).
func (r *runner) installRelay(ctx context.Context, clusterDir string) error {
	tmp := filepath.Join(clusterDir, "kpf-relay.new")
	build := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./cmd/kpf-relay")
	build.Dir, build.Stdout, build.Stderr = r.cfg.Repo, r.cfg.Stderr, r.cfg.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build kpf-relay: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(clusterDir, "kpf-relay")); err != nil {
		return fmt.Errorf("install kpf-relay: %w", err)
	}
	return nil
}

// runPhases runs the phases asked for (deploy first, when another needs
// it), recording each failure; a failed deploy ends the run.
func (r *runner) runPhases(ctx context.Context) {
	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"deploy", r.deploy},
		{"tunnels", r.tunnels},
		{"reconvergence", r.reconvergence},
		{"scale", r.scale},
	}
	want := map[string]bool{}
	for _, p := range r.cfg.Phases {
		want[p] = true
	}
	want["deploy"] = len(want) == 0 || want["tunnels"] || want["reconvergence"]
	for _, p := range phases {
		if len(r.cfg.Phases) > 0 && !want[p.name] {
			continue
		}
		if ctx.Err() != nil {
			r.failures = append(r.failures, fmt.Sprintf("%s: interrupted", p.name))
			continue
		}
		r.log.Info("phase", "name", p.name)
		if err := p.run(ctx); err != nil {
			r.log.Error("phase failed", "name", p.name, "err", err)
			r.failures = append(r.failures, fmt.Sprintf("%s: %v", p.name, oneLine(err.Error())))
			if p.name == "deploy" {
				return
			}
		}
	}
}

// Run starts (or reuses) the cluster, measures everything, writes the
// report to cfg.OutDir and returns it. Every process, backend and
// namespace it started is gone when it returns; the cluster keeps running
// unless cfg.Down. The error reports measurements that failed to run, in
// which case the report is still written and returned.
func Run(ctx context.Context, cfg *Config) (*Report, error) {
	log := cfg.Log
	log.Info("starting the local cluster (the first run builds it: 10-15 minutes)", "cluster", cfg.Cluster)
	c, err := demo.UpCluster(ctx, cfg.Repo, cfg.Cluster, cfg.Stderr)
	if err != nil {
		return nil, err
	}
	if cfg.Down {
		defer func() {
			if err := demo.DownCluster(context.WithoutCancel(ctx), cfg.Repo, cfg.Cluster, cfg.Stderr); err != nil {
				log.Error("stop the cluster", "err", err)
			}
		}()
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", c.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 200, 400
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	tmp, err := os.MkdirTemp("", "kpf-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	r := &runner{cfg: cfg, log: log, client: client, kubeconfig: c.Kubeconfig, tmp: tmp, col: newCollector(),
		apiPID: c.PID(demo.ComponentAPIServer), agentPID: c.PID(demo.ComponentNodeAgent)}
	for _, name := range []string{demo.ComponentAPIServer, demo.ComponentNodeAgent} {
		if c.PID(name) == 0 {
			r.note("kpfcluster reported no process named %s: the CPU table has no row for it", name)
		}
	}
	if err := r.buildKpf(ctx); err != nil {
		return nil, err
	}
	if err := r.installRelay(ctx, c.Dir); err != nil {
		return nil, err
	}
	if r.be, err = startBackends(ctx, log); err != nil {
		return nil, err
	}
	defer r.be.close()
	defer r.deleteNamespaces(context.WithoutCancel(ctx))

	report := &Report{Command: cfg.Command, Date: time.Now().UTC(), Params: cfg.params()}
	r.describe(ctx, report)
	if cfg.Link != "" {
		p, err := linksim.ProfileNamed(cfg.Link)
		if err != nil {
			return nil, err
		}
		report.Link = &LinkInfo{Name: p.Name, RTTMillis: ms(p.RTT), JitterMillis: ms(p.Jitter)}
		r.col.pairs = farRatioPairs()
		r.defineFarMetrics()
		if err := r.deploy(ctx); err != nil {
			r.failures = append(r.failures, "deploy: "+oneLine(err.Error()))
		} else if err := r.far(ctx); err != nil {
			r.failures = append(r.failures, "link: "+oneLine(err.Error()))
		}
	} else {
		r.defineMetrics()
		r.runPhases(ctx)
	}
	report.Metrics = r.col.metrics()
	for _, m := range report.Metrics {
		for t, e := range m.Errors {
			r.failures = append(r.failures, fmt.Sprintf("%s, %s: %s", m.Name, t, oneLine(e)))
		}
	}
	report.Notes, report.Failures = r.notes, r.failures
	// An interrupted run's partial table goes to the output directory
	// only: BENCHMARKS.md keeps the last complete one.
	if err := r.write(report, ctx.Err() == nil); err != nil {
		return report, err
	}
	if len(report.Failures) > 0 {
		return report, fmt.Errorf("%d measurements failed to run", len(report.Failures))
	}
	return report, nil
}

// oneLine joins the lines of s.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// note records an observation for the report.
func (r *runner) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	r.log.Info("note", "text", n)
	r.notes = append(r.notes, n)
}

func (cfg *Config) params() Params {
	return Params{FarForwards: cfg.FarForwards,
		SizeBytes: cfg.Size, Streams: cfg.Streams, Rounds: cfg.Rounds, Conns: cfg.Conns, Concurrency: cfg.Concurrency,
		ConcRepeats: cfg.ConcRepeats, ColdIdle: Duration(cfg.ColdIdle),
		HTTPDuration: Duration(cfg.HTTPDuration), HTTPWorkers: cfg.HTTPWorkers, ProbeInterval: Duration(cfg.ProbeInterval),
		ScaleForwards: cfg.ScaleForwards, ScaleNamespaces: cfg.ScaleNamespaces, ScaleIdle: Duration(cfg.ScaleIdle), Smoke: cfg.Smoke,
	}
}

// describe fills in the machine and versions.
func (r *runner) describe(ctx context.Context, rep *Report) {
	rep.Machine = machine()
	rep.GoVersion = runtime.Version()
	rep.KubectlVersion = "unknown"
	if out, err := exec.CommandContext(ctx, "kubectl", "version", "--client").Output(); err == nil {
		if line, _, _ := strings.Cut(string(out), "\n"); strings.Contains(line, ":") {
			rep.KubectlVersion = strings.TrimSpace(line[strings.Index(line, ":")+1:])
		}
	}
	rep.Kubernetes = "unknown"
	if v, err := r.client.Discovery().ServerVersion(); err == nil {
		rep.Kubernetes = v.GitVersion
	}
	rep.KpfRevision = "unknown"
	if out, err := exec.CommandContext(ctx, "git", "-C", r.cfg.Repo, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		rep.KpfRevision = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "-C", r.cfg.Repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			rep.KpfRevision += " (with uncommitted changes)"
		}
	}
}

// machine describes this host from /proc.
func machine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Kernel: runtime.GOOS}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(strings.NewReader(string(b)))
		for s.Scan() {
			var kib int64
			if _, err := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kib); err == nil {
				m.MemoryGiB = float64(kib) / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// deploy creates the main namespace's workloads and waits for them.
func (r *runner) deploy(ctx context.Context) error {
	if err := freshNamespace(ctx, r.client, mainNamespace, r.log); err != nil {
		return err
	}
	be := r.be
	if err := createDeployment(ctx, r.client, mainNamespace, mainApp, 1, podTemplate(mainApp, fmt.Sprint(be.sink.port()), be.http.port())); err != nil {
		return err
	}
	if err := createService(ctx, r.client, mainNamespace, mainService, mainApp, map[int32]string{80: "sink", 8080: "http"}); err != nil {
		return err
	}
	rcPorts := fmt.Sprintf("%d,%d", be.rc[0].port(), be.rc[1].port())
	if err := createDeployment(ctx, r.client, mainNamespace, "rc", 2, podTemplate("rc", rcPorts, 0)); err != nil {
		return err
	}
	if err := createService(ctx, r.client, mainNamespace, rcService, "rc", map[int32]string{80: "sink"}); err != nil {
		return err
	}
	if err := waitEndpoints(ctx, r.client, mainNamespace, mainService, mainApp, 1, 2*time.Minute); err != nil {
		return err
	}
	return waitEndpoints(ctx, r.client, mainNamespace, rcService, "rc", 2, 2*time.Minute)
}

// deleteNamespaces deletes every namespace a run creates and waits (a
// bounded time) for them to be gone.
func (r *runner) deleteNamespaces(ctx context.Context) {
	nss := []string{mainNamespace}
	for i := range r.cfg.ScaleNamespaces {
		nss = append(nss, scaleNamespace(i))
	}
	for _, ns := range nss {
		if err := deleteNamespace(ctx, r.client, ns, 2*time.Minute); err != nil {
			r.log.Warn("clean up", "err", err)
		}
	}
}

// write writes latest.md and latest.json to the output directory, prints
// the Markdown and, if asked and complete is set, updates BENCHMARKS.md.
func (r *runner) write(rep *Report, complete bool) error {
	var md strings.Builder
	if err := rep.WriteMarkdown(&md); err != nil {
		return err
	}
	var js strings.Builder
	if err := rep.WriteJSON(&js); err != nil {
		return err
	}
	if err := os.MkdirAll(r.cfg.OutDir, 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	base := "latest"
	if rep.Link != nil {
		base = "link-" + rep.Link.Name
	}
	mdPath, jsonPath := filepath.Join(r.cfg.OutDir, base+".md"), filepath.Join(r.cfg.OutDir, base+".json")
	for path, content := range map[string]string{mdPath: md.String(), jsonPath: js.String()} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	fmt.Fprintf(r.cfg.Stdout, "\n%s\n", md.String())
	r.log.Info("results written", "markdown", mdPath, "json", jsonPath)
	if r.cfg.BenchmarksMD == "" {
		return nil
	}
	if !complete {
		r.log.Warn("interrupted: BENCHMARKS.md left as it was", "file", r.cfg.BenchmarksMD)
		return nil
	}
	old, err := os.ReadFile(r.cfg.BenchmarksMD)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("update BENCHMARKS.md: %w", err)
	}
	updated := SpliceResults(string(old), md.String())
	if rep.Link != nil {
		updated = SpliceLinkResults(string(old), rep.Link.Name, md.String())
	}
	if err := os.WriteFile(r.cfg.BenchmarksMD, []byte(updated), 0o644); err != nil {
		return fmt.Errorf("update BENCHMARKS.md: %w", err)
	}
	r.log.Info("updated", "file", r.cfg.BenchmarksMD)
	return nil
}

// Markers around the generated part of BENCHMARKS.md.
const (
	resultsBegin = "<!-- results:begin (written by go tool -modfile=tools/go.mod task bench) -->"
	resultsEnd   = "<!-- results:end -->"
)

// SpliceResults returns doc with the text between the results markers
// replaced by results; a doc without markers is replaced by a skeleton
// with an introduction.
func SpliceResults(doc, results string) string {
	block := resultsBegin + "\n" + results + resultsEnd
	i := strings.Index(doc, resultsBegin)
	j := strings.Index(doc, resultsEnd)
	if i < 0 || j < i {
		return benchmarksIntro + "\n## Latest results\n\n" + block + "\n"
	}
	return doc[:i] + block + doc[j+len(resultsEnd):]
}

// linkMarkers are the markers around a link run's generated part of
// BENCHMARKS.md.
func linkMarkers(link string) (begin, end string) {
	return "<!-- link-" + link + ":begin (written by go tool -modfile=tools/go.mod task bench:" + link + ") -->", "<!-- link-" + link + ":end -->"
}

// SpliceLinkResults returns doc with the text between link's markers
// replaced by results; without the markers, the results are appended in
// a section of their own.
func SpliceLinkResults(doc, link, results string) string {
	begin, end := linkMarkers(link)
	block := begin + "\n" + results + end
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n### Link " + link + "\n\n" + block + "\n"
	}
	return doc[:i] + block + doc[j+len(end):]
}

// benchmarksIntro starts a new BENCHMARKS.md.
const benchmarksIntro = `# Benchmarks

kpf against ` + "`kubectl port-forward`" + ` (SPDY and WebSocket) and against no
tunnel at all ("direct": the client talks to the loopback backend itself,
the physical limit of this machine), on the local test cluster.

Reproduce with ` + "`go tool -modfile=tools/go.mod task bench`" + ` (` + "`go tool -modfile=tools/go.mod task bench -- --size 256MiB`" + ` for a
shorter run, ` + "`go tool -modfile=tools/go.mod task bench:smoke`" + ` to check that every measurement runs).
`
