package config

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Watch waits after the last change to the file before
// reading it, so that an editor's burst of events gives one reload.
const debounce = 100 * time.Millisecond

// busyRetries is how many times in a row Watch reads again, a debounce
// apart, a file that another process holds locked (see busyReadError)
// before it reports the error.
const busyRetries = 50

// Update is one result of watching a config file: either a new valid config
// with its warnings, or an error (an *Error for an invalid file, or a read
// error such as the file being missing).
type Update struct {
	Config   *Config
	Warnings []Diagnostic
	Err      error
}

// Watch loads the config at path and then reloads it whenever the file
// changes, sending each result on the returned channel: first the initial
// load, then every change of the file's content, valid or not. A save that
// leaves the content unchanged sends nothing.
//
// Watch watches the file's directory, so saves by rename (atomic replace)
// and deleting and re-creating the file are seen, with inotify (Linux),
// kqueue (macOS: the new name's Create) and ReadDirectoryChangesW (Windows:
// Rename of the old name, Create of the new) alike. File names match
// whatever their case, as the file systems of macOS and Windows do. A
// file that its writer holds locked (Windows) is read again a debounce
// later rather than reported. A missing or invalid file is reported as an
// Update with Err and watching goes on. Watch stops only
// when ctx is done: then it closes the channel, and its goroutine has ended
// once the channel is closed. The caller must keep receiving until then.
func Watch(ctx context.Context, path string, log *slog.Logger) <-chan Update {
	return watch(ctx, path, log, nil)
}

// watch is Watch with a hook called after each debounced look at the file,
// telling whether an update was sent; tests use it to observe no-ops.
func watch(ctx context.Context, path string, log *slog.Logger, settled func(sent bool)) <-chan Update {
	out := make(chan Update)
	go func() {
		defer close(out)
		w := &fileWatcher{path: path, log: log, out: out, settled: settled, read: readFile, busy: busyReadError}
		w.run(ctx)
	}()
	return out
}

type fileWatcher struct {
	path    string
	log     *slog.Logger
	out     chan<- Update
	settled func(sent bool)
	read    func(path string) ([]byte, error)
	// busy reports whether a read failed only because another process
	// holds the file for now.
	busy     func(error) bool
	busyRuns int // reads in a row that found the file busy
	lastHash [sha256.Size]byte
	lastErr  string
	loaded   bool
}

func (w *fileWatcher) run(ctx context.Context) {
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		if err = fw.Add(filepath.Dir(w.path)); err != nil {
			fw.Close()
		}
	}
	if err != nil {
		// Without a watcher the initial load is all we can deliver, now:
		// a busy file is reported rather than read again.
		w.busy = nil
		w.reload(ctx)
		w.send(ctx, Update{Err: fmt.Errorf("watch %s: %w", w.path, err)})
		<-ctx.Done()
		return
	}
	defer fw.Close()
	w.loop(ctx, fw.Events, fw.Errors)
}

// loop loads the file, then reloads it a debounce after the last event
// about its name, until ctx is done or events closes.
func (w *fileWatcher) loop(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error) {
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	if _, retry := w.reload(ctx); retry {
		timer.Reset(debounce)
	}
	name := filepath.Base(w.path)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if !strings.EqualFold(filepath.Base(ev.Name), name) {
				continue
			}
			w.log.Debug("config file event", "file", w.path, "op", ev.Op.String())
			timer.Reset(debounce)
		case err, ok := <-errs:
			if !ok {
				return
			}
			// Events may have been lost (a queue overflowed): look at the
			// file, which costs nothing if it did not change.
			w.log.Warn("watching config file", "file", w.path, "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			sent, retry := w.reload(ctx)
			if retry {
				timer.Reset(debounce)
				continue
			}
			if w.settled != nil {
				w.settled(sent)
			}
		}
	}
}

// reload reads the file and sends an update unless nothing changed since
// the last one. It reports whether it sent one, and whether to read again
// later because the file was busy.
func (w *fileWatcher) reload(ctx context.Context) (sent, retry bool) {
	data, err := w.read(w.path)
	if err != nil && w.busy != nil && w.busy(err) && w.busyRuns < busyRetries {
		w.busyRuns++
		w.log.Debug("config file busy; reading it again soon", "file", w.path, "err", err)
		return false, true
	}
	w.busyRuns = 0
	return w.update(ctx, data, err), false
}

// update sends the result of reading the file, data or err, unless
// nothing changed since the last one. It reports whether it sent one.
func (w *fileWatcher) update(ctx context.Context, data []byte, err error) bool {
	if err != nil {
		msg := err.Error()
		if w.loaded && w.lastErr == msg {
			return false
		}
		w.loaded, w.lastErr, w.lastHash = true, msg, [sha256.Size]byte{}
		return w.send(ctx, Update{Err: fmt.Errorf("load config: %w", err)})
	}
	sum := sha256.Sum256(data)
	if w.loaded && w.lastErr == "" && sum == w.lastHash {
		w.log.Debug("config file unchanged", "file", w.path)
		return false
	}
	w.loaded, w.lastErr, w.lastHash = true, "", sum
	cfg, warns, err := Parse(w.path, data)
	return w.send(ctx, Update{Config: cfg, Warnings: warns, Err: err})
}

func (w *fileWatcher) send(ctx context.Context, u Update) bool {
	select {
	case w.out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}
