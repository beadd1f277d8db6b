package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/kpf-dev/kpf/pkg/forward"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSocketPathIsPerFileAndPrivate(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	a, err := SocketPath("/repo/a/forwards.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SocketPath("/repo/b/forwards.yaml")
	a2, _ := SocketPath("/repo/a/../a/forwards.yaml")
	if a == b {
		t.Errorf("two files share the socket %s", a)
	}
	if a != a2 {
		t.Errorf("one file, two spellings, two sockets: %s, %s", a, a2)
	}
	if filepath.Dir(a) != "/run/user/1000/kpf" {
		t.Errorf("socket %s is not in the runtime dir", a)
	}
}

func TestServeStatusOverThePrivateSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kpf", "x.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode %v, want 0700", di.Mode().Perm())
	}
	if _, err := Listen(path); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen on a live socket: %v, want ErrRunning", err)
	}

	want := Snapshot{Config: "/repo/forwards.yaml", PID: 42, Forwards: []forward.Status{
		{Name: "a", State: forward.StateReady, Pod: "a-1"},
		{Name: "b", State: forward.StateFailed, Reason: `service "b" not found`},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	api := &fakeAPI{snap: want}
	go func() { done <- Serve(ctx, ln, Handler(api)) }()
	got, err := Fetch(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Config != want.Config || got.PID != 42 || len(got.Forwards) != 2 || got.Forwards[1].Reason != want.Forwards[1].Reason {
		t.Errorf("Fetch = %+v, want %+v", got, want)
	}
	if got.AllReady() {
		t.Error("AllReady with a failed forward")
	}
	if err := Restart(context.Background(), path, "a"); err != nil || api.restarted != "a" {
		t.Errorf("Restart a: %v (restarted %q)", err, api.restarted)
	}
	if err := Restart(context.Background(), path, "zz"); !errors.Is(err, ErrUnknownForward) {
		t.Errorf("Restart of an unknown forward: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Serve returned: %v", err)
	}
	if _, err := Fetch(context.Background(), path); err == nil {
		t.Error("Fetch succeeded after Serve returned")
	}
}

func TestListenReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	// A socket file nobody listens on, as a crashed kpf up leaves.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln2.Close()
}

type fakeAPI struct {
	snap      Snapshot
	restarted string
}

func (f *fakeAPI) Snapshot() Snapshot { return f.snap }

func (f *fakeAPI) Restart(_ context.Context, name string) error {
	for _, fw := range f.snap.Forwards {
		if fw.Name == name {
			f.restarted = name
			return nil
		}
	}
	return ErrUnknownForward
}
