//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
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

	"golang.org/x/net/proxy"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/doctor"
	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/testsupport"
	"github.com/kpf-dev/kpf/pkg/dialer"
)

// The relay: kpf reaches what has no pod (a host, an ExternalName service,
// UDP) through a pod it runs. In the local cluster the relay pod runs
// cmd/kpf-relay as a process on this machine (see the node agent), so
// "a host as the cluster sees it" is this machine's loopback: real
// PostgreSQL, dnsmasq and UDP servers listen there.

// relayLabel selects kpf's relay pods and Jobs.
const relayLabel = "app.kubernetes.io/name=kpf-relay"

// needProgram returns the path of a program the test needs: CI installs
// it (.ci/run), so there its absence fails the test; elsewhere it skips.
func needProgram(t *testing.T, name, pkg string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, pattern := range paths {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (.ci/run installs Debian's %s package)", name, pkg)
	}
	t.Skipf("%s not installed: apt-get install %s", name, pkg)
	return ""
}

// asNobody makes cmd run as nobody when the test runs as root: PostgreSQL
// refuses to run as root.
func asNobody(cmd *exec.Cmd) {
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
}

// startPostgres runs Debian's PostgreSQL on a loopback port, standing for
// a managed database outside the cluster, and returns its port once psql
// can query it.
func startPostgres(t *testing.T) int {
	t.Helper()
	initdb := needProgram(t, "initdb", "postgresql", "/usr/lib/postgresql/*/bin/initdb")
	postgres := filepath.Join(filepath.Dir(initdb), "postgres")
	psql := needProgram(t, "psql", "postgresql-client")
	dir, err := os.MkdirTemp("", "kpf-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	if os.Getuid() == 0 {
		os.Chown(dir, nobody, nobody)
	}
	data := filepath.Join(dir, "data")
	init := exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	asNobody(init)
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	srv := exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50")
	asNobody(srv)
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown
		srv.Wait()
	})
	waitUntil(t, 30*time.Second, "PostgreSQL to accept queries", func(context.Context) (bool, error) {
		out, err := psqlSelect1(psql, port)
		return err == nil && out == "1", nil
	})
	return port
}

// psqlSelect1 runs SELECT 1 with psql against 127.0.0.1:port.
func psqlSelect1(psql string, port int) (string, error) {
	out, err := exec.Command(psql, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres",
		"-Atc", "SELECT 1").CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// relayJobs returns the names of kpf's relay Jobs in ns.
func relayJobs(t *testing.T, c *cluster, ns string) []string {
	t.Helper()
	list, err := c.client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: relayLabel})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range list.Items {
		if j.DeletionTimestamp == nil {
			names = append(names, j.Name)
		}
	}
	return names
}

// relayPods returns kpf's relay pods in ns (terminating ones included:
// gone means gone).
func relayPods(t *testing.T, c *cluster, ns string) []corev1.Pod {
	t.Helper()
	list, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: relayLabel})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// createExternalName creates a Service of type ExternalName.
func createExternalName(t *testing.T, c *cluster, ns, name, external string, port int32) {
	t.Helper()
	_, err := c.client.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: external,
			Ports: []corev1.ServicePort{{Name: "pg", Port: port}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// localOf returns the local port of a forward's first port, from status.
func localOf(t *testing.T, f control.Forward) int {
	t.Helper()
	_, port, err := net.SplitHostPort(f.Ports[0].Local)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// A real PostgreSQL that no pod fronts, reached by psql through kpf's
// relay twice: as a host: target, and as an ExternalName service.
func TestE2ERelayReachesAHostAndAnExternalNameService(t *testing.T) {
	s := needSuite(t)
	t.Parallel()
	c := s.primary
	pg := startPostgres(t)
	psql := needProgram(t, "psql", "postgresql-client")
	ns := newNamespace(t, c, "relay")
	createExternalName(t, c, ns, "pg-ext", "localhost", int32(pg))
	hostPort, svcPort := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: db, host: 127.0.0.1, ports: ["%d:%d"]}
  - {name: db-svc, service: pg-ext, ports: ["%d:pg"]}
`, ns, hostPort, pg, svcPort))
	started := time.Now()
	p := startKpf(t, s, cfg)
	sts := waitAll(t, s, cfg, "both forwards ready through the relay", isReady)
	t.Logf("FIGURE relay: both forwards ready %s after kpf up started", time.Since(started).Round(time.Millisecond))
	for _, f := range sts {
		if f.Ports[0].Relay == "" || !strings.HasPrefix(f.Pod, "kpf-relay-") {
			t.Errorf("%s: status %+v does not say it goes through the relay", f.Name, f)
		}
	}
	if line := p.line("db-svc"); !strings.Contains(line, "ready via relay") {
		t.Errorf("startup line %q does not say via relay", line)
	}
	for name, port := range map[string]int{"host": hostPort, "ExternalName service": svcPort} {
		out, err := psqlSelect1(psql, port)
		if err != nil || out != "1" {
			t.Fatalf("psql through the %s forward: %q, %v", name, out, err)
		}
	}
	if jobs := relayJobs(t, c, ns); len(jobs) != 1 {
		t.Fatalf("relay Jobs in %s: %v, want one shared by both forwards", ns, jobs)
	}
	// kpf status lists the relay pod, its age and what it reaches.
	snap, _ := kpfStatus(t, s, cfg)
	if len(snap.Relays) != 1 || !snap.Relays[0].Ready || snap.Relays[0].Pod != sts[0].Pod || len(snap.Relays[0].Allow) != 2 {
		t.Errorf("status relays = %+v, want the one ready relay pod with both destinations", snap.Relays)
	}
	table, err := exec.Command(s.kpf, "status", "-f", cfg).Output()
	if err != nil || !strings.Contains(string(table), "ready via relay") || !strings.Contains(string(table), "RELAY") ||
		!strings.Contains(string(table), sts[0].Pod) {
		t.Errorf("kpf status: %v\n%s\nwant the forwards ready via relay and the relay pod listed", err, table)
	}
	pod := relayPods(t, c, ns)[0]
	args := strings.Join(pod.Spec.Containers[0].Args, " ")
	for _, want := range []string{fmt.Sprintf("--allow=127.0.0.1:%d/tcp", pg), fmt.Sprintf("--allow=localhost:%d/tcp", pg)} {
		if !strings.Contains(args, want) {
			t.Errorf("relay args %q lack %s", args, want)
		}
	}
	if strings.Count(args, "--allow=") != 2 {
		t.Errorf("relay args %q: want exactly the two declared destinations", args)
	}
}

// The same PostgreSQL, behind an ExternalName service, reached by its
// cluster name through the Go Dialer (with Relay on) and through kpf up's
// SOCKS5 proxy: both go through a relay, and a real query runs.
func TestE2ERelayCarriesTheDialerAndTheSOCKS5Proxy(t *testing.T) {
	s := needSuite(t)
	t.Parallel()
	c := s.primary
	pg := startPostgres(t)
	ns := newNamespace(t, c, "relaydial")
	createExternalName(t, c, ns, "pg-ext", "localhost", int32(pg))
	name := fmt.Sprintf("pg-ext.%s.svc:%d", ns, pg)

	d, err := dialer.New(dialer.Options{Kubeconfig: s.primary.Kubeconfig, DefaultContext: "e2e", Relay: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.DialContext(t.Context(), "tcp", name)
	if err != nil {
		t.Fatalf("Dialer to %s: %v", name, err)
	}
	got, err := pgSelect1(conn)
	conn.Close()
	if err != nil || got != "1" {
		t.Fatalf("SELECT 1 through the Dialer: %q, %v", got, err)
	}
	if n := len(relayJobs(t, c, ns)); n != 1 {
		t.Errorf("relay Jobs while the Dialer is open: %d, want 1", n)
	}
	d.Close()
	waitUntil(t, 5*time.Second, "the Dialer's relay deleted by Close", func(context.Context) (bool, error) {
		return len(relayJobs(t, c, ns)) == 0 && len(relayPods(t, c, ns)) == 0, nil
	})

	socks := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: db, service: pg-ext, ports: ["%d:%d"]}
proxy:
  socks5: 127.0.0.1:%d
`, ns, freePort(t), pg, socks))
	startKpf(t, s, cfg)
	waitAll(t, s, cfg, "the forward ready", isReady)
	via, err := proxy.SOCKS5("tcp", fmt.Sprintf("127.0.0.1:%d", socks), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	conn, err = via.Dial("tcp", fmt.Sprintf("pg-ext.%s.svc.cluster.local:%d", ns, pg))
	if err != nil {
		t.Fatalf("SOCKS5 to pg-ext: %v", err)
	}
	defer conn.Close()
	if got, err := pgSelect1(conn); err != nil || got != "1" {
		t.Fatalf("SELECT 1 through the SOCKS5 proxy: %q, %v", got, err)
	}
}

// The relay refuses what the file does not declare, asked directly on its
// pod's port through kubectl port-forward.
func TestE2ERelayRefusesWhatTheFileDoesNotDeclare(t *testing.T) {
	s := needSuite(t)
	t.Parallel()
	c := s.primary
	ns := newNamespace(t, c, "relayno")
	echo := serveLoopback(t, func(conn net.Conn) { conn.Write([]byte("declared")); conn.Close() })
	other := serveLoopback(t, func(conn net.Conn) { conn.Write([]byte("undeclared")); conn.Close() })
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: echo, host: 127.0.0.1, ports: ["%d:%d"]}
`, ns, freePort(t), echo))
	startKpf(t, s, cfg)
	waitAll(t, s, cfg, "the host forward ready", isReady)
	pod := relayPods(t, c, ns)[0].Name
	pf := startKubectlPortForward(t, s, "e2e", ns, "pod/"+pod, relay.Port)
	ask := func(dest relay.Dest) (string, error) {
		conn, err := netDial(pf.addr)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		rc, err := relay.Open(conn, dest)
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(rc)
		return b.String(), err
	}
	if got, err := ask(relay.Dest{Kind: relay.TCP, Host: "127.0.0.1", Port: uint16(echo)}); got != "declared" {
		t.Fatalf("the declared destination through kubectl port-forward: %q, %v", got, err)
	}
	for _, d := range []relay.Dest{
		{Kind: relay.TCP, Host: "127.0.0.1", Port: uint16(other)},
		{Kind: relay.UDP, Host: "127.0.0.1", Port: uint16(echo)},
		{Kind: relay.TCP, Host: "localhost", Port: uint16(echo)},
	} {
		got, err := ask(d)
		if got != "" || err == nil || !strings.Contains(err.Error(), "the relay refused") {
			t.Errorf("undeclared %s: got %q, %v; want a refusal", d, got, err)
		}
	}
}

// UDP through the relay: a real DNS server answers dig through a /udp
// forward, every one of 1,000 queries; and datagrams come back
// byte-exact.
func TestE2ERelayUDP(t *testing.T) {
	s := needSuite(t)
	t.Parallel()
	c := s.primary
	dnsmasq := needProgram(t, "dnsmasq", "dnsmasq-base", "/usr/sbin/dnsmasq")
	dig := needProgram(t, "dig", "bind9-dnsutils")
	dnsPort := freeUDPPort(t)
	dm := exec.Command(dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--listen-address=127.0.0.1", "--bind-interfaces", fmt.Sprintf("--port=%d", dnsPort),
		"--address=/kpf.test/10.9.8.7", "--cache-size=0", "--pid-file=")
	var dmLog bytes.Buffer
	dm.Stdout, dm.Stderr = &dmLog, &dmLog
	if err := dm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dm.Process.Kill(); dm.Wait() })
	echo := testsupport.UDPEcho(t)

	ns := newNamespace(t, c, "relayudp")
	// The relay of the service forward runs in a namespace of its own
	// (relay.namespace).
	relayNS := newNamespace(t, c, "relayudp-relay")
	createExternalName(t, c, ns, "dns-ext", "localhost", int32(dnsPort))
	dnsLocal, echoLocal, svcLocal := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: dns, host: 127.0.0.1, ports: ["%d:%d/udp"]}
  - {name: uecho, host: 127.0.0.1, ports: ["%d:%d/udp"]}
  - {name: dns-svc, service: dns-ext, ports: ["%d:%d/udp"], relay: {namespace: %s}}
`, ns, dnsLocal, dnsPort, echoLocal, echo, svcLocal, dnsPort, relayNS))
	startKpf(t, s, cfg)
	waitAll(t, s, cfg, "the UDP forwards ready", isReady)
	if jobs := relayJobs(t, c, relayNS); len(jobs) != 1 {
		t.Errorf("relay Jobs in relay.namespace %s: %v, want one", relayNS, jobs)
	}
	// The ExternalName service's UDP port, through the relay in the other
	// namespace.
	out, err := exec.Command(dig, "@127.0.0.1", "-p", strconv.Itoa(svcLocal), "+short", "+tries=3", "+timeout=2", "svc.kpf.test", "A").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "10.9.8.7" {
		t.Fatalf("dig through the ExternalName service's /udp forward: %q, %v", out, err)
	}

	const queries = 1000
	var batch strings.Builder
	for i := range queries {
		fmt.Fprintf(&batch, "q%d.kpf.test A\n", i)
	}
	file := filepath.Join(t.TempDir(), "queries")
	os.WriteFile(file, []byte(batch.String()), 0o600)
	started := time.Now()
	out, err = exec.Command(dig, "@127.0.0.1", "-p", strconv.Itoa(dnsLocal), "+short", "+tries=1", "+timeout=5", "-f", file).CombinedOutput()
	took := time.Since(started)
	answered := strings.Count(string(out), "10.9.8.7\n")
	t.Logf("FIGURE relay udp: %d of %d dig queries answered through the relay in %s (%.0f/s)", answered, queries, took.Round(time.Millisecond), float64(answered)/took.Seconds())
	if err != nil || answered != queries {
		t.Fatalf("dig: %v; %d of %d answered; output tail:\n%s\ndnsmasq:\n%s", err, answered, queries, lastLines(string(out), 10), lastLines(dmLog.String(), 10))
	}

	// 64 KiB of datagrams, then the largest one, each echoed byte-exact.
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", echoLocal))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, relay.MaxDatagram)
	total := 0
	for i := 0; total < 64<<10; i++ {
		size := 1 << 10
		if i == 64 {
			size = relay.MaxDatagram
		}
		want := make([]byte, size)
		rand.Read(want)
		conn.Write(want)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d (%d bytes): got %d bytes, equal %v, %v", i, size, n, bytes.Equal(buf[:n], want), err)
		}
		if i == 64 {
			break
		}
		total += size
	}
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Nothing is left behind: kpf stopped deletes its relay within 5 s; a kpf
// started again adopts the relay a killed one left, never a second one;
// and a relay whose kpf was SIGKILLed is gone within 2.5 minutes with no
// kpf running.
func TestE2ERelayIsCleanedUp(t *testing.T) {
	s := needSuite(t)
	t.Parallel()
	c := s.primary
	ns := newNamespace(t, c, "relaygc")
	echo := serveLoopback(t, func(conn net.Conn) { conn.Write([]byte("hi")); conn.Close() })
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: echo, host: 127.0.0.1, ports: ["%d:%d"]}
`, ns, freePort(t), echo))
	start := func() *kpfProcess {
		p := startKpf(t, s, cfg)
		waitAll(t, s, cfg, "the forward ready through the relay", isReady)
		return p
	}
	kill := func(p *kpfProcess) {
		p.cmd.Process.Kill()
		<-p.done
	}
	gone := func(what string, within time.Duration) time.Duration {
		started := time.Now()
		waitUntil(t, within, what, func(context.Context) (bool, error) {
			return len(relayPods(t, c, ns)) == 0 && len(relayJobs(t, c, ns)) == 0, nil
		})
		return time.Since(started)
	}

	first := start()
	job := relayJobs(t, c, ns)
	kill(first)
	second := start()
	if again := relayJobs(t, c, ns); len(again) != 1 || again[0] != job[0] {
		t.Fatalf("after a kpf was killed and another started: relay Jobs %v, want the one it left (%v), adopted", again, job)
	}
	if !strings.Contains(second.stderr.String(), "adopted relay") {
		t.Errorf("the second kpf did not log that it adopted the relay")
	}
	second.cmd.Process.Signal(syscall.SIGINT)
	<-second.done
	t.Logf("FIGURE relay cleanup: pod and Job gone %s after kpf up was interrupted", gone("the relay deleted after kpf stopped", 5*time.Second).Round(time.Millisecond))

	third := start()
	kill(third)
	t.Logf("FIGURE relay cleanup: pod and Job gone %s after kpf up was SIGKILLed, with no kpf running",
		gone("the relay gone by itself after kpf was killed", 150*time.Second).Round(time.Second))
}

// Without permission to create Jobs, only the forwards that need the relay
// fail, saying which permission is missing; the others serve.
func TestE2ERelayWithoutPermissionFailsOnlyRelayForwards(t *testing.T) {
	s := needSuite(t)
	t.Parallel()
	c := s.primary
	ns := newNamespace(t, c, "relayrbac")
	deployEcho(t, c, ns, 1, startBackend(t, "a"))
	kc := serviceAccountKubeconfig(t, c, ns, "kpf", rbacRole(t))
	echo := serveLoopback(t, func(conn net.Conn) { conn.Write([]byte("hi")); conn.Close() })
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: svc, service: echo, ports: ["%d:80"]}
  - {name: host, host: 127.0.0.1, ports: ["%d:%d"]}
`, ns, freePort(t), freePort(t), echo))
	rep, code, _ := runDoctor(t, s, kc, "-f", cfg)
	if rc, _ := checkOf(rep, "", "relay"); code != 1 || rc.Status != doctor.Failed || !strings.Contains(rc.Message, "create jobs.batch") || !strings.Contains(rc.Message, "docs/relay.md") {
		t.Errorf("doctor without the relay Role: exit %d, relay check %+v; want a failure naming create jobs.batch and docs/relay.md", code, rc)
	}
	if tc, _ := checkOf(rep, "host", "target"); tc.Status != doctor.OK || !strings.Contains(tc.Message, "through kpf's relay") {
		t.Errorf("doctor's target check of the host forward: %+v", tc)
	}
	started := time.Now()
	startKpfWith(t, s, kc, cfg)
	var once sync.Once
	sts := waitAll(t, s, cfg, "svc ready and host failing for the missing permission", func(f control.Forward) bool {
		if f.Name == "svc" {
			return f.State == control.StateReady
		}
		ok := f.State != control.StateReady && strings.Contains(f.Reason, "jobs.batch") && strings.Contains(f.Reason, "cannot create")
		if ok {
			once.Do(func() {
				t.Logf("FIGURE relay rbac: %s after start: %s: %s", time.Since(started).Round(time.Millisecond), f.State, f.Reason)
			})
		}
		return ok
	})
	for _, f := range sts {
		if f.Name == "host" && f.State == control.StateWaiting {
			t.Errorf("host forward %s: a refusal is a failure, not a wait", f.State)
		}
	}

	// docs/relay.md's Role added to the same ServiceAccount: the host
	// forward serves, without restarting kpf.
	bindRole(t, c, ns, "kpf", docRole(t, "relay.md", "kpf-relay"))
	granted := time.Now()
	waitAll(t, s, cfg, "both forwards ready once docs/relay.md's Role is bound", isReady)
	if rep, code, _ := runDoctor(t, s, kc, "-f", cfg); code != 0 || !rep.OK {
		t.Errorf("doctor with docs/relay.md's Role: exit %d: %+v", code, rep.Checks)
	}
	t.Logf("FIGURE relay rbac: the host forward ready %s after the relay Role was bound", time.Since(granted).Round(time.Millisecond))
}

// docRole returns the Role named name in a yaml block of docs/page, as a
// user would apply it.
func docRole(t *testing.T, page, name string) *rbacv1.Role {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", page))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1) {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m[1]), 4096)
		for {
			var role rbacv1.Role
			if err := dec.Decode(&role); err != nil {
				break
			}
			if role.Kind == "Role" && role.Name == name {
				return &role
			}
		}
	}
	t.Fatalf("docs/%s has no Role %s", page, name)
	return nil
}

// bindRole creates role in ns and binds it to the ServiceAccount sa.
func bindRole(t *testing.T, c *cluster, ns, sa string, role *rbacv1.Role) {
	t.Helper()
	ctx := context.Background()
	role = role.DeepCopy()
	role.Namespace = ns
	if _, err := c.client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
	}
	if _, err := c.client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
