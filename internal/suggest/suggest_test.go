package suggest

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"ports", "ports", 0},
		{"prots", "ports", 1}, // one swap
		{"servce", "service", 1},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3}, // OSA, not unrestricted Damerau (2)
		{"→x", "x→", 1},
	}
	for _, tt := range tests {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Distance(tt.b, tt.a); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetry)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	flags := []string{"file", "once", "timeout", "log-format", "log-file", "kubeconfig", "context"}
	tests := []struct {
		word string
		want string
	}{
		{"onec", "once"},
		{"timout", "timeout"},
		{"logformat", "log-format"},
		{"LOG_FILE", "log-file"},
		{"contxet", "context"},
		{"tim", "timeout"}, // prefix
		{"bogus", ""},
		{"", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.word, flags); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
}
