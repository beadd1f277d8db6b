//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kpf-dev/kpf/internal/control"
)

// The fault tests kill, pause and restart the components of a cluster of
// their own, "fault", so that the other tests, which share "e2e" and
// "e2e2", are never disturbed. Each leaves every component running.

// Component names, as kpfcluster knows them.
const (
	etcd      = "etcd"
	apiServer = "kube-apiserver"
	nodeAgent = "node-agent"

	controllerManager = "kube-controller-manager"
)

// faultCluster returns the cluster "fault", starting it on first use; the
// suite stops it after the run if the run started it.
func faultCluster(t *testing.T) (*suite, *cluster) {
	t.Helper()
	s := needSuite(t)
	f := s.fault
	f.once.Do(func() { f.cluster, f.err = s.clusterUp(f.name) })
	if f.err != nil {
		t.Fatalf("start the fault cluster: %v", f.err)
	}
	return s, f.cluster
}

// stopComponent stops a component of c with signal (KILL or TERM) and
// waits until it has exited; it is started again when the test ends if the
// test has not done so.
func stopComponent(t *testing.T, s *suite, c *cluster, component, signal string) {
	t.Helper()
	t.Cleanup(func() {
		out, err := s.kpfclusterCmd(context.Background(), "start", c.Name, "-component", component).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already running") {
			t.Errorf("start %s again: %v\n%s", component, err, out)
		}
		if component != apiServer {
			return
		}
		// kube-controller-manager's watches retry a lost API server with
		// client-go's backoff, up to a minute apart: the next test's
		// namespace would wait that long for its default ServiceAccount.
		// A fresh controller manager serves at once.
		for _, verb := range [][]string{{"stop", "-signal", "TERM"}, {"start"}} {
			args := append([]string{"-component", controllerManager}, verb[1:]...)
			if out, err := s.kpfclusterCmd(context.Background(), verb[0], c.Name, args...).CombinedOutput(); err != nil {
				t.Errorf("kpfcluster %s %s: %v\n%s", verb[0], controllerManager, err, out)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.kpfclusterCmd(ctx, "stop", c.Name, "-component", component, "-signal", signal).CombinedOutput(); err != nil {
		t.Fatalf("kpfcluster stop %s: %v\n%s", component, err, out)
	}
}

// startComponent starts a stopped component of c again and returns when
// it became ready, as the test saw by polling it every 10 ms while
// kpfcluster started it (kpfcluster itself polls every 200 ms).
func startComponent(t *testing.T, s *suite, c *cluster, component string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	probe := readiness(t, s, c, component)
	readyc := make(chan time.Time, 1)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for pctx.Err() == nil {
			if probe(pctx) == nil {
				readyc <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if out, err := s.kpfclusterCmd(ctx, "start", c.Name, "-component", component).CombinedOutput(); err != nil {
		t.Fatalf("kpfcluster start %s: %v\n%s", component, err, out)
	}
	var at time.Time
	select {
	case at = <-readyc:
	case <-time.After(10 * time.Second):
		t.Fatalf("kpfcluster started %s but it does not answer its readiness check", component)
	}
	return at
}

// readiness returns a check that succeeds once the component serves: etcd
// /health, kube-apiserver /readyz, the node agent's /healthz.
func readiness(t *testing.T, s *suite, c *cluster, component string) func(context.Context) error {
	t.Helper()
	var port int
	for _, comp := range c.Components {
		if comp.Name == component {
			port = comp.Port
		}
	}
	ca, err := os.ReadFile(filepath.Join(s.root, ".cluster", c.Name, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	// A fresh connection each time: a kept-alive one could outlive a kill.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	tokens, err := os.ReadFile(filepath.Join(s.root, ".cluster", c.Name, "pki", "tokens.csv"))
	if err != nil {
		t.Fatal(err)
	}
	token, _, _ := strings.Cut(string(tokens), ",")
	get := func(ctx context.Context, url string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	switch component {
	case etcd:
		return func(ctx context.Context) error { return get(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", port)) }
	case nodeAgent:
		return func(ctx context.Context) error { return get(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", port)) }
	case apiServer:
		return func(ctx context.Context) error { return get(ctx, c.Server+"/readyz") }
	}
	t.Fatalf("no readiness check for %s", component)
	return nil
}

// componentPID reads the current pid of a component from state.json.
func componentPID(t *testing.T, s *suite, c *cluster, component string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.root, ".cluster", c.Name, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st cluster
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if pid := st.pid(component); pid != 0 {
		return pid
	}
	t.Fatalf("no %s in the state of cluster %s", component, c.Name)
	return 0
}

// faultConfig is echoConfig on the fault cluster.
func faultConfig(ns string, port int) string {
	return fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: fault
    namespace: %s
    service: echo
    ports: ["%d:80"]
`, ns, port)
}

// waitStatus polls kpf status until cond holds for the forward "echo" and
// returns that status and when it was seen.
func waitStatus(t *testing.T, s *suite, cfg string, timeout time.Duration, what string, cond func(control.Forward) bool) (control.Forward, time.Time) {
	t.Helper()
	var st control.Forward
	waitUntil(t, timeout, what, func(context.Context) (bool, error) {
		snap, _ := kpfStatus(t, s, cfg)
		st = statusOf(snap, "echo")
		return cond(st), nil
	})
	return st, time.Now()
}

func isReady(st control.Forward) bool { return st.State == control.StateReady }

// firstServed opens connections to addr one after another until one gets
// the greeting want, and returns when it did. Each waits inside kpf for
// the forward to come back, as a user's client would.
func firstServed(t *testing.T, addr, want string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		g, err := greeting(addr, time.Until(deadline))
		if err == nil && g == want {
			return time.Now()
		}
		last = fmt.Errorf("got %q, %v", g, err)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no connection to %s got %q within %s: %v", addr, want, timeout, last)
	return time.Time{}
}

// servedWhenBack starts a client that, while a component is down, opens
// connections to addr one after the other, each waiting inside kpf for
// the forward as a user's client would, and reports when one first gets
// the greeting want.
func servedWhenBack(t *testing.T, addr, want string) <-chan time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	at := make(chan time.Time, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if g, err := greeting(addr, 60*time.Second); err == nil && g == want {
				at <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return at
}

// servedAfter waits for the time servedWhenBack reported and returns it
// relative to ready.
func servedAfter(t *testing.T, served <-chan time.Time, ready time.Time) time.Duration {
	t.Helper()
	select {
	case at := <-served:
		return at.Sub(ready)
	case <-time.After(60 * time.Second):
		t.Fatal("no connection was served within 60s of the component being ready")
		return 0
	}
}

// faultForward deploys one echo pod on the fault cluster and runs kpf up
// with a forward to it; it returns the config path, the local address and
// kpf once the forward is ready.
func faultForward(t *testing.T, s *suite, c *cluster, prefix string, b backend, args ...string) (string, string, *kpfProcess) {
	t.Helper()
	start := time.Now()
	ns := newNamespace(t, c, prefix)
	created := time.Now()
	deployEcho(t, c, ns, 1, b)
	deployed := time.Now()
	port := freePort(t)
	cfg := writeConfig(t, faultConfig(ns, port))
	p := startKpfWith(t, s, c.Kubeconfig, cfg, args...)
	waitStatus(t, s, cfg, 60*time.Second, "the forward to be ready", isReady)
	t.Logf("setup: namespace %s, pod ready %s, forward ready %s", created.Sub(start).Round(time.Millisecond),
		deployed.Sub(created).Round(time.Millisecond), time.Since(deployed).Round(time.Millisecond))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from "+b.name {
		t.Fatalf("before the fault: %q, %v", g, err)
	}
	return cfg, addr, p
}

// The API server is killed while the forward is idle and restarted on the
// same port: the forward notices, retries, and serves again within 2 s of
// the API server being ready.
func TestE2EFaultAPIServerKilledWhileIdle(t *testing.T) {
	s, c := faultCluster(t)
	cfg, addr, _ := faultForward(t, s, c, "fault-api", startBackend(t, "a"))
	stopComponent(t, s, c, apiServer, "KILL")
	killed := time.Now()
	// While it is down, the forward says why, in kpf status.
	down, at := waitStatus(t, s, cfg, 30*time.Second, "the forward to say the API server is gone", func(st control.Forward) bool {
		return strings.Contains(st.Reason, "refused the connection: is the cluster running")
	})
	t.Logf("FIGURE apiserver-idle: reason in kpf status %s after the API server exited: %s: %s",
		at.Sub(killed).Round(10*time.Millisecond), down.State, down.Reason)
	if at.Sub(killed) > 2*time.Second || !strings.Contains(down.Reason, fmt.Sprintf("of context %q", c.Name)) {
		t.Errorf("the reason took %s and says %q; want the context named within 2s", at.Sub(killed).Round(10*time.Millisecond), down.Reason)
	}
	waitStatus(t, s, cfg, 30*time.Second, "the forward to retry", func(st control.Forward) bool {
		return st.State == control.StateRetrying && st.Attempts >= 2
	})
	served := servedWhenBack(t, addr, "hello from a")
	time.Sleep(3 * time.Second) // an outage of some seconds
	ready := startComponent(t, s, c, apiServer)
	servedIn := servedAfter(t, served, ready)
	fresh := firstServed(t, addr, "hello from a", 30*time.Second).Sub(ready)
	_, at = waitStatus(t, s, cfg, 30*time.Second, "the forward to be ready again", isReady)
	t.Logf("FIGURE apiserver-idle: a client waiting through the outage served %s after the API server was ready; a new connection %s after; status ready %s after",
		servedIn.Round(time.Millisecond), fresh.Round(time.Millisecond), at.Sub(ready).Round(time.Millisecond))
	if servedIn > 2*time.Second || fresh > 2*time.Second {
		t.Errorf("the forward served again %s (waiting client) and %s (new connection) after the API server was ready; the promise is 2s",
			servedIn.Round(time.Millisecond), fresh.Round(time.Millisecond))
	}
	for range 5 {
		if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from a" {
			t.Fatalf("after the restart: %q, %v", g, err)
		}
	}
}

// startStreamBackend greets each connection with "hello from NAME" and
// then sends data until the connection ends, about 6 MB/s.
func startStreamBackend(t *testing.T, name string) backend {
	t.Helper()
	port := serveLoopback(t, func(c net.Conn) {
		if _, err := fmt.Fprintf(c, "hello from %s\n", name); err != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return backend{name: name, port: port}
}

// The API server is killed during a long transfer: the client sees its
// connection end (EOF or reset, never a hang), and once the API server is
// back new connections succeed.
func TestE2EFaultAPIServerKilledDuringTransfer(t *testing.T) {
	s, c := faultCluster(t)
	_, addr, _ := faultForward(t, s, c, "fault-xfer", startStreamBackend(t, "stream"))
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.CopyN(io.Discard, conn, 4<<20); err != nil {
		t.Fatalf("transfer before the fault: %d bytes, %v", n, err)
	}
	killed := time.Now()
	// No hang: the connection must end well before this deadline.
	conn.SetReadDeadline(killed.Add(60 * time.Second))
	stopComponent(t, s, c, apiServer, "KILL")
	n, err := io.Copy(io.Discard, conn)
	ended := time.Since(killed)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the transfer hung: no end %s after the API server was killed (%d more bytes)", ended.Round(time.Millisecond), n)
	}
	// The stream never ends by itself: its end can only be the fault,
	// and the client must be told so with a reset, not a clean EOF that
	// a client could take for the end of a complete answer.
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the cut transfer ended with %s %s after the kill; want connection reset", errOrEOF(err), ended.Round(time.Millisecond))
	}
	t.Logf("FIGURE apiserver-transfer: the client saw the end (%v) %s after the kill, %d bytes after it",
		errOrEOF(err), ended.Round(time.Millisecond), n)
	ready := startComponent(t, s, c, apiServer)
	served := firstServed(t, addr, "hello from stream", 30*time.Second).Sub(ready)
	t.Logf("FIGURE apiserver-transfer: a new connection served %s after the API server was ready", served.Round(time.Millisecond))
	c2, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.CopyN(io.Discard, c2, 4<<20); err != nil {
		t.Fatalf("transfer after the restart: %d bytes, %v", n, err)
	}
}

func errOrEOF(err error) string {
	if err == nil {
		return "EOF"
	}
	return err.Error()
}

// The node agent (the kubelet) is killed and restarted: the forward
// notices its session is gone and serves again once the node is back.
func TestE2EFaultNodeAgentKilled(t *testing.T) {
	s, c := faultCluster(t)
	cfg, addr, _ := faultForward(t, s, c, "fault-node", startBackend(t, "a"))
	stopComponent(t, s, c, nodeAgent, "KILL")
	down, _ := waitStatus(t, s, cfg, 30*time.Second, "the forward to notice the node is gone", func(st control.Forward) bool {
		return st.State == control.StateRetrying && st.Attempts >= 2
	})
	t.Logf("while the node agent is down: %s (attempt %d): %s", down.State, down.Attempts, down.Reason)
	served := servedWhenBack(t, addr, "hello from a")
	ready := startComponent(t, s, c, nodeAgent)
	servedIn := servedAfter(t, served, ready)
	fresh := firstServed(t, addr, "hello from a", 30*time.Second).Sub(ready)
	_, at := waitStatus(t, s, cfg, 30*time.Second, "the forward to be ready again", isReady)
	t.Logf("FIGURE node-agent-restart: a client waiting through the outage served %s after the node agent was ready; a new connection %s after; status ready %s after",
		servedIn.Round(time.Millisecond), fresh.Round(time.Millisecond), at.Sub(ready).Round(time.Millisecond))
}

// A paused node agent (as on a laptop that slept), for longer than the
// health interval, makes the probe through the tunnel fail; once it
// resumes, the forward recovers by itself.
func TestE2EFaultPausedNodeAgentIsDetectedAndRecovered(t *testing.T) {
	s, c := faultCluster(t)
	cfg, addr, _ := faultForward(t, s, c, "fault-pause", startBackend(t, "a"), "--probe-interval", "1s")
	pid := componentPID(t, s, c, nodeAgent)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			syscall.Kill(pid, syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()
	paused := time.Now()
	unhealthy, at := waitStatus(t, s, cfg, 30*time.Second, "status to show the forward unhealthy", func(st control.Forward) bool {
		return st.State != control.StateReady && strings.Contains(st.Reason, "probe")
	})
	t.Logf("FIGURE node-agent-pause: unhealthy %s after the pause: %s: %s", at.Sub(paused).Round(100*time.Millisecond), unhealthy.State, unhealthy.Reason)
	// Paused for at least three health intervals.
	time.Sleep(time.Until(paused.Add(3 * time.Second)))
	resume()
	resumedAt := time.Now()
	_, at = waitStatus(t, s, cfg, 60*time.Second, "the forward to recover", isReady)
	t.Logf("FIGURE node-agent-pause: ready again %s after SIGCONT (paused %s)", at.Sub(resumedAt).Round(100*time.Millisecond), resumedAt.Sub(paused).Round(100*time.Millisecond))
	if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from a" {
		t.Fatalf("after recovery: %q, %v", g, err)
	}
}

// etcd is killed and restarted: established sessions keep serving through
// the outage, and afterwards kpf follows the cluster again (a deleted pod
// is replaced and the forward moves to the new one).
func TestE2EFaultEtcdKilled(t *testing.T) {
	s, c := faultCluster(t)
	cfg, addr, _ := faultForward(t, s, c, "fault-etcd", startBackend(t, "a"))
	before, _ := kpfStatus(t, s, cfg)
	first := statusOf(before, "echo").Pod
	stopComponent(t, s, c, etcd, "KILL")
	if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from a" {
		t.Errorf("during the etcd outage, through the established session: %q, %v", g, err)
	}
	time.Sleep(2 * time.Second)
	ready := startComponent(t, s, c, etcd)
	// The API server reconnects to etcd by itself; wait until it serves
	// writes again, then delete the pod.
	var deleted time.Time
	waitUntil(t, 60*time.Second, "the API server to delete the pod after etcd is back", func(ctx context.Context) (bool, error) {
		err := c.client.CoreV1().Pods(statusNamespace(t, s, cfg)).Delete(ctx, first, metav1.DeleteOptions{})
		deleted = time.Now()
		return err == nil || apierrors.IsNotFound(err), nil
	})
	moved, at := waitStatus(t, s, cfg, 60*time.Second, "the forward to move to the replacement pod", func(st control.Forward) bool {
		return isReady(st) && st.Pod != "" && st.Pod != first
	})
	t.Logf("FIGURE etcd-restart: API server writing again %s after etcd was ready; forward ready on the new pod %s %s after the deletion",
		deleted.Sub(ready).Round(time.Millisecond), moved.Pod, at.Sub(deleted).Round(time.Millisecond))
	if g, err := greeting(addr, 10*time.Second); err != nil || g != "hello from a" {
		t.Fatalf("after etcd's restart: %q, %v", g, err)
	}
}

// statusNamespace is the namespace of the forward "echo", from its target.
func statusNamespace(t *testing.T, s *suite, cfg string) string {
	t.Helper()
	snap, _ := kpfStatus(t, s, cfg)
	parts := strings.Split(statusOf(snap, "echo").Target, "/")
	if len(parts) < 2 {
		t.Fatalf("no namespace in target %q", statusOf(snap, "echo").Target)
	}
	return parts[1]
}

// bootstrapToken is a bootstrap token of the fault cluster: a Secret in
// kube-system that the API server accepts as id.secret while it exists.
type bootstrapToken struct {
	id, secret string
}

func newBootstrapToken(t *testing.T) bootstrapToken {
	t.Helper()
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 22)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return bootstrapToken{id: string(b[:6]), secret: string(b[6:])}
}

func (b bootstrapToken) String() string { return b.id + "." + b.secret }

// grant creates the Secret, so the token authenticates again.
func (b bootstrapToken) grant(t *testing.T, c *cluster) {
	t.Helper()
	_, err := c.client.CoreV1().Secrets("kube-system").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + b.id, Namespace: "kube-system"},
		Type:       "bootstrap.kubernetes.io/token",
		StringData: map[string]string{
			"token-id": b.id, "token-secret": b.secret,
			"usage-bootstrap-authentication": "true",
			"auth-extra-groups":              "system:bootstrappers:kpf-e2e",
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.revoke(c) })
}

// revoke deletes the Secret: the API server rejects the token from then on
// (after its authentication cache of 10 s).
func (b bootstrapToken) revoke(c *cluster) error {
	err := c.client.CoreV1().Secrets("kube-system").Delete(context.Background(), "bootstrap-token-"+b.id, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// kubeconfig writes a kubeconfig whose context "fault" uses the token.
func (b bootstrapToken) kubeconfig(t *testing.T, c *cluster) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kctx := cfg.Contexts[c.Name]
	if kctx == nil {
		t.Fatalf("no context %q in %s", c.Name, c.Kubeconfig)
	}
	cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{"kpf-e2e-token": {Token: b.String()}}
	kctx.AuthInfo = "kpf-e2e-token"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitAuth waits until the API server accepts (or rejects) the token.
func (b bootstrapToken) waitAuth(t *testing.T, c *cluster, accepted bool) {
	t.Helper()
	rest, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig(t, c))
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, fmt.Sprintf("the API server to accept the token: %v", accepted), func(context.Context) (bool, error) {
		_, err := client.Discovery().ServerVersion()
		if err != nil && !apierrors.IsUnauthorized(err) {
			return false, nil
		}
		return (err == nil) == accepted, nil
	})
}

// grantForwarding lets the group of the tests' bootstrap tokens do what
// kpf needs: watch the targets and open port-forwards.
func grantForwarding(t *testing.T, c *cluster) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kpf-e2e-forwarder"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}},
		},
	}
	if _, err := c.client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kpf-e2e-forwarder"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:bootstrappers:kpf-e2e"}},
	}
	if _, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// unauthorized: the status says the API server rejected the credentials.
func unauthorized(st control.Forward) bool {
	return strings.Contains(st.Reason, "rejected the credentials (401)")
}

// checkNoToken fails if kpf's output carries the token's secret.
func checkNoToken(t *testing.T, p *kpfProcess, b bootstrapToken) {
	t.Helper()
	if out := p.stdout.String() + p.stderr.String(); strings.Contains(out, b.secret) {
		t.Errorf("kpf's output carries the token's secret")
	}
}

// The kube context's credentials are rejected (a revoked token): the
// forward says so ("... rejected the credentials (401) ...") in its status
// and logs, keeps retrying
// with backoff, and recovers once the credentials are valid again, without
// restarting kpf.
func TestE2EFaultTokenRevoked(t *testing.T) {
	s, c := faultCluster(t)
	grantForwarding(t, c)

	// kpf starts with a token the API server rejects: its informers cannot
	// list the namespace.
	t.Run("at-start", func(t *testing.T) {
		tok := newBootstrapToken(t) // not granted yet: rejected like a revoked one
		ns := newNamespace(t, c, "fault-auth-start")
		deployEcho(t, c, ns, 1, startBackend(t, "a"))
		port := freePort(t)
		cfg := writeConfig(t, faultConfig(ns, port))
		tok.waitAuth(t, c, false)
		started := time.Now()
		p := startKpfWith(t, s, tok.kubeconfig(t, c), cfg)
		st, at := waitStatus(t, s, cfg, 60*time.Second, "status to say unauthorized", unauthorized)
		t.Logf("FIGURE token-at-start: %s %s after kpf started: %s", st.State, at.Sub(started).Round(time.Millisecond), st.Reason)
		if st.State != control.StateFailed && st.State != control.StateRetrying {
			t.Errorf("state %s, want failed or retrying", st.State)
		}
		waitUntil(t, 10*time.Second, "kpf to log unauthorized", func(context.Context) (bool, error) {
			return strings.Contains(p.stderr.String(), "rejected the credentials (401)"), nil
		})
		tok.grant(t, c)
		restored := time.Now()
		_, at = waitStatus(t, s, cfg, 120*time.Second, "the forward to be ready once the token is valid", isReady)
		t.Logf("FIGURE token-at-start: ready %s after the token was restored", at.Sub(restored).Round(time.Millisecond))
		if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil || g != "hello from a" {
			t.Fatalf("after the token was restored: %q, %v", g, err)
		}
		checkNoToken(t, p, tok)
	})

	// The token is revoked while kpf runs: established watches and
	// sessions go on, so kpf sees it when it next opens a session, here
	// because its pod was replaced.
	t.Run("pod-replaced", func(t *testing.T) {
		tok := newBootstrapToken(t)
		tok.grant(t, c)
		tok.waitAuth(t, c, true)
		ns := newNamespace(t, c, "fault-auth-run")
		deployEcho(t, c, ns, 1, startBackend(t, "a"))
		port := freePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cfg := writeConfig(t, faultConfig(ns, port))
		p := startKpfWith(t, s, tok.kubeconfig(t, c), cfg)
		before, _ := waitStatus(t, s, cfg, 60*time.Second, "the forward to be ready", isReady)
		if err := tok.revoke(c); err != nil {
			t.Fatal(err)
		}
		tok.waitAuth(t, c, false)
		kubectl(t, s, "--context", c.Name, "--kubeconfig", c.Kubeconfig, "-n", ns, "delete", "pod", before.Pod, "--wait=false")
		deleted := time.Now()
		st, at := waitStatus(t, s, cfg, 60*time.Second, "status to say unauthorized", func(st control.Forward) bool {
			return unauthorized(st) && st.State == control.StateRetrying
		})
		t.Logf("FIGURE token-revoked: %s (attempt %d) %s after the pod was replaced: %s", st.State, st.Attempts, at.Sub(deleted).Round(time.Millisecond), st.Reason)
		// The retries back off: 250ms, 500ms, 1s, 2s, ... up to 30s.
		later, _ := waitStatus(t, s, cfg, 60*time.Second, "more attempts", func(s2 control.Forward) bool {
			return unauthorized(s2) && s2.Attempts >= 5
		})
		t.Logf("after attempt %d: %s, next at %s", later.Attempts, later.State, later.RetryAt.Format(time.StampMilli))
		for _, want := range []string{"level=WARN msg=\"cannot open a port-forward session; retrying\" forward=echo err=\"the API server https://",
			"in=1s attempt=3", "in=2s attempt=4", "in=4s attempt=5"} {
			if !strings.Contains(p.stderr.String(), want) {
				t.Errorf("kpf's log lacks %q", want)
			}
		}
		tok.grant(t, c)
		restored := time.Now()
		// A client's connection does not wait for the next retry.
		served := firstServed(t, addr, "hello from a", 60*time.Second)
		_, at = waitStatus(t, s, cfg, 60*time.Second, "the forward to be ready again", isReady)
		t.Logf("FIGURE token-revoked: a new connection served %s after the token was restored; status ready %s after",
			served.Sub(restored).Round(time.Millisecond), at.Sub(restored).Round(time.Millisecond))
		checkNoToken(t, p, tok)
	})
}

// Ctrl-C ends kpf up within 1 s while it is dialing: the node agent is
// paused, so a port-forward session the forward opens (after kpf restart)
// and the stream a new client needs both wait on a peer that never
// answers.
func TestE2EFaultInterruptWhileDialing(t *testing.T) {
	s, c := faultCluster(t)
	ns := newNamespace(t, c, "fault-dial")
	deployEcho(t, c, ns, 1, startBackend(t, "a"))
	port := freePort(t)
	cfg := writeConfig(t, faultConfig(ns, port))
	cmd := exec.Command(s.kpf, "up", "-f", cfg, "-v")
	// Time kpf, not the race runtime's 1 s sleep at exit (see
	// TestE2EClusterErrorsExplainThemselves).
	cmd.Env = environ("KUBECONFIG="+c.Kubeconfig, "GORACE=atexit_sleep_ms=0")
	p := startKpfCmd(t, cmd)
	waitStatus(t, s, cfg, 60*time.Second, "the forward to be ready", isReady)

	pid := componentPID(t, s, c, nodeAgent)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	if out, err := exec.Command(s.kpf, "restart", "-f", cfg, "echo").CombinedOutput(); err != nil {
		t.Fatalf("kpf restart: %v\n%s", err, out)
	}
	client, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := client.Read(make([]byte, 1)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client was answered (%d bytes, %v) while the node agent is paused", n, err)
	}
	// The restarted forward resolves its pod again (its caches are fresh)
	// and then dials it, for up to 15 s.
	st, _ := waitStatus(t, s, cfg, 10*time.Second, "the forward to dial its pod", func(st control.Forward) bool {
		return st.State == control.StateStarting && strings.Contains(st.Reason, "opening a port-forward session to pod")
	})
	t.Logf("while dialing: %s (pod %s): %s", st.State, st.Pod, st.Reason)

	exit := stopAndTime(t, p, syscall.SIGINT)
	t.Logf("FIGURE interrupt dialing: exited %s after Ctrl-C", exit.Round(time.Millisecond))
	if exit > time.Second {
		t.Errorf("kpf took %s to exit after Ctrl-C while dialing, want at most 1 s", exit.Round(time.Millisecond))
	}
}
