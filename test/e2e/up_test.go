//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Two contexts, three namespaces, five forwards of five target kinds: each
// local port answers with its own backend.
func TestE2EUpFiveTargetKindsTwoContexts(t *testing.T) {
	s := needSuite(t)
	nsA := newNamespace(t, s.primary, "multi-a")
	nsB := newNamespace(t, s.primary, "multi-b")
	nsC := newNamespace(t, s.secondary, "multi-c")

	svcB, deployB, stsB, podB, selB := startBackend(t, "svc"), startBackend(t, "deploy"), startBackend(t, "sts"), startBackend(t, "pod"), startBackend(t, "selector")
	createDeployment(t, s.primary, nsA, "web", 1, svcB)
	createService(t, s.primary, nsA, "web", "web")
	createDeployment(t, s.primary, nsB, "api", 1, deployB)
	createStatefulSet(t, s.secondary, nsC, "db", 1, stsB)
	createPod(t, s.secondary, nsC, "solo", podB)
	createDeployment(t, s.secondary, nsC, "metrics", 1, selB)
	waitEndpoints(t, s.primary, nsA, "web", 1)

	ports := map[string]int{}
	for _, n := range []string{"svc", "deploy", "sts", "pod", "selector"} {
		ports[n] = freePort(t)
	}
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults:
  context: e2e
forwards:
  - name: svc
    namespace: %[1]s
    service: web
    ports: ["%[4]d:tcp"]
  - name: deploy
    namespace: %[2]s
    deployment: api
    ports: ["%[5]d:8080"]
  - name: sts
    context: e2e2
    namespace: %[3]s
    statefulset: db
    ports: ["%[6]d:echo"]
  - name: pod
    context: e2e2
    namespace: %[3]s
    pod: solo
    ports: ["%[7]d:8080"]
  - name: selector
    context: e2e2
    namespace: %[3]s
    selector: app=metrics
    ports: ["%[8]d:8080"]
`, nsA, nsB, nsC, ports["svc"], ports["deploy"], ports["sts"], ports["pod"], ports["selector"]))
	p := startKpf(t, s, cfg)
	for name, port := range ports {
		waitUntil(t, 30*time.Second, name+" to answer", func(context.Context) (bool, error) {
			g, err := greeting(fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
			return err == nil && g == "hello from "+name, nil
		})
		if l := p.line(name); !strings.Contains(l, "ready") {
			t.Errorf("startup line of %s: %q, want ready", name, l)
		}
	}
}

// Deleting the serving pod while a client opens a connection every 50 ms:
// no connection fails, later ones reach the other pod, and kubectl
// port-forward on the same pod exits with "lost connection to pod".
func TestE2EPodDeletionLosesNoConnection(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "podkill")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	// Bare pods: a Deployment's replacement would be given the deleted
	// pod's backend, and reaching it would look like reaching that pod.
	deployBareEcho(t, s.primary, ns, a, b)
	port := freePort(t)
	p := startKpf(t, s, writeConfig(t, echoConfig(ns, port)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	first, err := greeting(addr, 10*time.Second)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	serving := a
	if first == "hello from b" {
		serving = b
	}
	victim := podOf(t, s.primary, ns, serving)
	kc := startKubectlPortForward(t, s, "e2e", ns, "pod/"+victim, 8080)
	if g, err := greeting(kc.addr, 10*time.Second); err != nil || g != first {
		t.Fatalf("kubectl port-forward before deletion: %q, %v", g, err)
	}

	pr := startProber(addr, 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	kubectl(t, s, "--context", "e2e", "-n", ns, "delete", "pod", victim, "--wait=false")
	time.Sleep(3 * time.Second)
	results := pr.finish()

	var failed, toOther int
	for _, r := range results {
		switch {
		case r.err != nil || !strings.HasPrefix(r.greeting, "hello from "):
			failed++
			t.Errorf("connection at %s: greeting %q, err %v", r.at.Format("15:04:05.000"), r.greeting, r.err)
		case r.greeting != first:
			toOther++
		}
	}
	t.Logf("%d connections during the deletion: %d failed, %d reached the other pod", len(results), failed, toOther)
	if toOther == 0 {
		t.Errorf("no connection reached the other pod after %s was deleted", victim)
	}
	if last := results[len(results)-1]; last.greeting == first {
		t.Errorf("the last connection still reached the deleted pod's backend (%q)", last.greeting)
	}
	select {
	case <-kc.done:
		if !strings.Contains(kc.stderr.String(), "lost connection to pod") {
			t.Errorf("kubectl exited without 'lost connection to pod':\n%s", kc.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("kubectl port-forward did not exit after its pod was deleted")
	}
	if !strings.Contains(p.stderr.String(), "using pod") {
		t.Errorf("kpf did not log the switch to another pod")
	}
}

// A rollout restart replaces every pod; new connections keep succeeding.
func TestE2ERolloutLosesNoConnection(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "rollout")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	before := deployEcho(t, s.primary, ns, 2, a, b)
	port := freePort(t)
	startKpf(t, s, writeConfig(t, echoConfig(ns, port)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pr := startProber(addr, 50*time.Millisecond)
	kubectl(t, s, "--context", "e2e", "-n", ns, "rollout", "restart", "deployment/echo")
	kubectl(t, s, "--context", "e2e", "-n", ns, "rollout", "status", "deployment/echo", "--timeout=60s")
	waitUntil(t, 60*time.Second, "old pods gone", func(ctx context.Context) (bool, error) {
		pods, err := readyEndpoints(ctx, s.primary, ns, "echo")
		for _, p := range pods {
			for _, b := range before {
				if p == b {
					return false, err
				}
			}
		}
		return len(pods) == 2, err
	})
	time.Sleep(time.Second)
	results := pr.finish()
	failed := 0
	for _, r := range results {
		if r.err != nil || !strings.HasPrefix(r.greeting, "hello from ") {
			failed++
			t.Errorf("connection at %s: greeting %q, err %v", r.at.Format("15:04:05.000"), r.greeting, r.err)
		}
	}
	t.Logf("%d connections during the rollout, %d failed", len(results), failed)
}

// While the only pod is not ready, accepted connections wait, then succeed
// once it is ready again.
func TestE2EConnectionsWaitForAReadyPod(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "notready")
	a := startBackend(t, "a")
	pods := deployEcho(t, s.primary, ns, 1, a)
	port := freePort(t)
	startKpf(t, s, writeConfig(t, echoConfig(ns, port)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := greeting(addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	kubectl(t, s, "--context", "e2e", "-n", ns, "annotate", "pod", pods[0], "test.kpf.dev/ready=false")
	waitEndpoints(t, s.primary, ns, "echo", 0)

	type result struct {
		g   string
		err error
		at  time.Time
	}
	results := make(chan result, 5)
	for range 5 {
		go func() {
			g, err := greeting(addr, 30*time.Second)
			results <- result{g, err, time.Now()}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	select {
	case r := <-results:
		t.Fatalf("a connection finished while no pod was ready: %q, %v", r.g, r.err)
	default:
	}
	readyAt := time.Now()
	kubectl(t, s, "--context", "e2e", "-n", ns, "annotate", "--overwrite", "pod", pods[0], "test.kpf.dev/ready=true")
	for range 5 {
		r := <-results
		if r.err != nil || r.g != "hello from a" {
			t.Errorf("waiting connection: %q, %v", r.g, r.err)
		}
		if r.at.Before(readyAt) {
			t.Errorf("a waiting connection was answered before the pod was ready again")
		}
	}
}

// A missing service and a local port in use fail only their own forwards,
// with reasons; creating the service later brings its forward up.
func TestE2EFailuresStayPerForward(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "isolate")
	a := startBackend(t, "a")
	deployEcho(t, s.primary, ns, 1, a)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	good, missing := freePort(t), freePort(t)
	p := startKpf(t, s, writeConfig(t, fmt.Sprintf(`version: 1
defaults:
  context: e2e
  namespace: %s
forwards:
  - name: good
    service: echo
    ports: ["%d:80"]
  - name: missing
    service: later
    ports: ["%d:80"]
  - name: busy
    service: echo
    ports: ["%d:80"]
  - name: nocontext
    context: nope
    service: echo
    ports: ["%d:80"]
`, ns, good, missing, busy.Addr().(*net.TCPAddr).Port, freePort(t))))
	if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", good), 10*time.Second); err != nil || g != "hello from a" {
		t.Fatalf("good forward: %q, %v", g, err)
	}
	if l := p.line("missing"); !strings.Contains(l, `service "later" not found`) {
		t.Errorf("missing forward's line: %q", l)
	}
	if l := p.line("busy"); !strings.Contains(l, fmt.Sprintf("local port %d is already in use by another process", busy.Addr().(*net.TCPAddr).Port)) {
		t.Errorf("busy forward's line: %q", l)
	}
	if l := p.line("nocontext"); !strings.Contains(l, `context "nope" is not in the kubeconfig (`) {
		t.Errorf("nocontext forward's line: %q", l)
	}
	createService(t, s.primary, ns, "later", "echo")
	waitUntil(t, 15*time.Second, "the missing forward to come up", func(context.Context) (bool, error) {
		g, err := greeting(fmt.Sprintf("127.0.0.1:%d", missing), 5*time.Second)
		return err == nil && g == "hello from a", nil
	})
	if strings.Count(p.stderr.String(), `msg="forward failed; retrying" forward=missing`) > 0 {
		t.Errorf("the missing-service forward was restarted; it should have come up in place")
	}
}

// Editing forwards.yaml restarts only the changed forward: a long transfer
// on the unchanged one completes byte-exact, the changed one serves on its
// new port, and an invalid edit changes nothing and is reported with its
// line.
func TestE2EConfigEditsRestartOnlyWhatChanged(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "edit")
	a := startBackend(t, "a")
	deployEcho(t, s.primary, ns, 1, a)
	portA, portB, portB2 := freePort(t), freePort(t), freePort(t)
	cfgText := func(b int) string {
		return fmt.Sprintf(`version: 1
defaults:
  context: e2e
  namespace: %s
forwards:
  - name: fwd-a
    service: echo
    ports: ["%d:80"]
  - name: fwd-b
    service: echo
    ports: ["%d:80"]
`, ns, portA, b)
	}
	cfg := writeConfig(t, cfgText(portB))
	p := startKpf(t, s, cfg)

	// A long transfer through A: 64 MiB echoed back.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", portA))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hello := make([]byte, len("hello from a\n"))
	if _, err := io.ReadFull(conn, hello); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	sent := sha256.New()
	got := sha256.New()
	recvDone := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(got, conn)
		recvDone <- n
	}()
	chunk := make([]byte, 256<<10)
	var written int
	for written < size {
		rand.Read(chunk)
		if written == size/4 {
			// Change B's port mid-transfer.
			replaceConfig(t, cfg, cfgText(portB2))
			start := time.Now()
			waitUntil(t, 10*time.Second, "fwd-b on its new port", func(context.Context) (bool, error) {
				g, err := greeting(fmt.Sprintf("127.0.0.1:%d", portB2), 2*time.Second)
				return err == nil && g == "hello from a", nil
			})
			t.Logf("fwd-b served on its new port %s after the edit", time.Since(start).Round(time.Millisecond))
		}
		if written == size/2 {
			// An invalid edit: a port out of range on line 8.
			replaceConfig(t, cfg, strings.Replace(cfgText(portB2), fmt.Sprintf("%d:80", portA), "70000:80", 1))
			waitUntil(t, 10*time.Second, "the invalid edit to be reported", func(context.Context) (bool, error) {
				return strings.Contains(p.stderr.String(), "forwards.yaml:8:"), nil
			})
		}
		n, err := conn.Write(chunk)
		if err != nil {
			t.Fatalf("write after %d bytes: %v", written, err)
		}
		sent.Write(chunk[:n])
		written += n
	}
	conn.(*net.TCPConn).CloseWrite()
	select {
	case n := <-recvDone:
		if n != size {
			t.Fatalf("received %d bytes back, sent %d", n, size)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not complete")
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		t.Fatal("the transfer through the unchanged forward was corrupted")
	}
	// The old port of B is closed; A still serves after the invalid edit.
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", portB), time.Second); err == nil {
		t.Errorf("fwd-b's old port still accepts connections")
	}
	if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", portA), 5*time.Second); err != nil || g != "hello from a" {
		t.Errorf("fwd-a after the invalid edit: %q, %v", g, err)
	}
	if strings.Contains(p.stderr.String(), "forward=fwd-a state=stopped") {
		t.Errorf("fwd-a was restarted by an edit that did not change it")
	}
}

// SIGINT stops every forward, closes every listener and exits 0.
func TestE2EInterruptClosesEverything(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "sigint")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	ports := []int{freePort(t), freePort(t)}
	p := startKpf(t, s, writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: one
    context: e2e
    namespace: %[1]s
    service: echo
    ports: ["%[2]d:80", "%[3]d:tcp"]
`, ns, ports[0], ports[1])))
	open, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("kpf did not exit within 10 s of SIGINT")
	}
	if p.err != nil {
		t.Fatalf("kpf exit: %v", p.err)
	}
	for _, port := range ports {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still accepts connections after kpf exited", port)
		}
	}
	// The connection open at the time was closed, not left hanging.
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(open); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("the connection open at SIGINT was left hanging")
		}
	}
}

// An error the kubelet reports for one connection (nothing listens on that
// pod port) ends that connection only: a connection open on another port
// of the same pod, over the same port-forward session, goes on working.
// (client-go's PortForwarder, which kubectl uses, closes its whole session
// on such an error: kubernetes#111825.)
func TestE2EOneConnectionErrorLeavesTheSessionUp(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "connerr")
	pods := deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	good, bad := freePort(t), freePort(t)
	startKpf(t, s, writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: two
    context: e2e
    namespace: %s
    pod: %s
    ports: ["%d:8080", "%d:9999"]
`, ns, pods[0], good, bad)))
	long, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", good))
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	r := bufio.NewReader(long)
	if g, err := r.ReadString('\n'); err != nil || g != "hello from a\n" {
		t.Fatalf("greeting: %q, %v", g, err)
	}
	for i := range 3 {
		if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", bad), 10*time.Second); err == nil && g != "" {
			t.Fatalf("connection %d to a pod port nothing listens on got %q", i, g)
		}
	}
	long.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(long, "still here\n")
	if echo, err := r.ReadString('\n'); err != nil || echo != "still here\n" {
		t.Fatalf("the open connection broke after another connection's error: %q, %v", echo, err)
	}

}
