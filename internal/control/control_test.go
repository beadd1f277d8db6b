//go:build unix

package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

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

	want := Snapshot{Config: "/repo/forwards.yaml", PID: 42, Forwards: []Forward{
		{Name: "a", State: StateReady, Pod: "a-1"},
		{Name: "b", State: StateFailed, Reason: `service "b" not found`},
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
	dir := filepath.Join(t.TempDir(), "kpf")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.sock")
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
	reloadErr error // what Reload returns
	reloads   int
	shutdowns int
}

func (a *fakeAPI) Shutdown(context.Context) error {
	a.shutdowns++
	return nil
}

func (f *fakeAPI) Reload(context.Context) error {
	f.reloads++
	return f.reloadErr
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

func TestSocketPathFitsInASockaddr(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "")
	long := "/var/folders/" + strings.Repeat("x", 100-len("/var/folders/")) // a 100-byte $TMPDIR
	t.Setenv("TMPDIR", long)
	p, err := SocketPath("/repo/forwards.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := "/tmp/kpf-" + strconv.Itoa(os.Getuid())
	if filepath.Dir(p) != want || len(p) > maxSocketPath {
		t.Errorf("with a 100-byte $TMPDIR the socket is %s (%d bytes), want it in %s", p, len(p), want)
	}

	t.Setenv("TMPDIR", "/var/folders/ab/cdef/T")
	p, _ = SocketPath("/repo/forwards.yaml")
	if want := "/var/folders/ab/cdef/T/kpf-" + strconv.Itoa(os.Getuid()); filepath.Dir(p) != want {
		t.Errorf("with a short $TMPDIR the socket is %s, want it in %s", p, want)
	}
}

func TestListenRefusesADirectoryThatIsNotPrivate(t *testing.T) {
	base := t.TempDir()
	loose := filepath.Join(base, "loose")
	if err := os.Mkdir(loose, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(filepath.Join(loose, "x.sock")); err == nil {
		ln.Close()
		t.Error("Listen in a 0755 directory succeeded")
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o755 {
		t.Errorf("Listen changed the mode of a directory it did not create to %v", fi.Mode().Perm())
	}
	private := filepath.Join(base, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(filepath.Join(link, "x.sock")); err == nil {
		ln.Close()
		t.Error("Listen through a symbolic link to a private directory succeeded")
	}
}

// serveTest serves api on a fresh socket with the peer check given, until
// the test ends, and returns the socket's path.
func serveTest(t *testing.T, api API, check func(net.Conn) peer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kpf", "x.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, Handler(api), check) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

func TestReload(t *testing.T) {
	api := &fakeAPI{}
	path := serveTest(t, api, peerOf)
	if err := Reload(context.Background(), path); err != nil || api.reloads != 1 {
		t.Fatalf("Reload of a valid file: %v (%d reloads)", err, api.reloads)
	}

	// The config's problems, as kpf up reports them: several lines, hints
	// indented with a tab.
	problems := "forwards.yaml:3:5: forwards[0]: unknown field \"servce\"\n\thint: did you mean service?\nforwards.yaml:9:11: forwards[1].ports[0]: port 70000 is out of range"
	api.reloadErr = InvalidConfig(errors.New(problems))
	err := Reload(context.Background(), path)
	if !errors.Is(err, ErrInvalidConfig) || err.Error() != problems {
		t.Errorf("Reload of an invalid file: %q (ErrInvalidConfig: %v), want the config's problems %q", err, errors.Is(err, ErrInvalidConfig), problems)
	}

	api.reloadErr = errors.New("kpf up is stopping")
	err = Reload(context.Background(), path)
	if err == nil || errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "kpf up is stopping") {
		t.Errorf("Reload that kpf up could not do: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	api := &fakeAPI{}
	path := serveTest(t, api, peerOf)
	if err := Shutdown(context.Background(), path); err != nil || api.shutdowns != 1 {
		t.Fatalf("Shutdown: %v (%d shutdowns)", err, api.shutdowns)
	}
}

func TestRefusedPeerGetsNothing(t *testing.T) {
	api := &fakeAPI{snap: Snapshot{Forwards: []Forward{{Name: "a"}}}}
	refuse := func(net.Conn) peer { return peer{who: "uid 4242"} }
	path := serveTest(t, api, refuse)
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "uid 4242") {
			t.Errorf("%s by a refused peer: %v, want ErrRefused naming the peer", what, err)
		}
	}
	_, err := Fetch(ctx, path)
	check("Fetch", err)
	check("Restart", Restart(ctx, path, "a"))
	check("Reload", Reload(ctx, path))
	check("Shutdown", Shutdown(ctx, path))
	if api.reloads != 0 || api.restarted != "" || api.shutdowns != 0 {
		t.Errorf("a refused peer reached the API: %d reloads, %d shutdowns, restarted %q", api.reloads, api.shutdowns, api.restarted)
	}
}
