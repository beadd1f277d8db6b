package bench

import (
	"fmt"
	"sort"
	"time"
)

// probe is one connection attempt of a prober.
type probe struct {
	start, end time.Time
	err        error
	// who is the backend that answered.
	who string
}

// recovery works out, from the probes of a pod deletion at t0, how many
// connections failed and when service came back: the end of the first
// successful probe started after the last failed one (zero when none
// failed). ok is false when no probe succeeded after the last failure.
func recovery(probes []probe, t0 time.Time) (failed int, back time.Duration, ok bool) {
	ps := append([]probe(nil), probes...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].start.Before(ps[j].start) })
	var lastFail time.Time
	for _, p := range ps {
		if p.err != nil && !p.start.Before(t0) {
			failed++
			lastFail = p.start
		}
	}
	if failed == 0 {
		return 0, 0, true
	}
	for _, p := range ps {
		if p.err == nil && p.start.After(lastFail) {
			return failed, p.end.Sub(t0), true
		}
	}
	return failed, 0, false
}

// metricDef declares a metric before any value is known.
type metricDef struct {
	id, group, name, unit string
	higherIsBetter        bool
}

// collector gathers the values of every metric, per tool, over the rounds.
type collector struct {
	defs   []metricDef
	values map[string]map[Tool][]float64
	errs   map[string]map[Tool]string
	// pairs are the ratio columns; nil means ratioPairs().
	pairs []ratioPair
}

func newCollector() *collector {
	return &collector{values: map[string]map[Tool][]float64{}, errs: map[string]map[Tool]string{}}
}

// define declares a metric; the report lists metrics in this order.
func (c *collector) define(d metricDef) {
	c.defs = append(c.defs, d)
	c.values[d.id] = map[Tool][]float64{}
	c.errs[d.id] = map[Tool]string{}
}

// add records one value.
func (c *collector) add(id string, t Tool, v float64) {
	if _, ok := c.values[id]; !ok {
		panic(fmt.Sprintf("bench: undefined metric %q", id))
	}
	c.values[id][t] = append(c.values[id][t], v)
}

// fail records that tool t could not measure metric id.
func (c *collector) fail(id string, t Tool, err error) {
	if _, ok := c.errs[id]; !ok {
		panic(fmt.Sprintf("bench: undefined metric %q", id))
	}
	c.errs[id][t] = err.Error()
}

// metrics returns the metrics with their summaries and ratios. A tool
// with an error but also values keeps its values (some rounds ran).
func (c *collector) metrics() []Metric {
	var out []Metric
	for _, d := range c.defs {
		m := Metric{ID: d.id, Group: d.group, Name: d.name, Unit: d.unit, HigherIsBetter: d.higherIsBetter, Results: map[Tool]Summary{}}
		for t, vs := range c.values[d.id] {
			if len(vs) > 0 {
				m.Results[t] = Summarize(vs)
			}
		}
		for t, e := range c.errs[d.id] {
			if _, ok := m.Results[t]; !ok {
				if m.Errors == nil {
					m.Errors = map[Tool]string{}
				}
				m.Errors[t] = e
			}
		}
		pairs := c.pairs
		if pairs == nil {
			pairs = ratioPairs()
		}
		m.computeRatios(pairs)
		out = append(out, m)
	}
	return out
}
