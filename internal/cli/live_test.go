package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"

	"github.com/kpf-dev/kpf/internal/control"
)

// checkRow fails unless row is valid UTF-8, free of U+FFFD and at most
// width cells wide as c measures it.
func checkRow(t *testing.T, c *runewidth.Condition, row string, width int) {
	t.Helper()
	if !utf8.ValidString(row) || strings.ContainsRune(row, utf8.RuneError) {
		t.Errorf("row %q is cut inside a character", row)
	}
	if w := c.StringWidth(row); w > width {
		t.Errorf("row %q is %d cells wide, more than the %d of the screen", row, w, width)
	}
}

func TestLiveFitWidth(t *testing.T) {
	narrow := &runewidth.Condition{EastAsianWidth: false}
	cjk := &runewidth.Condition{EastAsianWidth: true} // a terminal in a CJK locale
	for _, tt := range []struct {
		name  string
		c     *runewidth.Condition
		line  string
		width int
		want  string
	}{
		{"fits", narrow, "api  8080 → web:80", 40, "api  8080 → web:80"},
		{"cut after the arrow", narrow, "a → b", 3, "a →"},
		{"cut before the arrow", narrow, "ab→ c", 2, "ab"},
		{"arrow two cells in a CJK locale", cjk, "a → b", 3, "a "},
		{"separator", narrow, "── recent log ────", 4, "── r"},
		{"separator in a CJK locale", cjk, "──────", 5, "──"},
		{"wide runes", narrow, "日本語のポッド", 5, "日本"},
		{"wide rune does not fit at all", narrow, "日本", 1, ""},
		{"combining mark stays with its letter", narrow, "e\u0301tat", 1, "e\u0301"},
		{"combining marks take no cell", narrow, "cafe\u0301 ok", 5, "cafe\u0301 "},
		{"tab becomes a space", narrow, "a\tb", 3, "a b"},
		{"control characters dropped", narrow, "a\rb\x1bc\x00d", 10, "abcd"},
		{"zero width", narrow, "abc", 0, ""},
		{"negative width", narrow, "abc", -1, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fit(tt.c, tt.line, tt.width)
			if got != tt.want {
				t.Errorf("fit(%q, %d) = %q, want %q", tt.line, tt.width, got, tt.want)
			}
			checkRow(t, tt.c, got, max(tt.width, 0))
		})
	}
}

// rows returns the text of each row a frame of screen paints.
func rows(frame string) []string {
	for _, seq := range []string{"\x1b[H", "\x1b[K", "\x1b[J"} {
		frame = strings.ReplaceAll(frame, seq, "")
	}
	return strings.Split(frame, "\n")
}

func TestLiveScreenWidth(t *testing.T) {
	lines := []string{
		"kpf up  /home/dev/プロジェクト/forwards.yaml  1/2 ready  12:00:00  (Ctrl-C stops)",
		"",
		"api  8080 → default/service/api:80  ready",
		"── recent log " + strings.Repeat("─", 60),
		"level=INFO msg=\"listening\" local=127.0.0.1:8080 → 日本語 e\u0301",
		"a\tb",
	}
	c := runewidth.DefaultCondition
	for width := 1; width <= 90; width++ {
		for _, height := range []int{1, 3, len(lines), 40} {
			got := rows(screen(lines, width, height))
			if len(got) > height {
				t.Errorf("%dx%d: %d rows", width, height, len(got))
			}
			for _, row := range got {
				checkRow(t, c, row, width)
			}
		}
	}
}

func TestLiveRender(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	snap := control.Snapshot{
		Config: "/home/dev/forwards.yaml",
		Forwards: []control.Forward{
			{Name: "api", Target: "dev/default/service/api", State: control.StateReady, Since: now,
				Ports: []control.Port{{Local: "localhost:8080", Remote: "80"}}},
			{Name: "db", Target: "dev/default/service/db", State: control.StateWaiting, Since: now, Reason: "no ready pod",
				Ports: []control.Port{{Local: "localhost:5432", Remote: "5432"}}},
		},
	}
	logs := newRingWriter(10)
	logs.Write([]byte("time=12:00:00 level=INFO msg=\"config loaded\" forwards=api→db\n"))
	v := &liveView{logs: logs}
	c := runewidth.DefaultCondition
	for _, width := range []int{20, 40, 120} {
		got := rows(v.render(snap, now, width, 40))
		if width >= 60 && !strings.Contains(got[0], "1/2 ready") {
			t.Errorf("width %d: header %q does not count the one ready forward", width, got[0])
		}
		separator := false
		for _, row := range got {
			checkRow(t, c, row, width)
			separator = separator || strings.HasPrefix(row, "── recent log")
		}
		if !separator {
			t.Errorf("width %d: no log separator in\n%s", width, strings.Join(got, "\n"))
		}
	}
}

func TestLiveViewAllowed(t *testing.T) {
	for _, tt := range []struct {
		terminal bool
		term     string
		goos     string
		want     bool
	}{
		{true, "xterm-256color", "linux", true},
		{true, "xterm-256color", "darwin", true},
		{true, "screen", "linux", true},
		{false, "xterm-256color", "linux", false}, // piped or redirected
		{true, "dumb", "linux", false},
		{true, "dumb", "darwin", false},
		{true, "", "linux", false}, // nothing says the cursor can move
		{true, "", "darwin", false},
		{true, "", "windows", true}, // Windows consoles do not set TERM
		{true, "xterm-256color", "windows", true},
		{true, "dumb", "windows", false},
		{false, "", "windows", false},
	} {
		if got := liveViewAllowed(tt.terminal, tt.term, tt.goos); got != tt.want {
			t.Errorf("liveViewAllowed(terminal %v, TERM=%q, %s) = %v, want %v", tt.terminal, tt.term, tt.goos, got, tt.want)
		}
	}
}

// Output that is not a terminal gets plain logs.
func TestLiveStdoutTerminalNotATerminal(t *testing.T) {
	if _, ok := stdoutTerminal(&bytes.Buffer{}); ok {
		t.Error("a bytes.Buffer was taken for a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, ok := stdoutTerminal(w); ok {
		t.Error("a pipe was taken for a terminal")
	}
}
