package config

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
)

// errBusy stands in for Windows's sharing violation.
var errBusy = errors.New("the process cannot access the file because it is being used by another process")

// loopHarness runs a fileWatcher's loop on channels the test feeds, inside
// a synctest bubble, so that the debounce timer runs on the bubble's clock.
type loopHarness struct {
	path    string
	events  chan fsnotify.Event
	errs    chan error
	out     chan Update
	settled chan bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func startLoop(t *testing.T, read func(string) ([]byte, error)) *loopHarness {
	t.Helper()
	h := &loopHarness{
		path:    filepath.Join(t.TempDir(), FileName),
		events:  make(chan fsnotify.Event),
		errs:    make(chan error),
		out:     make(chan Update),
		settled: make(chan bool, 100),
		done:    make(chan struct{}),
	}
	if read == nil {
		read = readFile
	}
	w := &fileWatcher{
		path: h.path, log: slog.New(slog.NewTextHandler(io.Discard, nil)), out: h.out,
		settled: func(sent bool) { h.settled <- sent },
		read:    read,
		busy:    func(err error) bool { return errors.Is(err, errBusy) },
	}
	write(t, h.path, config("initial", "18080"))
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { defer close(h.done); w.loop(ctx, h.events, h.errs) }()
	wantForward(t, <-h.out, "initial")
	return h
}

func (h *loopHarness) stop() {
	h.cancel()
	<-h.done
}

// quiet lets the bubble's clock run until the loop has been idle for
// longer than any debounce and retry it may have pending, and returns the
// updates sent meanwhile. The bubble's clock moves only while every
// goroutine in it is blocked, so nothing the loop is doing is cut short.
func (h *loopHarness) quiet() []Update {
	var got []Update
	for {
		select {
		case u := <-h.out:
			got = append(got, u)
		case <-time.After((busyRetries + 10) * debounce):
			return got
		}
	}
}

// looks returns what the loop reported of each look at the file so far
// (true: it sent an update).
func (h *loopHarness) looks() []bool {
	var got []bool
	for {
		select {
		case sent := <-h.settled:
			got = append(got, sent)
		default:
			return got
		}
	}
}

// Each file system watcher reports an editor's save as its own burst of
// events; each burst gives one reload, and events about other files none.
func TestWatchLoopOneReloadPerSave(t *testing.T) {
	for _, tt := range []struct {
		name   string
		events func(dir string) []fsnotify.Event
	}{
		{"inotify, rename over", func(dir string) []fsnotify.Event {
			return []fsnotify.Event{
				{Name: filepath.Join(dir, ".forwards.yaml.tmp"), Op: fsnotify.Create},
				{Name: filepath.Join(dir, ".forwards.yaml.tmp"), Op: fsnotify.Write},
				{Name: filepath.Join(dir, ".forwards.yaml.tmp"), Op: fsnotify.Rename},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Create},
			}
		}},
		{"kqueue, rename over", func(dir string) []fsnotify.Event {
			// The replaced file's vnode reports its removal, the
			// directory's rescan the new entry.
			return []fsnotify.Event{
				{Name: filepath.Join(dir, ".forwards.yaml.tmp"), Op: fsnotify.Create},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Remove},
				{Name: filepath.Join(dir, ".forwards.yaml.tmp"), Op: fsnotify.Rename},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Create},
			}
		}},
		{"kqueue, vim's backup rename", func(dir string) []fsnotify.Event {
			return []fsnotify.Event{
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Rename},
				{Name: filepath.Join(dir, FileName+"~"), Op: fsnotify.Create},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Create},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Write},
				{Name: filepath.Join(dir, FileName+"~"), Op: fsnotify.Remove},
			}
		}},
		{"ReadDirectoryChangesW, rename over", func(dir string) []fsnotify.Event {
			return []fsnotify.Event{
				{Name: filepath.Join(dir, "forwards.yaml.tmp"), Op: fsnotify.Create},
				{Name: filepath.Join(dir, "forwards.yaml.tmp"), Op: fsnotify.Write},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Remove},
				{Name: filepath.Join(dir, "forwards.yaml.tmp"), Op: fsnotify.Rename},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Create},
			}
		}},
		{"ReadDirectoryChangesW, write in place", func(dir string) []fsnotify.Event {
			return []fsnotify.Event{
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Write},
				{Name: filepath.Join(dir, FileName), Op: fsnotify.Write},
			}
		}},
		{"case-insensitive file system", func(dir string) []fsnotify.Event {
			// -f Forwards.yaml names the file forwards.yaml on macOS and
			// Windows; the events carry the name on disk.
			return []fsnotify.Event{{Name: filepath.Join(dir, "FORWARDS.YAML"), Op: fsnotify.Write}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startLoop(t, nil)
				defer h.stop()
				for save := range 2 {
					name := []string{"first", "second"}[save]
					write(t, h.path, config(name, "18080"))
					for _, ev := range tt.events(filepath.Dir(h.path)) {
						h.events <- ev
					}
					got := h.quiet()
					if len(got) != 1 {
						t.Fatalf("save %d: %d updates, want 1: %+v", save+1, len(got), got)
					}
					wantForward(t, got[0], name)
				}
				if looks := h.looks(); len(looks) != 2 || !looks[0] || !looks[1] {
					t.Errorf("looks at the file after the saves (true: sent) = %v, want [true true]", looks)
				}
			})
		})
	}
}

func TestWatchLoopIgnoresOtherFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startLoop(t, nil)
		defer h.stop()
		write(t, h.path, config("unseen", "18080"))
		dir := filepath.Dir(h.path)
		for _, name := range []string{"other.yaml", FileName + ".tmp", "." + FileName + ".swp"} {
			h.events <- fsnotify.Event{Name: filepath.Join(dir, name), Op: fsnotify.Write}
		}
		if got, looks := h.quiet(), h.looks(); len(got) != 0 || len(looks) != 0 {
			t.Fatalf("events about other files gave updates %+v, looks %v", got, looks)
		}
	})
}

// An error from the watcher may mean lost events (a full queue): the file
// is looked at again.
func TestWatchLoopLooksAgainAfterAWatcherError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startLoop(t, nil)
		defer h.stop()
		write(t, h.path, config("missed", "18080"))
		h.errs <- fsnotify.ErrEventOverflow
		got := h.quiet()
		if len(got) != 1 {
			t.Fatalf("%d updates after an overflow, want 1: %+v", len(got), got)
		}
		wantForward(t, got[0], "missed")
	})
}

// A file its writer holds (Windows: a sharing violation) is read again a
// debounce later, not reported; a file busy for good is reported in the
// end.
func TestWatchLoopReadsABusyFileAgain(t *testing.T) {
	for _, tt := range []struct {
		name     string
		busyFor  int // reads that find the file busy
		wantBusy bool
	}{
		{"busy briefly", 3, false},
		{"busy for good", busyRetries + 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var busy atomic.Int32
				h := startLoop(t, func(path string) ([]byte, error) {
					if busy.Load() > 0 {
						busy.Add(-1)
						return nil, &os.PathError{Op: "open", Path: path, Err: errBusy}
					}
					return readFile(path)
				})
				defer h.stop()
				write(t, h.path, config("saved", "18080"))
				busy.Store(int32(tt.busyFor))
				h.events <- fsnotify.Event{Name: h.path, Op: fsnotify.Write}
				got := h.quiet()
				if tt.wantBusy {
					if len(got) != 1 || !errors.Is(got[0].Err, errBusy) {
						t.Fatalf("got %+v, want one update with the busy error", got)
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("%d updates, want 1: %+v", len(got), got)
				}
				wantForward(t, got[0], "saved")
				if left := busy.Load(); left != 0 {
					t.Errorf("%d busy reads left", left)
				}
			})
		})
	}
}
