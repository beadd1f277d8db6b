//go:build linux

package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"golang.org/x/sys/unix"

	"github.com/kpf-dev/kpf/internal/control"
)

// An API server kpf cannot use, for each reason a new developer meets
// one: each forward's status says why, naming the context and the server,
// within 2 s of kpf up starting; and Ctrl-C ends kpf within 1 s while it
// waits.
func TestE2EClusterErrorsExplainThemselves(t *testing.T) {
	s := needSuite(t)
	base, err := clientcmd.LoadFromFile(s.primary.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := filepath.Abs(filepath.Join("testdata", "failing-credential-plugin.sh"))
	if err != nil {
		t.Fatal(err)
	}
	closed := freePort(t) // nothing listens there
	// A server that accepts connections and never answers, as a VPN
	// that is down but still routes, or a firewall that drops packets.
	silent := serveLoopback(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	serverAt := func(url string) func(*clientcmdapi.Config) {
		return func(c *clientcmdapi.Config) {
			for _, cl := range c.Clusters {
				cl.Server = url
			}
		}
	}
	tests := []struct {
		name   string
		mutate func(*clientcmdapi.Config)
		want   string
		within time.Duration
		// doctorWant is what kpf doctor's failed check says, when not
		// want.
		doctorWant string
	}{
		{"refused", serverAt(fmt.Sprintf("https://127.0.0.1:%d", closed)), "refused the connection: is the cluster running", 2 * time.Second, ""},
		// The resolver's own timeouts are outside kpf: a machine whose DNS
		// server does not answer takes seconds to say so.
		{"unresolvable", serverAt("https://kpf-e2e-no-such-host.invalid:6443"), "cannot resolve kpf-e2e-no-such-host.invalid", 10 * time.Second, ""},
		{"silent", serverAt(fmt.Sprintf("https://127.0.0.1:%d", silent)), "has not answered for 2s: is your VPN up?", 3 * time.Second, "did not answer in time: is your VPN up? (a firewall that drops packets looks like this too); it gave no answer in 2s (--timeout)"},
		{"wrong CA", func(c *clientcmdapi.Config) {
			ca := selfSignedCA(t)
			for _, cl := range c.Clusters {
				cl.CertificateAuthorityData = ca
			}
		}, "its certificate is signed by an authority the kubeconfig does not trust", 2 * time.Second, ""},
		{"rejected token", func(c *clientcmdapi.Config) {
			for _, u := range c.AuthInfos {
				u.Token = "kpf-e2e-rejected-token"
			}
		}, "rejected the credentials (401)", 2 * time.Second, ""},
		{"failing credential plugin", func(c *clientcmdapi.Config) {
			for _, u := range c.AuthInfos {
				u.Token = ""
				u.Exec = &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: plugin, InteractiveMode: clientcmdapi.NeverExecInteractiveMode}
			}
		}, `the credential plugin "` + plugin + `" of context "e2e" failed`, 2 * time.Second, ""},
	}
	var worstExit, worstOnce time.Duration
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := base.DeepCopy()
			tt.mutate(kc)
			path := filepath.Join(t.TempDir(), "kubeconfig")
			if err := clientcmd.WriteToFile(*kc, path); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: e2e
    service: echo
    ports: ["%d:80"]
`, freePort(t)))
			cmd := exec.Command(s.kpf, "up", "-f", cfg, "-v")
			// A kpf built with -race (KPF_E2E_RACE=1) sleeps 1 s at exit
			// for late race reports (GORACE's atexit_sleep_ms): time kpf,
			// not the race runtime. Races are still reported as found.
			cmd.Env = environ("KUBECONFIG="+path, "GORACE=atexit_sleep_ms=0")
			started := time.Now()
			p := startKpfProcess(t, cmd)
			var reason string
			waitUntil(t, 30*time.Second, "status to give the reason", func(context.Context) (bool, error) {
				snap, _ := kpfStatus(t, s, cfg)
				reason = statusOf(snap, "echo").Reason
				return strings.Contains(reason, tt.want), nil
			})
			took := time.Since(started)
			t.Logf("FIGURE cluster-error %s: in kpf status %s after kpf up started: %s", tt.name, took.Round(10*time.Millisecond), reason)
			if took > tt.within {
				t.Errorf("the reason took %s to reach kpf status, want at most %s", took.Round(10*time.Millisecond), tt.within)
			}
			if !strings.Contains(reason, `context "e2e"`) {
				t.Errorf("the reason does not name the context: %s", reason)
			}
			if strings.Contains(p.stderr.String()+p.stdout.String(), "kpf-e2e-rejected-token") {
				t.Error("kpf's output carries the token")
			}

			// kpf doctor names the same cause, and exits 1.
			rep, code, doctorTook := runDoctor(t, s, path, "-f", cfg, "--timeout", "2s")
			failed, _ := failedCheck(rep)
			t.Logf("FIGURE cluster-error %s: kpf doctor exit %d in %s: %s: %s", tt.name, code, doctorTook.Round(10*time.Millisecond), failed.Name, failed.Message)
			if want := cmp.Or(tt.doctorWant, tt.want); code != 1 || !strings.Contains(failed.Message, want) {
				t.Errorf("kpf doctor: exit %d, first failure %q; want exit 1 and %q", code, failed.Message, want)
			}

			// Ctrl-C, or SIGTERM as a service manager or a closing
			// terminal sends: the same prompt exit.
			sig := syscall.SIGINT
			if i%2 == 1 {
				sig = syscall.SIGTERM
			}
			exit := stopAndTime(t, p, sig)
			worstExit = max(worstExit, exit)
			t.Logf("FIGURE cluster-error %s: exited %s after %s", tt.name, exit.Round(time.Millisecond), unix.SignalName(sig))
			if exit > time.Second {
				t.Errorf("kpf took %s to exit after %s, want at most 1 s", exit.Round(time.Millisecond), unix.SignalName(sig))
			}

			// --once --timeout ends on time, with the reason.
			once := exec.Command(s.kpf, "up", "-f", cfg, "--once", "--timeout", "1s")
			once.Env = cmd.Env
			start := time.Now()
			out, err := once.CombinedOutput()
			over := time.Since(start) - time.Second
			worstOnce = max(worstOnce, over)
			t.Logf("FIGURE cluster-error %s: --once --timeout 1s exited %s after its timeout", tt.name, over.Round(time.Millisecond))
			if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "not every forward became ready within 1s") {
				t.Errorf("--once --timeout 1s: %v, want exit 1 saying so:\n%s", err, out)
			}
			if over > time.Second {
				t.Errorf("--once --timeout 1s ran %s past its timeout, want at most 1 s", over.Round(time.Millisecond))
			}
		})
	}
	t.Logf("FIGURE cluster-error: worst exit after a signal %s; worst --once overshoot %s", worstExit.Round(time.Millisecond), worstOnce.Round(time.Millisecond))
}

// Ctrl-C ends kpf up within 1 s whatever its forwards are doing: in the
// middle of a transfer, holding a client that waits for a ready pod, and
// in backoff after a failure.
func TestE2EInterruptIsPromptInEveryState(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "interrupt")
	deployEcho(t, s.primary, ns, 1, startStreamBackend(t, "stream"))
	createService(t, s.primary, ns, "nobody", "no-such-app") // never has a ready pod
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name  string
		setup func(t *testing.T, port int) // brings the forward into the state
		state control.State
	}{
		{"mid-transfer", func(t *testing.T, port int) {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if n, err := io.CopyN(io.Discard, c, 1<<20); err != nil {
				t.Fatalf("transfer: %d bytes, %v", n, err)
			}
			go io.Copy(io.Discard, c) // still streaming at Ctrl-C
		}, control.StateReady},
		{"waiting for a ready pod", func(t *testing.T, port int) {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}, control.StateWaiting},
		{"backoff", func(*testing.T, int) {}, control.StateRetrying},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, service := freePort(t), "echo"
			switch tt.state {
			case control.StateWaiting:
				service = "nobody"
			case control.StateRetrying:
				port = busy.Addr().(*net.TCPAddr).Port
			}
			cfg := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: e2e
    namespace: %s
    service: %s
    ports: ["%d:80"]
`, ns, service, port))
			cmd := exec.Command(s.kpf, "up", "-f", cfg, "-v")
			cmd.Env = environ("KUBECONFIG="+s.kubeconfig, "GORACE=atexit_sleep_ms=0")
			p := startKpfCmd(t, cmd)
			waitStatus(t, s, cfg, 30*time.Second, "the forward to be "+string(tt.state), func(st control.Forward) bool { return st.State == tt.state })
			tt.setup(t, port)
			exit := stopAndTime(t, p, syscall.SIGINT)
			t.Logf("FIGURE interrupt %s: exited %s after Ctrl-C", tt.name, exit.Round(time.Millisecond))
			if exit > time.Second {
				t.Errorf("kpf took %s to exit after Ctrl-C, want at most 1 s", exit.Round(time.Millisecond))
			}
		})
	}
}
