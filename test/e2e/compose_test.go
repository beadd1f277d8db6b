//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/control"
)

// The docker-compose workflow: kpf up -d, kpf status, kpf logs, kpf down,
// kpf exec and kpf env, as a script would run them, against real
// processes and a real curl and shell.

// composeEnv is the environment of the kpf commands of one test: the
// suite's kubeconfig and a state directory of the test's own (where kpf
// up -d logs), which it also returns.
func composeEnv(t *testing.T, s *suite) ([]string, string) {
	t.Helper()
	state := t.TempDir()
	return environ("KUBECONFIG="+s.kubeconfig, "XDG_STATE_HOME="+state, "GORACE=atexit_sleep_ms=0"), state
}

// kpfRun runs kpf with env and returns its stdout, stderr and exit code.
func kpfRun(t *testing.T, s *suite, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(s.kpf, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr.String(), "WARNING: DATA RACE") {
		t.Errorf("kpf %s reported a data race:\n%s", args[0], stderr.String())
	}
	return stdout.String(), stderr.String(), code
}

// webConfig is a forwards.yaml with the forward "web" to the Service
// "echo" of ns, on port, with an env: template.
func webConfig(t *testing.T, ns string, port int) string {
	return writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: web
    context: e2e
    namespace: %s
    service: echo
    ports: ["%d:80"]
    env:
      WEB_URL: "http://{{.Addr}}/"
`, ns, port))
}

// httpGet returns the body of GET http://addr/.
func httpGet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	var b bytes.Buffer
	b.ReadFrom(c)
	if _, body, ok := strings.Cut(b.String(), "\r\n\r\n"); ok {
		return body, nil
	}
	return "", fmt.Errorf("no HTTP answer: %q", b.String())
}

// processGone reports whether pid has exited (a zombie counts as exited).
func processGone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}

// sessionOf is pid's session id, from /proc.
func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	sid, err := strconv.Atoi(fields[3]) // state ppid pgrp session
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

func TestE2EComposeUpDetachedStatusLogsDown(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "compose-up")
	deployEcho(t, s.primary, ns, 1, startHTTPBackend(t, "web", 200))
	port := freePort(t)
	cfg := webConfig(t, ns, port)
	// A second forward, which this kpf up is not asked to run.
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  - name: api\n    context: e2e\n    namespace: %s\n    service: echo\n    ports: [\"%d:80\"]\n", ns, freePort(t))
	f.Close()
	env, state := composeEnv(t, s)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// As a script would: a shell starts it and exits.
	sh := exec.Command("sh", "-c", `"$0" up -d -f "$1" web`, s.kpf, cfg)
	sh.Env = env
	var out, errOut bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &errOut
	if err := sh.Run(); err != nil {
		t.Fatalf("kpf up -d: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	returned := time.Now()
	if !strings.Contains(out.String(), "web") || !strings.Contains(out.String(), "ready") {
		t.Errorf("kpf up -d printed no table with web ready:\n%s", out.String())
	}
	t.Cleanup(func() { kpfRun(t, s, env, "down", "-f", cfg) })

	stdout, stderr, code := kpfRun(t, s, env, "status", "-f", cfg, "-o", "json")
	if code != 0 {
		t.Fatalf("kpf status: exit %d\n%s", code, stderr)
	}
	var snap control.Snapshot
	if err := json.Unmarshal([]byte(stdout), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Forwards) != 1 || snap.Forwards[0].State != control.StateReady {
		t.Fatalf("kpf status after kpf up -d: %s", stdout)
	}
	afterReady := returned.Sub(snap.Forwards[0].Since)
	t.Logf("FIGURE kpf up -d returned %s after its forward became ready (%s)", afterReady.Round(time.Millisecond), strings.TrimSpace(errOut.String()))
	if afterReady > 2*time.Second {
		t.Errorf("kpf up -d returned %s after the forward became ready, want at most 2 s", afterReady)
	}
	pid := snap.PID
	if sessionOf(t, pid) == sessionOf(t, os.Getpid()) {
		t.Errorf("the background kpf up (pid %d) is in the test's session: a terminal hangup would reach it", pid)
	}

	// The shell is gone; the forward serves.
	for i := range 3 {
		if body, err := httpGet(addr); err != nil || !strings.Contains(body, "hello from web") {
			t.Fatalf("request %d after the shell exited: %q, %v", i, body, err)
		}
	}

	// Its log, whole and by forward.
	logs, stderr, code := kpfRun(t, s, env, "logs", "--file", cfg, "web")
	if code != 0 || !strings.Contains(logs, "forward=web") || !strings.Contains(logs, "forward ready") {
		t.Errorf("kpf logs web: exit %d\n%s%s", code, logs, stderr)
	}
	for l := range strings.Lines(logs) {
		if !strings.Contains(l, "forward=web") {
			t.Errorf("kpf logs web printed a line of no forward web: %q", l)
		}
	}
	logDir := filepath.Join(state, "kpf", "logs")
	if entries, err := os.ReadDir(logDir); err != nil || len(entries) != 1 {
		t.Errorf("state dir logs %s: %v, %v", logDir, entries, err)
	} else if info, _ := entries[0].Info(); info.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", info.Mode().Perm())
	}

	// Running it again finds it running: exit 0, same pid.
	stdout, stderr, code = kpfRun(t, s, env, "up", "-d", "-f", cfg, "web")
	if code != 0 || !strings.Contains(stderr, fmt.Sprintf("pid %d", pid)) {
		t.Errorf("a second kpf up -d: exit %d\n%s%s", code, stdout, stderr)
	}
	// Asking it for a forward it does not run is told at once.
	asked := time.Now()
	stdout, stderr, code = kpfRun(t, s, env, "up", "-d", "-f", cfg, "--timeout", "30s")
	if code != 1 || !strings.Contains(stderr, "does not run api") || time.Since(asked) > 10*time.Second {
		t.Errorf("kpf up -d of every forward while it runs only web: exit %d after %s\n%s%s", code, time.Since(asked), stdout, stderr)
	}

	stopped := time.Now()
	stdout, stderr, code = kpfRun(t, s, env, "down", "-f", cfg)
	t.Logf("FIGURE kpf down took %s", time.Since(stopped).Round(time.Millisecond))
	if code != 0 || !strings.Contains(stdout, "stopped") {
		t.Fatalf("kpf down: exit %d\n%s%s", code, stdout, stderr)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the forward's port still accepts connections after kpf down")
	}
	if !processGone(pid) {
		t.Errorf("kpf up (pid %d) is still running after kpf down", pid)
	}
	stdout, _, code = kpfRun(t, s, env, "down", "-f", cfg)
	if code != 0 || !strings.Contains(stdout, "no kpf up is running") {
		t.Errorf("kpf down with nothing running: exit %d, %q", code, stdout)
	}
}

func TestE2EComposeExec(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "compose-exec")
	deployEcho(t, s.primary, ns, 1, startHTTPBackend(t, "web", 200))
	port := freePort(t)
	cfg := webConfig(t, ns, port)
	env, _ := composeEnv(t, s)

	t.Run("the command reaches the forward through its environment", func(t *testing.T) {
		stdout, stderr, code := kpfRun(t, s, env, "exec", "-f", cfg, "--", "sh", "-c", `curl -sf "http://$KPF_WEB_ADDR/" && curl -sf "$WEB_URL"`)
		if code != 0 || strings.Count(stdout, "hello from web") != 2 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Error("the forwards kpf exec started still listen after the command exited")
		}
	})
	t.Run("the command's exit status is kpf's", func(t *testing.T) {
		_, stderr, code := kpfRun(t, s, env, "exec", "-f", cfg, "--", "sh", "-c", "exit 3")
		if code != 3 {
			t.Fatalf("exit %d, want 3\n%s", code, stderr)
		}
	})
	t.Run("SIGINT to kpf reaches the command", func(t *testing.T) {
		cmd := exec.Command(s.kpf, "exec", "-f", cfg, "--", "sh", "-c", `trap 'echo got-int; exit 7' INT; echo started; while :; do sleep 0.1; done`)
		cmd.Env = env
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || lines.Text() != "started" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the command did not start: %q\n%s", lines.Text(), stderr.String())
		}
		cmd.Process.Signal(syscall.SIGINT)
		var rest []string
		for lines.Scan() {
			rest = append(rest, lines.Text())
		}
		err = cmd.Wait()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		}
		if code != 7 || len(rest) != 1 || rest[0] != "got-int" {
			t.Fatalf("exit %d, output after SIGINT %q; want the command's trap (got-int, exit 7)\n%s", code, rest, stderr.String())
		}
	})
	t.Run("it reuses a running kpf up and leaves it running", func(t *testing.T) {
		if _, stderr, code := kpfRun(t, s, env, "up", "-d", "-f", cfg); code != 0 {
			t.Fatalf("kpf up -d: exit %d\n%s", code, stderr)
		}
		defer kpfRun(t, s, env, "down", "-f", cfg)
		stdout, stderr, code := kpfRun(t, s, env, "exec", "-f", cfg, "--", "sh", "-c", `curl -sf "$WEB_URL"`)
		if code != 0 || !strings.Contains(stdout, "hello from web") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		if body, err := httpGet(fmt.Sprintf("127.0.0.1:%d", port)); err != nil || !strings.Contains(body, "hello from web") {
			t.Fatalf("the running kpf up no longer serves after kpf exec: %q, %v", body, err)
		}
	})
}

func TestE2EComposeEnvFileForAShell(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "compose-env")
	deployEcho(t, s.primary, ns, 1, startHTTPBackend(t, "web", 200))
	port := freePort(t)
	cfg := webConfig(t, ns, port)
	env, _ := composeEnv(t, s)
	if _, stderr, code := kpfRun(t, s, env, "up", "-d", "-f", cfg); code != 0 {
		t.Fatalf("kpf up -d: exit %d\n%s", code, stderr)
	}
	defer kpfRun(t, s, env, "down", "-f", cfg)

	dotenv, stderr, code := kpfRun(t, s, env, "env", "-f", cfg, "--format", "dotenv")
	if code != 0 {
		t.Fatalf("kpf env: exit %d\n%s", code, stderr)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", `set -a; . ./.env; set +a; curl -sf "http://$KPF_WEB_HOST:$KPF_WEB_PORT/" && curl -sf "$WEB_URL" && sh -c 'echo "child sees $KPF_WEB_PORT_80 and $KPF_WEB_PORT_TCP"'`)
	sh.Dir = dir
	sh.Env = os.Environ()
	out, err := sh.CombinedOutput()
	if err != nil || strings.Count(string(out), "hello from web") != 2 || !strings.Contains(string(out), fmt.Sprintf("child sees %d and %d", port, port)) {
		t.Fatalf("a shell sourcing kpf env's dotenv: %v\n.env:\n%s\noutput:\n%s", err, dotenv, out)
	}

	// An env: template naming a field that does not exist is a config
	// error at its place in the file.
	bad := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: web
    context: e2e
    namespace: %s
    service: echo
    ports: ["%d:80"]
    env:
      WEB_URL: "http://{{.Hots}}/"
`, ns, port))
	_, stderr, code = kpfRun(t, s, env, "validate", "-f", bad)
	if want := bad + ":9:16: forwards[0].env.WEB_URL: unknown field .Hots"; code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("kpf validate of an unknown template field: exit %d\n%s\nwant %q", code, stderr, want)
	}
}

// envPort is KPF_<NAME>_PORT as kpf env -o json prints it.
func envPort(t *testing.T, s *suite, env []string, cfg, name string) int {
	t.Helper()
	stdout, stderr, code := kpfRun(t, s, env, "env", "-f", cfg, "-o", "json")
	if code != 0 {
		t.Fatalf("kpf env: exit %d\n%s", code, stderr)
	}
	var vars map[string]string
	if err := json.Unmarshal([]byte(stdout), &vars); err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(vars["KPF_"+strings.ToUpper(name)+"_PORT"])
	if err != nil {
		t.Fatalf("kpf env: %v\n%s", err, stdout)
	}
	return port
}

func TestE2EComposeAutomaticPortIsKept(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "compose-auto")
	deployEcho(t, s.primary, ns, 1, startHTTPBackend(t, "web", 200))
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: web
    context: e2e
    namespace: %s
    service: echo
    ports: ["auto:80"]
`, ns))
	env, _ := composeEnv(t, s)
	up := func() (int, string) {
		t.Helper()
		stdout, stderr, code := kpfRun(t, s, env, "up", "-d", "-f", cfg)
		if code != 0 {
			t.Fatalf("kpf up -d: exit %d\n%s%s", code, stdout, stderr)
		}
		port := envPort(t, s, env, cfg, "web")
		if !strings.Contains(stdout, fmt.Sprintf("localhost:%d", port)) {
			t.Errorf("kpf up -d's table does not show the automatic port %d:\n%s", port, stdout)
		}
		if body, err := httpGet(fmt.Sprintf("127.0.0.1:%d", port)); err != nil || !strings.Contains(body, "hello from web") {
			t.Fatalf("GET through the automatic port %d: %q, %v", port, body, err)
		}
		return port, stdout
	}
	down := func() {
		t.Helper()
		if _, stderr, code := kpfRun(t, s, env, "down", "-f", cfg); code != 0 {
			t.Fatalf("kpf down: exit %d\n%s", code, stderr)
		}
	}
	t.Cleanup(func() { kpfRun(t, s, env, "down", "-f", cfg) })

	first, _ := up()
	down()
	// Without a kpf up, kpf env gives the remembered port.
	if p := envPort(t, s, env, cfg, "web"); p != first {
		t.Errorf("kpf env with nothing running: port %d, want the remembered %d", p, first)
	}
	second, _ := up()
	if second != first {
		t.Fatalf("after kpf down and kpf up -d: port %d, want the same %d", second, first)
	}
	down()

	// Something else takes it meanwhile.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	third, _ := up()
	t.Logf("FIGURE automatic port: %d, %d after down/up -d, %d once something else held it", first, second, third)
	if third == first {
		t.Fatalf("kpf gave the port another program holds (%d)", first)
	}
	logs, _, _ := kpfRun(t, s, env, "logs", "--file", cfg)
	if !strings.Contains(logs, "the remembered automatic port is taken") || !strings.Contains(logs, fmt.Sprintf("remembered=%d now=%d", first, third)) {
		t.Errorf("kpf logs does not report the new port:\n%s", logs)
	}
}
