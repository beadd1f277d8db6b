package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/kpf-dev/kpf/pkg/control"
)

// liveView redraws the status table in place on a terminal, with the most
// recent log lines under it. It uses the terminal's alternate screen, so
// the shell's screen comes back as it was when kpf exits.
type liveView struct {
	out  io.Writer
	fd   int
	logs *ringWriter
}

// stdoutTerminal returns stdout's file descriptor if it is a terminal.
func stdoutTerminal(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

// run redraws every interval until ctx is done.
func (v *liveView) run(ctx context.Context, snapshot func() control.Snapshot) {
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
	var b bytes.Buffer
	ready := 0
	for _, f := range snap.Forwards {
		if f.State == "ready" {
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
	var frame strings.Builder
	frame.WriteString("\x1b[H") // home
	if len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		if len(l) > width {
			l = l[:width]
		}
		if i > 0 {
			// No newline after the last line: on the bottom row it
			// would scroll the header off the screen.
			frame.WriteString("\n")
		}
		frame.WriteString(l)
		frame.WriteString("\x1b[K") // clear to end of line
	}
	frame.WriteString("\x1b[J") // clear below
	io.WriteString(v.out, frame.String())
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
