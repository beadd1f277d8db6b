package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMinimalForwarderModeRejectsBadUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no flags", nil},
		{"no pod", []string{"--kubeconfig", "k", "--namespace", "n", "--port", "80"}},
		{"port out of range", []string{"--kubeconfig", "k", "--namespace", "n", "--pod", "p", "--port", "70000"}},
		{"an argument", []string{"--kubeconfig", "k", "--namespace", "n", "--pod", "p", "--port", "80", "extra"}},
		{"unknown flag", []string{"--nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Main(t.Context(), append([]string{minimalCommand}, tc.args...), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if !strings.Contains(stderr.String(), minimalCommand) {
				t.Errorf("stderr %q does not name the mode", stderr.String())
			}
		})
	}
}

// TestMinimalForwarderModeListensUntilCancelled runs the mode to an API
// server that is not there: it listens, says where, takes a connection
// (whose port-forward fails) and exits 0 when its context ends.
func TestMinimalForwarderModeListensUntilCancelled(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + dead.Addr().String()
	dead.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+server+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, outW := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- runMinimalForwarder(ctx, []string{"--kubeconfig", kubeconfig, "--namespace", "n", "--pod", "p", "--port", "80", "--spdy"}, outW, &stderr)
		outW.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the address: %v (stderr: %s)", err, stderr.String())
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), minimalListening)
	if !ok {
		t.Fatalf("first line %q, want %q and an address", line, minimalListening)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("address %q: want a loopback host:port (%v)", addr, err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial the forwarder: %v", err)
	}
	// The port-forward to the missing API server fails, and the forwarder
	// closes the client's connection.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a forward to no API server", n)
	} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the forwarder kept a connection it could not forward: %v", err)
	}
	c.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after cancel, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mode did not return after its context ended")
	}
}
