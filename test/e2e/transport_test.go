package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kpf opens its port-forward sessions over the WebSocket tunnel by
// default and, with KUBECTL_PORT_FORWARD_WEBSOCKETS=false, over an HTTP
// upgrade to SPDY, as kubectl does. Either way a forward greets and echoes
// 8 MiB byte-exact (each frame written whole, see pkg/tunnel/framing.go).
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
