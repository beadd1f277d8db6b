package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/mattn/go-runewidth"
	"golang.org/x/term"

	"github.com/kpf-dev/kpf/internal/control"
)

// liveView redraws the status table in place on a terminal, with the most
// recent log lines under it. It uses the terminal's alternate screen, so
// the shell's screen comes back as it was when kpf exits.
type liveView struct {
	out  io.Writer
	fd   int
	logs *ringWriter
}

// stdoutTerminal returns stdout's file descriptor if the live view may draw
// on it: stdout is a terminal that understands cursor movement (see
// liveViewAllowed) and, on Windows, its console accepts virtual-terminal
// sequences. Otherwise kpf prints plain logs, as with --no-tui.
func stdoutTerminal(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	if !liveViewAllowed(term.IsTerminal(fd), os.Getenv("TERM"), runtime.GOOS) {
		return 0, false
	}
	// A console too old for escape sequences (conhost before Windows 10)
	// refuses the mode: plain logs then. The view turns the mode on again
	// for as long as it draws.
	restore, err := enableVT(f)
	if err != nil {
		return 0, false
	}
	restore()
	return fd, true
}

// liveViewAllowed decides whether the live view may draw, from whether
// stdout is a terminal, the TERM variable and the operating system (as
// runtime.GOOS). TERM=dumb (Emacs's shell, some CI runners) cannot move
// the cursor. On Unix an unset TERM says as little; Windows consoles do not
// set TERM, so there only dumb counts.
func liveViewAllowed(isTerminal bool, term, goos string) bool {
	switch {
	case !isTerminal:
		return false
	case term == "dumb":
		return false
	case term == "" && goos != "windows":
		return false
	}
	return true
}

// run redraws every interval until ctx is done.
func (v *liveView) run(ctx context.Context, snapshot func() control.Snapshot) {
	if f, ok := v.out.(*os.File); ok {
		if restore, err := enableVT(f); err == nil {
			defer restore()
		}
	}
	fmt.Fprint(v.out, "\x1b[?1049h\x1b[?25l") // alternate screen, hide cursor
	defer fmt.Fprint(v.out, "\x1b[?25h\x1b[?1049l")
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		v.draw(snapshot(), time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *liveView) draw(snap control.Snapshot, now time.Time) {
	width, height, err := term.GetSize(v.fd)
	if err != nil {
		width, height = 120, 40
	}
	io.WriteString(v.out, v.render(snap, now, width, height))
}

// render returns the escape sequences and text that paint snap and the
// recent logs on a screen of width × height cells.
func (v *liveView) render(snap control.Snapshot, now time.Time, width, height int) string {
	var b bytes.Buffer
	ready := 0
	for _, f := range snap.Forwards {
		if f.State == control.StateReady {
			ready++
		}
	}
	fmt.Fprintf(&b, "kpf up  %s  %d/%d ready  %s  (Ctrl-C stops)\n\n", snap.Config, ready, len(snap.Forwards), now.Format("15:04:05"))
	printStatusTable(&b, snap, now)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	room := height - len(lines) - 2
	if room > 0 {
		lines = append(lines, "", "── recent log "+strings.Repeat("─", max(width-15, 0)))
		lines = append(lines, v.logs.last(room)...)
	}
	return screen(lines, width, height)
}

// screen paints lines from the top of a width × height screen: at most
// height lines, each cut to width cells, the rest of each row and of the
// screen cleared. Characters whose width depends on the locale (→, ─ are
// two cells wide for a terminal in a CJK locale) are measured as
// go-runewidth reads the locale, so that a line never wraps.
func screen(lines []string, width, height int) string {
	var frame strings.Builder
	frame.WriteString("\x1b[H") // home
	if len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		if i > 0 {
			// No newline after the last line: on the bottom row it
			// would scroll the header off the screen.
			frame.WriteString("\n")
		}
		frame.WriteString(fit(runewidth.DefaultCondition, l, width))
		frame.WriteString("\x1b[K") // clear to end of line
	}
	frame.WriteString("\x1b[J") // clear below
	return frame.String()
}

// fit returns the longest prefix of line, made printable, that a terminal
// shows in at most width cells, measured by c: it cuts between characters
// (grapheme clusters), never inside a UTF-8 sequence, and counts East
// Asian wide characters as two cells. Tabs become spaces and other control characters
// are dropped, since the terminal would move the cursor for them.
func fit(c *runewidth.Condition, line string, width int) string {
	if width <= 0 {
		return ""
	}
	line = strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, line)
	return c.Truncate(line, width, "")
}

// ringWriter keeps the last lines written to it.
type ringWriter struct {
	mu    sync.Mutex
	lines []string
	max   int
	part  []byte
}

func newRingWriter(max int) *ringWriter { return &ringWriter{max: max} }

func (r *ringWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.part = append(r.part, p...)
	for {
		i := bytes.IndexByte(r.part, '\n')
		if i < 0 {
			break
		}
		r.lines = append(r.lines, string(r.part[:i]))
		r.part = r.part[i+1:]
	}
	if over := len(r.lines) - r.max; over > 0 {
		r.lines = append(r.lines[:0:0], r.lines[over:]...)
	}
	return len(p), nil
}

// last returns up to n of the most recent lines, oldest first.
func (r *ringWriter) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > len(r.lines) {
		n = len(r.lines)
	}
	return append([]string(nil), r.lines[len(r.lines)-n:]...)
}
