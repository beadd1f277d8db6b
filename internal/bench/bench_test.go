package bench

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{1}, 1},
		{[]float64{1, 3}, 2},
		{[]float64{1, 2, 10}, 2},
		{[]float64{1, 2, 3, 100}, 2.5},
	}
	for _, tt := range tests {
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	tests := []struct {
		in   []float64
		p    float64
		want float64
	}{
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 1, 1},
		{hundred, 0.1, 1},
		{[]float64{5}, 99, 5},
		{[]float64{1, 2, 3}, 50, 2},
		{[]float64{1, 2, 3, 4}, 50, 2},
		{[]float64{1, 2, 3, 4}, 99, 4},
	}
	for _, tt := range tests {
		if got := Percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("Percentile(%d values, %v) = %v, want %v", len(tt.in), tt.p, got, tt.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile(nil) is not NaN")
	}
}

func TestSummarize(t *testing.T) {
	in := []float64{3, 1, 2}
	s := Summarize(in)
	if s.Median != 2 || s.Min != 1 || s.Max != 3 {
		t.Errorf("Summarize(%v) = %+v", in, s)
	}
	if in[0] != 3 {
		t.Error("Summarize sorted its input")
	}
	if got := Summarize(nil); len(got.Values) != 0 {
		t.Errorf("Summarize(nil) = %+v", got)
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b   float64
		want   float64
		wantOK bool
	}{
		{100, 20, 5, true},
		{1, 4, 0.25, true},
		{0, 4, 0, true},
		{1, 0, 0, false},
		{math.NaN(), 1, 0, false},
		{1, math.NaN(), 0, false},
	}
	for _, tt := range tests {
		got, ok := Ratio(tt.a, tt.b)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Ratio(%v, %v) = %v, %t; want %v, %t", tt.a, tt.b, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestMetricRatios(t *testing.T) {
	m := Metric{Results: map[Tool]Summary{
		ToolKpf:  Summarize([]float64{40, 60}),
		ToolSPDY: Summarize([]float64{20}),
	}}
	m.computeRatios(ratioPairs())
	if got := m.Ratios["kpf/kubectl-spdy"]; got != 2.5 {
		t.Errorf("kpf/kubectl-spdy = %v, want 2.5", got)
	}
	if _, ok := m.Ratios["kpf/kubectl-ws"]; ok {
		t.Error("ratio against an unmeasured tool")
	}
	if _, ok := m.Ratios["dialer/kpf"]; ok {
		t.Error("ratio of an unmeasured tool")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1GiB", 1 << 30}, {"256MiB", 256 << 20}, {"4MiB", 4 << 20}, {"4M", 4 << 20},
		{"10KB", 10000}, {"2GB", 2e9}, {"4096", 4096}, {"512B", 512},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if tt.want%1024 == 0 {
			if back, _ := ParseSize(FormatSize(tt.want)); back != tt.want {
				t.Errorf("FormatSize(%d) = %q does not parse back", tt.want, FormatSize(tt.want))
			}
		}
	}
	for _, bad := range []string{"", "GiB", "-1MiB", "0", "1.5GiB", "1TiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func TestRecovery(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	fail := errors.New("refused")
	ok := func(start, end int) probe { return probe{start: at(start), end: at(end)} }
	bad := func(start int) probe { return probe{start: at(start), end: at(start + 1), err: fail} }
	tests := []struct {
		name       string
		probes     []probe
		wantFailed int
		wantBack   time.Duration
		wantOK     bool
	}{
		{"no failure", []probe{ok(-20, -18), ok(0, 2), ok(20, 22)}, 0, 0, true},
		{"failures before the deletion do not count", []probe{bad(-40), ok(0, 2)}, 0, 0, true},
		{"outage", []probe{ok(-20, -18), bad(20), bad(40), ok(60, 75), ok(80, 81)}, 2, 75 * time.Millisecond, true},
		{"a success between failures", []probe{bad(20), ok(40, 41), bad(60), ok(80, 90)}, 2, 90 * time.Millisecond, true},
		{"out of order", []probe{ok(80, 90), bad(60), bad(20)}, 2, 90 * time.Millisecond, true},
		{"never back", []probe{ok(-20, -18), bad(20), bad(40)}, 2, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failed, back, ok := recovery(tt.probes, t0)
			if failed != tt.wantFailed || back != tt.wantBack || ok != tt.wantOK {
				t.Errorf("recovery = %d, %v, %t; want %d, %v, %t", failed, back, ok, tt.wantFailed, tt.wantBack, tt.wantOK)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 2 may hold spaces and parentheses.
	stat := "4242 (kpf (up) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 170 30 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil || got != 200 {
		t.Errorf("parseStatCPU = %d, %v; want 200", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parseStatCPU(garbage) succeeded")
	}
}

func TestBusyPercent(t *testing.T) {
	if got := busyPercent(cpuTimes{busy: 100, total: 1000}, cpuTimes{busy: 150, total: 1200}); got != 25 {
		t.Errorf("busyPercent = %v, want 25", got)
	}
	if got := busyPercent(cpuTimes{total: 5}, cpuTimes{total: 5}); got != 0 {
		t.Errorf("busyPercent over no time = %v, want 0", got)
	}
}

func TestSpliceResults(t *testing.T) {
	fresh := SpliceResults("", "TABLE\n")
	if !strings.HasPrefix(fresh, "# Benchmarks") || !strings.Contains(fresh, resultsBegin+"\nTABLE\n"+resultsEnd) {
		t.Errorf("new document:\n%s", fresh)
	}
	doc := "# Mine\n\nintro\n" + resultsBegin + "\nOLD\n" + resultsEnd + "\n\n## Notes kept\n"
	got := SpliceResults(doc, "NEW\n")
	want := "# Mine\n\nintro\n" + resultsBegin + "\nNEW\n" + resultsEnd + "\n\n## Notes kept\n"
	if got != want {
		t.Errorf("SpliceResults =\n%s\nwant\n%s", got, want)
	}
}

// sampleReport is a fixed report for the golden Markdown.
func sampleReport() *Report {
	c := newCollector()
	c.define(metricDef{"down", "Throughput", "download, 1 stream", "MB/s", true})
	c.define(metricDef{"p50", "Latency", "p50, sequential", "ms", false})
	c.define(metricDef{"failed", "Reconvergence", "failed connections", "count", false})
	c.define(metricDef{"http", "HTTP", "HTTP GET, keep-alive, 8 workers", "req/s", true})
	c.define(metricDef{"http-noka", "HTTP", "HTTP GET, new connection each, 8 workers", "req/s", true})
	for _, v := range []float64{2700, 2650, 2710} {
		c.add("down", ToolDirect, v)
	}
	for _, v := range []float64{180, 175.5, 190} {
		c.add("down", ToolKpf, v)
	}
	c.add("down", ToolSPDY, 20.1)
	c.add("down", ToolSPDY, 20.1)
	c.add("down", ToolKpfSPDY, 24.12)
	c.add("down", ToolMinimal, 200)
	c.add("down", ToolMinimalSPDY, 26.8)
	c.fail("down", ToolWS, errors.New("round 1: connection reset"))
	for _, tool := range []Tool{ToolDirect, ToolKpf, ToolSPDY, ToolWS} {
		c.add("p50", tool, 2.5)
	}
	c.add("p50", ToolDirect, 0.12)
	c.add("p50", ToolKpfSpare, 1.25)
	c.add("failed", ToolKpf, 0)
	c.add("failed", ToolSPDY, 9)
	c.add("failed", ToolWS, 10)
	for t, v := range map[Tool]float64{ToolDirect: 30000, ToolKpf: 9000, ToolSPDY: 3000, ToolWS: 2800, ToolDialer: 12000} {
		c.add("http", t, v)
	}
	for t, v := range map[Tool]float64{ToolDirect: 8000, ToolKpf: 1500, ToolSPDY: 400, ToolWS: 380} {
		c.add("http-noka", t, v)
	}
	c.fail("http-noka", ToolDialer, errors.New("round 1: no request succeeded"))
	return &Report{
		Command:        "go run ./cmd/kpf-bench --size 256MiB",
		Date:           time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC),
		Machine:        Machine{CPU: "Test CPU", Cores: 2, MemoryGiB: 23.5, Kernel: "Linux 6.1"},
		GoVersion:      "go1.26.8",
		KubectlVersion: "v1.32.4",
		Kubernetes:     "v1.37.2",
		KpfRevision:    "0123456789ab",
		Params: Params{SizeBytes: 256 << 20, Streams: 16, Rounds: 3, Conns: 2000, Concurrency: 32, ConcRepeats: 3, ColdIdle: Duration(35 * time.Second),
			HTTPDuration: Duration(5 * time.Second), HTTPWorkers: 8, ProbeInterval: Duration(20 * time.Millisecond),
			ScaleForwards: 200, ScaleNamespaces: 4, ScaleIdle: Duration(time.Minute)},
		Metrics:  c.metrics(),
		Notes:    []string{"kubectl-spdy exits when its pod is deleted"},
		Failures: []string{"download, 1 stream, kubectl-ws: round 1: connection reset"},
	}
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden.md")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/bench -run Golden -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("Markdown differs from %s (rerun with -update if intended):\n%s", golden, b.String())
	}
}

func TestJSONHasRatios(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kpf/kubectl-spdy"`, `"dialer/kpf"`, `"dialer/kubectl-spdy"`, `"httpDuration": "5s"`, `"median": 180`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b.String())
		}
	}
}

// An interrupted run writes its partial results to the output directory,
// but BENCHMARKS.md keeps the last complete run's.
func TestWriteLeavesBenchmarksMDAloneWhenInterrupted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		complete bool
	}{{"complete", true}, {"interrupted", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bm := filepath.Join(dir, "BENCHMARKS.md")
			before := "# Benchmarks\n\n" + resultsBegin + "\nthe last complete run\n" + resultsEnd + "\n"
			if err := os.WriteFile(bm, []byte(before), 0o644); err != nil {
				t.Fatal(err)
			}
			r := &runner{
				cfg: &Config{OutDir: filepath.Join(dir, "out"), BenchmarksMD: bm, Stdout: io.Discard},
				log: slog.New(slog.DiscardHandler),
			}
			if err := r.write(sampleReport(), tc.complete); err != nil {
				t.Fatal(err)
			}
			latest, err := os.ReadFile(filepath.Join(dir, "out", "latest.md"))
			if err != nil || !strings.Contains(string(latest), "0123456789ab") {
				t.Fatalf("latest.md: %v, %q", err, latest)
			}
			after, err := os.ReadFile(bm)
			if err != nil {
				t.Fatal(err)
			}
			kept := string(after) == before
			if kept == tc.complete {
				t.Errorf("complete=%v: BENCHMARKS.md kept=%v:\n%s", tc.complete, kept, after)
			}
			if tc.complete && !strings.Contains(string(after), "0123456789ab") {
				t.Errorf("BENCHMARKS.md lacks the new results:\n%s", after)
			}
		})
	}
}

func TestSpliceLinkResults(t *testing.T) {
	begin, end := linkMarkers("far")
	doc := "# B\n\n### Link far\n\n" + begin + "\nOLD\n" + end + "\n\n## Latest results\n\n" + resultsBegin + "\nLOOPBACK\n" + resultsEnd + "\n"
	got := SpliceLinkResults(doc, "far", "NEW\n")
	want := strings.Replace(doc, "\nOLD\n", "\nNEW\n", 1)
	if got != want {
		t.Errorf("SpliceLinkResults =\n%s\nwant\n%s", got, want)
	}
	// Another link's block, and the loopback results, are left alone;
	// without its markers the link's results get a section at the end.
	got = SpliceLinkResults(doc, "wan", "WAN\n")
	wb, we := linkMarkers("wan")
	if !strings.HasPrefix(got, doc[:len(doc)-1]) || !strings.HasSuffix(got, "### Link wan\n\n"+wb+"\nWAN\n"+we+"\n") {
		t.Errorf("SpliceLinkResults without markers =\n%s", got)
	}
}

// sampleLinkReport is a fixed link-run report.
func sampleLinkReport() *Report {
	c := newCollector()
	c.pairs = farRatioPairs()
	c.define(metricDef{mFarSeqP50, "Connection setup", "p50, sequential", "ms", false})
	c.define(metricDef{mFarHTTPNew, "HTTP", "GET, new connection each", "req/s", true})
	for t, v := range map[Tool]float64{ToolDirect: 151, ToolKpf: 156, ToolKpfSPDY: 156, ToolSPDY: 461, ToolWS: 462} {
		c.add(mFarSeqP50, t, v)
	}
	for t, v := range map[Tool]float64{ToolDirect: 52, ToolKpf: 49.6, ToolWS: 16} {
		c.add(mFarHTTPNew, t, v)
	}
	return &Report{
		Command: "go run ./cmd/kpf-bench --link far", Date: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC),
		Machine: Machine{CPU: "Test CPU", Cores: 2, MemoryGiB: 23.5, Kernel: "Linux 6.1"}, GoVersion: "go1.26.8",
		KubectlVersion: "v1.32.4", Kubernetes: "v1.37.2", KpfRevision: "0123456789ab",
		Params: Params{Rounds: 3, Conns: 100, Concurrency: 8, ColdIdle: Duration(time.Minute), HTTPDuration: Duration(5 * time.Second),
			HTTPWorkers: 8, ProbeInterval: Duration(20 * time.Millisecond), FarForwards: 20},
		Link:    &LinkInfo{Name: "far", RTTMillis: 150, JitterMillis: 10},
		Metrics: c.metrics(),
	}
}

func TestLinkMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sampleLinkReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| link | far: 150 ms round trip ±10 ms,",
		"| metric | direct | kpf | kpf-spdy | kubectl-spdy | kubectl-ws | kpf/kubectl-ws | kpf/kubectl-spdy | kpf-spdy/kubectl-spdy | kpf/direct |",
		// 156/462, 156/461, 156/461, 156/151
		"| p50, sequential (ms) | 151 | 156 | 156 | 461 | 462 | 0.34× | 0.34× | 0.34× | 1.03× |",
		// kpf-spdy measured no HTTP here: its column and ratio are left
		// out of that group; kubectl-spdy's stays, empty.
		"| GET, new connection each (req/s) | 52 | 49.6 | – | 16 | 3.10× | – | 0.95× |",
		"### Round trips (median ÷ 150 ms RTT)",
		"| p50, sequential | 1.0 | 1.0 | 1.0 | 3.1 | 3.1 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the link report lacks %q:\n%s", want, md)
		}
	}
	// Rates have no round trips.
	if strings.Contains(md, "| GET, new connection each | ") {
		t.Errorf("the round-trip table counts a rate:\n%s", md)
	}
}

func TestParseArgsLink(t *testing.T) {
	cfg, code := parseArgs([]string{"--link", "wan"}, io.Discard)
	if cfg == nil {
		t.Fatalf("--link wan: exit %d", code)
	}
	if cfg.Link != "wan" || cfg.Conns != 100 || cfg.Concurrency != 8 || cfg.ColdIdle != time.Minute || cfg.FarForwards != 20 {
		t.Errorf("--link wan: link %q, conns %d, concurrency %d, cold idle %s, forwards %d; want wan, 100, 8, 1m, 20",
			cfg.Link, cfg.Conns, cfg.Concurrency, cfg.ColdIdle, cfg.FarForwards)
	}
	cfg, _ = parseArgs([]string{"--link", "far", "--conns", "7"}, io.Discard)
	if cfg == nil || cfg.Conns != 7 {
		t.Errorf("--conns given with --link is not kept: %+v", cfg)
	}
	cfg, _ = parseArgs([]string{"--smoke", "--link", "wan"}, io.Discard)
	if cfg == nil || cfg.Conns != 20 || cfg.Rounds != 1 || cfg.FarForwards != 5 || cfg.ColdIdle != time.Second {
		t.Errorf("--smoke --link wan: %+v", cfg)
	}
	for _, args := range [][]string{{"--link", "moon"}, {"--link", "wan", "--phases", "scale"}} {
		var stderr bytes.Buffer
		if cfg, code := parseArgs(args, &stderr); cfg != nil || code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		} else if stderr.Len() == 0 {
			t.Errorf("%q: no message", args)
		}
	}
}
