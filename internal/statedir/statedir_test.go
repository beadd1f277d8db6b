package statedir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestStateDir(t *testing.T) {
	for _, tt := range []struct {
		name    string
		goos    string
		env     map[string]string
		home    string
		want    string
		wantErr bool
	}{
		{name: "linux xdg", goos: "linux", env: map[string]string{"XDG_STATE_HOME": "/x/state"}, home: "/home/me", want: "/x/state/kpf"},
		{name: "linux default", goos: "linux", home: "/home/me", want: "/home/me/.local/state/kpf"},
		{name: "linux relative xdg is ignored", goos: "linux", env: map[string]string{"XDG_STATE_HOME": "state"}, home: "/home/me", want: "/home/me/.local/state/kpf"},
		{name: "linux nothing", goos: "linux", wantErr: true},
		{name: "freebsd as linux", goos: "freebsd", home: "/home/me", want: "/home/me/.local/state/kpf"},
		{name: "macos", goos: "darwin", env: map[string]string{"XDG_STATE_HOME": "/x/state"}, home: "/Users/me", want: "/Users/me/Library/Application Support/kpf"},
		{name: "macos no home", goos: "darwin", wantErr: true},
		{name: "windows", goos: "windows", env: map[string]string{"LOCALAPPDATA": `C:\Users\me\AppData\Local`}, want: `C:\Users\me\AppData\Local\kpf`},
		{name: "windows no localappdata", goos: "windows", home: `C:\Users\me`, wantErr: true},
	} {
		if runtime.GOOS == "windows" && tt.goos != "windows" {
			continue // Unix answers are built with filepath, which would use \
		}
		t.Run(tt.name, func(t *testing.T) {
			got, err := stateDir(tt.goos, func(k string) string { return tt.env[k] }, tt.home)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("stateDir = %q, %v; want %q (error: %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRuntimeDirs(t *testing.T) {
	long := "/var/folders/" + strings.Repeat("x", 80) + "/T"
	for _, tt := range []struct {
		name     string
		xdg, tmp string
		want     []string
	}{
		{"xdg", "/run/user/501", "/tmp", []string{"/run/user/501/kpf", "/tmp/kpf-501"}},
		{"relative xdg is ignored", "run", "/var/folders/ab/cd/T/", []string{"/var/folders/ab/cd/T/kpf-501", "/tmp/kpf-501"}},
		{"macos tmpdir", "", long, []string{long + "/kpf-501", "/tmp/kpf-501"}},
		{"tmp only once", "", "/tmp", []string{"/tmp/kpf-501"}},
		{"relative tmpdir", "", "tmp", []string{"/tmp/kpf-501"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := runtimeDirs(tt.xdg, tt.tmp, 501); !slices.Equal(got, tt.want) {
				t.Errorf("runtimeDirs = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	const uid = 501
	for _, tt := range []struct {
		name  string
		mode  fs.FileMode
		owner int
		known bool
		want  string // "" for private
	}{
		{"private", fs.ModeDir | 0o700, uid, true, ""},
		{"symlink", fs.ModeSymlink | 0o777, uid, true, "symbolic link"},
		{"file", 0o600, uid, true, "not a directory"},
		{"someone else's", fs.ModeDir | 0o700, 0, true, "belongs to uid 0"},
		{"open to the group", fs.ModeDir | 0o750, uid, true, "mode is 0750"},
		{"world-writable sticky", fs.ModeDir | fs.ModeSticky | 0o777, uid, true, "mode is 0777"},
		{"windows: ACL, not owner and mode", fs.ModeDir | 0o777, 0, false, ""},
		{"windows symlink", fs.ModeSymlink, 0, false, "symbolic link"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.mode, tt.owner, tt.known, uid)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("check: %v, want private", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrNotPrivate)):
				t.Errorf("check: %v, want ErrNotPrivate saying %q", err, tt.want)
			}
		})
	}
}

func TestPrivate(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "kpf")
	if err := Private(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("Private did not create %s: %v", dir, err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %v, want 0700", fi.Mode().Perm())
	}
	if err := Private(dir); err != nil {
		t.Errorf("Private of its own directory: %v", err)
	}

	loose := filepath.Join(base, "loose")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o755)
	if err := Private(loose); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("Private of a 0755 directory: %v, want ErrNotPrivate", err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o755 {
		t.Errorf("Private changed the mode of a directory it did not create to %v", fi.Mode().Perm())
	}

	link := filepath.Join(base, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := Private(link); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("Private of a symbolic link to a private directory: %v, want ErrNotPrivate", err)
	}
}

func TestState(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the environment variables set here are Linux's")
	}
	base := t.TempDir()
	t.Setenv("XDG_STATE_HOME", base)
	dir, err := State()
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(base, "kpf") {
		t.Errorf("State = %s, want %s/kpf", dir, base)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v, %v; want mode 0700", fi, err)
	}
}
