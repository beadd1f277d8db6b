//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// kpf opens its port-forward sessions over the WebSocket tunnel by
// default and, with KUBECTL_PORT_FORWARD_WEBSOCKETS=false, over an HTTP
// upgrade to SPDY, as kubectl does. Either way a forward greets and echoes
// 8 MiB byte-exact (each frame written whole, see internal/tunnel/framing.go).
func TestE2EBothTransportsCarryAForward(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "transport")
	b := startBackend(t, "a")
	deployEcho(t, s.primary, ns, 1, b)
	for _, tc := range []struct{ env, transport string }{{"", "websocket"}, {"false", "spdy"}} {
		t.Run(tc.transport, func(t *testing.T) {
			port := freePort(t)
			cmd := exec.Command(s.kpf, "up", "-f", writeConfig(t, echoConfig(ns, port)), "-v")
			cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig, "KUBECTL_PORT_FORWARD_WEBSOCKETS="+tc.env)
			p := startKpfCmd(t, cmd)
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(c)
			if g, err := br.ReadString('\n'); err != nil || g != "hello from a\n" {
				t.Fatalf("greeting %q, %v", g, err)
			}
			if err := echoData(c, br, 8<<20, 7); err != nil {
				t.Fatalf("8 MiB echo: %v", err)
			}
			// A client that speaks first has its first bytes sent with the
			// frames that open its streams (internal/tunnel FirstBytes), and
			// the kubelet's side takes them.
			for i := range 5 {
				c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c2.SetDeadline(time.Now().Add(30 * time.Second))
				msg := fmt.Sprintf("first bytes %d\n", i)
				if _, err := io.WriteString(c2, msg); err != nil {
					t.Fatal(err)
				}
				br2 := bufio.NewReader(c2)
				g, err := br2.ReadString('\n')
				if err != nil || g != "hello from a\n" {
					t.Fatalf("connection %d: greeting %q, %v", i, g, err)
				}
				if e, err := br2.ReadString('\n'); err != nil || e != msg {
					t.Fatalf("connection %d: echo %q, %v; want %q", i, e, err, msg)
				}
				c2.Close()
			}
			waitUntil(t, 10*time.Second, "kpf to log a connection that sent its first bytes ahead", func(context.Context) (bool, error) {
				return sentAhead.MatchString(p.stderr.String()), nil
			})
			want := "transport=" + tc.transport
			waitUntil(t, 10*time.Second, "kpf to log its session's transport", func(context.Context) (bool, error) {
				return strings.Contains(p.stderr.String(), want), nil
			})
			if other := map[string]string{"websocket": "transport=spdy", "spdy": "transport=websocket"}[tc.transport]; strings.Contains(p.stderr.String(), other) {
				t.Errorf("kpf also used another transport (%s)", other)
			}
		})
	}
}

// sentAhead matches kpf's debug log of a connection whose first bytes went
// out with the frames that opened its streams.
var sentAhead = regexp.MustCompile(`connection opened.* sent_ahead=[1-9]`)

// maxDeletedPodHang bounds how long a connection through kpf may stay open
// after its pod was deleted: the node closes the pod's port-forward
// connections at once, and kpf must pass that on rather than wait for its
// next regular SPDY ping (portforward.PingPeriod, 10 s), which is what
// ended such a connection over WebSocket before kpf pinged leaving pods
// (internal/tunnel/spdy.go).
const maxDeletedPodHang = 3 * time.Second

// An idle connection whose pod is deleted ends within a round trip of the
// deletion reaching kpf: through kpf up over either transport, and through
// the Go Dialer. It is not left hanging.
func TestE2EDeletedPodEndsItsConnections(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "podgone")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	gone := map[string]bool{}
	kpfUp := func(env string) func(t *testing.T) (net.Conn, func(t *testing.T)) {
		return func(t *testing.T) (net.Conn, func(t *testing.T)) {
			port := freePort(t)
			cmd := exec.Command(s.kpf, "up", "-f", writeConfig(t, echoConfig(ns, port)), "-v")
			cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig, "KUBECTL_PORT_FORWARD_WEBSOCKETS="+env)
			p := startKpfCmd(t, cmd)
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"": "transport=websocket", "false": "transport=spdy"}[env]
			return c, func(t *testing.T) {
				if !strings.Contains(p.stderr.String(), want) {
					t.Errorf("kpf did not log a session with %s", want)
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		dial func(t *testing.T) (net.Conn, func(t *testing.T))
	}{
		{"websocket", kpfUp("")},
		{"spdy", kpfUp("false")},
		{"dialer", func(t *testing.T) (net.Conn, func(t *testing.T)) {
			d := newDialer(t, s)
			t.Cleanup(func() { d.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", "echo."+ns+".svc:80")
			if err != nil {
				t.Fatal(err)
			}
			return c, func(*testing.T) {}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pod string
			waitUntil(t, 60*time.Second, "a new pod ready", func(ctx context.Context) (bool, error) {
				pods, err := readyEndpoints(ctx, s.primary, ns, "echo")
				if len(pods) != 1 || gone[pods[0]] {
					return false, err
				}
				pod = pods[0]
				return true, err
			})
			c, check := tc.dial(t)
			defer c.Close()
			// The Dialer's connections ignore deadlines: close the
			// connection if the greeting does not come.
			stuck := time.AfterFunc(10*time.Second, func() { c.Close() })
			br := bufio.NewReader(c)
			g, err := br.ReadString('\n')
			stuck.Stop()
			if err != nil || g != "hello from a\n" {
				t.Fatalf("greeting %q, %v", g, err)
			}
			ended := make(chan error, 1)
			go func() {
				_, err := br.ReadByte()
				ended <- err
			}()
			deleted := time.Now()
			gone[pod] = true
			kubectl(t, s, "--context", "e2e", "-n", ns, "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")
			select {
			case err := <-ended:
				took := time.Since(deleted)
				t.Logf("connection ended %v after the deletion (%v)", took.Round(time.Millisecond), err)
				if took > maxDeletedPodHang {
					t.Errorf("connection ended %v after its pod was deleted; want within %v", took.Round(time.Millisecond), maxDeletedPodHang)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("connection still open 30 s after its pod was deleted")
			}
			check(t)
		})
	}
}
