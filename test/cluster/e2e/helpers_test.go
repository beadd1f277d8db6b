package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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
)

// backend is a loopback TCP server standing in for a container: it greets
// each connection with its name and then echoes what it reads.
type backend struct {
	name string
	port int
}

func startBackend(t *testing.T, name string) backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "hello from %s\n", name)
				io.Copy(c, c)
			})
		}
	})
	return backend{name: name, port: ln.Addr().(*net.TCPAddr).Port}
}

// greeting dials addr and returns the first line the far end sends.
func greeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// newNamespace creates a namespace that is deleted when the test ends.
func newNamespace(t *testing.T, e *env) string {
	t.Helper()
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%100000, 10)
	ctx := context.Background()
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	// Pods need the namespace's default ServiceAccount.
	waitUntil(t, 60*time.Second, "default service account", func(ctx context.Context) (bool, error) {
		_, err := e.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}

// deployEcho creates a Deployment of replicas pods whose container port 8080
// forwards to the given backends (one per pod), and a Service "echo" with
// port 80 named "tcp" targeting the named container port "echo".
func deployEcho(t *testing.T, e *env, ns string, replicas int32, backends ...backend) {
	t.Helper()
	var ports []string
	for _, b := range backends {
		ports = append(ports, strconv.Itoa(b.port))
	}
	labels := map[string]string{"app": "echo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"test.kpf.dev/forward-8080": strings.Join(ports, ","),
				}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(5)),
					Containers: []corev1.Container{{
						Name: "echo", Image: "kpf.dev/echo:test",
						Ports: []corev1.ContainerPort{{Name: "echo", ContainerPort: 8080}},
					}},
				},
			},
		},
	}
	ctx := context.Background()
	if _, err := e.client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "tcp", Port: 80, TargetPort: intstr.FromString("echo")}},
		},
	}
	if _, err := e.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// readyEndpoints returns the pod names behind the service's ready endpoints.
func readyEndpoints(ctx context.Context, e *env, ns, svc string) ([]string, error) {
	slices, err := e.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
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

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// kubectl runs kubectl against the test cluster and returns its output.
func kubectl(t *testing.T, e *env, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", e.cluster.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// portForward is a running `kubectl port-forward`.
type portForward struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan error
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)

// startPortForward runs kubectl port-forward to target with a random local
// port, over WebSocket or SPDY, and waits until it listens.
func startPortForward(t *testing.T, e *env, ns, target string, remotePort int, websocket bool) *portForward {
	t.Helper()
	cmd := exec.Command("kubectl", "--kubeconfig", e.cluster.Kubeconfig, "-n", ns,
		"port-forward", "--address", "127.0.0.1", target, fmt.Sprintf(":%d", remotePort))
	cmd.Env = append(os.Environ(), "KUBECTL_PORT_FORWARD_WEBSOCKETS="+strconv.FormatBool(websocket))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pf := &portForward{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = pf.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-pf.done
	})
	addrc := make(chan string, 1)
	go func() {
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
	case err := <-pf.done:
		pf.done <- err
		t.Fatalf("kubectl port-forward %s exited: %v\n%s", target, err, pf.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward %s did not start\n%s", target, pf.stderr.String())
	}
	return pf
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// closedBackend returns a backend whose port nothing listens on, so
// connecting to it is refused.
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
