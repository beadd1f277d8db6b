package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kpf-dev/kpf/internal/httpserve"
)

// ErrRunning is returned by Listen when a kpf up already serves the
// endpoint.
var ErrRunning = errors.New("kpf up is already running for this file")

// API is what the control endpoint exposes of a running kpf up.
type API interface {
	// Snapshot returns the current status.
	Snapshot() Snapshot
	// Restart re-dials one forward; an unknown name is an error wrapping
	// ErrUnknownForward.
	Restart(ctx context.Context, name string) error
	// Reload re-reads the config file now and converges to it, and
	// returns once that is done. A file that is invalid leaves the running
	// forwards alone and is an error wrapping ErrInvalidConfig (see
	// InvalidConfig) whose text is the file's problems, with their lines.
	Reload(ctx context.Context) error
	// Shutdown makes kpf up stop every forward and exit, as a signal
	// does; it returns once the stop has begun, not when it has ended.
	Shutdown(ctx context.Context) error
}

// ErrUnknownForward is the error Restart reports for a name not running.
var ErrUnknownForward = errors.New("no such forward running")

// ErrInvalidConfig is wrapped by the error Reload reports when kpf up found
// the file invalid and kept running what it ran.
var ErrInvalidConfig = errors.New("invalid config")

// InvalidConfig marks err, the problems found in a config file, as the
// answer to a reload of an invalid file: the result wraps both
// ErrInvalidConfig and err, and its text is err's alone.
func InvalidConfig(err error) error { return invalidConfig{err} }

type invalidConfig struct{ err error }

func (e invalidConfig) Error() string   { return e.err.Error() }
func (e invalidConfig) Unwrap() []error { return []error{ErrInvalidConfig, e.err} }

// answer writes the outcome of an action: 204 when it succeeded, code
// with the error's text for an error wrapping known, 500 for another.
func answer(w http.ResponseWriter, err error, known error, code int) {
	switch {
	case err != nil && known != nil && errors.Is(err, known):
		http.Error(w, err.Error(), code)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// Handler serves the API: GET /v1/status, POST /v1/forwards/{name}/restart,
// POST /v1/reload and GET /healthz.
func Handler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(api.Snapshot())
	})
	mux.HandleFunc("POST /v1/forwards/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		answer(w, api.Restart(r.Context(), r.PathValue("name")), ErrUnknownForward, http.StatusNotFound)
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		// An invalid file's body is its problems, verbatim.
		answer(w, api.Reload(r.Context()), ErrInvalidConfig, http.StatusUnprocessableEntity)
	})
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		answer(w, api.Shutdown(r.Context()), nil, http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

// ErrRefused is what Fetch, Restart and Reload report when kpf up refuses
// the caller because it runs as another user.
var ErrRefused = errors.New("refused by kpf up")

// peerKey is the context key of a connection's peer check.
type peerKey struct{}

// Serve serves h on ln, a listener from Listen, until ctx is done; then it
// shuts the server down (waiting up to 2 seconds for requests in flight),
// closes ln and removes the socket file, if the endpoint has one, before
// it returns. Requests from a peer that is not this process's user (nor
// root, on Unix) never reach h: they get 403 with a message saying why.
// The endpoint's permissions already keep other users out; this holds
// even if someone loosens them.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return serve(ctx, ln, h, peerOf)
}

// serve is Serve with the peer check as a parameter, for tests.
func serve(ctx context.Context, ln net.Listener, h http.Handler, check func(net.Conn) peer) error {
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
			return context.WithValue(ctx, peerKey{}, check(c))
		},
	}
	defer removeEndpoint(ln.Addr().String())
	if err := httpserve.Serve(ctx, srv, ln); err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	return nil
}

// Client returns an HTTP client that talks to the endpoint at path (a
// socket path, or a pipe name on Windows); use it with URLs like
// http://kpf/v1/status. Each request times out after 5 seconds.
func Client(path string) *http.Client { return newClient(path, 5*time.Second) }

func newClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx, path)
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
	resp, err := post(ctx, Client(path), "http://kpf/v1/forwards/"+url.PathEscape(name)+"/restart")
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

// Shutdown asks the kpf up serving path to stop every forward and exit;
// it returns once kpf up has begun to stop (see WaitGone).
func Shutdown(ctx context.Context, path string) error {
	resp, err := post(ctx, Client(path), "http://kpf/v1/shutdown")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("shutdown: %w", responseError(resp))
	}
	return nil
}

// reloadTimeout bounds a reload: kpf up answers once the forwards that the
// new file changes have been stopped and started again.
const reloadTimeout = 30 * time.Second

// Reload asks the kpf up serving path to re-read its config file now, as
// SIGHUP does on Unix, and returns once kpf up has converged to it (or
// after 30 seconds, or when ctx is done). When kpf up found the file
// invalid, and so kept running what it ran, the error wraps
// ErrInvalidConfig and its text is the file's problems as kpf up reported
// them, one per line.
func Reload(ctx context.Context, path string) error {
	resp, err := post(ctx, newClient(path, reloadTimeout), "http://kpf/v1/reload")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusUnprocessableEntity:
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("reload: read the answer: %w", err)
		}
		return InvalidConfig(errors.New(strings.TrimSuffix(string(body), "\n")))
	default:
		return fmt.Errorf("reload: %w", responseError(resp))
	}
}

// post sends an empty POST to u with c; the caller closes the body.
func post(ctx context.Context, c *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
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
