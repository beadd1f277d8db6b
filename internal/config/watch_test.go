package config

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// failsafe only keeps a broken test from hanging; no assertion depends on
// how long anything takes.
const failsafe = 20 * time.Second

func next(t *testing.T, updates <-chan Update) Update {
	t.Helper()
	select {
	case u, ok := <-updates:
		if !ok {
			t.Fatal("updates closed early")
		}
		return u
	case <-time.After(failsafe):
		t.Fatal("no update")
	}
	return Update{}
}

func config(name string, port string) string {
	return "version: 1\nforwards:\n  - name: " + name + "\n    service: web\n    ports: [" + port + "]\n"
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantForward(t *testing.T, u Update, name string) {
	t.Helper()
	if u.Err != nil {
		t.Fatalf("update error: %v", u.Err)
	}
	if len(u.Config.Forwards) != 1 || u.Config.Forwards[0].Name != name {
		t.Fatalf("got forwards %+v, want one named %q", u.Config.Forwards, name)
	}
}

func TestWatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	write(t, path, config("initial", "18080"))

	ctx, cancel := context.WithCancel(context.Background())
	settled := make(chan bool, 100)
	updates := watch(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)), func(sent bool) { settled <- sent })
	wantForward(t, next(t, updates), "initial")

	t.Run("plain write", func(t *testing.T) {
		write(t, path, config("written", "18080"))
		wantForward(t, next(t, updates), "written")
	})
	t.Run("atomic rename", func(t *testing.T) {
		tmp := filepath.Join(dir, ".forwards.yaml.tmp")
		write(t, tmp, config("renamed", "18080"))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		wantForward(t, next(t, updates), "renamed")
	})
	t.Run("same content", func(t *testing.T) {
		// The watcher reports a look at the file after sending its
		// update, so the report of the rename's update may still be on its
		// way: wait until the watcher has been quiet for a while.
		for quiet := false; !quiet; {
			select {
			case <-settled:
			case <-time.After(3 * debounce):
				quiet = true
			}
		}
		write(t, path, config("renamed", "18080"))
		select {
		case sent := <-settled:
			if sent {
				t.Fatal("unchanged content was delivered")
			}
		case u := <-updates:
			t.Fatalf("unchanged content was delivered: %+v", u)
		case <-time.After(failsafe):
			t.Fatal("the write was not noticed")
		}
	})
	t.Run("delete and recreate", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if u := next(t, updates); !errors.Is(u.Err, os.ErrNotExist) {
			t.Fatalf("after delete got %+v, want a not-exist error", u)
		}
		write(t, path, config("recreated", "18080"))
		wantForward(t, next(t, updates), "recreated")
	})
	t.Run("invalid then valid", func(t *testing.T) {
		write(t, path, config("broken", "0"))
		u := next(t, updates)
		if _, ok := errors.AsType[*Error](u.Err); !ok || u.Config != nil {
			t.Fatalf("got %+v, want a config *Error", u)
		}
		write(t, path, config("fixed", "18081"))
		wantForward(t, next(t, updates), "fixed")
	})

	t.Run("too large then valid", func(t *testing.T) {
		// A huge edit is rejected before parsing, naming the file and the
		// limit; the watcher goes on.
		write(t, path, config("huge", "18082")+strings.Repeat("# padding\n", MaxFileSize/10+1))
		u := next(t, updates)
		want := path + ":1:1: file is larger than the limit of 1048576 bytes (1 MiB); kpf did not parse it"
		if u.Config != nil || u.Err == nil || !strings.Contains(u.Err.Error(), want) {
			t.Fatalf("got %+v, want an error containing %q", u, want)
		}
		write(t, path, config("small", "18082"))
		wantForward(t, next(t, updates), "small")
	})

	cancel()
	for range updates {
	}
}

func TestWatchMissingFile(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	ctx, cancel := context.WithCancel(context.Background())
	updates := Watch(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if u := next(t, updates); !errors.Is(u.Err, os.ErrNotExist) {
		t.Fatalf("got %+v, want a not-exist error", u)
	}
	write(t, path, config("late", "18080"))
	wantForward(t, next(t, updates), "late")
	cancel()
	for range updates {
	}
}
