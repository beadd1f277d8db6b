// Package suggest finds the likely intended word for a mistyped one: the
// "did you mean" of kpf's messages.
package suggest

import "strings"

// Closest returns the candidate closest to word, or "" when none is close
// enough to be a likely typo. Case, '-' and '_' are ignored, and swapping
// two neighbouring letters counts as one edit, so "prots" finds "ports".
// A candidate of which word is a prefix also counts ("--tim" finds
// "--timeout"). Ties go to the earlier candidate.
func Closest(word string, candidates []string) string {
	w := normalize(word)
	if w == "" {
		return ""
	}
	best, bestDist := "", len([]rune(w))/3+1
	for _, c := range candidates {
		n := normalize(c)
		d := Distance(w, n)
		if d == 0 {
			return c
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	if best != "" {
		return best
	}
	if len(w) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(normalize(c), w) {
				return c
			}
		}
	}
	return ""
}

func normalize(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
}

// Distance is the optimal-string-alignment distance between a and b: the
// number of single-rune insertions, deletions, substitutions and swaps of
// two adjacent runes that turn a into b (Damerau–Levenshtein, each
// substring edited at most once).
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
