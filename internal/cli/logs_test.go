package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogFilter(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	lines := []string{
		`time=2026-12-07T11:00:00.000Z level=INFO msg="forward ready" forward=web pod=ns/web-1`,
		`time=2026-12-07T11:55:00.000Z level=WARN msg="forward failed" forward=db reason="no ready endpoint"`,
		`time=2026-12-07T11:58:00.000Z level=INFO msg="config changed; converging" file=/f.yaml`,
		`{"time":"2026-12-07T11:59:00.5Z","level":"INFO","msg":"forward ready","forward":"web"}`,
	}
	for _, tt := range []struct {
		names []string
		since time.Duration
		want  []int
	}{
		{nil, 0, []int{0, 1, 2, 3}},
		{[]string{"web"}, 0, []int{0, 3}},
		{[]string{"db", "web"}, 0, []int{0, 1, 3}},
		{nil, 10 * time.Minute, []int{1, 2, 3}},
		{[]string{"web"}, 10 * time.Minute, []int{3}},
	} {
		keep := logFilter(tt.names, tt.since, now)
		var got []int
		for i, l := range lines {
			if keep(l) {
				got = append(got, i)
			}
		}
		if len(got) != len(tt.want) {
			t.Errorf("names %v since %v: kept %v, want %v", tt.names, tt.since, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("names %v since %v: kept %v, want %v", tt.names, tt.since, got, tt.want)
				break
			}
		}
	}
}

// A line still being written is shown once it ends, and only once.
func TestCopyLinesLeavesAPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("one\ntw"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all := func(string) bool { return true }
	var out strings.Builder
	if err := copyLines(&out, f, all); err != nil || out.String() != "one\n" {
		t.Fatalf("first read %q, %v; want only the whole line", out.String(), err)
	}
	w, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("o\nthree\n")
	w.Close()
	out.Reset()
	if err := copyLines(&out, f, all); err != nil || out.String() != "two\nthree\n" {
		t.Fatalf("second read %q, %v; want the rest", out.String(), err)
	}
}
