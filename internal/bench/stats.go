package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Summary condenses the values one tool produced for one metric over the
// rounds: the median and the range.
type Summary struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

// Summarize returns the median, minimum and maximum of xs, which it does
// not modify. The zero Summary (N == 0) stands for "no value".
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Summary{Median: Median(s), Min: s[0], Max: s[len(s)-1], Values: slices.Clone(xs)}
}

// Median returns the median of the sorted values: the middle one, or the
// mean of the two middle ones. It is NaN for no values.
func Median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return sorted[n/2]
	default:
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of the sorted
// values by the nearest-rank method: the smallest value such that at least
// p percent of the values are at or below it. It is NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Ratio returns a/b, and false when either is missing (NaN) or b is zero.
func Ratio(a, b float64) (float64, bool) {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return 0, false
	}
	return a / b, true
}

// ParseSize parses a byte count such as "1GiB", "256MiB", "4MB" or "1024".
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want a positive byte count such as 1GiB, 256MiB or 4096", s)
	}
	return n * mult, nil
}

// FormatSize prints a byte count in the largest binary unit that divides it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}
