package autoport

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/kpf-dev/kpf/internal/config"
)

func webForward() config.Forward {
	return config.Forward{Name: "web", Address: "127.0.0.1", Ports: []config.PortMapping{
		{Auto: true, Remote: config.Port{Number: 80}},
		{Auto: true, Remote: config.Port{Name: "metrics"}},
		{Local: 18080, Remote: config.Port{Number: 8080}},
	}}
}

func assign(t *testing.T, a *Assigner) []config.PortMapping {
	t.Helper()
	fs := []config.Forward{webForward()}
	if err := a.Assign(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	return fs[0].Ports
}

func TestAnAutomaticPortIsKeptAcrossStarts(t *testing.T) {
	store := NewStore(filepath.Join(t.TempDir(), "kpf"), "0123456789abcdef")
	first := assign(t, NewAssigner(store, slog.New(slog.DiscardHandler)))
	if first[0].Local == 0 || first[1].Local == 0 || first[0].Local == first[1].Local {
		t.Fatalf("ports %d and %d: want two different free ports", first[0].Local, first[1].Local)
	}
	if first[2].Local != 18080 {
		t.Errorf("a fixed port became %d", first[2].Local)
	}
	// A new kpf up, later: the same ports.
	again := assign(t, NewAssigner(store, slog.New(slog.DiscardHandler)))
	if again[0].Local != first[0].Local || again[1].Local != first[1].Local {
		t.Fatalf("after a restart: %d, %d; want %d, %d", again[0].Local, again[1].Local, first[0].Local, first[1].Local)
	}
}

func TestATakenPortIsReplacedAndRemembered(t *testing.T) {
	store := NewStore(filepath.Join(t.TempDir(), "kpf"), "0123456789abcdef")
	first := assign(t, NewAssigner(store, slog.New(slog.DiscardHandler)))
	// Something else takes the first port while kpf is down.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(int(first[0].Local)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	again := assign(t, NewAssigner(store, slog.New(slog.DiscardHandler)))
	if again[0].Local == first[0].Local || again[0].Local == 0 {
		t.Fatalf("the taken port %d was given again (%d)", first[0].Local, again[0].Local)
	}
	if again[1].Local != first[1].Local {
		t.Errorf("the other port moved from %d to %d", first[1].Local, again[1].Local)
	}
	saved, err := store.Load()
	if err != nil || saved[Key("web", config.PortMapping{Remote: config.Port{Number: 80}})] != again[0].Local {
		t.Fatalf("remembered %v, %v; want the new port %d", saved, err, again[0].Local)
	}
}

// While the forward runs, its own listener holds its port: a reload
// gives it the same port rather than taking it for "taken".
func TestARunningForwardKeepsItsPort(t *testing.T) {
	a := NewAssigner(NewStore(filepath.Join(t.TempDir(), "kpf"), "0123456789abcdef"), slog.New(slog.DiscardHandler))
	first := assign(t, a)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(int(first[0].Local)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if again := assign(t, a); again[0].Local != first[0].Local {
		t.Fatalf("on reload: port %d, want the running forward's %d", again[0].Local, first[0].Local)
	}
}

// The state directory is kpf's own: one that others can read is not
// written to (the ports are not secret, but the directory also holds the
// logs).
func TestAStateDirectoryOthersCanReadIsRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows directories inherit %LOCALAPPDATA%'s ACL; statedir checks only that it is a directory")
	}
	dir := filepath.Join(t.TempDir(), "kpf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := NewStore(dir, "0123456789abcdef").Save(map[string]uint16{"web/80": 8080})
	if err == nil {
		t.Fatal("saved into a directory others can read")
	}
}
