package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// captureRequests returns the raw bytes of the requests that Fetch,
// Restart and Reload (what kpf status, kpf restart and kpf reload call)
// send over the socket.
func captureRequests(f *testing.F) [][]byte {
	f.Helper()
	path := filepath.Join(f.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var reqs [][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			var raw bytes.Buffer
			for {
				line, err := br.ReadString('\n')
				raw.WriteString(line)
				if err != nil || line == "\r\n" {
					break
				}
			}
			mu.Lock()
			reqs = append(reqs, raw.Bytes())
			mu.Unlock()
			c.Write([]byte("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	Fetch(ctx, path) // fails on the 204; only the request matters
	if err := Restart(ctx, path, "web"); err != nil {
		f.Fatalf("restart through the capturing socket: %v", err)
	}
	Restart(ctx, path, "a name/with?odd#chars")
	if err := Reload(ctx, path); err != nil {
		f.Fatalf("reload through the capturing socket: %v", err)
	}
	if err := Shutdown(ctx, path); err != nil {
		f.Fatalf("shutdown through the capturing socket: %v", err)
	}
	ln.Close()
	<-done
	if len(reqs) != 5 {
		f.Fatalf("captured %d requests, want 5", len(reqs))
	}
	return reqs
}

// FuzzHandler drives the control socket's HTTP handler with arbitrary
// requests, seeded with the real ones kpf status, kpf restart and kpf
// reload send, and checks what it answers: only the five routes succeed, a
// restart happens only for POST /v1/forwards/NAME/restart and only of the
// forward named, a reload only for POST /v1/reload, and answers 204 for a
// valid file or 422 with the file's problems for an invalid one, status
// is the API's snapshot as JSON, and nothing else gets a success or a
// server error.
func FuzzHandler(f *testing.F) {
	for _, raw := range captureRequests(f) {
		f.Add(raw)
	}
	for _, raw := range []string{
		"GET /healthz HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"HEAD /v1/status HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"DELETE /v1/status HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"GET /v1/forwards/web/restart HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"POST /v1/forwards/zz/restart HTTP/1.1\r\nHost: kpf\r\nContent-Length: 5\r\n\r\nhello",
		"POST /v1/forwards/../status HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"POST //v1/forwards/web/restart HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"POST /v1/forwards/web%2Frestart/restart HTTP/1.1\r\nHost: kpf\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET http://evil.example/v1/status HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"GET /v1/reload HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"POST /v1/reload/ HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"POST /v1/./reload HTTP/1.1\r\nHost: kpf\r\n\r\n",
		"POST /v1/reload HTTP/1.1\r\nHost: kpf\r\nContent-Length: 1\r\n\r\nx",
		"POST /v1/forwards/reload/restart HTTP/1.1\r\nHost: kpf\r\n\r\n",
	} {
		f.Add([]byte(raw))
	}
	snap := Snapshot{Config: "/repo/forwards.yaml", PID: 7, Forwards: []Forward{
		{Name: "web", State: StateReady, Pod: "web-1"},
		{Name: "db", State: StateFailed, Reason: "nope"},
	}}
	want, err := json.Marshal(snap)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		// Half the inputs meet a file that has become invalid.
		api := &recordingAPI{snap: snap, invalid: len(raw)%2 == 1}
		rec := httptest.NewRecorder()
		Handler(api).ServeHTTP(rec, req)
		code := rec.Code
		path := req.URL.Path

		if !slices.Contains([]int{200, 204, 301, 307, 308, 400, 404, 405, 422}, code) {
			t.Fatalf("%s %q: status %d", req.Method, req.URL, code)
		}
		if api.shutdowns > 0 && (api.shutdowns > 1 || req.Method != http.MethodPost || path != "/v1/shutdown" || code != http.StatusNoContent) {
			t.Fatalf("%s %q: %d shutdowns, answered %d", req.Method, req.URL, api.shutdowns, code)
		}
		if api.reloads > 1 || api.reloads == 1 && len(api.restarted) > 0 {
			t.Fatalf("%s %q: %d reloads and %d restarts", req.Method, req.URL, api.reloads, len(api.restarted))
		}
		if api.reloads == 1 {
			if req.Method != http.MethodPost || path != "/v1/reload" {
				t.Fatalf("%s %q reloaded", req.Method, req.URL)
			}
			if api.invalid && (code != http.StatusUnprocessableEntity || rec.Body.String() != invalidProblems+"\n") ||
				!api.invalid && code != http.StatusNoContent {
				t.Fatalf("reload (file invalid: %v) answered %d %q", api.invalid, code, rec.Body.String())
			}
		}
		if code == http.StatusUnprocessableEntity && api.reloads != 1 {
			t.Fatalf("%s %q: 422 without a reload", req.Method, req.URL)
		}
		if len(api.restarted) > 1 {
			t.Fatalf("%s %q: %d restarts", req.Method, req.URL, len(api.restarted))
		}
		if len(api.restarted) == 1 {
			name := api.restarted[0]
			if req.Method != http.MethodPost || path != "/v1/forwards/"+name+"/restart" {
				t.Fatalf("%s %q restarted %q", req.Method, req.URL, name)
			}
			known := name == "web" || name == "db"
			if known && code != http.StatusNoContent || !known && code != http.StatusNotFound {
				t.Fatalf("restart of %q answered %d", name, code)
			}
		}
		switch code {
		case http.StatusNoContent:
			if len(api.restarted)+api.reloads+api.shutdowns != 1 {
				t.Fatalf("%s %q: 204 without exactly one restart, reload or shutdown", req.Method, req.URL)
			}
		case http.StatusOK:
			get := req.Method == http.MethodGet || req.Method == http.MethodHead
			if !get || path != "/v1/status" && path != "/healthz" {
				t.Fatalf("%s %q: 200", req.Method, req.URL)
			}
			if req.Method == http.MethodGet && path == "/v1/status" {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Fatalf("status Content-Type %q", ct)
				}
				var got Snapshot
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("status body: %v", err)
				}
				if b, _ := json.Marshal(got); !bytes.Equal(b, want) {
					t.Fatalf("status body %s, want %s", b, want)
				}
			}
			if req.Method == http.MethodGet && path == "/healthz" && rec.Body.String() != "ok\n" {
				t.Fatalf("healthz body %q", rec.Body.String())
			}
		case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			// ServeMux sends unclean paths to their clean form; the
			// redirect stays on this host.
			if loc := rec.Header().Get("Location"); strings.Contains(loc, "://") {
				t.Fatalf("%s %q redirects off the socket to %q", req.Method, req.URL, loc)
			}
		}
	})
}

// recordingAPI is an API that records restarts and reloads.
type recordingAPI struct {
	snap      Snapshot
	restarted []string
	reloads   int
	shutdowns int
	invalid   bool // whether the file is invalid when reloaded
}

func (a *recordingAPI) Shutdown(context.Context) error {
	a.shutdowns++
	return nil
}

// invalidProblems is what recordingAPI's invalid file reports.
const invalidProblems = "forwards.yaml:3:5: forwards[0]: unknown field \"servce\"\n\thint: did you mean service?"

func (a *recordingAPI) Reload(context.Context) error {
	a.reloads++
	if a.invalid {
		return InvalidConfig(errors.New(invalidProblems))
	}
	return nil
}

func (a *recordingAPI) Snapshot() Snapshot { return a.snap }

func (a *recordingAPI) Restart(_ context.Context, name string) error {
	a.restarted = append(a.restarted, name)
	for _, f := range a.snap.Forwards {
		if f.Name == name {
			return nil
		}
	}
	return ErrUnknownForward
}
