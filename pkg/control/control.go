// Package control is kpf up's local API: an HTTP server on a Unix socket,
// one per config file, in the user's runtime directory. The socket is mode
// 0600 in a 0700 directory, and connections from any other user are
// refused (SO_PEERCRED), so only the user who runs kpf can read its status
// or steer it. It is never served on TCP.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kpf-dev/kpf/pkg/forward"
)

// Snapshot is the document GET /v1/status returns and `kpf status -o json`
// prints. Its shape is stable: fields are only ever added.
type Snapshot struct {
	// Config is the absolute path of the forwards.yaml being run.
	Config string `json:"config"`
	// PID is the process id of kpf up.
	PID int `json:"pid"`
	// Started is when kpf up started.
	Started time.Time `json:"started"`
	// Forwards are the running forwards, sorted by name.
	Forwards []forward.Status `json:"forwards"`
}

// AllReady reports whether every forward that runs is ready; disabled
// forwards do not count.
func (s Snapshot) AllReady() bool {
	for _, f := range s.Forwards {
		if f.State != forward.StateReady && f.State != forward.StateDisabled {
			return false
		}
	}
	return true
}

// SocketPath is the control socket of the kpf up running configPath:
// $XDG_RUNTIME_DIR/kpf/<hash>.sock, or a per-user directory under the
// temporary directory when XDG_RUNTIME_DIR is unset.
func SocketPath(configPath string) (string, error) {
	abs, err := filepath.Abs(configPath)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", configPath, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir != "" {
		dir = filepath.Join(dir, "kpf")
	} else {
		dir = filepath.Join(os.TempDir(), "kpf-"+strconv.Itoa(os.Getuid()))
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".sock"), nil
}

// ErrRunning is returned by Listen when a kpf up already serves the socket.
var ErrRunning = errors.New("kpf up is already running for this file")

// Listen creates the control socket at path. A live socket means another
// kpf up runs the same file: Listen fails with ErrRunning. A stale one, left
// by a process that died, is replaced.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("restrict %s: %w", dir, err)
		}
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

// API is what the control socket exposes of a running kpf up.
type API interface {
	// Snapshot returns the current status.
	Snapshot() Snapshot
	// Restart re-dials one forward; an unknown name is an error wrapping
	// ErrUnknownForward.
	Restart(ctx context.Context, name string) error
}

// ErrUnknownForward is the error Restart reports for a name not running.
var ErrUnknownForward = errors.New("no such forward running")

// Handler serves the API: GET /v1/status, POST /v1/forwards/{name}/restart
// and GET /healthz.
func Handler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(api.Snapshot())
	})
	mux.HandleFunc("POST /v1/forwards/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		err := api.Restart(r.Context(), r.PathValue("name"))
		switch {
		case errors.Is(err, ErrUnknownForward):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

// ErrRefused is what Fetch and Restart report when kpf up refuses the
// caller because it runs as another user.
var ErrRefused = errors.New("refused by kpf up")

// peerKey is the context key of a connection's peer check.
type peerKey struct{}

// Serve serves h on ln until ctx is done, then closes ln and removes the
// socket file. Requests from a peer that is neither this process's user
// nor root (SO_PEERCRED) never reach h: they get 403 with a message saying
// why. The socket's file mode already keeps other users out; this holds
// even if someone loosens it.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, _ := r.Context().Value(peerKey{}).(peer); !p.allowed {
				w.Header().Set("Connection", "close")
				http.Error(w, p.refusal(), http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}
	path := ln.Addr().String()
	defer os.Remove(path)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// peer is who is on the other end of a control connection.
type peer struct {
	uid     int // -1 if unknown
	allowed bool
}

func (p peer) refusal() string {
	who := "a peer whose user could not be told"
	if p.uid >= 0 {
		who = "uid " + strconv.Itoa(p.uid)
	}
	return fmt.Sprintf("kpf up refuses %s: it runs as uid %d, and its control socket serves only that user and root", who, os.Getuid())
}

// peerOf checks the peer of a Unix connection: it is allowed if it runs as
// this process's user or as root.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{uid: -1}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{uid: -1}
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return peer{uid: -1}
	}
	return peer{uid: int(cred.Uid), allowed: cred.Uid == uint32(os.Getuid()) || cred.Uid == 0}
}

// Client returns an HTTP client that talks to the socket at path; use it
// with URLs like http://kpf/v1/status.
func Client(path string) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}

// Fetch reads the status from the kpf up serving path.
func Fetch(ctx context.Context, path string) (Snapshot, error) {
	var s Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://kpf/v1/status", nil)
	if err != nil {
		return s, err
	}
	resp, err := Client(path).Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, responseError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("decode status: %w", err)
	}
	return s, nil
}

// Restart asks the kpf up serving path to re-dial the named forward.
func Restart(ctx context.Context, path, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://kpf/v1/forwards/"+url.PathEscape(name)+"/restart", nil)
	if err != nil {
		return err
	}
	resp, err := Client(path).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusNotFound:
		return fmt.Errorf("%q: %w", name, ErrUnknownForward)
	default:
		return fmt.Errorf("restart %q: %w", name, responseError(resp))
	}
}

// responseError describes an unexpected answer, wrapping ErrRefused for a
// 403.
func responseError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%w: %s", ErrRefused, msg)
	}
	return fmt.Errorf("%s: %s", resp.Status, msg)
}
