package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Tool is one way of reaching the backend.
type Tool string

// The tools compared. Direct is no tunnel at all: the physical limit.
const (
	ToolDirect Tool = "direct"
	ToolKpf    Tool = "kpf"
	// ToolKpfSpare is kpf with spare connections (the forward's spare
	// field, see SpareConnections), measured for connection setup and
	// HTTP only.
	ToolKpfSpare Tool = "kpf-spare"
	// ToolKpfSPDY is kpf on the SPDY transport
	// (KUBECTL_PORT_FORWARD_WEBSOCKETS=false, as kubectl-spdy is run),
	// measured for throughput and connection setup: the like-for-like
	// peer of kubectl-spdy, where ToolKpf, on WebSocket, is kubectl-ws's.
	ToolKpfSPDY Tool = "kpf-spdy"
	ToolSPDY    Tool = "kubectl-spdy"
	ToolWS      Tool = "kubectl-ws"
	// ToolMinimal is the cheapest forwarder the WebSocket path allows
	// (minimalForwarder, in a process of its own), single-stream download
	// only: the floor that shows what any forwarder process could reach
	// there.
	ToolMinimal Tool = "minimal-ws"
	// ToolMinimalSPDY is the same floor on the SPDY transport, the peer
	// of kpf-spdy and kubectl-spdy.
	ToolMinimalSPDY Tool = "minimal-spdy"
	// ToolDialer is the Go Dialer (package pkg/dialer) in the benchmark's
	// own process, as an http.Transport's DialContext: HTTP only.
	ToolDialer Tool = "dialer"
	// ToolKpfRelay is kpf reaching the same backends as a host: forward,
	// through kpf's relay pod (which the local cluster runs as a process,
	// dialling the backends on loopback), measured for throughput,
	// connection setup and HTTP: the cost of the relay against kpf to a
	// pod.
	ToolKpfRelay Tool = "kpf-relay"
)

// allTools returns the tools in the order the report's columns show them.
func allTools() []Tool {
	return []Tool{ToolDirect, ToolKpf, ToolKpfSpare, ToolKpfSPDY, ToolKpfRelay, ToolMinimal, ToolMinimalSPDY, ToolSPDY, ToolWS, ToolDialer}
}

// optionalTool reports whether t's column shows only in the groups where
// it measured something.
func optionalTool(t Tool) bool {
	return t == ToolDialer || t == ToolKpfSpare || t == ToolKpfSPDY || t == ToolKpfRelay || t == ToolMinimal || t == ToolMinimalSPDY
}

// SpareConnections is the spare field of the kpf-spare forward.
const SpareConnections = 4

// ratioPair is one ratio column: num's median ÷ den's.
type ratioPair struct{ num, den Tool }

func (p ratioPair) key() string { return string(p.num) + "/" + string(p.den) }

// ratioPairs returns the ratio columns, in order.
func ratioPairs() []ratioPair {
	return []ratioPair{
		{ToolKpf, ToolSPDY}, {ToolKpf, ToolWS},
		{ToolKpfSpare, ToolSPDY}, {ToolKpfSpare, ToolWS},
		{ToolKpfSPDY, ToolSPDY},
		{ToolKpf, ToolMinimal}, {ToolMinimal, ToolWS},
		{ToolKpfSPDY, ToolMinimalSPDY}, {ToolMinimalSPDY, ToolSPDY},
		{ToolDialer, ToolKpf}, {ToolDialer, ToolSPDY},
		{ToolKpfRelay, ToolKpf},
	}
}

// Metric is one row of the report: each tool's values over the rounds.
type Metric struct {
	ID    string `json:"id"`
	Group string `json:"group"`
	Name  string `json:"name"`
	Unit  string `json:"unit"`
	// HigherIsBetter is true for rates (throughput, requests/s).
	HigherIsBetter bool `json:"higherIsBetter"`
	// Results holds the tools measured; a tool not in it was not measured
	// for this metric (or failed, see Errors).
	Results map[Tool]Summary `json:"results"`
	Errors  map[Tool]string  `json:"errors,omitempty"`
	// Ratios maps "kpf/kubectl-spdy", "kpf/kubectl-ws", "dialer/kpf" and
	// "dialer/kubectl-spdy" to the ratio of the medians, when both were
	// measured.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

// computeRatios fills m.Ratios from the medians, for pairs.
func (m *Metric) computeRatios(pairs []ratioPair) {
	m.Ratios = map[string]float64{}
	for _, p := range pairs {
		a, okA := m.Results[p.num]
		b, okB := m.Results[p.den]
		if !okA || !okB {
			continue
		}
		if r, ok := Ratio(a.Median, b.Median); ok {
			m.Ratios[p.key()] = r
		}
	}
}

// measures reports whether m has a result or an error for t.
func (m Metric) measures(t Tool) bool {
	_, ok := m.Results[t]
	_, failed := m.Errors[t]
	return ok || failed
}

// Duration is a time.Duration that JSON shows as text, such as "5s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Machine describes where the benchmark ran.
type Machine struct {
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	MemoryGiB float64 `json:"memoryGiB"`
	Kernel    string  `json:"kernel"`
}

// Params are the benchmark's parameters, as the report shows them.
type Params struct {
	SizeBytes       int64    `json:"sizeBytes"`
	Streams         int      `json:"streams"`
	Rounds          int      `json:"rounds"`
	Conns           int      `json:"conns"`
	Concurrency     int      `json:"concurrency"`
	ConcRepeats     int      `json:"concRepeats,omitempty"`
	ColdIdle        Duration `json:"coldIdle,omitempty"`
	HTTPDuration    Duration `json:"httpDuration"`
	HTTPWorkers     int      `json:"httpWorkers"`
	ProbeInterval   Duration `json:"probeInterval"`
	ScaleForwards   int      `json:"scaleForwards"`
	ScaleNamespaces int      `json:"scaleNamespaces"`
	ScaleIdle       Duration `json:"scaleIdle"`
	Smoke           bool     `json:"smoke"`
	// FarForwards is how many forwards a link run starts at once.
	FarForwards int `json:"farForwards,omitempty"`
}

// LinkInfo is the simulated link of a link run.
type LinkInfo struct {
	Name         string  `json:"name"`
	RTTMillis    float64 `json:"rttMs"`
	JitterMillis float64 `json:"jitterMs,omitempty"`
}

// Report is everything one run produced.
type Report struct {
	Command        string    `json:"command"`
	Date           time.Time `json:"date"`
	Machine        Machine   `json:"machine"`
	GoVersion      string    `json:"goVersion"`
	KubectlVersion string    `json:"kubectlVersion"`
	Kubernetes     string    `json:"kubernetes"`
	KpfRevision    string    `json:"kpfRevision"`
	Params         Params    `json:"params"`
	// Link is the simulated link of a link run (--link); nil for a
	// loopback run.
	Link    *LinkInfo `json:"link,omitempty"`
	Metrics []Metric  `json:"metrics"`
	// Notes are observations that do not fit a number, such as how
	// kubectl ended when its pod went away.
	Notes []string `json:"notes,omitempty"`
	// Failures are the measurements that did not run to the end.
	Failures []string `json:"failures,omitempty"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return nil
}

// WriteMarkdown writes r as Markdown: a header table of the environment and
// parameters, then one table per metric group.
func (r *Report) WriteMarkdown(w io.Writer) error {
	if r.Link != nil {
		return r.writeLinkMarkdown(w)
	}
	var b strings.Builder
	p := r.Params
	fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n", r.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "| machine | %s, %d cores, %.1f GiB RAM, %s |\n", r.Machine.CPU, r.Machine.Cores, r.Machine.MemoryGiB, r.Machine.Kernel)
	fmt.Fprintf(&b, "| Go | %s |\n", r.GoVersion)
	fmt.Fprintf(&b, "| kubectl | %s |\n", r.KubectlVersion)
	fmt.Fprintf(&b, "| Kubernetes | %s (local test cluster on loopback) |\n", r.Kubernetes)
	fmt.Fprintf(&b, "| kpf | %s |\n", r.KpfRevision)
	fmt.Fprintf(&b, "| parameters | size %s, %d parallel streams, %d rounds, %d connections (sequential and %d concurrent%s%s), HTTP %s × %d workers, reconvergence probe every %s, scale %d forwards in %d namespaces, idle window %s |\n",
		FormatSize(p.SizeBytes), p.Streams, p.Rounds, p.Conns, p.Concurrency, concRepeats(p.ConcRepeats), coldIdle(p.ColdIdle),
		time.Duration(p.HTTPDuration), p.HTTPWorkers, time.Duration(p.ProbeInterval),
		p.ScaleForwards, p.ScaleNamespaces, time.Duration(p.ScaleIdle))
	b.WriteString("\nValues are the median over the rounds (over every run, for a measurement run more than once per round), with (min–max) when they differ. " +
		"Ratios are kpf's median ÷ kubectl's: for rates (MB/s, req/s) above 1 means kpf is faster; " +
		"for times and counts below 1 means kpf is better. " +
		"The dialer column is the Go Dialer (pkg/dialer) inside the benchmark process, HTTP only, " +
		"and a group shows it only when it measured something there; dialer/kpf is its median ÷ kpf's local port's, " +
		"dialer/kubectl-spdy its median ÷ kubectl-spdy's. " +
		fmt.Sprintf("The kpf-spare column is a second kpf process, with one forward to the same service that keeps spare: %d connections open ahead of clients (connection setup and HTTP only). ", SpareConnections) +
		"The kpf-spdy column is a third kpf process on the SPDY transport (KUBECTL_PORT_FORWARD_WEBSOCKETS=false, as kubectl-spdy runs), throughput and connection setup: " +
		"kpf-spdy/kubectl-spdy and kpf/kubectl-ws compare each transport with itself. " +
		"The minimal-ws column is the cheapest forwarder the WebSocket path allows, in a process of its own as kpf and kubectl are (kpf-bench minimal-forwarder: one port-forward connection per client, one goroutine parsing the frames in place, reads batched as kpf's are), single-stream download only: " +
		"minimal-ws/kubectl-ws is what any forwarder process could reach there, kpf/minimal-ws how close kpf comes. " +
		"The minimal-spdy column is the same on the SPDY transport (an HTTP upgrade to SPDY/3.1, frames read and written on the TLS connection): " +
		"minimal-spdy/kubectl-spdy and kpf-spdy/minimal-spdy. " +
		"The kpf-relay column is a fourth kpf process reaching the same backends as a host: forward, through kpf's relay pod (run by the local cluster as a process that dials the backends on loopback), " +
		"throughput, connection setup and HTTP: kpf-relay/kpf is the relay's cost against kpf to a pod. " +
		"– means not applicable.\n")

	var groups []string
	for _, m := range r.Metrics {
		if !slices.Contains(groups, m.Group) {
			groups = append(groups, m.Group)
		}
	}
	for _, g := range groups {
		r.writeGroup(&b, g, allTools(), ratioPairs())
	}
	r.writeNotes(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeNotes writes the notes and failures, if any.
func (r *Report) writeNotes(b *strings.Builder) {
	if len(r.Notes) > 0 {
		b.WriteString("\n### Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n### Failures\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(b, "- %s\n", f)
		}
	}
}

// writeLinkMarkdown writes a link run's report: its environment and
// link, one table per group, and the round trips each time amounts to.
func (r *Report) writeLinkMarkdown(w io.Writer) error {
	var b strings.Builder
	p, l := r.Params, r.Link
	fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n", r.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "| machine | %s, %d cores, %.1f GiB RAM, %s |\n", r.Machine.CPU, r.Machine.Cores, r.Machine.MemoryGiB, r.Machine.Kernel)
	fmt.Fprintf(&b, "| Go, kubectl, Kubernetes | %s, %s, %s (local test cluster on loopback) |\n", r.GoVersion, r.KubectlVersion, r.Kubernetes)
	fmt.Fprintf(&b, "| kpf | %s |\n", r.KpfRevision)
	link := fmt.Sprintf("%s: %s ms round trip", l.Name, formatValue(l.RTTMillis))
	if l.JitterMillis > 0 {
		link += fmt.Sprintf(" ±%s ms", formatValue(l.JitterMillis))
	}
	fmt.Fprintf(&b, "| link | %s, between every tool and the kube-apiserver, and between direct and the backend |\n", link)
	fmt.Fprintf(&b, "| parameters | %d rounds, %d connections sequential and %d concurrent, HTTP %s × %d workers, first connection after %s idle, %d forwards at once, reconvergence probe every %s |\n",
		p.Rounds, p.Conns, p.Concurrency, time.Duration(p.HTTPDuration), p.HTTPWorkers, time.Duration(p.ColdIdle), p.FarForwards, time.Duration(p.ProbeInterval))
	b.WriteString("\nValues are the median over the rounds, with (min–max) when they differ. " +
		"Ratios are the first tool's median ÷ the second's: for req/s above 1 means the first is faster, for times and counts below 1 means it is better. " +
		"direct is no tunnel: the client reaches the backend over a link of the same profile, the physical reference for one request and its answer. " +
		"kpf runs on WebSocket, kubectl's default (kubectl-ws); kpf-spdy and kubectl-spdy on the SPDY upgrade.\n")
	var groups []string
	for _, m := range r.Metrics {
		if !slices.Contains(groups, m.Group) {
			groups = append(groups, m.Group)
		}
	}
	for _, g := range groups {
		r.writeGroup(&b, g, farTools(), farRatioPairs())
	}
	b.WriteString(linkRoundTrips(r))
	r.writeNotes(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeGroup writes the table of one group of metrics: a column for each
// of candidates (an optional one only where it measured something) and
// for each of pairs whose tools both show.
func (r *Report) writeGroup(b *strings.Builder, g string, candidates []Tool, ratios []ratioPair) {
	var tools []Tool
	for _, t := range candidates {
		shown := !optionalTool(t)
		for _, m := range r.Metrics {
			if m.Group == g && m.measures(t) {
				shown = true
			}
		}
		if shown {
			tools = append(tools, t)
		}
	}
	var pairs []ratioPair
	for _, p := range ratios {
		if slices.Contains(tools, p.num) && slices.Contains(tools, p.den) {
			pairs = append(pairs, p)
		}
	}
	fmt.Fprintf(b, "\n### %s\n\n", g)
	b.WriteString("| metric |")
	for _, t := range tools {
		fmt.Fprintf(b, " %s |", t)
	}
	for _, p := range pairs {
		fmt.Fprintf(b, " %s |", p.key())
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", len(tools)+len(pairs)))
	b.WriteString("\n")
	for _, m := range r.Metrics {
		if m.Group != g {
			continue
		}
		fmt.Fprintf(b, "| %s (%s) |", m.Name, m.Unit)
		for _, t := range tools {
			fmt.Fprintf(b, " %s |", cell(m, t))
		}
		for _, p := range pairs {
			if v, ok := m.Ratios[p.key()]; ok {
				fmt.Fprintf(b, " %s |", formatRatio(v))
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
}

// cell formats tool t's result for m.
func cell(m Metric, t Tool) string {
	if _, failed := m.Errors[t]; failed {
		return "error"
	}
	s, ok := m.Results[t]
	if !ok || len(s.Values) == 0 {
		return "–"
	}
	if s.Min == s.Max {
		return formatValue(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", formatValue(s.Median), formatValue(s.Min), formatValue(s.Max))
}

// formatValue prints v with about three significant digits.
func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "?"
	case a == 0 || a >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// formatRatio prints a ratio such as "0.93×".
func formatRatio(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// concRepeats describes how often each round runs the concurrent latency
// measurement, when more than once.
func concRepeats(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(", the concurrent ones %d times per round", n)
}

// coldIdle describes the idle time before the first-burst latency
// measurement, if the run had one.
func coldIdle(d Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", the first burst of each round after %s idle", time.Duration(d))
}
