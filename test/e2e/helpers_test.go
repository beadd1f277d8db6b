//go:build linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

// backend is a loopback TCP server standing in for a container: it greets
// each connection with "hello from NAME" and then echoes what it reads.
type backend struct {
	name string
	port int
}

func startBackend(t *testing.T, name string) backend {
	t.Helper()
	port := serveLoopback(t, func(c net.Conn) {
		fmt.Fprintf(c, "hello from %s\n", name)
		io.Copy(c, c)
	})
	return backend{name: name, port: port}
}

// serveLoopback listens on a free loopback port and runs handle for each
// connection in its own goroutine, closing the connection when handle
// returns. At the end of the test it closes the listener and every open
// connection and waits for the handlers. It returns the port.
func serveLoopback(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// greeting dials addr and returns the first line the far end sends.
func greeting(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// freePort returns a port free on 127.0.0.1 and, where the host has it, on
// ::1: kpf's default address, localhost, binds both.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ln6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port))
		if err == nil {
			ln6.Close()
			return port
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return port // no IPv6 loopback here
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

// newNamespace creates a namespace in c, deleted when the test ends.
func newNamespace(t *testing.T, c *cluster, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1000000)
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	waitUntil(t, 60*time.Second, "default service account in "+name, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}

// podTemplate is a pod whose container port 8080 (named "echo") forwards
// to the backends, one per replica.
func podTemplate(app string, backends ...backend) corev1.PodTemplateSpec {
	var ports []string
	for _, b := range backends {
		ports = append(ports, strconv.Itoa(b.port))
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": app},
			Annotations: map[string]string{"test.kpf.dev/forward-8080": strings.Join(ports, ",")},
		},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(2)),
			Containers: []corev1.Container{{
				Name: "main", Image: "kpf.dev/test:e2e",
				Ports: []corev1.ContainerPort{{Name: "echo", ContainerPort: 8080}},
			}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func createDeployment(t *testing.T, c *cluster, ns, name string, replicas int32, backends ...backend) {
	t.Helper()
	tmpl := podTemplate(name, backends...)
	_, err := c.client.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: tmpl,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func createStatefulSet(t *testing.T, c *cluster, ns, name string, replicas int32, backends ...backend) {
	t.Helper()
	tmpl := podTemplate(name, backends...)
	_, err := c.client.AppsV1().StatefulSets(ns).Create(context.Background(), &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template:    tmpl,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// createPod creates a bare pod labelled app=name over backend b.
func createPod(t *testing.T, c *cluster, ns, name string, b backend) {
	t.Helper()
	createAppPod(t, c, ns, name, name, b)
}

// createAppPod creates a bare pod labelled app=app over backend b: no
// controller replaces it once deleted.
func createAppPod(t *testing.T, c *cluster, ns, name, app string, b backend) {
	t.Helper()
	tmpl := podTemplate(app, b)
	_, err := c.client.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// createService exposes pods labelled app=app: service port 80, named
// "tcp", targeting the container port named "echo".
func createService(t *testing.T, c *cluster, ns, name, app string) {
	t.Helper()
	_, err := c.client.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "tcp", Port: 80, TargetPort: intstr.FromString("echo")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// readyEndpoints returns the pods behind the service's ready endpoints.
func readyEndpoints(ctx context.Context, c *cluster, ns, svc string) ([]string, error) {
	slices, err := c.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var pods []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && ep.TargetRef != nil {
				pods = append(pods, ep.TargetRef.Name)
			}
		}
	}
	return pods, nil
}

func waitEndpoints(t *testing.T, c *cluster, ns, svc string, n int) []string {
	t.Helper()
	var pods []string
	waitUntil(t, 60*time.Second, fmt.Sprintf("%d ready endpoints of %s/%s", n, ns, svc), func(ctx context.Context) (bool, error) {
		var err error
		pods, err = readyEndpoints(ctx, c, ns, svc)
		return len(pods) == n, err
	})
	return pods
}

// podOf returns the name of the pod whose assigned backend is b.
func podOf(t *testing.T, c *cluster, ns string, b backend) string {
	t.Helper()
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && (p.Annotations["test.kpf.dev/assigned-forward-8080"] == strconv.Itoa(b.port) ||
			p.Annotations["test.kpf.dev/forward-8080"] == strconv.Itoa(b.port)) {
			return p.Name
		}
	}
	t.Fatalf("no pod in %s serves backend %s", ns, b.name)
	return ""
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// kubectl runs kubectl with both clusters' kubeconfigs.
func kubectl(t *testing.T, s *suite, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kpfProcess is a running `kpf up`.
type kpfProcess struct {
	cmd    *exec.Cmd
	stdout *testsupport.Buffer
	stderr *testsupport.Buffer
	done   chan struct{}
	err    error
}

// writeConfig writes a forwards.yaml in a fresh directory and returns its
// path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "forwards.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceConfig replaces the file the way editors save: write a temporary
// file beside it, then rename it over the original.
func replaceConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startKpf runs `kpf up -f config args...` and waits until it has printed
// its startup table (one line per forward port).
func startKpf(t *testing.T, s *suite, config string, args ...string) *kpfProcess {
	t.Helper()
	return startKpfWith(t, s, s.kubeconfig, config, args...)
}

// startKpfWith is startKpf with KUBECONFIG set to kubeconfig.
func startKpfWith(t *testing.T, s *suite, kubeconfig, config string, args ...string) *kpfProcess {
	t.Helper()
	cmd := exec.Command(s.kpf, append([]string{"up", "-f", config, "-v"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	return startKpfCmd(t, cmd)
}

// startKpfCmd starts cmd, a kpf up prepared by the caller (as another user,
// in another network namespace...), interrupts it when the test ends, and
// waits until it has printed its startup table.
func startKpfCmd(t *testing.T, cmd *exec.Cmd) *kpfProcess {
	t.Helper()
	p := startKpfProcess(t, cmd)
	waitUntil(t, 60*time.Second, "kpf's startup table", func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("kpf exited: %v\n%s", p.err, p.stderr.String())
		default:
		}
		return strings.Contains(p.stdout.String(), "→"), nil
	})
	return p
}

// startKpfProcess is startKpfCmd without the wait for the startup table,
// which kpf prints once every forward has settled (or after some
// seconds): a test that times what kpf does before then polls kpf status
// from the start.
func startKpfProcess(t *testing.T, cmd *exec.Cmd) *kpfProcess {
	t.Helper()
	p := &kpfProcess{cmd: cmd, stdout: &testsupport.Buffer{}, stderr: &testsupport.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		// A kpf built with -race (KPF_E2E_RACE=1) reports races on stderr.
		if log := p.stderr.String(); strings.Contains(log, "WARNING: DATA RACE") {
			i := strings.Index(log, "WARNING: DATA RACE")
			t.Errorf("kpf reported a data race:\n%s", log[i:min(len(log), i+6000)])
		}
		if t.Failed() {
			t.Logf("kpf stdout:\n%s\nkpf stderr (tail):\n%s", p.stdout.String(), testsupport.LastLines(p.stderr.String(), 60))
		}
	})
	return p
}

// line returns the startup line of the forward, or "" if kpf has printed
// none within 10 s. startKpfCmd returns once the table has begun: kpf writes
// it in one Write, but the pipe between kpf and this process may still split
// it, so line waits for the forward's whole line, its newline included.
func (p *kpfProcess) line(name string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := p.stdout.String()
		for l := range strings.Lines(out) {
			if f := strings.Fields(l); len(f) > 0 && f[0] == name && strings.HasSuffix(l, "\n") {
				return strings.TrimSuffix(l, "\n")
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prober opens a new connection to addr every interval and records what
// each one got, until stopped.
type prober struct {
	addr    string
	mu      sync.Mutex
	results []probeResult
	stop    chan struct{}
	done    chan struct{}
}

type probeResult struct {
	at       time.Time // when the connection was opened
	greeting string
	err      error
	end      time.Time // when the greeting (or the error) came
}

func startProber(addr string, interval time.Duration) *prober {
	p := &prober{addr: addr, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			wg.Go(func() {
				at := time.Now()
				g, err := greeting(p.addr, 40*time.Second)
				p.mu.Lock()
				p.results = append(p.results, probeResult{at, g, err, time.Now()})
				p.mu.Unlock()
			})
		}
	}()
	return p
}

// finish stops the prober, waits for connections in flight and returns
// every result.
func (p *prober) finish() []probeResult {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.results
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)

// kubectlPortForward is a running `kubectl port-forward`.
type kubectlPortForward struct {
	addr   string
	stderr *testsupport.Buffer
	done   chan error
}

func startKubectlPortForward(t *testing.T, s *suite, kubeContext, ns, target string, remote int) *kubectlPortForward {
	t.Helper()
	cmd := exec.Command("kubectl", "--context", kubeContext, "-n", ns, "port-forward", target, fmt.Sprintf(":%d", remote))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pf := &kubectlPortForward{stderr: &testsupport.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = pf.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	addrc := make(chan string, 1)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- "127.0.0.1:" + m[1]:
				default:
				}
			}
		}
		pf.done <- cmd.Wait()
	}()
	select {
	case pf.addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward did not start:\n%s", pf.stderr.String())
	}
	return pf
}

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

// kubectlE2E runs kubectl against the primary cluster.
func kubectlE2E(t *testing.T, s *suite, args ...string) string {
	t.Helper()
	return kubectl(t, s, append([]string{"--context", "e2e"}, args...)...)
}

// runKpf runs kpf to completion and returns its combined output.
func runKpf(s *suite, args ...string) (string, error) {
	cmd := exec.Command(s.kpf, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// deployEcho creates the Deployment "echo" with replicas pods over the
// backends, the Service "echo" in front of it, and waits for every replica
// to be a ready endpoint, whose pod names it returns.
func deployEcho(t *testing.T, c *cluster, ns string, replicas int32, backends ...backend) []string {
	t.Helper()
	createDeployment(t, c, ns, "echo", replicas, backends...)
	createService(t, c, ns, "echo", "echo")
	return waitEndpoints(t, c, ns, "echo", int(replicas))
}

// deployBareEcho creates one bare pod "echo-NAME" per backend, labelled
// app=echo, the Service "echo" in front of them, and waits for every pod to
// be a ready endpoint. Unlike deployEcho's Deployment, nothing replaces a
// deleted pod, so a test can tell "reached the deleted pod" from "reached
// its replacement", which would be given the same backend.
func deployBareEcho(t *testing.T, c *cluster, ns string, backends ...backend) {
	t.Helper()
	for _, b := range backends {
		createAppPod(t, c, ns, "echo-"+b.name, "echo", b)
	}
	createService(t, c, ns, "echo", "echo")
	waitEndpoints(t, c, ns, "echo", len(backends))
}

// echoConfig is a forwards.yaml with one forward, "echo", from local port
// to port 80 of the Service "echo" in ns on the primary cluster.
func echoConfig(ns string, port int) string {
	return fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: e2e
    namespace: %s
    service: echo
    ports: ["%d:80"]
`, ns, port)
}

// closedBackend is a backend whose port nothing listens on.
func closedBackend(t *testing.T) backend {
	t.Helper()
	return backend{name: "closed", port: refusedPort(t)}
}

// refusedPort returns a loopback port that refuses every connection until
// the test ends. It holds the port with a socket that is bound but never
// listens: connecting to it gets a reset, and no other process can take the
// port meanwhile. (Closing a listener and hoping its port stays free lets a
// parallel test's server take it, and then the "closed" backend answers.)
func refusedPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// startHTTPBackend serves GET /healthz with status code and GET / with
// "hello from NAME".
func startHTTPBackend(t *testing.T, name string, code int) backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(code)
			return
		}
		fmt.Fprintf(w, "hello from %s\n", name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return backend{name: name, port: ln.Addr().(*net.TCPAddr).Port}
}

// stopAndTime sends sig to kpf and returns how long it took to exit; it
// fails the test if kpf has not exited within 10 s.
func stopAndTime(t *testing.T, p *kpfProcess, sig os.Signal) time.Duration {
	t.Helper()
	sent := time.Now()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("kpf did not exit within 10 s of %v", sig)
	}
	return time.Since(sent)
}
