// Package statedir names the per-user directories kpf keeps files in, and
// makes them private.
//
//   - State holds what outlives a kpf up (logs, remembered ports):
//     $XDG_STATE_HOME/kpf or ~/.local/state/kpf on Linux and other Unix
//     systems, ~/Library/Application Support/kpf on macOS,
//     %LOCALAPPDATA%\kpf on Windows.
//   - RuntimeDirs (Unix only) are where a running kpf up puts its control
//     socket: $XDG_RUNTIME_DIR/kpf, else kpf-<uid> in the temporary
//     directory, and /tmp/kpf-<uid> as the short last resort.
//
// Private creates such a directory with mode 0700, or accepts an existing
// one only if it is a real directory (not a symbolic link) owned by this
// user with mode 0700: it never changes the mode of a directory it did not
// create, so a directory someone else prepared in a shared place like /tmp
// is refused rather than adopted. On Windows the directory inherits the
// ACL of %LOCALAPPDATA%, which only the user, SYSTEM and administrators can
// open; there Private checks only that it is a real directory.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

// State returns kpf's per-user state directory, creating it (0700) if
// needed.
func State() (string, error) {
	home, _ := os.UserHomeDir()
	dir, err := stateDir(runtime.GOOS, os.Getenv, home)
	if err != nil {
		return "", err
	}
	if err := Private(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// stateDir is State's choice for goos, with getenv and home standing for
// the process's environment and home directory.
func stateDir(goos string, getenv func(string) string, home string) (string, error) {
	switch goos {
	case "windows":
		if d := getenv("LOCALAPPDATA"); d != "" {
			return joinFor(goos, d, "kpf"), nil
		}
		return "", errors.New("state directory: %LOCALAPPDATA% is not set")
	case "darwin", "ios":
		if home == "" {
			return "", errors.New("state directory: no home directory")
		}
		return filepath.Join(home, "Library", "Application Support", "kpf"), nil
	default:
		// The XDG base directory spec: a relative path is invalid and
		// ignored.
		if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
			return filepath.Join(d, "kpf"), nil
		}
		if home == "" {
			return "", errors.New("state directory: neither $XDG_STATE_HOME nor $HOME is set")
		}
		return filepath.Join(home, ".local", "state", "kpf"), nil
	}
}

// joinFor joins path elements with goos's separator, so that stateDir's
// Windows answer can be tested on any system.
func joinFor(goos string, elem ...string) string {
	if goos == runtime.GOOS {
		return filepath.Join(elem...)
	}
	sep := "/"
	if goos == "windows" {
		sep = `\`
	}
	out := elem[0]
	for _, e := range elem[1:] {
		out += sep + e
	}
	return out
}

// runtimeDirs is RuntimeDirs' choice, best first, given $XDG_RUNTIME_DIR,
// the temporary directory and the user id. The last entry is always
// /tmp/kpf-<uid>, the shortest path a per-user directory can have.
func runtimeDirs(xdgRuntime, tempDir string, uid int) []string {
	own := "kpf-" + strconv.Itoa(uid)
	var dirs []string
	switch {
	case filepath.IsAbs(xdgRuntime):
		dirs = append(dirs, filepath.Join(xdgRuntime, "kpf"))
	case filepath.IsAbs(tempDir):
		dirs = append(dirs, filepath.Join(tempDir, own))
	}
	last := filepath.Join("/tmp", own)
	if len(dirs) == 0 || dirs[0] != last {
		dirs = append(dirs, last)
	}
	return dirs
}

// Private makes dir a directory only this user can use: it creates it (and
// any missing parents) with mode 0700, or checks that an existing dir is
// a real directory owned by this user with mode 0700. It never loosens or
// takes over a directory: one that fails the check is an error saying
// why.
func Private(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	switch err := os.Mkdir(dir, 0o700); {
	case err == nil:
		// Ours, just made: the umask may have taken bits away.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restrict %s: %w", dir, err)
		}
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	owner, known := ownerOf(fi)
	if err := check(fi.Mode(), owner, known, os.Getuid()); err != nil {
		return fmt.Errorf("%s %w", dir, err)
	}
	return nil
}

// ErrNotPrivate is wrapped by Private's error for a directory that is not
// this user's alone.
var ErrNotPrivate = errors.New("is not a private directory")

// check tells whether a directory with mode, owned by owner (when known),
// is private to uid. Its error reads after the directory's name.
func check(mode fs.FileMode, owner int, known bool, uid int) error {
	switch {
	case mode&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: it is a symbolic link", ErrNotPrivate)
	case !mode.IsDir():
		return fmt.Errorf("%w: it is not a directory", ErrNotPrivate)
	case known && owner != uid:
		return fmt.Errorf("%w: it belongs to uid %d, not to you (uid %d)", ErrNotPrivate, owner, uid)
	case known && mode.Perm() != 0o700:
		return fmt.Errorf("%w: its mode is %#o, want 0700", ErrNotPrivate, mode.Perm())
	}
	return nil
}
