//go:build unix

package control

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kpf-dev/kpf/internal/statedir"
)

// maxSocketPath is the longest path a Unix socket can be bound to or
// reached at: sun_path less its terminating NUL, 107 bytes on Linux and
// 103 on macOS and the BSDs.
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// SocketPath is the control socket of the kpf up running configPath:
// <dir>/<hash>.sock in the first of statedir.RuntimeDirs
// ($XDG_RUNTIME_DIR/kpf, else kpf-<uid> in the temporary directory, then
// /tmp/kpf-<uid>) where the path fits in a sockaddr. The hash is of the
// file's absolute, symlink-free path.
func SocketPath(configPath string) (string, error) {
	abs, err := configKey(configPath)
	if err != nil {
		return "", err
	}
	return socketIn(statedir.RuntimeDirs(), socketName(abs), maxSocketPath)
}

// Listen creates the control socket at path, mode 0600, in a directory
// that it creates with mode 0700 or, if the directory exists, that must
// be this user's, mode 0700 and not a symbolic link (statedir.Private). A
// live socket means another kpf up runs the same file: Listen fails with
// ErrRunning. A stale one, left by a process that died, is replaced.
func Listen(path string) (net.Listener, error) {
	if err := statedir.Private(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, ErrRunning
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict %s: %w", path, err)
	}
	return ln, nil
}

// dial connects to the control socket at path.
func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// removeEndpoint removes the socket file once Serve is done with it.
func removeEndpoint(path string) { _ = os.Remove(path) }
